//! `/healthz` (the process is alive) and `/readyz` (the store answers).

use axum::{extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::{problem::ApiError, AppState};

/// Health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: answers while the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "service", operation_id = "getHealth",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Readiness: answers `200` when the store is reachable, `503` otherwise.
#[utoipa::path(get, path = "/readyz", tag = "service", operation_id = "getReadiness",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Store unreachable", body = super::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(
    State(state): State<AppState>,
) -> Result<(StatusCode, axum::Json<Health>), ApiError> {
    state.store.ping().await?;
    Ok((StatusCode::OK, axum::Json(Health { status: "ok" })))
}

/// Prometheus metrics: gateway requests by method and status, vendor calls by provider,
/// operation and outcome, with latency histograms.
#[utoipa::path(get, path = "/metrics", tag = "service", operation_id = "getMetrics",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")))]
pub async fn metrics() -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = crate::telemetry::metrics_handle()
        .map(|h| h.render())
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}
