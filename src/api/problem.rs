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

/// An error answered as a problem response.
#[derive(Debug)]
pub struct ApiError {
    problem: Box<Problem>,
    retry_after: Option<u64>,
    www_authenticate: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self::from_problem(Problem::new(status.as_u16(), code, detail), None)
    }

    /// Answers a problem the service decided, with the wait it asks for.
    pub fn from_problem(problem: Problem, retry_after: Option<u64>) -> Self {
        Self {
            problem: Box::new(problem),
            retry_after,
            www_authenticate: None,
        }
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unprocessable(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn not_found(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
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

    /// Copies the account, provider, upstream status and retryability of another problem.
    pub fn with_problem_of(mut self, other: &ApiError) -> Self {
        self.problem.account = other.problem.account.clone();
        self.problem.source_id = other.problem.source_id.clone();
        self.problem.provider = other.problem.provider;
        self.problem.upstream_status = other.problem.upstream_status;
        self.problem.retryable = other.problem.retryable;
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
