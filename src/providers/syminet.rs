//! Syminet: slice snapshots, lowercase `authorization: bearer`, bare 202 answers.

use async_trait::async_trait;

use super::{
    CallContext, CreateRequest, ProviderAdapter, ProviderError, ProviderInfo, Progress,
    RestoreRequest, Submitted,
};
use crate::{config::ProvidersConfig, domain::{Operation, VendorSnapshot}, upstream::Upstream};
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
pub struct Syminet {
    http: Upstream,
}

impl Syminet {
    pub fn new(_config: &ProvidersConfig, http: Upstream) -> Self {
        Self { http }
    }
}

// TEMPORARY: replaced by the full adapter in this same change.
const PENDING: ProviderError = ProviderError::Unsupported { operation: "pending adapter" };

#[async_trait]
impl ProviderAdapter for Syminet {
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
