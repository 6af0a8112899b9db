//! The error model callers see (the README's error table): an RFC 9457 problem with a stable
//! `code`. It is data — an operation's `error`, an account's health, a list's per-account
//! `errors` — so it lives with the model; the HTTP edge only answers it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ProviderKind;

/// Every `code` a problem can have. The OpenAPI document declares them as an enum, so a typed
/// client can switch on them; a code outside this list fails tests (see `Problem::new` and the
/// source scan below).
pub const CODES: [&str; 49] = [
    "account_exists",
    "account_failed",
    "account_not_found",
    "conflict",
    "cursor_expired",
    "deadline_exceeded",
    "delivery_not_found",
    "draining",
    "idempotency_in_flight",
    "idempotency_key_reused",
    "insufficient_scope",
    "internal_error",
    "invalid_body",
    "invalid_field",
    "invalid_idempotency_key",
    "invalid_page_token",
    "invalid_path",
    "invalid_query",
    "invalid_token",
    "malformed_json",
    "master_key_missing",
    "method_not_allowed",
    "operation_deadline_exceeded",
    "operation_not_found",
    "outcome_unknown",
    "payload_too_large",
    "policy_not_found",
    "provider_auth_failed",
    "provider_permission_denied",
    "provider_rate_limited",
    "provider_unavailable",
    "request_timeout",
    "route_not_found",
    "snapshot_exists",
    "snapshot_not_found",
    "source_not_found",
    "store_unavailable",
    "too_many_connections",
    "too_many_waiters",
    "unreadable_body",
    "unsupported_media_type",
    "unsupported_operation",
    "upstream_error",
    "upstream_rejected",
    "upstream_timeout",
    "vendor_status_unknown",
    "webhook_limit_reached",
    "webhook_not_found",
    "webhook_target_refused",
];

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
        debug_assert!(
            CODES.contains(&code),
            "problem code `{code}` is not in domain::problem::CODES"
        );
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

#[cfg(test)]
mod tests {
    use super::CODES;

    /// The snake_case literal a constructor call starting at `call` is given as its code.
    fn code_literal(call: &str) -> Option<&str> {
        let args = &call[..call.find(')').unwrap_or(call.len()).min(240)];
        let start = args.find('"')? + 1;
        let end = start + args[start..].find('"')?;
        let literal = &args[start..end];
        let snake = !literal.is_empty()
            && literal
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        snake.then_some(literal)
    }

    /// Every code literal the gateway's source gives a problem constructor is declared, and
    /// every declared code is used.
    #[test]
    fn every_code_in_the_source_is_declared_and_every_declared_code_is_used() {
        fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    if !path.ends_with("simulator") {
                        files(&path, out);
                    }
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut sources = Vec::new();
        files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut sources,
        );
        let mut used = std::collections::BTreeSet::new();
        for file in &sources {
            let text = std::fs::read_to_string(file).unwrap();
            for constructor in [
                "bad_request(",
                "unprocessable(",
                "not_found(",
                "conflict(",
                "ApiError::new(",
                "Problem::new(",
                "\"code\":\"",
            ] {
                // Vendors' own bodies (in adapter tests) have codes of their own.
                let vendor_file = file.components().any(|c| c.as_os_str() == "providers");
                if constructor.starts_with('"') && vendor_file {
                    continue;
                }
                for (at, _) in text.match_indices(constructor) {
                    let call = &text[at + constructor.len() - 1..];
                    let literal = if constructor.starts_with('"') {
                        call[1..].split('"').next()
                    } else {
                        code_literal(call)
                    };
                    if let Some(code) = literal {
                        if file.ends_with("problem.rs") && code == "code" {
                            continue;
                        }
                        assert!(
                            CODES.contains(&code),
                            "{}: code `{code}` is not in CODES",
                            file.display()
                        );
                        used.insert(code.to_owned());
                    }
                }
            }
        }
        // The edge's refusals: each code written once, as a match arm of `Refusal::code`.
        let edge = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/problem.rs"),
        )
        .unwrap();
        let arms = edge.split("fn code(self)").nth(1).unwrap_or_default();
        for (at, _) in arms.match_indices("=> \"") {
            let code = arms[at + 4..].split('"').next().unwrap_or_default();
            assert!(
                CODES.contains(&code),
                "api/problem.rs: `{code}` is not in CODES"
            );
            used.insert(code.to_owned());
        }
        let unused: Vec<_> = CODES.iter().filter(|c| !used.contains(**c)).collect();
        assert!(unused.is_empty(), "declared but never given: {unused:?}");
    }
}
