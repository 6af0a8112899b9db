//! Koyeb: volume snapshots, Bearer token auth.

use super::{ProviderAdapter, ProviderInfo};
use crate::domain::{Capabilities, FieldSpec, ProviderKind};

static INFO: ProviderInfo = ProviderInfo {
    kind: ProviderKind::Koyeb,
    display_name: "Koyeb",
    source_kind: "volume",
    credential_fields: &[FieldSpec::required(
        "token",
        "Koyeb API credential (sent as `Authorization: Bearer`)",
    )],
    setting_fields: &[FieldSpec::optional(
        "organization_id",
        "Only list snapshots of this organization",
    )],
    capabilities: Capabilities {
        list: true,
        get: true,
        create: true,
        create_replaces_existing: false,
        rename: true,
        describe: false,
        delete: true,
        restore: true,
        restore_to_new_resource: true,
        restore_to_other_target: false,
        create_image: false,
        name_availability: false,
    },
};

/// The Koyeb adapter.
pub struct Koyeb;

impl ProviderAdapter for Koyeb {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }
}
