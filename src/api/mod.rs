//! The HTTP edge: routes, handlers, extractors, problem errors and the OpenAPI document.
//!
//! Every route is listed in [`router`]. Handlers speak domain types; vendor types never
//! reach this module.

mod accounts;
mod admission;
mod events;
pub mod extract;
mod health;
mod listing;
pub mod openapi;
mod operations;
mod paging;
pub(crate) mod policies;
pub mod problem;
mod providers;
pub mod request_id;
mod respond;
mod snapshots;
pub(crate) mod webhooks;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, Request},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use tower_http::{
    catch_panic::CatchPanicLayer, sensitive_headers::SetSensitiveRequestHeadersLayer,
};
use utoipa_swagger_ui::SwaggerUi;

use crate::{auth::Authenticator, config::Config};
use problem::{ApiError, Refusal};

/// What every handler can reach: one `Arc`, so the clone and drop axum makes per request and
/// per layer is one atomic operation, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state behind [`AppState`].
pub struct Shared {
    pub auth: Arc<Authenticator>,
    pub config: Arc<Config>,
    /// Accounts, operations, idempotency: everything below the edge.
    pub service: crate::service::Service,
}

/// Builds the whole HTTP router over a state.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.server.body_limit_bytes;
    let deadline = state.config.server.request_timeout();
    let admission = Arc::new(admission::Admission::new(
        state.auth.clone(),
        &state.config.server,
    ));
    // The edge stack is applied as one layer: a request pays one boxed service for it, not one
    // per middleware. The two `/v1` limits stay separate layers: the global slot must be taken
    // inside the tenant's (a `ServiceBuilder` would take it in `poll_ready`, before the tenant
    // waits, and a flooding tenant would hold every slot).
    let edge = tower::ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
        ]))
        // Request id, declared-size refusal and deadline: one middleware, one boxed future.
        .layer(middleware::from_fn(move |req, next| {
            edge(body_limit, deadline, req, next)
        }))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(DefaultBodyLimit::max(body_limit));
    v1_routes()
        .merge(swagger_ui())
        // Work takes a tenant slot, then a global one; a long-poll takes a waiter slot instead
        // (`admission`). Requests beyond the limits wait here, as a small future, instead of
        // each holding a full handler's state while queued for a vendor.
        .layer(middleware::from_fn_with_state(admission, admission::admit))
        // Health, readiness and metrics answer however busy the API is: a probe that queues
        // behind a slow vendor would get a healthy gateway restarted.
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(edge)
        .with_state(state)
}

/// Every `/v1` route.
fn v1_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/providers", get(providers::list))
        .route("/v1/accounts", get(accounts::list).post(accounts::create))
        .route(
            "/v1/accounts/{account}",
            get(accounts::get)
                .patch(accounts::update)
                .delete(accounts::delete),
        )
        .route("/v1/accounts/{account}/verify", post(accounts::verify))
        .route("/v1/accounts/{account}/sources", get(accounts::sources))
        .route(
            "/v1/accounts/{account}/snapshot-names/{name}",
            get(snapshots::name_availability),
        )
        .route("/v1/snapshots", get(listing::list).post(snapshots::create))
        .route(
            "/v1/snapshots/{snapshot}",
            get(snapshots::get)
                .patch(snapshots::update)
                .delete(snapshots::delete),
        )
        .route("/v1/snapshots/{snapshot}/restore", post(snapshots::restore))
        .route("/v1/snapshots/{snapshot}/image", post(snapshots::image))
        .route("/v1/operations", get(operations::list))
        .route("/v1/operations/{operation}", get(operations::get))
        .route("/v1/events", get(events::list))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{webhook}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{webhook}/test", post(webhooks::test))
        .route(
            "/v1/webhooks/{webhook}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route(
            "/v1/webhooks/{webhook}/deliveries",
            get(webhooks::deliveries),
        )
        .route(
            "/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/v1/policies", get(policies::list).post(policies::create))
        .route(
            "/v1/policies/{policy}",
            get(policies::get)
                .patch(policies::update)
                .delete(policies::delete),
        )
        .route("/v1/policies/{policy}/runs", get(policies::runs))
        .route("/v1/policies/{policy}/preview", post(policies::preview))
}

