//! The one error type of the HTTP edge: RFC 9457 problem details plus `code` and `request_id`.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use super::request_id;
use crate::{
    auth::AuthError,
    service::{AsProblem, ServiceError},
    store::StoreError,
};

pub use crate::domain::Problem;

/// What the edge itself refuses: the HTTP request (its route, headers, body, query), before any
/// use case runs. Every other problem is the service's ([`ServiceError`]); each code is written
/// once, here or there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    DeadlineExceeded,
    InvalidBody,
    InvalidField,
    InvalidIdempotencyKey,
    InvalidPageToken,
    InvalidPath,
    InvalidQuery,
    MalformedJson,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    RouteNotFound,
    TooManyWaiters,
    UnreadableBody,
    UnsupportedMediaType,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Refusal::InvalidBody => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::InvalidField => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::InvalidIdempotencyKey => StatusCode::BAD_REQUEST,
            Refusal::InvalidPageToken => StatusCode::BAD_REQUEST,
            Refusal::InvalidPath => StatusCode::BAD_REQUEST,
            Refusal::InvalidQuery => StatusCode::BAD_REQUEST,
            Refusal::MalformedJson => StatusCode::BAD_REQUEST,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::RouteNotFound => StatusCode::NOT_FOUND,
            Refusal::TooManyWaiters => StatusCode::TOO_MANY_REQUESTS,
            Refusal::UnreadableBody => StatusCode::BAD_REQUEST,
            Refusal::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Refusal::DeadlineExceeded => "deadline_exceeded",
            Refusal::InvalidBody => "invalid_body",
            Refusal::InvalidField => "invalid_field",
            Refusal::InvalidIdempotencyKey => "invalid_idempotency_key",
            Refusal::InvalidPageToken => "invalid_page_token",
            Refusal::InvalidPath => "invalid_path",
            Refusal::InvalidQuery => "invalid_query",
            Refusal::MalformedJson => "malformed_json",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::PayloadTooLarge => "payload_too_large",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::RouteNotFound => "route_not_found",
            Refusal::TooManyWaiters => "too_many_waiters",
            Refusal::UnreadableBody => "unreadable_body",
            Refusal::UnsupportedMediaType => "unsupported_media_type",
        }
    }
}

/// An error answered as a problem response.
#[derive(Debug)]
pub struct ApiError {
    problem: Box<Problem>,
    retry_after: Option<u64>,
    www_authenticate: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self::from_problem(Problem::new(status.as_u16(), code, detail), None)
    }

    /// The edge refusing the request itself.
    pub fn refuse(why: Refusal, detail: impl Into<String>) -> Self {
        Self::new(why.status(), why.code(), detail)
    }

    /// Answers a problem the service decided, with the wait it asks for.
    pub fn from_problem(problem: Problem, retry_after: Option<u64>) -> Self {
        Self {
            problem: Box::new(problem),
            retry_after,
            www_authenticate: None,
        }
    }

    /// A failure that is ours, not the caller's: logged in full, answered generically.
    pub fn internal(context: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred; quote the request_id when reporting it",
        )
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.problem.field = Some(field.into());
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self.problem.retryable = Some(true);
        self
    }

    /// The problem as a JSON value (for an operation's `error`, a list's `errors`, a replay).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.as_problem()).unwrap_or_default()
    }

    /// Whether the vendor may have done the work despite this failure.
    pub fn outcome_uncertain(&self) -> bool {
        self.problem.outcome_uncertain()
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut problem = *self.problem;
        problem.request_id = request_id::current();
        problem.trace_id = crate::otel::trace_id(&tracing::Span::current());
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(value) = self
            .www_authenticate
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl ApiError {
    /// `403 insufficient_scope` for `scope`, saying why this request needs it.
    pub fn missing_scope(scope: crate::auth::Scope, detail: impl Into<String>) -> Self {
        let mut err = ApiError::from(AuthError::MissingScope(scope));
        err.problem.detail = detail.into();
        err
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::MissingScope(scope) => {
                let mut err =
                    ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", e.to_string());
                err.www_authenticate = Some(format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                    scope.as_str()
                ));
                err
            }
            AuthError::MissingToken | AuthError::InvalidToken(_) => {
                let detail = e.to_string();
                let mut err = ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", &detail);
                err.www_authenticate = Some(format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    detail.replace('"', "'")
                ));
                err
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::from_problem(e.problem(), e.retry_after())
    }
}

impl AsProblem for ApiError {
    fn as_problem(&self) -> Problem {
        let mut problem = (*self.problem).clone();
        if problem.request_id.is_empty() {
            problem.request_id = request_id::current();
        }
        problem
    }
}
