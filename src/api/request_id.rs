//! Request ids: accepted from `x-request-id` or generated, echoed on every response, and
//! available to error bodies through a task-local.

use std::sync::Arc;

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    response::Response,
};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub use crate::telemetry::current_request_id as current;
use crate::telemetry::REQUEST_ID;

fn acceptable(v: &HeaderValue) -> Option<&str> {
    v.to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .filter(|s| s.bytes().all(|b| b.is_ascii_graphic()))
}

/// Picks the request's id, runs `inner` on the request inside its scope (error bodies and
/// events read it from there), sets the response header and counts the request.
pub async fn scoped<F, Fut>(mut req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let id: Arc<str> = match req.headers().get(&X_REQUEST_ID).and_then(acceptable) {
        Some(id) => id.into(),
        None => crate::telemetry::new_request_id(),
    };
    let header = HeaderValue::from_str(&id).ok();
    if let Some(v) = &header {
        req.headers_mut().insert(X_REQUEST_ID.clone(), v.clone());
    }
    let method = req.method().clone();
    let route = route_label(&req);
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {route}", method_label(&method)),
        otel.kind = "server",
        request_id = %id,
        method = %method,
        path = %req.uri().path(),
        route,
        status = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if let Some(trace_id) = crate::otel::accept(&span, req.headers()) {
        span.record("trace_id", trace_id.as_str());
    }
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID
        .scope(
            id,
            crate::telemetry::ACTOR.scope(
                std::cell::RefCell::new(None),
                tracing::Instrument::instrument(inner(req), span.clone()),
            ),
        )
        .await;
    span.record("status", response.status().as_u16());
    if let Some(v) = header {
        response.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    count(&method, route, response.status(), started.elapsed());
    response
}

thread_local! {
    /// The request counter and duration histogram of each (method, route, status) this thread
    /// has answered.
    static HANDLES: crate::telemetry::HandleCache<
        (&'static str, &'static str, u16),
        (metrics::Counter, metrics::Histogram),
    > = Default::default();
}

/// Counts one answered request and records how long it took.
fn count(
    method: &axum::http::Method,
    route: &'static str,
    status: axum::http::StatusCode,
    took: std::time::Duration,
) {
    let method = method_label(method);
    let make = || {
        let status = status_label(status);
        let labels = [
            metrics::Label::from_static_parts("method", method),
            metrics::Label::from_static_parts("route", route),
            metrics::Label::new("status", status),
        ];
        (
            metrics::counter!("snapgate_http_requests_total", labels.to_vec()),
            metrics::histogram!("snapgate_http_request_duration_seconds", labels.to_vec()),
        )
    };
    crate::telemetry::with_handle(&HANDLES, (method, route, status.as_u16()), make, |h| {
        h.0.increment(1);
        h.1.record(took.as_secs_f64());
    });
}

/// Every route template the router has: a label from a fixed set, never the caller's path.
const ROUTES: [&str; 24] = [
    "/v1/providers",
    "/v1/accounts",
    "/v1/accounts/{account}",
    "/v1/accounts/{account}/verify",
    "/v1/accounts/{account}/snapshot-names/{name}",
    "/v1/snapshots",
    "/v1/snapshots/{snapshot}",
    "/v1/snapshots/{snapshot}/restore",
    "/v1/snapshots/{snapshot}/image",
    "/v1/operations",
    "/v1/operations/{operation}",
    "/v1/events",
    "/v1/webhooks",
    "/v1/webhooks/{webhook}",
    "/v1/webhooks/{webhook}/test",
    "/v1/webhooks/{webhook}/rotate-secret",
    "/v1/webhooks/{webhook}/deliveries",
    "/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/{*rest}",
];

/// The matched route of a request as a label (`other` for what matched none).
fn route_label(req: &Request) -> &'static str {
    let matched = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str);
    matched
        .and_then(|m| ROUTES.iter().find(|r| **r == m).copied())
        .unwrap_or("other")
}

/// The statuses the API answers, as labels that need no formatting per request.
const STATUSES: [&str; 20] = [
    "200", "201", "202", "204", "400", "401", "403", "404", "405", "408", "409", "413", "415",
    "422", "429", "500", "501", "502", "503", "504",
];

fn status_label(status: axum::http::StatusCode) -> metrics::SharedString {
    match STATUSES.iter().find(|known| **known == status.as_str()) {
        Some(known) => metrics::SharedString::const_str(known),
        None => metrics::SharedString::from(status.as_str().to_owned()),
    }
}

/// A bounded label: callers can send any method name, and each would be a new time series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use std::time::Duration;

    /// The value of the series `line_start` in the process's Prometheus text.
    fn value(line_start: &str) -> Option<f64> {
        let text = crate::telemetry::metrics_handle().unwrap().render();
        text.lines()
            .find(|l| l.starts_with(line_start))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    }

    #[test]
    fn each_answer_is_counted_once_under_its_labels_with_the_handle_kept_per_thread() {
        // A status nothing else in the process answers, so the series is this test's alone.
        let series =
            r#"snapgate_http_requests_total{method="PUT",route="/v1/providers",status="418"}"#;
        crate::telemetry::metrics_handle().unwrap();
        for _ in 0..3 {
            super::count(
                &Method::PUT,
                "/v1/providers",
                StatusCode::IM_A_TEAPOT,
                Duration::from_millis(2),
            );
        }
        // Another thread resolves its own handle onto the same series.
        std::thread::spawn(|| {
            let status = StatusCode::IM_A_TEAPOT;
            super::count(&Method::PUT, "/v1/providers", status, Duration::ZERO);
        })
        .join()
        .unwrap();
        assert_eq!(value(series), Some(4.0));
        let count = r#"snapgate_http_request_duration_seconds_count{method="PUT",route="/v1/providers",status="418"}"#;
        assert_eq!(value(count), Some(4.0));
        // Another status of the same route is another series, not this one's handle.
        super::count(
            &Method::PUT,
            "/v1/providers",
            StatusCode::GONE,
            Duration::ZERO,
        );
        assert_eq!(value(series), Some(4.0));
        let gone =
            r#"snapgate_http_requests_total{method="PUT",route="/v1/providers",status="410"}"#;
        assert_eq!(value(gone), Some(1.0));
    }
}