/// Swagger UI at `/docs`, served from the binary (vendored), reading `/openapi.json`. It never
/// contacts an online validator: that would leak the document's URL and fail offline.
fn swagger_ui() -> Router<AppState> {
    let ui = SwaggerUi::new("/docs").config(
        utoipa_swagger_ui::Config::new(["/openapi.json"])
            .validator_url("none")
            .persist_authorization(true)
            .display_operation_id(true)
            .try_it_out_enabled(true),
    );
    Router::from(ui).route("/openapi.json", get(openapi_json))
}

/// `/openapi.json`: the document, built and serialised once, on first request. (Kept as a
/// `serde_json::Value` for Swagger UI to serve, it held 1.2 MB of every process's heap.)
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        serde_json::to_vec(&openapi::document())
            .unwrap_or_default()
            .into()
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body.clone(),
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::refuse(
        Refusal::RouteNotFound,
        format!("no route for {}", req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::refuse(
        Refusal::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

async fn with_deadline(deadline: Duration, req: Request, next: Next) -> Response {
    // A long-poll may hold its answer for the wait it asked for, on top of the usual deadline.
    let deadline = deadline + operations::requested_wait(req.uri()).unwrap_or_default();
    // Only a request that carries a body can be slow to send it: others skip the watch.
    let headers = req.headers();
    let has_body = headers.contains_key(axum::http::header::TRANSFER_ENCODING)
        || headers
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0");
    let body = has_body.then(|| Arc::new(BodyProgress::default()));
    let req = match &body {
        Some(progress) => req.map(|inner| {
            axum::body::Body::new(WatchedBody {
                inner,
                progress: progress.clone(),
            })
        }),
        None => req,
    };
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(response) => response,
        // Still waiting for the caller's own body: the caller is slow, not the gateway.
        Err(_) if body.as_ref().is_some_and(|b| b.reading()) => ApiError::refuse(
            Refusal::RequestTimeout,
            format!(
                "the request body did not arrive within {} ms",
                deadline.as_millis()
            ),
        )
        .into_response(),
        Err(_) => ApiError::refuse(
            Refusal::DeadlineExceeded,
            format!(
                "the request did not finish within {} ms",
                deadline.as_millis()
            ),
        )
        .with_retry_after(1)
        .into_response(),
    }
}

/// A body whose `Content-Length` is over the limit is refused at once, before a byte of it is
/// read (and before the caller's token is checked: there is nothing to authorise).
fn declared_oversize(limit: usize, req: &Request) -> Option<Response> {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Some(
            ApiError::refuse(
                Refusal::PayloadTooLarge,
                format!("the request body ({n} bytes) exceeds the limit of {limit} bytes"),
            )
            .into_response(),
        ),
        _ => None,
    }
}

/// The edge of every request: its id and scope, a declared oversize body refused at once,
/// and the deadline.
async fn edge(body_limit: usize, deadline: Duration, req: Request, next: Next) -> Response {
    request_id::scoped(req, |req| async move {
        match declared_oversize(body_limit, &req) {
            Some(refused) => refused,
            None => with_deadline(deadline, req, next).await,
        }
    })
    .await
}

/// Whether a handler has started reading the request body and not yet seen its end.
#[derive(Default)]
struct BodyProgress {
    started: std::sync::atomic::AtomicBool,
    finished: std::sync::atomic::AtomicBool,
}

impl BodyProgress {
    fn reading(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.started.load(Relaxed) && !self.finished.load(Relaxed)
    }
}

/// The request body, reporting to a [`BodyProgress`] as it is read.
struct WatchedBody {
    inner: axum::body::Body,
    progress: Arc<BodyProgress>,
}

impl http_body::Body for WatchedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::sync::atomic::Ordering::Relaxed;
        self.progress.started.store(true, Relaxed);
        let frame = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, std::task::Poll::Ready(None | Some(Err(_)))) {
            self.progress.finished.store(true, Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked", &"panic").into_response()
}
