//! Keeping a replica's memory coherent with the others: what it heard of account changes
//! (stamps), the listener applying notifications, and the periodic check for missed ones.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use sqlx::{postgres::PgListener, PgPool, Row};

use super::{list_unfinished, PostgresStore};
use crate::store::StoreError;

/// How often a replica checks that it heard every account change (whatever the notification
/// traffic), and rebuilds its index of unfinished operations from the table.
const FALLBACK_CHECK: Duration = Duration::from_millis(500);
const INDEX_REBUILD_EVERY: u32 = 10;
/// A gap in the account-change numbers wider than this is not enumerated: every account is
/// reopened at once.
const MAX_GAP: u64 = 10_000;

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
    /// Which account-change numbers were heard.
    heard: Mutex<Heard>,
    /// Local change counter (stamps are compared for equality only).
    counter: AtomicU64,
}

/// The account-change numbers heard: every number up to `through`, and those above it.
/// A number missing at two checks in a row was lost (a number still missing at the first may
/// belong to a transaction not yet committed, whose notification is on its way).
#[derive(Debug, Default)]
pub(super) struct Heard {
    through: u64,
    above: BTreeSet<u64>,
    suspects: BTreeSet<u64>,
}

impl Heard {
    fn hear(&mut self, version: u64) {
        if version > self.through {
            self.above.insert(version);
        }
        while self.above.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }

    /// Takes the last number issued; whether a change was lost (a number missing at this check
    /// and the one before). Lost numbers are then taken as heard.
    pub(super) fn check(&mut self, issued: u64) -> bool {
        if issued > self.through + MAX_GAP {
            *self = Heard {
                through: issued,
                ..Heard::default()
            };
            return true;
        }
        let missing: BTreeSet<u64> = (self.through + 1..=issued)
            .filter(|v| !self.above.contains(v))
            .collect();
        let lost: Vec<u64> = missing.intersection(&self.suspects).copied().collect();
        self.suspects = missing.difference(&self.suspects).copied().collect();
        for v in &lost {
            self.hear(*v);
        }
        !lost.is_empty()
    }
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
        self.heard().hear(version);
    }

    fn heard(&self) -> std::sync::MutexGuard<'_, Heard> {
        self.inner.heard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every change up to `version` is accounted for (the state the replica starts from).
    pub(super) fn heard_up_to(&self, version: u64) {
        let mut heard = self.heard();
        if version > heard.through {
            *heard = Heard {
                through: version,
                ..Heard::default()
            };
        }
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

/// Applies other replicas' changes as they are notified, on a connection of its own (never
/// one of the query pool's): each notification carries what it changes, so applying it is a
/// memory write, never a query, and account changes never queue behind operation traffic.
///
/// When the connection is lost, nothing is dropped yet: while the database cannot be reached
/// nobody can change an account, so the cached ones keep serving (a read needs no store). Once
/// listening again, anything may have changed in the gap: every cached account is reopened
/// and the index of unfinished work rebuilt.
pub(super) async fn listen(store: PostgresStore, own: PgPool, mut listener: PgListener) {
    if let Err(e) = listener.listen_all(CHANNELS).await {
        tracing::error!(error = %e, "cannot listen for store changes; relying on periodic checks");
    }
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => {
                apply(&store, n.channel(), n.payload());
                continue;
            }
            Ok(None) => tracing::warn!("store notifications interrupted; listening again"),
            Err(e) => tracing::warn!(error = %e, "store notifications failed; listening again"),
        }
        listener = listen_again(&own).await;
        store.stamps.all_changed();
        store.queued.bump();
        if let Ok(ops) = list_unfinished(&store.pool).await {
            store.pending.replace(ops);
        }
    }
}

/// The channels other replicas' changes are announced on.
const CHANNELS: [&str; 3] = [
    "snapgate_accounts",
    "snapgate_operations",
    "snapgate_deliveries",
];

/// A new listener on every channel, tried every [`FALLBACK_CHECK`] until the database answers.
async fn listen_again(own: &PgPool) -> PgListener {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(own).await?;
            listener.listen_all(CHANNELS).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listener.await {
            Ok(listener) => return listener,
            Err(e) => {
                tracing::debug!(error = %e, "store still unreachable for notifications");
                tokio::time::sleep(FALLBACK_CHECK).await;
            }
        }
    }
}

/// The fallback, on a timer whatever the notification traffic: any account-change number
/// missing twice in a row means a lost notification (every cached account is reopened), and
/// the index of unfinished work is rebuilt from the table now and then.
pub(super) async fn check_forever(store: PostgresStore) {
    let mut tick = tokio::time::interval(FALLBACK_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    loop {
        tick.tick().await;
        ticks = ticks.wrapping_add(1);
        check_missed(&store, ticks.is_multiple_of(INDEX_REBUILD_EVERY)).await;
    }
}

/// Applies one notification.
fn apply(store: &PostgresStore, channel: &str, payload: &str) {
    if channel == "snapgate_deliveries" {
        store.queued.bump();
        return;
    }
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
            let field = |i: usize| values.get(i).cloned().filter(|v| v.is_string());
            let kind: Option<crate::domain::OperationKind> =
                field(3).and_then(|v| serde_json::from_value(v).ok());
            let state: Option<crate::domain::OperationState> =
                field(4).and_then(|v| serde_json::from_value(v).ok());
            if let (Some(kind), Some(state)) = (kind, state) {
                store
                    .pending
                    .set_parts(&tenant, &id, text(2), kind, state.is_terminal());
            }
        }
        _ => {}
    }
}

/// The fallback check: a lost account-change notification reopens every account.
async fn check_missed(store: &PostgresStore, rebuild_index: bool) {
    if let Ok(version) = account_version(&store.pool).await {
        if store.stamps.heard().check(version) {
            tracing::info!("an account change was not notified; reopening every account");
            store.stamps.all_changed();
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

#[cfg(test)]
mod tests {
    use super::Heard;

    fn heard(versions: &[u64]) -> Heard {
        let mut h = Heard::default();
        for v in versions {
            h.hear(*v);
        }
        h
    }

    #[test]
    fn a_number_missing_at_two_checks_is_a_lost_change_whatever_came_after() {
        // 2 lost, then later changes heard: the highest number alone would hide it.
        let mut h = heard(&[1, 3, 4, 5]);
        assert!(!h.check(5), "missing once: perhaps not yet committed");
        assert!(h.check(5), "missing twice: lost");
        assert!(!h.check(5), "then taken as heard");
        assert_eq!(h.through, 5);
    }

    #[test]
    fn a_late_notification_is_no_loss() {
        let mut h = heard(&[1]);
        assert!(!h.check(2));
        h.hear(2);
        assert!(!h.check(2));
        assert!(!h.check(2));
        assert!(h.above.is_empty() && h.suspects.is_empty());
    }

    #[test]
    fn a_gap_too_wide_to_list_is_a_loss_at_once() {
        let mut h = heard(&[1]);
        assert!(h.check(1 + super::MAX_GAP + 5));
        assert_eq!(h.through, 1 + super::MAX_GAP + 5);
    }
}
