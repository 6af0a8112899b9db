//! A vendor failure in the gateway's terms: what adapters and the vendor HTTP layer report,
//! mapped to HTTP once, at the API edge. It sits in the domain so `upstream` (below the
//! adapters) and the adapters share it without depending on each other.

use super::Capability;

/// A vendor failure, in the gateway's terms (mapped to HTTP once, at the API edge).
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum ProviderError {
    /// The vendor rejected the request as invalid (400/422).
    #[error("the provider rejected the request: {message}")]
    Rejected { status: u16, message: String },
    /// The stored credentials were refused (401): unknown, expired or revoked.
    #[error("the provider refused the stored credentials (HTTP {status})")]
    Auth { status: u16 },
    /// The credentials were accepted but lack the permission for this call (403): a
    /// read-only scope or token, an image the account may only read.
    #[error("the provider accepted the stored credentials but refused this action: {message}")]
    Forbidden { message: String },
    /// The snapshot does not exist at the vendor.
    #[error("not found at the provider")]
    NotFound,
    /// The resource a create or restore names (a VM, volume, instance or slice) does not
    /// exist at the vendor.
    #[error("{what} `{id}` does not exist at the provider")]
    SourceNotFound {
        /// The caller's field naming it (`source_id`, `target_id`).
        field: &'static str,
        /// `VM`, `volume`, `instance`, `slice`.
        what: &'static str,
        id: String,
    },
    /// The vendor kept reporting a status nobody documented past the gateway's bounded wait.
    #[error("{message}")]
    StatusUnknown { message: String },
    #[error("the provider reported a conflict: {message}")]
    Conflict { message: String },
    #[error("the provider is rate limiting; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// 5xx, unreadable body, reset connection.
    #[error("{message}")]
    Upstream {
        status: Option<u16>,
        message: String,
    },
    #[error("the provider did not answer in time")]
    Timeout,
    /// The account's circuit breaker is open after repeated failures.
    #[error("the provider failed repeatedly; calls are paused for {retry_after} s")]
    CircuitOpen { retry_after: u64 },
    /// The caller's input cannot be sent to this vendor.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Hostinger keeps one snapshot per VM and one exists.
    #[error("{message}")]
    SnapshotExists { message: String },
    #[error("{capability} is not supported by this provider")]
    Unsupported { capability: Capability },
}

impl ProviderError {
    /// The kind of failure, for logs: never the vendor's words.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Rejected { .. } => "rejected",
            ProviderError::Auth { .. } => "auth",
            ProviderError::Forbidden { .. } => "forbidden",
            ProviderError::NotFound => "not_found",
            ProviderError::SourceNotFound { .. } => "source_not_found",
            ProviderError::StatusUnknown { .. } => "status_unknown",
            ProviderError::Conflict { .. } => "conflict",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Upstream { .. } => "upstream",
            ProviderError::Timeout => "timeout",
            ProviderError::CircuitOpen { .. } => "circuit_open",
            ProviderError::Invalid { .. } => "invalid",
            ProviderError::SnapshotExists { .. } => "snapshot_exists",
            ProviderError::Unsupported { .. } => "unsupported",
        }
    }

    /// Whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Upstream { .. }
                | ProviderError::Timeout
                | ProviderError::CircuitOpen { .. }
        )
    }
}
