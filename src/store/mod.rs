//! Persistence: accounts (with sealed credentials), operations and idempotency records, behind
//! one trait with two back-ends chosen by URL in [`connect`]: SQLite (embedded, one process)
//! and PostgreSQL (any number of replicas on one database). Nothing here knows HTTP or vendors.

#[macro_use]
mod sql;

mod accounts;
mod copy;
mod events;
pub mod faulty;
mod idempotency;
mod keys;
mod operations;
mod pending;
mod policies;
mod postgres;
mod retention;
mod rows;
mod seal;
mod sqlite;
mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    Account, AccountHealth, AccountId, Delivery, Event, EventType, Operation, Policy, PolicyRun,
    PolicySnapshot, ProviderKind, Webhook,
};

pub use postgres::{connect_options as postgres_options, PostgresStore};
pub use retention::{Cutoffs, PruneCounts};
pub use seal::{SealError, Sealed, Sealer};
pub use sqlite::SqliteStore;
pub use webhooks::Claimed;

/// A store failure. Details are for logs; callers see a generic 503/500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("record already exists")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported store URL `{0}`: expected a SQLite path, sqlite:// or postgres:// URL")]
    UnsupportedUrl(String),
    /// The database could not be reached at start: where, and why.
    #[error("cannot connect to PostgreSQL at {at}: {cause}")]
    Unreachable { at: String, cause: String },
}

/// A new account to insert, credentials already sealed.
#[derive(Clone, Debug)]
pub struct NewAccount {
    pub tenant: String,
    pub id: AccountId,
    pub provider: ProviderKind,
    pub display_name: Option<String>,
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub credentials: SealedCredentials,
    pub now: DateTime<Utc>,
}

/// Sealed credentials with what may be shown of them.
#[derive(Clone, Debug)]
pub struct SealedCredentials {
    pub fields: Vec<String>,
    pub fingerprint: String,
    pub sealed: Sealed,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct AccountPatch {
    pub display_name: Option<Option<String>>,
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
    pub credentials: Option<SealedCredentials>,
}

/// What waits on the workers, across tenants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Operations pending or running (the reconciler's work).
    pub unfinished_operations: u64,
    /// Deliveries not yet answered with a 2xx nor given up (the delivery worker's).
    pub pending_deliveries: u64,
}

/// Which operations to list.
#[derive(Clone, Debug, Default)]
pub struct OperationFilter {
    pub account: Option<AccountId>,
    pub snapshot_id: Option<String>,
    pub unfinished_only: bool,
    /// Only operations older than this `(created_at, id)` position (the next page).
    pub before: Option<(DateTime<Utc>, String)>,
    pub limit: u32,
}

/// What the store says when a request with an `Idempotency-Key` starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use of the key: go ahead (the key is now recorded as in flight).
    Started,
    /// Same key and request: the recorded response.
    Replay { status: u16, body: String },
    /// Same key, different request.
    Mismatch,
    /// Same key, first request still running.
    InFlight,
}

/// Storage for everything snapgate persists, tenant-scoped on every call.
/// A policy run's progress, saved as one transaction by [`Store::save_run`].
#[derive(Debug)]
pub struct RunUpdate {
    pub tenant: String,
    pub run: PolicyRun,
    /// When the runner looks at it again (a run in progress).
    pub check_at: Option<DateTime<Utc>>,
    pub claimant: String,
    /// Gives the claim up (the run waits for its next check, which anyone may make).
    pub release: bool,
    /// Snapshots it made or pruned.
    pub snapshots: Vec<PolicySnapshot>,
    pub events: Vec<Event>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the store answers queries.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A number that changes whenever the account may have changed through another process
    /// (a replica on the same database); an opening cached under another number is stale. One
    /// process alone (SQLite) invalidates its cache as it writes, so the default never changes.
    fn account_stamp(&self, _tenant: &str, _id: &AccountId) -> u64 {
        0
    }

