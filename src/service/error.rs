//! What can go wrong in the service, typed. [`ServiceError::problem`] is the one mapping to
//! the error contract (vendor failures as the README's error table says); the HTTP edge answers
//! that problem as it is, and operations and account health store it.

use crate::{
    domain::{AccountId, Problem, ProviderError, ProviderKind},
    scrub::Scrubber,
    store::StoreError,
};

/// A service failure.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("account `{0}` does not exist")]
    AccountNotFound(AccountId),
    #[error("the snapshot does not exist")]
    SnapshotNotFound,
    #[error("webhook `{0}` does not exist")]
    WebhookNotFound(String),
    #[error("delivery `{0}` does not exist")]
    DeliveryNotFound(String),
    #[error("operation `{0}` does not exist")]
    OperationNotFound(String),
    #[error("policy `{0}` does not exist")]
    PolicyNotFound(String),
    /// A follower's cursor is below what retention pruned from the event log.
    #[error("events after this cursor may have been pruned (retention.events_secs): read again from the oldest event (omit `after`) and reconcile what you hold")]
    CursorExpired,
    /// A webhook URL that may not be a target.
    #[error("{0}")]
    TargetRefused(crate::webhooks::target::TargetError),
    #[error("an account with id `{0}` already exists")]
    AccountExists(AccountId),
    /// The tenant has as many webhook endpoints as it may.
    #[error("this tenant already has {0} webhook endpoints, the most it may have (webhooks.max_endpoints_per_tenant): delete one first")]
    WebhookLimit(u32),
    /// Caller input that cannot be used (an account's fields).
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// One account's vendor failure.
    #[error("{}", .0.error)]
    Provider(Box<AccountFailure>),
    #[error("this Idempotency-Key was used with a different request")]
    KeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    KeyInFlight,
    #[error("store: {0}")]
    Store(StoreError),
    /// A record is sealed under a master key this process does not hold (a key rollout).
    #[error("the record is sealed under key {0}, which this process does not hold")]
    KeyMissing(String),
    /// The process is shutting down: readiness sends new requests elsewhere.
    #[error("this process is shutting down: send new requests elsewhere")]
    Draining,
    /// Stored records are sealed under master keys this process does not hold.
    #[error("stored records are sealed under {}, which this process does not hold: add it to SNAPGATE_PREVIOUS_MASTER_KEYS (or make it SNAPGATE_MASTER_KEY) and restart", .0.join(", "))]
    KeysMissing(Vec<String>),
    /// A strict list, failed by the first account that failed.
    #[error("strict listing: an account failed ({0})")]
    StrictListing(Box<ServiceError>),
    /// Ours, not the caller's: logged in full where it arose, answered generically.
    #[error("internal: {0}")]
    Internal(String),
}

/// A vendor failure of one account (or one source of it), its messages already scrubbed of
/// the account's secrets.
#[derive(Debug)]
pub struct AccountFailure {
    pub provider: ProviderKind,
    pub account: AccountId,
    /// The source (VM) whose snapshots could not be read, when one source of a list failed.
    pub source_id: Option<String>,
    pub error: ProviderError,
    /// For an unsupported capability: the providers that have it.
    pub supported_by: Vec<ProviderKind>,
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        if !matches!(e, StoreError::Conflict) {
            tracing::error!(error = %e, "store failure");
        }
        ServiceError::Store(e)
    }
}

/// Longest vendor message kept in a problem, cut only after scrubbing so no cut can leave
/// part of a secret behind.
const MAX_DETAIL: usize = 500;

impl ServiceError {
    /// A failure of ours, logged with its context; callers see only that one happened.
    pub fn internal(context: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        ServiceError::Internal(context.to_owned())
    }

    /// The failure as callers see it, naming the request it arose in.
    pub fn problem(&self) -> Problem {
        let mut p = self.describe();
        p.request_id = crate::telemetry::current_request_id();
        p
    }

    /// A record the tenant does not have: `404 code`, saying which.
    fn not_found(&self, code: &str) -> Problem {
        Problem::new(404, code, self.to_string())
    }

