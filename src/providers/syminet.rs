//! Syminet: slice snapshots, lowercase `authorization: bearer`, bare 202 answers.

use super::{ProviderAdapter, ProviderInfo};
use crate::domain::{Capabilities, FieldSpec, ProviderKind};

static INFO: ProviderInfo = ProviderInfo {
    kind: ProviderKind::Syminet,
    display_name: "Syminet",
    source_kind: "slice",
    credential_fields: &[FieldSpec::required(
        "token",
        "Panel API token (sent as `authorization: bearer`)",
    )],
    setting_fields: &[],
    capabilities: Capabilities {
        list: true,
        get: true,
        create: true,
        create_replaces_existing: false,
        rename: true,
        describe: false,
        delete: true,
        restore: true,
        restore_to_new_resource: false,
        restore_to_other_target: true,
        create_image: false,
        name_availability: false,
    },
};

/// The Syminet adapter.
pub struct Syminet;

impl ProviderAdapter for Syminet {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }
}
