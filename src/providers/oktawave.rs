//! Oktawave (OCI services API): instance snapshots, OAuth2 password-grant tokens, tickets.

use async_trait::async_trait;

use super::{
    CallContext, CreateRequest, ProviderAdapter, ProviderError, ProviderInfo, Progress,
    RestoreRequest, Submitted,
};
use crate::{config::ProvidersConfig, domain::{Operation, VendorSnapshot}, upstream::Upstream};
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
pub struct Oktawave {
    http: Upstream,
}

impl Oktawave {
    pub fn new(_config: &ProvidersConfig, http: Upstream) -> Self {
        Self { http }
    }
}

// TEMPORARY: replaced by the full adapter in this same change.
const PENDING: ProviderError = ProviderError::Unsupported { operation: "pending adapter" };

#[async_trait]
impl ProviderAdapter for Oktawave {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }
    async fn verify(&self, _ctx: &CallContext<'_>) -> Result<(), ProviderError> {
        let _ = &self.http;
        Err(PENDING)
    }
    async fn list(&self, _ctx: &CallContext<'_>, _source_id: Option<&str>) -> Result<Vec<VendorSnapshot>, ProviderError> {
        Err(PENDING)
    }
    async fn get(&self, _ctx: &CallContext<'_>, _native_id: &str) -> Result<VendorSnapshot, ProviderError> {
        Err(PENDING)
    }
    async fn create(&self, _ctx: &CallContext<'_>, _request: &CreateRequest) -> Result<Submitted, ProviderError> {
        Err(PENDING)
    }
    async fn delete(&self, _ctx: &CallContext<'_>, _native_id: &str) -> Result<Submitted, ProviderError> {
        Err(PENDING)
    }
    async fn restore(&self, _ctx: &CallContext<'_>, _native_id: &str, _request: &RestoreRequest) -> Result<Submitted, ProviderError> {
        Err(PENDING)
    }
    async fn poll(&self, _ctx: &CallContext<'_>, _operation: &Operation) -> Result<Progress, ProviderError> {
        Err(PENDING)
    }
}
