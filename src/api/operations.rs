//! `/v1/operations`: async work the gateway tracks, advanced from the vendor on read.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    extract::{Path, Query},
    problem::{ApiError, Problem},
    AppState,
};
use crate::{
    auth::{Caller, Scope},
    domain::{AccountId, Operation},
    store::OperationFilter,
};

/// Filters of `GET /v1/operations`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OperationQuery {
    /// Only this account's operations.
    #[param(value_type = Option<String>)]
    pub account: Option<AccountId>,
    /// Only operations on this snapshot id.
    pub snapshot: Option<String>,
    /// Only pending and running operations.
    #[serde(default)]
    pub unfinished: bool,
    /// At most this many (default 50, 1 to 200), newest first.
    pub limit: Option<u32>,
}

/// Largest `limit` of `GET /v1/operations`.
pub(crate) const MAX_LIMIT: u32 = 200;

/// A list of operations, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationList {
    pub items: Vec<Operation>,
}

/// Path of an operation.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OperationPath {
    /// Operation id.
    pub operation: String,
}

/// Lists the tenant's operations as stored (`GET /v1/operations/{id}` advances one).
#[utoipa::path(
    get, path = "/v1/operations", tag = "operations", operation_id = "listOperations",
    params(OperationQuery),
    security(("bearer" = ["snapshots:read"])),
    responses((status = 200, description = "Operations, newest first", body = OperationList))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<OperationQuery>,
) -> Result<axum::Json<OperationList>, ApiError> {
    caller.require(Scope::SnapshotsRead)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        )
        .with_field("limit"));
    }
    let filter = OperationFilter {
        account: query.account,
        snapshot_id: query.snapshot,
        unfinished_only: query.unfinished,
        limit,
    };
    let items = state.service.operations(&caller.tenant, &filter).await?;
    Ok(axum::Json(OperationList { items }))
}

/// Shows an operation, first asking the vendor how it is going when unfinished.
#[utoipa::path(
    get, path = "/v1/operations/{operation}", tag = "operations", operation_id = "getOperation",
    params(OperationPath),
    security(("bearer" = ["snapshots:read"])),
    responses(
        (status = 200, description = "The operation", body = Operation),
        (status = 404, description = "No such operation for the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<OperationPath>,
) -> Result<axum::Json<Operation>, ApiError> {
    caller.require(Scope::SnapshotsRead)?;
    let op = state
        .service
        .operation(&caller.tenant, &path.operation)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "operation_not_found",
                format!(
                    "operation `{}` does not exist",
                    path.operation.chars().take(80).collect::<String>()
                ),
            )
        })?;
    Ok(axum::Json(op))
}
