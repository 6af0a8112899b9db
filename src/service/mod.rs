//! The application layer, between the HTTP edge and the adapters: accounts (stored sealed,
//! opened and cached for a call), operations (recorded, advanced from the vendor's truth,
//! shown on their snapshots), durable intent and idempotency. It speaks domain types and
//! [`ServiceError`]; the edge only routes, extracts, authenticates and answers, and a
//! background worker can call the same code.

mod accounts;
mod delivery;
mod error;
mod idempotency;
mod intent;
mod keys;
mod listing;
mod operations;
mod policies;
mod reconciler;
mod retention;
mod snapshots;
mod webhooks;
mod worker;

use std::{sync::Arc, time::Duration};

pub use crate::config::{PoliciesConfig, ReconcilerConfig, RetentionConfig, WebhooksConfig};
pub use accounts::{AccountChanges, AccountRequest, Resolved};
pub use delivery::record as record_attempt;
pub use error::{AccountFailure, ServiceError};
pub use idempotency::{Answer, AsProblem, Outcome};
pub use intent::{Intent, Journal};
pub use keys::ANNOUNCE_EVERY as KEY_ANNOUNCE_EVERY;
pub use listing::{Merged, SnapshotCursor, SnapshotQuery, SnapshotsPage};
pub use operations::new_operation;
pub use policies::{PolicyChanges, Preview};
pub use snapshots::SnapshotAction;
pub use webhooks::{NewWebhook, WebhookChanges};
pub use worker::supervised;

use crate::{
    domain::Problem,
    providers::Registry,
    store::{Sealer, Store},
};

/// The service: what every replica of snapgate runs behind its HTTP edge.
pub struct Service {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    registry: Registry,
    accounts: accounts::AccountCache,
    leases: Leases,
    reconciler: ReconcilerConfig,
    webhooks: WebhooksConfig,
    policies: PoliciesConfig,
    retention: RetentionConfig,
    /// How lists fan out, and the accounts this process may be listing at once.
    listing: listing::Listing,
    /// Built on the first delivery: a process that never delivers never loads its TLS roots.
    webhook_client: std::sync::OnceLock<reqwest::Client>,
    /// This process, as it announces its master keys to the others.
    replica: String,
    /// Set when the process is shutting down: readiness answers 503 and long-polls answer
    /// with the operation as it stands instead of waiting on.
    draining: Arc<tokio::sync::watch::Sender<bool>>,
}

/// How long records of work in flight are honoured.
#[derive(Clone, Copy, Debug)]
pub struct Leases {
    /// An in-flight idempotency key not renewed for this long belongs to a dead request (a
    /// replica killed): another request may take it. Renewed every third of it while the
    /// request lives.
    pub key: Duration,
    /// How long after it began an interrupted vendor call may still be running: until then
    /// "not there yet" keeps its operation running.
    pub in_flight_call: Duration,
}

impl Leases {
    /// Leases for requests that end within `deadline`.
    pub fn for_deadline(deadline: Duration) -> Self {
        let call = deadline * 2;
        Self {
            key: call.min(Duration::from_secs(6)),
            in_flight_call: call,
        }
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Service {
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Arc<Sealer>,
        registry: Registry,
        leases: Leases,
    ) -> Self {
        Self {
            store,
            sealer,
            registry,
            accounts: accounts::AccountCache::default(),
            leases,
            reconciler: ReconcilerConfig::default(),
            webhook_client: std::sync::OnceLock::new(),
            webhooks: WebhooksConfig::default(),
            policies: PoliciesConfig::default(),
            retention: RetentionConfig::default(),
            listing: listing::Listing::new(crate::config::ListingConfig::default()),
            replica: format!("r-{}", uuid::Uuid::new_v4().simple()),
            draining: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// The process is shutting down: readiness says so, and every long-poll answers now.
    pub fn start_draining(&self) {
        self.draining.send_replace(true);
    }

    /// Whether the process is shutting down.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Paces the background reconciler (and schedules new operations' first check) so.
    pub fn with_reconciler(mut self, reconciler: ReconcilerConfig) -> Self {
        self.reconciler = reconciler;
        self
    }

    /// Delivers webhooks (and checks their targets) so.
    pub fn with_webhooks(mut self, webhooks: WebhooksConfig) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// Prunes finished records so.
    pub fn with_retention(mut self, retention: RetentionConfig) -> Self {
        self.retention = retention;
        self
    }

    /// Lists snapshots across accounts so.
    pub fn with_listing(mut self, listing: crate::config::ListingConfig) -> Self {
        self.listing = listing::Listing::new(listing);
        self
    }

    /// Runs snapshot policies so.
    pub fn with_policies(mut self, policies: PoliciesConfig) -> Self {
        self.policies = policies;
        self
    }

    pub fn webhooks_config(&self) -> &WebhooksConfig {
        &self.webhooks
    }

    /// The reconciler's pacing.
    pub fn reconciler(&self) -> &ReconcilerConfig {
        &self.reconciler
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every provider the gateway speaks to, as each declares itself.
    pub fn providers(&self) -> Vec<&'static crate::providers::ProviderInfo> {
        self.registry.all().map(|adapter| adapter.info()).collect()
    }

    /// Whether the store answers (readiness).
    pub async fn ping(&self) -> Result<(), ServiceError> {
        Ok(self.store.ping().await?)
    }

    /// Readiness: not shutting down, the store answering, and every master key the stored
    /// records are sealed under held.
    pub async fn ready(&self) -> Result<(), ServiceError> {
        if self.is_draining() {
            return Err(ServiceError::Draining);
        }
        self.ping().await?;
        let missing = self.keys_missing().await?;
        if !missing.is_empty() {
            return Err(ServiceError::KeysMissing(missing));
        }
        Ok(())
    }

    /// An event-log position as the tenant's opaque cursor.
    pub fn seal_cursor(&self, tenant: &str, position: i64) -> String {
        self.sealer.seal_cursor(tenant, position)
    }

    /// The position a cursor holds, if it is one this gateway gave this tenant.
    pub fn open_cursor(&self, tenant: &str, cursor: &str) -> Option<i64> {
        self.sealer.open_cursor(tenant, cursor)
    }

    /// The keyed tag that makes a page token tamper-evident.
    pub fn page_tag(&self, payload: &[u8]) -> [u8; 32] {
        self.sealer.tag(payload)
    }
}

/// A problem naming the request it arose in.
fn stamped(mut problem: Problem) -> Problem {
    problem.request_id = crate::telemetry::current_request_id();
    problem
}
