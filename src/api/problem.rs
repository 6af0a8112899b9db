//! The one error type of the HTTP edge: RFC 9457 problem details plus `code` and `request_id`.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::request_id;
use crate::{
    auth::AuthError, domain::ProviderKind, providers::ProviderError, scrub::Scrubber,
    store::StoreError,
};

/// An RFC 9457 problem, as every error response of snapgate carries it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI identifying the problem type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong on this request.
    pub detail: String,
    /// Stable snake_case code clients branch on.
    pub code: String,
    /// The request id (also in the `x-request-id` header).
    pub request_id: String,
    /// The input field at fault, where one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The source (VM) whose snapshots could not be read, in a list's `errors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// The vendor's HTTP status, for upstream failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Whether the same request may succeed if retried later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// Providers that support the operation, for `unsupported_operation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_by: Option<Vec<ProviderKind>>,
}

/// An error answered as a problem response.
#[derive(Debug)]
pub struct ApiError {
    problem: Box<Problem>,
    retry_after: Option<u64>,
    www_authenticate: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            problem: Box::new(Problem {
                type_: format!("https://snapgate.dev/problems/{code}"),
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                code: code.to_owned(),
                request_id: String::new(),
                field: None,
                provider: None,
                account: None,
                source_id: None,
                upstream_status: None,
                retryable: None,
                supported_by: None,
            }),
            retry_after: None,
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

    pub fn conflict(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
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

    pub fn with_account(mut self, provider: ProviderKind, account: impl Into<String>) -> Self {
        self.problem.provider = Some(provider);
        self.problem.account = Some(account.into());
        self
    }

    /// Names the source (VM) a failure concerns, when one source of an account failed.
    pub fn for_source(mut self, source_id: impl Into<String>) -> Self {
        self.problem.source_id = Some(source_id.into());
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self.problem.retryable = Some(true);
        self
    }

    pub fn with_supported_by(mut self, providers: Vec<ProviderKind>) -> Self {
        self.problem.supported_by = Some(providers);
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
        let mut value = serde_json::to_value(&*self.problem).unwrap_or_default();
        if self.problem.request_id.is_empty() {
            value["request_id"] = request_id::current().into();
        }
        value
    }

    /// Removes every form of the `secrets` from the detail (vendor messages may echo what they
    /// were sent).
    pub fn scrubbed(mut self, secrets: &Scrubber) -> Self {
        self.problem.detail = secrets.scrub(&self.problem.detail);
        // Shortened only after scrubbing, so no cut can leave part of a secret behind.
        if self.problem.detail.chars().count() > 500 {
            self.problem.detail = self.problem.detail.chars().take(500).collect::<String>() + "…";
        }
        self
    }

    /// Whether the vendor may have done the work despite this failure: a timeout, a reset, a
    /// 5xx other than 503, or an unreadable success. (401/403/404/409/429/503 and every
    /// refusal before the call mean nothing was done.)
    pub fn outcome_uncertain(&self) -> bool {
        match self.problem.code.as_str() {
            "upstream_timeout" | "deadline_exceeded" | "internal_error" => true,
            "upstream_error" => self.problem.upstream_status != Some(503),
            _ => false,
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn code(&self) -> &str {
        &self.problem.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut problem = *self.problem;
        problem.request_id = request_id::current();
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
        match e {
            StoreError::Conflict => ApiError::conflict("conflict", "the record already exists"),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the gateway's store is unavailable; retry later",
                )
                .with_retry_after(1)
            }
        }
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        let detail = e.to_string();
        let mut err = match e {
            ProviderError::Rejected { status, message } => {
                let mut err = ApiError::bad_request("upstream_rejected", message);
                err.problem.upstream_status = Some(status);
                err.problem.retryable = Some(false);
                err
            }
            ProviderError::Auth { status } => {
                let mut err =
                    ApiError::new(StatusCode::BAD_GATEWAY, "provider_auth_failed", detail);
                err.problem.upstream_status = Some(status);
                err.problem.retryable = Some(false);
                err
            }
            ProviderError::NotFound => ApiError::not_found(
                "snapshot_not_found",
                "the snapshot does not exist at the provider",
            ),
            ProviderError::Conflict { message } => ApiError::conflict("conflict", message),
            ProviderError::RateLimited { retry_after } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "provider_rate_limited",
                detail,
            )
            .with_retry_after(retry_after),
            ProviderError::Upstream { status, message } => {
                let mut err = ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message);
                err.problem.upstream_status = status;
                err.problem.retryable = Some(true);
                err
            }
            ProviderError::Timeout => {
                let mut err =
                    ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", detail);
                err.problem.retryable = Some(true);
                err
            }
            ProviderError::CircuitOpen { retry_after } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_unavailable",
                detail,
            )
            .with_retry_after(retry_after),
            ProviderError::Invalid { field, message } => {
                ApiError::unprocessable("invalid_field", message).with_field(field)
            }
            ProviderError::SnapshotExists { message } => {
                ApiError::conflict("snapshot_exists", message)
            }
            ProviderError::Unsupported { capability } => ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported_operation",
                format!("{capability} is not supported by this provider"),
            ),
        };
        if err.problem.status >= 500 && err.problem.retryable.is_none() {
            err.problem.retryable = Some(false);
        }
        err
    }
}
