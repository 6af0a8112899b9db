//! `/v1/providers`: every provider, its account fields, capabilities and rate limits.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::{problem::ApiError, AppState};
use crate::{
    auth::Caller,
    domain::{Capabilities, FieldSpec, ProviderKind, SourceKind},
    providers::RateLimits,
};

/// One provider as an adapter declares it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub name: ProviderKind,
    pub display_name: &'static str,
    /// What snapshots are taken of.
    pub source_kind: SourceKind,
    /// How the provider rate-limits, as its documentation says (operators may override).
    pub rate_limits: RateLimits,
    pub credential_fields: Vec<FieldSpec>,
    pub setting_fields: Vec<FieldSpec>,
    pub capabilities: Capabilities,
}

/// The providers list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    pub items: Vec<ProviderView>,
}

/// Lists the providers with their credential fields and capability matrix.
#[utoipa::path(
    get, path = "/v1/providers", tag = "providers", operation_id = "listProviders",
    security(("bearer" = [])),
    responses((status = 200, description = "Every provider", body = ProviderList))
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<axum::Json<ProviderList>, ApiError> {
    let items = state
        .service
        .providers()
        .into_iter()
        .map(|info| ProviderView {
            name: info.kind,
            display_name: info.display_name,
            source_kind: info.source_kind,
            rate_limits: info.rate_limits,
            credential_fields: info.credential_fields.to_vec(),
            setting_fields: info.setting_fields.to_vec(),
            capabilities: info.capabilities,
        })
        .collect();
    Ok(axum::Json(ProviderList { items }))
}
