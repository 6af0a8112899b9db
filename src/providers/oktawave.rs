//! Oktawave (OCI services API): instance snapshots, OAuth2 password-grant tokens, tickets.

use super::{ProviderAdapter, ProviderInfo};
use crate::domain::{Capabilities, FieldSpec, ProviderKind};

static INFO: ProviderInfo = ProviderInfo {
    kind: ProviderKind::Oktawave,
    display_name: "Oktawave",
    source_kind: "instance",
    credential_fields: &[
        FieldSpec::required("client_id", "OAuth2 API client id"),
        FieldSpec::required("client_secret", "OAuth2 API client secret"),
        FieldSpec::required("username", "Oktawave login"),
        FieldSpec::required("password", "Oktawave password"),
    ],
    setting_fields: &[FieldSpec::required(
        "region",
        "Region, chosen by base URL: pl1 (Warsaw) or pl2 (Kraków)",
    )
    .one_of(&["pl1", "pl2"])],
    capabilities: Capabilities {
        list: true,
        get: true,
        create: true,
        create_replaces_existing: false,
        rename: true,
        describe: true,
        delete: true,
        restore: true,
        restore_to_new_resource: false,
        restore_to_other_target: false,
        create_image: false,
        name_availability: false,
    },
};

/// The Oktawave adapter.
pub struct Oktawave;

impl ProviderAdapter for Oktawave {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }
}
