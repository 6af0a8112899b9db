//! `/v1/operations`: async work the gateway tracks, advanced from the vendor on read.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    extract::{Path, Query},
    problem::{ApiError, Problem, Refusal},
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
    /// Items per page: default 50, max 200.
    pub page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// A page of operations, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationList {
    /// Newest first (`created_at` descending, ties by `id` descending).
    pub items: Vec<Operation>,
    /// Pass as `page_token` for the next page; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// Path of an operation.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OperationPath {
    /// Operation id.
    #[param(example = "op_0192f8a4c3d27b1e9f6a5b4c3d2e1f00")]
    pub operation: String,
}

/// Query of `GET /v1/operations/{operation}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Long-poll: when the operation is unfinished, answer as soon as it changes, or after
    /// this many seconds (0 to 60). `30s` and `500ms` are accepted too.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 60, example = 30)]
    pub wait: Option<String>,
}

/// The longest long-poll.
pub(crate) const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A `wait` value: bare seconds, `30s` or `500ms`, at most [`MAX_WAIT`].
pub(crate) fn parse_wait(value: &str) -> Result<std::time::Duration, String> {
    let (number, unit_ms) = if let Some(ms) = value.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(s) = value.strip_suffix('s') {
        (s, 1000)
    } else {
        (value, 1000)
    };
    let digits =
        !number.is_empty() && number.len() <= 9 && number.bytes().all(|b| b.is_ascii_digit());
    let wait = digits
        .then(|| number.parse::<u64>().ok())
        .flatten()
        .and_then(|n| n.checked_mul(unit_ms))
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| {
            format!(
                "wait must be a number of seconds (or like `30s`, `500ms`), not `{}`",
                value.chars().take(20).collect::<String>()
            )
        })?;
    if wait > MAX_WAIT {
        return Err(format!(
            "wait must be at most {} seconds",
            MAX_WAIT.as_secs()
        ));
    }
    Ok(wait)
}

/// The long-poll wait a request asks for, if any (for the gateway's deadline).
pub(crate) fn requested_wait(uri: &axum::http::Uri) -> Option<std::time::Duration> {
    if !uri.path().starts_with("/v1/operations/") {
        return None;
    }
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "wait")
        .and_then(|(_, v)| parse_wait(&v).ok())
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
    let size = super::paging::page_size(query.page_size)?;
    let paging = super::paging::query_id(
        &caller.tenant,
        "operations",
        &(&query.account, &query.snapshot, query.unfinished),
    );
    let before = query
        .page_token
        .as_deref()
        .map(|t| super::paging::open::<(DateTime<Utc>, String)>(&state, &paging, t))
        .transpose()?;
    let filter = OperationFilter {
        account: query.account,
        snapshot_id: query.snapshot,
        unfinished_only: query.unfinished,
        before,
        // One more than the page: whether another page follows.
        limit: size + 1,
    };
    let mut items = state.service.operations(&caller.tenant, &filter).await?;
    let more = items.len() > size as usize;
    items.truncate(size as usize);
    let next_page_token = more
        .then(|| items.last())
        .flatten()
        .map(|op| super::paging::seal(&state, &paging, (op.created_at, op.id.clone())));
    Ok(axum::Json(OperationList {
        items,
        next_page_token,
    }))
}

/// Shows an operation, first asking the vendor how it is going when unfinished; with `wait`,
/// holds the answer until the operation changes (the reconciler or another replica advancing
/// it) or the wait ends.
#[utoipa::path(
    get, path = "/v1/operations/{operation}", tag = "operations", operation_id = "getOperation",
    params(OperationPath, WaitQuery),
    security(("bearer" = ["snapshots:read"])),
    responses(
        (status = 200, description = "The operation", body = Operation),
        (status = 400, description = "`wait` is not a duration of at most 60 s", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such operation for the caller", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too_many_waiters`: the tenant or the gateway already holds its maximum of long-polls (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<OperationPath>,
    Query(query): Query<WaitQuery>,
) -> Result<axum::Json<Operation>, ApiError> {
    caller.require(Scope::SnapshotsRead)?;
    let wait = query
        .wait
        .as_deref()
        .map(parse_wait)
        .transpose()
        .map_err(|e| ApiError::refuse(Refusal::InvalidQuery, e).with_field("wait"))?
        .unwrap_or_default();
    let op = state
        .service
        .operation_after_change(&caller.tenant, &path.operation, wait)
        .await?;
    Ok(axum::Json(op))
}
