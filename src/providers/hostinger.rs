//! Hostinger VPS: one snapshot per VM, Bearer token auth, actions.

use super::{ProviderAdapter, ProviderInfo};
use crate::domain::{Capabilities, FieldSpec, ProviderKind};

static INFO: ProviderInfo = ProviderInfo {
    kind: ProviderKind::Hostinger,
    display_name: "Hostinger VPS",
    source_kind: "vm",
    credential_fields: &[FieldSpec::required(
        "token",
        "hPanel API token (sent as `Authorization: Bearer`)",
    )],
    setting_fields: &[],
    capabilities: Capabilities {
        list: true,
        get: true,
        create: true,
        create_replaces_existing: true,
        rename: false,
        describe: false,
        delete: true,
        restore: true,
        restore_to_new_resource: false,
        restore_to_other_target: false,
        create_image: false,
        name_availability: false,
    },
};

/// The Hostinger adapter.
pub struct Hostinger;

impl ProviderAdapter for Hostinger {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }
}