    fn describe(&self) -> Problem {
        match self {
            ServiceError::AccountNotFound(_) => self.not_found("account_not_found"),
            ServiceError::WebhookNotFound(_) => self.not_found("webhook_not_found"),
            ServiceError::DeliveryNotFound(_) => self.not_found("delivery_not_found"),
            ServiceError::OperationNotFound(_) => self.not_found("operation_not_found"),
            ServiceError::PolicyNotFound(_) => self.not_found("policy_not_found"),
            ServiceError::SnapshotNotFound => self.not_found("snapshot_not_found"),
            ServiceError::CursorExpired => {
                let mut p = Problem::new(410, "cursor_expired", self.to_string());
                p.field = Some("after".to_owned());
                p
            }
            ServiceError::Draining => retryable(Problem::new(503, "draining", self.to_string())),
            ServiceError::KeysMissing(_) => {
                let mut p = Problem::new(503, "master_key_missing", self.to_string());
                p.retryable = Some(false);
                p
            }
            ServiceError::StrictListing(inner) => strict_listing(inner.describe()),
            ServiceError::TargetRefused(_) => {
                let mut p = Problem::new(422, "webhook_target_refused", self.to_string());
                p.field = Some("url".to_owned());
                p
            }
            ServiceError::WebhookLimit(_) => {
                Problem::new(409, "webhook_limit_reached", self.to_string())
            }
            ServiceError::AccountExists(_) => {
                let mut p = Problem::new(409, "account_exists", self.to_string());
                p.field = Some("id".to_owned());
                p
            }
            ServiceError::Invalid { field, message } => {
                let mut p = Problem::new(422, "invalid_field", message.clone());
                p.field = Some(field.clone());
                p
            }
            ServiceError::Provider(failure) => failure.problem(),
            ServiceError::KeyReused => {
                Problem::new(422, "idempotency_key_reused", self.to_string())
            }
            ServiceError::KeyInFlight => {
                retryable(Problem::new(409, "idempotency_in_flight", self.to_string()))
            }
            ServiceError::Store(StoreError::Conflict) => {
                Problem::new(409, "conflict", "the record already exists")
            }
            ServiceError::Store(_) => retryable(Problem::new(
                503,
                "store_unavailable",
                "the gateway's store is unavailable; retry later",
            )),
            ServiceError::KeyMissing(key) => retryable(Problem::new(
                503,
                "master_key_missing",
                format!(
                    "this gateway process does not hold master key {key}, which sealed the \
                     record; retry (another replica may hold it) and tell the operator"
                ),
            )),
            ServiceError::Internal(_) => Problem::new(
                500,
                "internal_error",
                "an internal error occurred; quote the request_id when reporting it",
            ),
        }
    }

