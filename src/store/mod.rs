//! Persistence: accounts (with sealed credentials), behind one trait.
//!
//! The SQLite back-end is embedded; a PostgreSQL one can implement the same trait and be
//! chosen by URL scheme in [`connect`]. Nothing here knows HTTP or vendors.

mod seal;
mod sqlite;
mod sqlite_ops;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Account, AccountHealth, AccountId, Operation, ProviderKind};

pub use seal::{SealError, Sealed, Sealer};
pub use sqlite::SqliteStore;

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
    #[error("unsupported store URL `{0}`: expected a SQLite path or sqlite:// URL")]
    UnsupportedUrl(String),
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

/// Which operations to list.
#[derive(Clone, Debug, Default)]
pub struct OperationFilter {
    pub account: Option<AccountId>,
    pub snapshot_id: Option<String>,
    pub unfinished_only: bool,
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
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the store answers queries.
    async fn ping(&self) -> Result<(), StoreError>;

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

    async fn insert_operation(&self, tenant: &str, op: &Operation) -> Result<(), StoreError>;
    async fn get_operation(&self, tenant: &str, id: &str) -> Result<Option<Operation>, StoreError>;
    /// Saves an unfinished operation's state, result, error and timestamps; `false` when it
    /// had already finished (a finished operation is never rewritten).
    async fn update_operation(&self, tenant: &str, op: &Operation) -> Result<bool, StoreError>;
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
}

/// Opens the store a URL names, creating and migrating it if needed.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    Ok(Arc::new(SqliteStore::open(url).await?))
}