    async fn insert_account(&self, new: NewAccount) -> Result<Account, StoreError>;
    async fn get_account(
        &self,
        tenant: &str,
        id: &AccountId,
    ) -> Result<Option<Account>, StoreError>;
    /// The account with its sealed credentials, for a provider call.
    async fn get_account_sealed(
        &self,
        tenant: &str,
        id: &AccountId,
    ) -> Result<Option<(Account, Sealed)>, StoreError>;
    async fn list_accounts(&self, tenant: &str) -> Result<Vec<Account>, StoreError>;
    /// The id and provider of each of the tenant's accounts, by id (what a list across
    /// accounts selects from).
    async fn account_keys(
        &self,
        tenant: &str,
    ) -> Result<Vec<(AccountId, ProviderKind)>, StoreError>;
    async fn update_account(
        &self,
        tenant: &str,
        id: &AccountId,
        patch: AccountPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Account>, StoreError>;
    async fn delete_account(&self, tenant: &str, id: &AccountId) -> Result<bool, StoreError>;
    async fn record_health(
        &self,
        tenant: &str,
        id: &AccountId,
        health: &AccountHealth,
    ) -> Result<(), StoreError>;

    /// Stores a new operation, with the events it tells, in one transaction.
    async fn insert_operation(
        &self,
        tenant: &str,
        op: &Operation,
        events: &[Event],
    ) -> Result<(), StoreError>;
    async fn get_operation(&self, tenant: &str, id: &str) -> Result<Option<Operation>, StoreError>;
    /// Saves an unfinished operation's state, result, error and timestamps, with the events
    /// the change tells, in one transaction; `false` (and no event) when it had already
    /// finished (a finished operation is never rewritten).
    async fn update_operation(
        &self,
        tenant: &str,
        op: &Operation,
        events: &[Event],
    ) -> Result<bool, StoreError>;
    /// Appends events of a change made elsewhere.
    async fn append_events(&self, tenant: &str, events: &[Event]) -> Result<(), StoreError>;
    /// The tenant's events after position `after` (0: from the start), oldest first, of
    /// `types` (empty: all), at most `limit`, each with its position.
    async fn list_events(
        &self,
        tenant: &str,
        after: i64,
        types: &[EventType],
        limit: u32,
    ) -> Result<Vec<(i64, Event)>, StoreError>;
    /// Whether any pending or running operation targets this snapshot (hot path of every get).
    async fn has_unfinished_operation(
        &self,
        tenant: &str,
        snapshot_id: &str,
    ) -> Result<bool, StoreError> {
        let filter = OperationFilter {
            snapshot_id: Some(snapshot_id.to_owned()),
            unfinished_only: true,
            limit: 1,
            ..Default::default()
        };
        Ok(!self.list_operations(tenant, &filter).await?.is_empty())
    }
    /// Snapshot id → kind of the unfinished operations that target a snapshot (hot path of
    /// every list: the overlay of pending work).
    async fn pending_snapshots(
        &self,
        tenant: &str,
    ) -> Result<std::collections::HashMap<String, crate::domain::OperationKind>, StoreError> {
        let filter = OperationFilter {
            unfinished_only: true,
            limit: 1000,
            ..Default::default()
        };
        Ok(self
            .list_operations(tenant, &filter)
            .await?
            .into_iter()
            .filter_map(|op| op.snapshot_id.map(|s| (s.to_string(), op.kind)))
            .collect())
    }
    /// Newest first.
    async fn list_operations(
        &self,
        tenant: &str,
        filter: &OperationFilter,
    ) -> Result<Vec<Operation>, StoreError>;

    /// Takes up to `limit` unfinished operations whose next check is due (never checked ones
    /// first), holding each until `lease_until` so no other process checks it meanwhile (a
    /// process that dies frees them when the lease ends).
    ///
    /// Fair across tenants: each tenant's due operations take turns (every tenant's first
    /// before anyone's second), and a tenant with `per_tenant` operations already claimed by
    /// any process gets no more until one is released.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_tenant: u32,
    ) -> Result<Vec<(String, Operation)>, StoreError>;
    /// Sets when an unfinished operation is next checked, and how many checks it has had;
    /// releases its claim.
    async fn schedule_check(
        &self,
        tenant: &str,
        id: &str,
        next_check_at: DateTime<Utc>,
        checks: u32,
    ) -> Result<(), StoreError>;
    /// Extends a claim still held on an unfinished operation to `lease_until` (its check is
    /// still running); whether it was still held.
    async fn renew_claim(
        &self,
        tenant: &str,
        id: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Operations that changed, in this process or (PostgreSQL) any replica, as (tenant, id).
    fn operation_changes(&self) -> tokio::sync::broadcast::Receiver<(String, String)>;

    /// Moves whenever deliveries may have been queued, here or (PostgreSQL) by a replica: the
    /// delivery worker's wake-up. Its value means nothing; only that it changed.
    fn deliveries_queued(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Records `key` as in flight, or reports what an earlier use of it decided. An in-flight
    /// record older than `lease` is taken over (its request died without finishing).
    async fn begin_idempotent(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<IdempotencyBegin, StoreError>;
    /// Keeps an in-flight `key` from being taken over: its request is alive.
    async fn renew_idempotent(
        &self,
        tenant: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Stores the response of the request that started `key`.
    async fn finish_idempotent(
        &self,
        tenant: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError>;
    /// Forgets `key` (the request failed in a way a retry may fix).
    async fn abandon_idempotent(&self, tenant: &str, key: &str) -> Result<(), StoreError>;

    /// Prunes one batch (at most `batch` per table) of finished records older than their
    /// cutoff; what it pruned.
    async fn prune_expired(&self, cutoffs: Cutoffs, batch: u32) -> Result<PruneCounts, StoreError>;
    /// The highest event position that may have been pruned (0: none): a follower whose cursor
    /// is below it may have missed events.
    async fn events_pruned_through(&self) -> Result<i64, StoreError>;

    /// Stores a new policy; `Conflict` when the id is taken.
    async fn insert_policy(&self, policy: &Policy) -> Result<(), StoreError>;
    async fn get_policy(&self, tenant: &str, id: &str) -> Result<Option<Policy>, StoreError>;
    /// Oldest first.
    async fn list_policies(&self, tenant: &str) -> Result<Vec<Policy>, StoreError>;
    /// Replaces a policy's spec and schedule; whether it was there.
    async fn update_policy(&self, policy: &Policy) -> Result<bool, StoreError>;
    /// Deletes a policy, its runs and its record of what it made; whether it was there.
    async fn delete_policy(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
    /// Policies (any tenant) whose next slot is due at `now`, longest due first.
    async fn due_policies(&self, now: DateTime<Utc>, limit: u32)
        -> Result<Vec<Policy>, StoreError>;
    /// Starts `run` if the policy's next slot is still `expected`, moving its schedule to
    /// `policy.next_slot`/`next_due_at` in the same transaction: each slot starts once across
    /// replicas. Whether this call started it.
    async fn start_run(
        &self,
        policy: &Policy,
        expected: DateTime<Utc>,
        run: &PolicyRun,
    ) -> Result<bool, StoreError>;
    /// Claims up to `limit` runs in progress due a check at `now` until `until`: (tenant, run).
    async fn claim_runs(
        &self,
        now: DateTime<Utc>,
        claimant: &str,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(String, PolicyRun)>, StoreError>;
    /// Extends `claimant`'s claim on a run in progress (its work is still going); whether it
    /// still held it.
    async fn renew_run_claim(
        &self,
        tenant: &str,
        run_id: &str,
        claimant: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Saves a run, what it made or pruned and its events in one transaction, if the
    /// claimant still holds the run; whether it did.
    async fn save_run(&self, update: RunUpdate) -> Result<bool, StoreError>;
    /// A policy's runs, newest first.
    async fn policy_runs(
        &self,
        tenant: &str,
        policy_id: &str,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<PolicyRun>, StoreError>;
    /// What a policy made and has not pruned, oldest first.
    async fn policy_snapshots(
        &self,
        tenant: &str,
        policy_id: &str,
    ) -> Result<Vec<PolicySnapshot>, StoreError>;

    /// Stores a new webhook endpoint with its sealed secrets; `Conflict` when the id is taken.
    async fn insert_webhook(&self, webhook: &Webhook, secrets: &Sealed) -> Result<(), StoreError>;
    async fn get_webhook(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Webhook, Sealed)>, StoreError>;
    /// Oldest first.
    async fn list_webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError>;
    /// What waits on the workers, across tenants (for the backlog gauges).
    async fn backlog(&self) -> Result<Backlog, StoreError>;
    /// Saves an endpoint's url, description, filter and state, and its secrets when given
    /// (`None` keeps them, so a concurrent rotation is not undone); whether it exists.
    async fn update_webhook(
        &self,
        webhook: &Webhook,
        secrets: Option<&Sealed>,
    ) -> Result<bool, StoreError>;
    /// Deletes an endpoint and its delivery log; whether it existed.
    async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
    /// Queues a delivery made by hand (a test event, a redelivery).
    async fn insert_delivery(&self, delivery: &Delivery) -> Result<(), StoreError>;
    /// An endpoint's deliveries before position `before` (none: from the newest), newest
    /// first, each with its position.
    async fn list_deliveries(
        &self,
        tenant: &str,
        webhook_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, Delivery)>, StoreError>;
    async fn get_delivery(
        &self,
        tenant: &str,
        webhook_id: &str,
        id: &str,
    ) -> Result<Option<Delivery>, StoreError>;
    /// Takes up to `limit` due deliveries of enabled endpoints until `lease_until`, never more
    /// than `per_endpoint` in flight to one endpoint, nor `per_tenant` for one tenant, across
    /// every process; tenants take turns (every tenant's oldest due before anyone's second), so
    /// one tenant's fan-out does not hold another's delivery. No two processes ever hold one
    /// delivery (a process that dies frees its claims when the lease ends).
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
        per_tenant: u32,
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Records a claimed delivery's attempts and state and releases it, disabling its
    /// endpoint with `disable` as the reason (unless a delivery queued after this one has
    /// reached it meanwhile); `false` (nothing written) when the claim lapsed.
    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        token: &str,
        disable: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Every webhook endpoint's sealed secrets, by tenant and id.
    async fn sealed_webhook_secrets(&self) -> Result<Vec<(String, String, Sealed)>, StoreError>;
    /// Replaces an endpoint's sealed secrets if they are still sealed under `from_key_id`;
    /// whether they were replaced.
    async fn reseal_webhook(
        &self,
        tenant: &str,
        id: &str,
        from_key_id: &str,
        sealed: &Sealed,
    ) -> Result<bool, StoreError>;

    /// Every account's sealed credentials, by tenant and id.
    async fn sealed_credentials(&self) -> Result<Vec<(String, AccountId, Sealed)>, StoreError>;
    /// Replaces an account's sealed credentials if they are still sealed under `from_key_id`
    /// (a concurrent change wins); whether they were replaced.
    async fn reseal(
        &self,
        tenant: &str,
        id: &AccountId,
        from_key_id: &str,
        sealed: &Sealed,
    ) -> Result<bool, StoreError>;

    /// Records that `replica` holds these master keys now (renewed while it lives).
    async fn announce_keys(
        &self,
        replica: &str,
        key_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Forgets a process's announcement (it stops).
    async fn retire_replica(&self, replica: &str) -> Result<(), StoreError>;
    /// The keys of every process announced since `since`, as (replica, key id).
    async fn announced_keys(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// The master keys the stored records (credentials, webhook secrets) are sealed under.
    async fn stored_key_ids(&self) -> Result<Vec<String>, StoreError>;

    /// Every record, as stored (credentials still sealed): what [`copy`] moves.
    async fn dump(&self) -> Result<Dump, StoreError>;
    /// Writes every record of `dump` in one transaction; a record already here (same tenant and
    /// id or key) is kept as it is. How many were written.
    async fn load(&self, dump: Dump) -> Result<Counts, StoreError>;
}

/// Every record of a store, as stored.
#[derive(Debug, Default)]
pub struct Dump {
    accounts: Vec<rows::AccountRow>,
    operations: Vec<rows::TenantOperationRow>,
    idempotency: Vec<rows::IdempotencyRow>,
    events: Vec<rows::EventRow>,
    webhooks: Vec<webhooks::WebhookRow>,
    deliveries: Vec<webhooks::DeliveryRow>,
    policies: policies::PolicyDump,
}

impl Dump {
    pub fn counts(&self) -> Counts {
        Counts {
            accounts: self.accounts.len(),
            operations: self.operations.len(),
            idempotency_keys: self.idempotency.len(),
            events: self.events.len(),
            webhooks: self.webhooks.len(),
            deliveries: self.deliveries.len(),
            policies: self.policies.policies.len(),
            policy_runs: self.policies.runs.len(),
            policy_records: self.policies.snapshots.len(),
        }
    }
}

/// How many records of each kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub accounts: usize,
    pub operations: usize,
    pub idempotency_keys: usize,
    pub events: usize,
    pub webhooks: usize,
    pub deliveries: usize,
    pub policies: usize,
    pub policy_runs: usize,
    /// Snapshots policies recorded making (what their retention prunes from).
    pub policy_records: usize,
}

impl Counts {
    pub fn is_empty(&self) -> bool {
        *self == Counts::default()
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} accounts, {} operations, {} idempotency keys, {} events, {} webhooks, {} deliveries, \
             {} policies, {} policy runs, {} policy snapshot records",
            self.accounts,
            self.operations,
            self.idempotency_keys,
            self.events,
            self.webhooks,
            self.deliveries,
            self.policies,
            self.policy_runs,
            self.policy_records
        )
    }
}

/// Why a copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the target already holds {0}; copy into it anyway with --into-non-empty (records it has are kept)")]
    NotEmpty(Counts),
    #[error("replica(s) {} serving now do not hold key {key}: restart every replica with it (as SNAPGATE_MASTER_KEY, or among SNAPGATE_PREVIOUS_MASTER_KEYS) before re-sealing under it", replicas.join(", "))]
    ReplicasLackKey { key: String, replicas: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a key rotation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Re-sealed under the active key.
    pub resealed: usize,
    /// Already under the active key.
    pub current: usize,
    /// Changed by someone else meanwhile (and so sealed under the active key by them).
    pub changed_meanwhile: usize,
    /// Webhook endpoints' secrets re-sealed under the active key.
    pub webhook_secrets: usize,
}

/// Why a rotation stopped.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("account `{tenant}/{id}` cannot be opened: {source}; add the key that sealed it to SNAPGATE_PREVIOUS_MASTER_KEYS")]
    Open {
        tenant: String,
        id: AccountId,
        source: SealError,
    },
    #[error("the secrets of webhook `{tenant}/{id}` cannot be opened: {source}; add the key that sealed them to SNAPGATE_PREVIOUS_MASTER_KEYS")]
    OpenWebhook {
        tenant: String,
        id: String,
        source: SealError,
    },
    #[error("replica(s) {} serving now do not hold key {key}: restart every replica with it (as SNAPGATE_MASTER_KEY, or among SNAPGATE_PREVIOUS_MASTER_KEYS) before re-sealing under it", replicas.join(", "))]
    ReplicasLackKey { key: String, replicas: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Re-seals every account and webhook secret not sealed under the sealer's active key, online: replicas keep
/// serving (each change is one row, and replicas reopen the account when notified). After it,
/// the previous keys are no longer needed.
pub async fn rotate(store: &dyn Store, sealer: &Sealer) -> Result<Rotation, RotateError> {
    // Every replica serving now (announced within the last 20 s) must open what this seals.
    let live = store
        .announced_keys(Utc::now() - chrono::TimeDelta::seconds(20))
        .await?;
    let mut lacking: Vec<String> = live
        .iter()
        .map(|(r, _)| r.clone())
        .filter(|r| !live.iter().any(|(rr, k)| rr == r && k == sealer.key_id()))
        .collect();
    lacking.sort();
    lacking.dedup();
    if !lacking.is_empty() {
        return Err(RotateError::ReplicasLackKey {
            key: sealer.key_id().to_owned(),
            replicas: lacking,
        });
    }
    let mut done = Rotation::default();
    for (tenant, id, sealed) in store.sealed_credentials().await? {
        if sealed.key_id == sealer.key_id() {
            done.current += 1;
            continue;
        }
        let fresh = sealer
            .reseal_account(&tenant, &id, &sealed)
            .map_err(|source| RotateError::Open {
                tenant: tenant.clone(),
                id: id.clone(),
                source,
            })?;
        if store.reseal(&tenant, &id, &sealed.key_id, &fresh).await? {
            done.resealed += 1;
        } else {
            done.changed_meanwhile += 1;
        }
    }
    for (tenant, id, sealed) in store.sealed_webhook_secrets().await? {
        if sealed.key_id == sealer.key_id() {
            continue;
        }
        let fresh = sealer
            .reseal_webhook(&tenant, &id, &sealed)
            .map_err(|source| RotateError::OpenWebhook {
                tenant: tenant.clone(),
                id: id.clone(),
                source,
            })?;
        if store
            .reseal_webhook(&tenant, &id, &sealed.key_id, &fresh)
            .await?
        {
            done.webhook_secrets += 1;
        }
    }
    Ok(done)
}

/// Copies every account (still sealed: the same master key opens them), operation and
/// idempotency record from one store to another, refusing a target that holds records unless
/// `into_non_empty`. How many were written.
pub async fn copy(
    from: &dyn Store,
    to: &dyn Store,
    into_non_empty: bool,
) -> Result<Counts, CopyError> {
    let present = to.dump().await?.counts();
    if !present.is_empty() && !into_non_empty {
        return Err(CopyError::NotEmpty(present));
    }
    Ok(to.load(from.dump().await?).await?)
}

/// Opens the store a URL names, creating and migrating it if needed: `postgres://…` (at most
/// `max_connections` pooled connections) or a SQLite path / `sqlite://…`.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    if is_postgres(url) {
        return Ok(Arc::new(PostgresStore::open(url, max_connections).await?));
    }
    if url.contains("://") && !url.starts_with("sqlite:") {
        return Err(StoreError::UnsupportedUrl(redacted(url)));
    }
    Ok(Arc::new(SqliteStore::open(url).await?))
}

/// The file a SQLite store URL (a path, `sqlite:` or `sqlite://`, any `?options` dropped)
/// names.
pub fn sqlite_path(url: &str) -> &str {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    path.split('?').next().unwrap_or(path)
}

/// Whether a store URL names PostgreSQL.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A store URL fit to print: any password replaced by `***`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let path = redacted_query(path);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or_default();
            let hidden = if user_info.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// A URL's path and query with the value of every parameter naming a password (`password`,
/// `sslpassword`, in any case or escape) replaced by `***`.
fn redacted_query(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (key, _) = pair.split_once('=').unwrap_or((pair, ""));
            let name: String = url::form_urlencoded::parse(key.as_bytes())
                .map(|(k, _)| k.to_ascii_lowercase())
                .collect();
            if name.contains("password") || name.contains("passwd") {
                format!("{key}=***")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

#[cfg(test)]
mod url_tests {
    use super::redacted;

    #[test]
    fn a_store_url_never_prints_its_password() {
        assert_eq!(
            redacted("postgres://snapgate:s3cr%40t@db:5432/snapgate?sslmode=require"),
            "postgres://snapgate:***@db:5432/snapgate?sslmode=require"
        );
        assert_eq!(redacted("postgres://u:p@ss@db/x"), "postgres://u:***@db/x");
        assert_eq!(redacted("postgres://db/x"), "postgres://db/x");
        assert_eq!(
            redacted("postgres://u@db/x?sslmode=require&password=hunter2&application_name=a"),
            "postgres://u@db/x?sslmode=require&password=***&application_name=a"
        );
        assert_eq!(
            redacted("postgres://db/x?PassWord=hunter2&sslpassword=k3y&pass%77ord=x"),
            "postgres://db/x?PassWord=***&sslpassword=***&pass%77ord=***"
        );
        assert_eq!(redacted("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(
            redacted("/var/lib/snapgate/db.sqlite"),
            "/var/lib/snapgate/db.sqlite"
        );
    }
}
