//! Hyperstack (NexGen Cloud Infrahub): VM snapshots, `api_key` header auth.

use super::{ProviderAdapter, ProviderInfo};
use crate::domain::{Capabilities, FieldSpec, ProviderKind};

static INFO: ProviderInfo = ProviderInfo {
    kind: ProviderKind::Hyperstack,
    display_name: "Hyperstack",
    source_kind: "vm",
    credential_fields: &[FieldSpec::required(
        "api_key",
        "API key from the Hyperstack console (sent as the `api_key` header)",
    )],
    setting_fields: &[],
    capabilities: Capabilities {
        list: true,
        get: true,
        create: true,
        create_replaces_existing: false,
        rename: false,
        describe: false,
        delete: true,
        restore: true,
        restore_to_new_resource: true,
        restore_to_other_target: false,
        create_image: true,
        name_availability: true,
    },
};

/// The Hyperstack adapter.
pub struct Hyperstack;

impl ProviderAdapter for Hyperstack {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }
}
