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

/// Readiness: answers `200` when this process can serve — the store is reachable **and** its
/// master keys open every stored record — `503` otherwise (`store_unavailable`, or
/// `master_key_missing` naming the key ids it lacks).
#[utoipa::path(get, path = "/readyz", tag = "service", operation_id = "getReadiness",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "`draining`: the process is shutting down; or the store is unreachable, or stored records are sealed under a master key this process does not hold", body = super::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(
    State(state): State<AppState>,
) -> Result<(StatusCode, axum::Json<Health>), ApiError> {
    state.service.ready().await?;
    Ok((StatusCode::OK, axum::Json(Health { status: "ok" })))
}

/// Prometheus metrics: gateway requests by method and status, vendor calls by provider,
/// operation and outcome, with latency histograms. Open unless `auth.metrics_token` is set;
/// then it takes that token as a bearer token.
#[utoipa::path(get, path = "/metrics", tag = "service", operation_id = "getMetrics",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 401, description = "`auth.metrics_token` is set and the request does not carry it", body = super::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(expected) = &state.config.auth.metrics_token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or_default();
        use secrecy::ExposeSecret;
        if !constant_time_eq(given.as_bytes(), expected.expose_secret().as_bytes()) {
            return ApiError::from(crate::auth::AuthError::InvalidToken(
                "the metrics token is missing or wrong".into(),
            ))
            .into_response();
        }
    }
    // The backlog is the store's, shared by every replica: read at scrape time. A store that
    // does not answer leaves the gauges out rather than showing a stale or zero backlog.
    match state.service.backlog().await {
        Ok(backlog) => {
            metrics::gauge!("snapgate_operations_unfinished")
                .set(backlog.unfinished_operations as f64);
            metrics::gauge!("snapgate_webhook_deliveries_pending")
                .set(backlog.pending_deliveries as f64);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: the store did not say its backlog"),
    }
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

/// Compares without stopping at the first difference (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
