//! Unfinished operations in memory, so a snapshot get needs no query to learn whether work is
//! pending on it. SQLite keeps it on every write (one process); PostgreSQL also applies what
//! other replicas write, as they notify it, and rebuilds it from the table as a fallback.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use crate::domain::{Operation, OperationKind};

/// The delivery worker's signal: a counter bumped whenever deliveries may have been queued
/// (by this process, or by a replica as PostgreSQL notifies it). A watch: a worker busy when
/// it moved sees it at its next look, and many moves between two looks are one wake-up.
#[derive(Clone, Debug)]
pub(super) struct Queued(Arc<tokio::sync::watch::Sender<u64>>);

impl Default for Queued {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(0)))
    }
}

impl Queued {
    pub fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// The index, shared by the store's clones, and the announcement of every change it applies.
#[derive(Clone, Debug)]
pub(super) struct Pending {
    index: Arc<Mutex<PendingIndex>>,
    changes: tokio::sync::broadcast::Sender<(String, String)>,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            index: Arc::default(),
            changes: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

/// op → (snapshot, kind), and snapshot → number of such ops, by tenant.
#[derive(Debug, Default)]
struct PendingIndex {
    by_op: HashMap<(String, String), (String, OperationKind)>,
    by_snapshot: HashMap<(String, String), usize>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, PendingIndex> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an operation's current state (unfinished ones with a snapshot are indexed) and
    /// announces the change.
    pub fn set(&self, tenant: &str, op: &Operation) {
        let snapshot = op.snapshot_id.as_ref().map(ToString::to_string);
        self.set_parts(tenant, &op.id, snapshot, op.kind, op.state.is_terminal());
    }

    /// [`Pending::set`] from what a change notification carries: the operation's id, its
    /// snapshot, its kind and whether it has finished (no query needed).
    pub fn set_parts(
        &self,
        tenant: &str,
        id: &str,
        snapshot: Option<String>,
        kind: OperationKind,
        finished: bool,
    ) {
        self.lock().set(tenant, id, snapshot, kind, finished);
        // Nobody listening is fine.
        let _ = self.changes.send((tenant.to_owned(), id.to_owned()));
    }

    /// Every change from now on, as (tenant, operation id).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<(String, String)> {
        self.changes.subscribe()
    }

    /// Starts over from every unfinished operation, as the table holds them.
    pub fn replace(&self, unfinished: Vec<(String, Operation)>) {
        let mut fresh = PendingIndex::default();
        for (tenant, op) in &unfinished {
            let snapshot = op.snapshot_id.as_ref().map(ToString::to_string);
            fresh.set(tenant, &op.id, snapshot, op.kind, op.state.is_terminal());
        }
        *self.lock() = fresh;
    }

    /// Whether unfinished work targets this snapshot.
    pub fn targets(&self, tenant: &str, snapshot_id: &str) -> bool {
        self.lock()
            .by_snapshot
            .contains_key(&crate::pair::key(tenant, snapshot_id) as &dyn crate::pair::Pair)
    }

    /// Snapshot id → kind of the unfinished work on it, for one tenant.
    pub fn of_tenant(&self, tenant: &str) -> HashMap<String, OperationKind> {
        self.lock()
            .by_op
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, (snapshot, kind))| (snapshot.clone(), *kind))
            .collect()
    }
}

impl PendingIndex {
    fn set(
        &mut self,
        tenant: &str,
        id: &str,
        snapshot: Option<String>,
        kind: OperationKind,
        finished: bool,
    ) {
        let key = (tenant.to_owned(), id.to_owned());
        if let Some((old, _)) = self.by_op.remove(&key) {
            let k = (tenant.to_owned(), old);
            if let Some(n) = self.by_snapshot.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    self.by_snapshot.remove(&k);
                }
            }
        }
        if let (false, Some(snapshot)) = (finished, snapshot) {
            self.by_op.insert(key, (snapshot.clone(), kind));
            *self
                .by_snapshot
                .entry((tenant.to_owned(), snapshot))
                .or_default() += 1;
        }
    }
}
