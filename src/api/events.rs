//! `/v1/events`: the tenant's event log, oldest first, read on with a cursor.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    extract::Query,
    problem::{ApiError, Refusal},
    AppState,
};
use crate::{
    auth::{Caller, Scope},
    domain::{Event, EventType},
};

/// Query of `GET /v1/events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// `next_cursor` of the previous page; omit to start at the oldest event. Opaque, and
    /// valid for its own tenant only.
    pub after: Option<String>,
    /// Only these types (repeatable: `?type=operation.succeeded&type=operation.failed`).
    #[serde(rename = "type", default)]
    #[param(rename = "type", value_type = Option<Vec<EventType>>)]
    pub types: Vec<EventType>,
    /// At most this many (default 50, 1 to 200).
    pub page_size: Option<u32>,
}

/// A page of the event log.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// Oldest first.
    pub items: Vec<Event>,
    /// Pass as `after` to read on (also when `items` is empty: new events come after it).
    pub next_cursor: String,
}

/// Reads the tenant's events: each state change a caller cares about, with the operation or
/// account as the API returns it and the actor that caused it.
#[utoipa::path(
    get, path = "/v1/events", tag = "events", operation_id = "listEvents",
    params(EventQuery),
    security(("bearer" = ["snapshots:read"])),
    responses(
        (status = 200, description = "Events after the cursor, oldest first", body = EventPage),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<EventQuery>,
) -> Result<axum::Json<EventPage>, ApiError> {
    caller.require(Scope::SnapshotsRead)?;
    let bad = |field: &str, detail: String| {
        ApiError::refuse(Refusal::InvalidQuery, detail).with_field(field.to_owned())
    };
    let after: i64 = match query.after.as_deref() {
        None => 0,
        Some(c) => state
            .service
            .open_cursor(&caller.tenant, c)
            .ok_or_else(|| {
                bad(
                    "after",
                    "after must be a next_cursor this API returned to this tenant".into(),
                )
            })?,
    };
    let limit = super::paging::page_size(query.page_size)?;
    let mut types = query.types;
    types.sort_unstable_by_key(|t| t.as_str());
    types.dedup();
    // The log shows only what the caller may read: account health needs `accounts:read`.
    let types = match caller.readable_events() {
        None => types,
        Some(readable) => match types.iter().find(|k| !readable.contains(k)) {
            Some(kind) => {
                let scope = crate::auth::event_scope(*kind);
                return Err(ApiError::missing_scope(
                    scope,
                    format!("event type `{}` needs {}", kind.as_str(), scope.as_str()),
                ));
            }
            None if types.is_empty() => readable,
            None => types,
        },
    };
    let page = state
        .service
        .events(&caller.tenant, after, &types, limit)
        .await?;
    let next = page.last().map_or(after, |(seq, _)| *seq);
    Ok(axum::Json(EventPage {
        items: page.into_iter().map(|(_, e)| e).collect(),
        next_cursor: state.service.seal_cursor(&caller.tenant, next),
    }))
}
