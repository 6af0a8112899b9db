//! The error model callers see (the README's error table): an RFC 9457 problem with a stable
//! `code`. It is data — an operation's `error`, an account's health, a list's per-account
//! `errors` — so it lives with the model; the HTTP edge only answers it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ProviderKind;

/// An RFC 9457 problem, as every error response of snapgate carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// The request's OpenTelemetry trace id (32 hex digits), when traces are exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
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

impl Problem {
    /// Whether the vendor may have done the work despite this failure: a timeout, a reset, a
    /// 5xx other than 503, or an unreadable success. (401/403/404/409/429/503 and every
    /// refusal before the call mean nothing was done.)
    pub fn outcome_uncertain(&self) -> bool {
        match self.code.as_str() {
            "upstream_timeout" | "deadline_exceeded" | "internal_error" => true,
            "upstream_error" => self.upstream_status != Some(503),
            _ => false,
        }
    }

    /// Whether this failure, met once a vendor call may have begun (the intent is stored),
    /// leaves the vendor's state unknown: what [`Problem::outcome_uncertain`] names, and every
    /// failure of the gateway's own — its store or itself. A gateway that could not record
    /// the vendor's answer cannot tell what the vendor did; only the vendor's own refusal
    /// (4xx, 503, an open breaker) says nothing was done.
    pub fn outcome_uncertain_after_call(&self) -> bool {
        self.outcome_uncertain() || self.code == "store_unavailable"
    }

    /// A problem of `status` (the contract's HTTP status number) with a stable `code`.
    pub fn new(status: u16, code: &str, detail: impl Into<String>) -> Self {
        Self {
            type_: format!("https://snapgate.dev/problems/{code}"),
            title: http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error")
                .to_owned(),
            status,
            detail: detail.into(),
            code: code.to_owned(),
            request_id: String::new(),
            trace_id: None,
            field: None,
            provider: None,
            account: None,
            source_id: None,
            upstream_status: None,
            retryable: None,
            supported_by: None,
        }
    }
}
