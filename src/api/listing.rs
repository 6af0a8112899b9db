//! `GET /v1/snapshots`: one list across every account of the tenant, merged in one order,
//! paged by one tamper-evident cursor, with per-account failures reported beside the items.
//! The query is read and the page answered here; the page itself is the service's
//! ([`crate::service::SnapshotQuery`]).

use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    problem::{ApiError, Refusal},
    snapshots::Include,
    AppState,
};
use crate::{
    auth::{Caller, Scope},
    domain::{ProviderKind, Snapshot, SnapshotStatus},
    service::{ServiceError, SnapshotCursor, SnapshotQuery},
};

/// Query of `GET /v1/snapshots` (repeatable members may be given several times).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only these accounts (repeatable).
    #[param(value_type = Option<Vec<String>>)]
    pub account: Vec<String>,
    /// Only accounts of these providers (repeatable).
    #[param(value_type = Option<Vec<ProviderKind>>)]
    pub provider: Vec<ProviderKind>,
    /// Only these normalized statuses (repeatable).
    #[param(value_type = Option<Vec<SnapshotStatus>>)]
    pub status: Vec<SnapshotStatus>,
    /// Only snapshots of this VM / volume / instance / slice (pushed down to the vendor).
    pub source_id: Option<String>,
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    /// Items per page: default 50, max 200.
    pub page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
    /// `true`: any account failure fails the request with `502`.
    pub strict: Option<bool>,
    /// `vendor` adds the raw vendor objects.
    pub include: Option<Include>,
}

/// One page of the merged list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotPage {
    /// Newest first (`created_at` descending, ties by `id`).
    pub items: Vec<Snapshot>,
    /// Pass as `page_token` for the next page; `null` on the last page.
    pub next_page_token: Option<String>,
    /// One problem per account that could not be listed (with `account`, `provider`, `retryable`).
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<serde_json::Value>,
}

fn enum_value<T: serde::de::DeserializeOwned>(value: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
}

fn parse_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery::default();
    let bad = |name: &str, value: &str| {
        ApiError::refuse(
            Refusal::InvalidQuery,
            format!(
                "invalid value `{}` for `{name}`",
                value.chars().take(80).collect::<String>()
            ),
        )
        .with_field(name.to_owned())
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let v = value.as_ref();
        match key.as_ref() {
            "account" => q.account.push(v.to_owned()),
            "provider" => q
                .provider
                .push(enum_value(v).ok_or_else(|| bad("provider", v))?),
            "status" => q
                .status
                .push(enum_value(v).ok_or_else(|| bad("status", v))?),
            "source_id" => q.source_id = Some(v.to_owned()),
            "name" => q.name = Some(v.to_owned()),
            "page_size" => {
                let n: u32 = v.parse().map_err(|_| bad("page_size", v))?;
                q.page_size = Some(super::paging::page_size(Some(n))?);
            }
            "page_token" => q.page_token = Some(v.to_owned()),
            "strict" => q.strict = Some(v.parse().map_err(|_| bad("strict", v))?),
            "include" => q.include = Some(enum_value(v).ok_or_else(|| bad("include", v))?),
            other => {
                return Err(ApiError::refuse(
                    Refusal::InvalidQuery,
                    format!(
                        "unknown query parameter `{}`",
                        other.chars().take(40).collect::<String>()
                    ),
                ))
            }
        }
    }
    Ok(q)
}

fn filters_hash(tenant: &str, q: &ListQuery) -> String {
    let mut accounts = q.account.clone();
    accounts.sort();
    let mut providers: Vec<&str> = q.provider.iter().map(|p| p.as_str()).collect();
    providers.sort_unstable();
    let mut statuses: Vec<String> = q.status.iter().map(|s| format!("{s:?}")).collect();
    statuses.sort();
    let filters = serde_json::json!([
        accounts,
        providers,
        statuses,
        q.source_id,
        q.name.as_ref().map(|n| n.to_lowercase())
    ]);
    super::paging::query_id(tenant, "snapshots", &filters)
}

/// Lists every snapshot across the caller's accounts, merged and paged by one cursor.
#[utoipa::path(
    get, path = "/v1/snapshots", tag = "snapshots", operation_id = "listSnapshots",
    params(ListQuery),
    security(("bearer" = ["snapshots:read"])),
    responses(
        (status = 200, description = "A page of snapshots, with per-account failures in `errors`", body = SnapshotPage),
        (status = 502, description = "`strict=true` and an account failed", body = super::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<SnapshotPage>, ApiError> {
    caller.require(Scope::SnapshotsRead)?;
    let q = parse_query(raw.as_deref())?;
    let filters = filters_hash(&caller.tenant, &q);
    let cursor = q
        .page_token
        .as_deref()
        .map(|t| super::paging::open::<SnapshotCursor>(&state, &filters, t))
        .transpose()?;
    let page_size = super::paging::page_size(q.page_size)? as usize;
    let query = SnapshotQuery {
        accounts: q.account,
        providers: q.provider,
        statuses: q.status,
        source_id: q.source_id,
        name: q.name,
        include_vendor: q.include == Some(Include::Vendor),
        strict: q.strict == Some(true),
    };
    let page = state
        .service
        .snapshot_page(&caller.tenant, &query, cursor.as_ref(), page_size)
        .await?;
    let errors = page_errors(page.failures);
    let items = page.items;
    let next_page_token = page.next.map(|c| super::paging::seal(&state, &filters, c));
    Ok(axum::Json(SnapshotPage {
        items,
        next_page_token,
        errors,
    }))
}

/// The failures of a list as its page's `errors`, ordered by account and source.
fn page_errors(failures: Vec<ServiceError>) -> Vec<serde_json::Value> {
    let mut errors = Vec::with_capacity(failures.len());
    for failure in failures {
        let e = ApiError::from(failure);
        let mut problem = e.to_json();
        if problem["retryable"].is_null() {
            problem["retryable"] = false.into();
        }
        errors.push(problem);
    }
    errors.sort_by(|a, b| {
        let key = |p: &serde_json::Value| {
            (
                p["account"].as_str().map(str::to_owned),
                p["source_id"].as_str().map(str::to_owned),
            )
        };
        key(a).cmp(&key(b))
    });
    errors
}
