//! Keeping a replica's memory coherent with the others: what it heard of account changes
//! (stamps), the listener applying notifications, and the periodic check for missed ones.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use sqlx::{postgres::PgListener, PgPool, Row};

use super::{get_operation, list_unfinished, PostgresStore};
use crate::store::StoreError;

/// How often a replica checks that it heard every account change, and rebuilds its index of
/// unfinished operations from the table.
const FALLBACK_CHECK: Duration = Duration::from_secs(1);
const INDEX_REBUILD_EVERY: u32 = 5;

/// What this replica heard of account changes: a per-account change number, and a floor that
/// every account's number is raised to when changes may have been missed.
#[derive(Clone, Debug, Default)]
pub(super) struct Stamps {
    inner: Arc<StampsInner>,
}

#[derive(Debug, Default)]
struct StampsInner {
    by_account: Mutex<HashMap<(String, String), u64>>,
    /// Raised when every cached account must be reopened.
    floor: AtomicU64,
    /// The highest account-change sequence value heard.
    heard: AtomicU64,
    /// Local change counter (stamps are compared for equality only).
    counter: AtomicU64,
}

impl Stamps {
    pub(super) fn get(&self, tenant: &str, id: &str) -> u64 {
        let floor = self.inner.floor.load(Ordering::Acquire);
        let map = self
            .inner
            .by_account
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(&(tenant.to_owned(), id.to_owned()))
            .copied()
            .unwrap_or(0)
            .max(floor)
    }

    fn changed(&self, tenant: String, id: String, version: u64) {
        let next = self.inner.counter.fetch_add(1, Ordering::AcqRel) + 1;
        self.inner
            .by_account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((tenant, id), next);
        self.inner.heard.fetch_max(version, Ordering::AcqRel);
    }

    /// Every change up to `version` is accounted for (the state the replica starts from).
    pub(super) fn heard_up_to(&self, version: u64) {
        self.inner.heard.fetch_max(version, Ordering::AcqRel);
    }

    /// Every cached account is stale (a notification may have been lost).
    fn all_changed(&self) {
        let next = self.inner.counter.fetch_add(1, Ordering::AcqRel) + 1;
        self.inner.floor.store(next, Ordering::Release);
        self.inner
            .by_account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Applies other replicas' changes as they are notified; on a lost connection, drops every
/// cached account and rebuilds the index once listening again. Between notifications, checks
/// that none was missed.
pub(super) async fn listen(store: PostgresStore, mut listener: PgListener) {
    let channels = ["snapgate_accounts", "snapgate_operations"];
    if let Err(e) = listener.listen_all(channels).await {
        tracing::error!(error = %e, "cannot listen for store changes; relying on periodic checks");
    }
    let mut ticks = 0u32;
    loop {
        match tokio::time::timeout(FALLBACK_CHECK, listener.try_recv()).await {
            Ok(Ok(Some(n))) => apply(&store, n.channel(), n.payload()).await,
            Ok(Ok(None)) => {
                // The connection dropped and was re-established: anything may have changed.
                tracing::warn!("store notifications interrupted; reloading shared state");
                store.stamps.all_changed();
                if let Ok(ops) = list_unfinished(&store.pool).await {
                    store.pending.replace(ops);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "store notifications failed; retrying");
                store.stamps.all_changed();
                tokio::time::sleep(FALLBACK_CHECK).await;
            }
            Err(_) => {
                ticks += 1;
                check_missed(&store, ticks % INDEX_REBUILD_EVERY == 0).await;
            }
        }
    }
}

/// Applies one notification.
async fn apply(store: &PostgresStore, channel: &str, payload: &str) {
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(payload) else {
        return;
    };
    let text = |i: usize| values.get(i).and_then(|v| v.as_str()).map(str::to_owned);
    match (channel, text(0), text(1)) {
        ("snapgate_accounts", Some(tenant), Some(id)) => {
            let version = values.get(2).and_then(|v| v.as_u64()).unwrap_or(0);
            store.stamps.changed(tenant, id, version);
        }
        ("snapgate_operations", Some(tenant), Some(id)) => {
            if let Ok(Some(op)) = get_operation(&store.pool, &tenant, &id).await {
                store.pending.set(&tenant, &op);
            }
        }
        _ => {}
    }
}

/// The fallback: account changes numbered past what was heard mean a lost notification.
async fn check_missed(store: &PostgresStore, rebuild_index: bool) {
    if let Ok(version) = account_version(&store.pool).await {
        if version > store.stamps.inner.heard.load(Ordering::Acquire) {
            tracing::info!("an account change was not notified; reopening every account");
            store.stamps.all_changed();
            store
                .stamps
                .inner
                .heard
                .fetch_max(version, Ordering::AcqRel);
        }
    }
    if rebuild_index {
        if let Ok(ops) = list_unfinished(&store.pool).await {
            store.pending.replace(ops);
        }
    }
}

/// The last account-change number issued (0 before any).
pub(super) async fn account_version(pool: &PgPool) -> Result<u64, StoreError> {
    let row = sqlx::query("SELECT last_value, is_called FROM snapgate_account_version")
        .fetch_one(pool)
        .await?;
    let last: i64 = row.try_get("last_value")?;
    let called: bool = row.try_get("is_called")?;
    Ok(if called { last.max(0) as u64 } else { 0 })
}
