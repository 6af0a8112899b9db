//! `/v1/providers`: the five providers, their account fields and capabilities.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::{problem::ApiError, AppState};
use crate::{
    auth::Caller,
    domain::{Capabilities, FieldSpec, ProviderKind},
};

/// One provider as an adapter declares it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub name: ProviderKind,
    pub display_name: &'static str,
    /// What snapshots are taken of: `vm`, `volume`, `instance` or `slice`.
    pub source_kind: &'static str,
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
    responses((status = 200, description = "The five providers", body = ProviderList))
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
            credential_fields: info.credential_fields.to_vec(),
            setting_fields: info.setting_fields.to_vec(),
            capabilities: info.capabilities,
        })
        .collect();
    Ok(axum::Json(ProviderList { items }))
}