    /// How long the caller should wait before retrying, when the failure says.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ServiceError::KeyInFlight => Some(1),
            ServiceError::Store(e) if !matches!(e, StoreError::Conflict) => Some(1),
            ServiceError::KeyMissing(_) => Some(1),
            ServiceError::Draining => Some(1),
            ServiceError::StrictListing(inner) => inner.retry_after(),
            ServiceError::Provider(f) => match f.error {
                ProviderError::RateLimited { retry_after }
                | ProviderError::CircuitOpen { retry_after } => Some(retry_after),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A strict list failed by one account: that account's failure, as the whole list's.
fn strict_listing(of: Problem) -> Problem {
    let mut p = Problem::new(
        502,
        "account_failed",
        format!("strict listing: an account failed ({})", of.detail),
    );
    p.account = of.account;
    p.source_id = of.source_id;
    p.provider = of.provider;
    p.upstream_status = of.upstream_status;
    p.retryable = of.retryable;
    p
}

fn retryable(mut p: Problem) -> Problem {
    p.retryable = Some(true);
    p
}

impl AccountFailure {
    fn problem(&self) -> Problem {
        let mut p = match &self.error {
            ProviderError::Unsupported { capability } => {
                let names: Vec<&str> = self.supported_by.iter().map(|p| p.as_str()).collect();
                let mut p = Problem::new(
                    501,
                    "unsupported_operation",
                    format!(
                        "{capability} is not supported by this provider; supported by: {}",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
                p.supported_by = Some(self.supported_by.clone());
                p
            }
            other => vendor_problem(other),
        };
        if p.detail.chars().count() > MAX_DETAIL {
            p.detail = p.detail.chars().take(MAX_DETAIL).collect::<String>() + "…";
        }
        p.provider = Some(self.provider);
        p.account = Some(self.account.to_string());
        p.source_id = self.source_id.clone();
        p
    }
}

/// The vendor-failure table: each [`ProviderError`] as the problem callers get.
fn vendor_problem(e: &ProviderError) -> Problem {
    let detail = e.to_string();
    let mut p = match e {
        ProviderError::Rejected { status, message } => {
            let mut p = Problem::new(400, "upstream_rejected", message.clone());
            p.upstream_status = Some(*status);
            p.retryable = Some(false);
            p
        }
        ProviderError::Auth { status } => {
            let mut p = Problem::new(502, "provider_auth_failed", detail);
            p.upstream_status = Some(*status);
            p.retryable = Some(false);
            p
        }
        ProviderError::Forbidden { .. } => {
            let mut p = Problem::new(502, "provider_permission_denied", detail);
            p.upstream_status = Some(403);
            p.retryable = Some(false);
            p
        }
        ProviderError::NotFound => Problem::new(
            404,
            "snapshot_not_found",
            "the snapshot does not exist at the provider",
        ),
        ProviderError::SourceNotFound { field, .. } => {
            let mut p = Problem::new(404, "source_not_found", detail);
            p.field = Some((*field).to_owned());
            p
        }
        ProviderError::StatusUnknown { message } => {
            let mut p = Problem::new(502, "vendor_status_unknown", message.clone());
            p.retryable = Some(false);
            p
        }
        ProviderError::Conflict { message } => Problem::new(409, "conflict", message.clone()),
        ProviderError::RateLimited { .. } => {
            retryable(Problem::new(429, "provider_rate_limited", detail))
        }
        ProviderError::Upstream { status, message } => {
            let mut p = retryable(Problem::new(502, "upstream_error", message.clone()));
            p.upstream_status = *status;
            p
        }
        ProviderError::Timeout => retryable(Problem::new(504, "upstream_timeout", detail)),
        ProviderError::CircuitOpen { .. } => {
            retryable(Problem::new(503, "provider_unavailable", detail))
        }
        ProviderError::Invalid { field, message } => {
            let mut p = Problem::new(422, "invalid_field", message.clone());
            p.field = Some((*field).to_owned());
            p
        }
        ProviderError::SnapshotExists { message } => {
            Problem::new(409, "snapshot_exists", message.clone())
        }
        ProviderError::Unsupported { capability } => Problem::new(
            501,
            "unsupported_operation",
            format!("{capability} is not supported by this provider"),
        ),
    };
    if p.status >= 500 && p.retryable.is_none() {
        p.retryable = Some(false);
    }
    p
}

/// The failure with every form of the account's secrets removed from its messages (vendor
/// messages may echo what they were sent).
pub(super) fn scrubbed(e: ProviderError, secrets: &Scrubber) -> ProviderError {
    match e {
        ProviderError::Rejected { status, message } => ProviderError::Rejected {
            status,
            message: secrets.scrub(&message),
        },
        ProviderError::Conflict { message } => ProviderError::Conflict {
            message: secrets.scrub(&message),
        },
        ProviderError::Forbidden { message } => ProviderError::Forbidden {
            message: secrets.scrub(&message),
        },
        ProviderError::StatusUnknown { message } => ProviderError::StatusUnknown {
            message: secrets.scrub(&message),
        },
        ProviderError::Upstream { status, message } => ProviderError::Upstream {
            status,
            message: secrets.scrub(&message),
        },
        ProviderError::Invalid { field, message } => ProviderError::Invalid {
            field,
            message: secrets.scrub(&message),
        },
        ProviderError::SnapshotExists { message } => ProviderError::SnapshotExists {
            message: secrets.scrub(&message),
        },
        other => other,
    }
}
