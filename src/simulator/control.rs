//! The `/_sim` control plane (no auth, never faulted): faults, the request journal and counters.
//!
//! | method | path | effect |
//! |---|---|---|
//! | GET | `/_sim/faults` | active faults by vendor |
//! | PUT | `/_sim/faults/{vendor}` | install a `Fault` (JSON body) → 204 |
//! | DELETE | `/_sim/faults/{vendor}` | clear one vendor's fault → 204 |
//! | DELETE | `/_sim/faults` | clear every fault → 204 |
//! | GET | `/_sim/requests?vendor=X` | recorded requests, oldest first |
//! | DELETE | `/_sim/requests` | forget recorded requests → 204 |
//! | GET | `/_sim/stats` | `{vendor: {requests, in_flight, max_in_flight}}` |
//! | DELETE | `/_sim/stats` | reset counters → 204 |
//! | GET | `/_sim/connections` | `{"accepted": n}` TCP connections accepted since start |
//! | GET | `/_sim/variants` | active variants, `{name: true \| number}` |
//! | PUT | `/_sim/variants` | replace them with a `{name: true \| number}` object → 204 |
//! | DELETE | `/_sim/variants` | back to the default readings → 204 |
//!
//! Errors here are `{"error": "..."}`. Owns only the HTTP mapping onto `Shared`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::json;

use super::faults::{Fault, Shared};
use super::{Refusal, Reply, Variants, Vendor};

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/faults", get(list_faults).delete(clear_faults))
        .route("/faults/{vendor}", put(put_fault).delete(clear_fault))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/stats", get(stats).delete(reset_stats))
        .route("/connections", get(connections))
        .route(
            "/variants",
            get(list_variants).put(put_variants).delete(clear_variants),
        )
        .with_state(shared)
}

fn problem(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn vendor(raw: &str) -> Result<Vendor, Refusal> {
    raw.parse()
        .map_err(|e: super::UnknownVendor| problem(StatusCode::NOT_FOUND, &e.to_string()).into())
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.faults()).into_response()
}

async fn put_fault(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
    body: Bytes,
) -> Reply {
    let v = vendor(&raw)?;
    let fault: Fault = serde_json::from_slice(&body)
        .map_err(|e| problem(StatusCode::BAD_REQUEST, &format!("invalid fault: {e}")))?;
    if let Some(why) = fault.problem() {
        return Err(problem(StatusCode::BAD_REQUEST, why).into());
    }
    shared.set_fault(v, fault);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn clear_fault(State(shared): State<Arc<Shared>>, Path(raw): Path<String>) -> Reply {
    shared.clear_fault(vendor(&raw)?);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_faults();
    StatusCode::NO_CONTENT
}

async fn requests(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let filter = q.get("vendor").map(|raw| vendor(raw)).transpose()?;
    Ok(Json(shared.requests(filter)).into_response())
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_requests();
    StatusCode::NO_CONTENT
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.all_stats()).into_response()
}

/// `{"accepted": n}`: TCP connections accepted since start.
async fn connections(State(shared): State<Arc<Shared>>) -> Response {
    let accepted = shared
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    Json(serde_json::json!({ "accepted": accepted })).into_response()
}

async fn reset_stats(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset_stats();
    StatusCode::NO_CONTENT
}

async fn list_variants(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.variants.get().to_json()).into_response()
}

async fn put_variants(State(shared): State<Arc<Shared>>, body: Bytes) -> Reply {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|e| problem(StatusCode::BAD_REQUEST, &format!("invalid variants: {e}")))?;
    let variants = Variants::from_json(&map).map_err(|e| problem(StatusCode::BAD_REQUEST, &e))?;
    shared.variants.put(variants);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn clear_variants(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.variants.put(Variants::default());
    StatusCode::NO_CONTENT
}
