//! Operations: recorded when work is submitted, advanced only from the vendor's truth, and
//! shown on the snapshots they concern while they run.

use chrono::Utc;

use super::{intent, stamped, Resolved, Service, ServiceError};
use crate::{
    domain::{
        Completion, Event, Operation, OperationKind, OperationState, Problem, Snapshot, SnapshotId,
        VendorRef, VendorRefKind,
    },
    providers::{PollRequest, Progress, ProviderError, Submitted},
    store::OperationFilter,
    telemetry::current_actor,
};

/// A new operation of `resolved`'s account, running, with no vendor handle yet.
pub fn new_operation(
    resolved: &Resolved,
    kind: OperationKind,
    native_id: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> Operation {
    let account = resolved.account();
    Operation {
        id: format!("op_{}", uuid::Uuid::now_v7().simple()),
        kind,
        state: OperationState::Running,
        account: account.id.clone(),
        provider: account.provider,
        snapshot_id: native_id.map(|n| SnapshotId::new(&account.id, n)),
        result: None,
        vendor_ref: VendorRef {
            kind: VendorRefKind::None,
            id: None,
        },
        created_at: now,
        updated_at: now,
        finished_at: None,
        error: None,
        tracking: serde_json::Value::Null,
        completion: Completion::Observed,
        completion_note: None,
        next_check_at: None,
        checks: 0,
    }
}

/// Ends an operation now, failed with `problem` when one is given.
pub(super) fn finish(op: &mut Operation, state: OperationState, problem: Option<Problem>) {
    let now = Utc::now();
    op.state = state;
    op.error = problem;
    op.updated_at = now;
    op.finished_at = Some(now);
    op.next_check_at = None;
}

impl Service {
    /// Records the operation a vendor call started: completes the one its intent stored (same
    /// id, so a replay of the key names it), or stores a new one.
    pub(super) async fn record(
        &self,
        tenant: &str,
        resolved: &Resolved,
        kind: OperationKind,
        known_native_id: Option<&str>,
        submitted: &Submitted,
        intended: Option<Operation>,
    ) -> Result<Operation, ServiceError> {
        let now = Utc::now();
        let native = submitted.native_id.as_deref().or(known_native_id);
        let mut op = match &intended {
            Some(o) => o.clone(),
            None => new_operation(resolved, kind, native, now),
        };
        op.state = submitted.state;
        op.snapshot_id = native.map(|n| SnapshotId::new(&resolved.account().id, n));
        op.result = submitted.result.clone();
        op.vendor_ref = submitted.vendor_ref.clone();
        op.updated_at = now;
        op.finished_at = submitted.state.is_terminal().then_some(now);
        op.error = None;
        // A create keeps its source beside the adapter's tracking (guards read it).
        let source = intended
            .as_ref()
            .and_then(super::snapshots::create_source)
            .map(str::to_owned);
        op.tracking = submitted.tracking.clone();
        if let Some(source) = source {
            match &mut op.tracking {
                serde_json::Value::Object(map) => {
                    map.insert(super::snapshots::CREATE_SOURCE.to_owned(), source.into());
                }
                t @ serde_json::Value::Null => {
                    *t = serde_json::json!({ super::snapshots::CREATE_SOURCE: source });
                }
                _ => {}
            }
        }
        op.completion = Completion::of_note(submitted.assumed.as_deref());
        op.completion_note = submitted.assumed.clone();
        op.next_check_at = None;
        self.first_check(&mut op);
        match intended {
            Some(_) => return self.save(tenant, op).await,
            None => {
                let events = Event::of_finished(&op, &current_actor());
                self.store.insert_operation(tenant, &op, &events).await?;
            }
        }
        Ok(op)
    }

    /// Saves an unfinished operation; when another writer finished it first, that answer
    /// stands and is returned instead.
    pub(super) async fn save(
        &self,
        tenant: &str,
        op: Operation,
    ) -> Result<Operation, ServiceError> {
        // Its end, if it just ended, is logged in the same transaction (never twice: a finished
        // operation is not rewritten).
        let events = Event::of_finished(&op, &current_actor());
        if !self.store.update_operation(tenant, &op, &events).await? {
            if let Some(stored) = self.store.get_operation(tenant, &op.id).await? {
                return Ok(stored);
            }
        }
        Ok(op)
    }

    /// One operation of the caller's, advanced from the vendor first when unfinished.
    pub async fn operation(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Operation>, ServiceError> {
        match self.store.get_operation(tenant, id).await? {
            Some(op) => Ok(Some(self.refresh(tenant, op).await?)),
            None => Ok(None),
        }
    }

    /// As [`Service::operation`], waiting up to `wait` for an unfinished operation to change
    /// (the reconciler or another replica advancing it): answers as soon as it does.
    pub async fn operation_after_change(
        &self,
        tenant: &str,
        id: &str,
        wait: std::time::Duration,
    ) -> Result<Operation, ServiceError> {
        use tokio::sync::broadcast::error::RecvError;
        let missing = || ServiceError::OperationNotFound(id.chars().take(80).collect());
        // Listening first, so a change between the read and the wait is not missed.
        let mut changes = self.store.operation_changes();
        let op = self.operation(tenant, id).await?.ok_or_else(missing)?;
        if op.state.is_terminal() || wait.is_zero() {
            return Ok(op);
        }
        let seen = (op.state, op.updated_at);
        let until = tokio::time::Instant::now() + wait;
        let mut draining = self.draining.subscribe();
        loop {
            tokio::select! {
                // Shutting down: the caller gets the operation as it stands, not a cut
                // connection; it asks again (another replica) for what comes next.
                () = async { let _ = draining.wait_for(|d| *d).await; } => {
                    return self.store.get_operation(tenant, id).await?.ok_or_else(missing);
                }
                change = changes.recv() => match change {
                    Ok((t, i)) if t == tenant && i == id => {}
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => {
                        tokio::time::sleep_until(until).await;
                    }
                },
                _ = tokio::time::sleep_until(until) => {}
            }
            let now = self.store.get_operation(tenant, id).await?;
            let changed = now.as_ref().is_none_or(|n| (n.state, n.updated_at) != seen);
            if changed || tokio::time::Instant::now() >= until {
                return now.ok_or_else(missing);
            }
        }
    }

    /// The tenant's events after `after`, oldest first.
    pub async fn events(
        &self,
        tenant: &str,
        after: i64,
        types: &[crate::domain::EventType],
        limit: u32,
    ) -> Result<Vec<(i64, Event)>, ServiceError> {
        // A cursor below what retention pruned may have missed events: say so, never answer a
        // silently short log.
        if after > 0 && after < self.store.events_pruned_through().await? {
            return Err(ServiceError::CursorExpired);
        }
        Ok(self.store.list_events(tenant, after, types, limit).await?)
    }

    /// The caller's operations, newest first, as stored.
    pub async fn operations(
        &self,
        tenant: &str,
        filter: &OperationFilter,
    ) -> Result<Vec<Operation>, ServiceError> {
        Ok(self.store.list_operations(tenant, filter).await?)
    }

    /// Advances an unfinished operation from the vendor's truth and saves it. A vendor that
    /// cannot be reached leaves the stored state as it was.
    pub async fn refresh(&self, tenant: &str, op: Operation) -> Result<Operation, ServiceError> {
        if op.state.is_terminal() {
            return Ok(op);
        }
        let resolved = match self.resolve(tenant, &op.account).await {
            // Only the account that started the work may report on it: a later account that
            // reuses the id (perhaps for another provider) knows nothing of it.
            Ok(r)
                if r.account().provider == op.provider
                    && r.account().created_at <= op.created_at =>
            {
                r
            }
            Ok(_) | Err(ServiceError::AccountNotFound(_)) => return self.abandon(tenant, op).await,
            Err(_) => return Ok(op),
        };
        if let Some(intent) = intent::interrupted(&op) {
            return self.settle(tenant, &resolved, op, intent).await;
        }
        let progress = match resolved
            .adapter
            .poll(&resolved.ctx(), &PollRequest::of(&op))
            .await
        {
            Ok(p) => self.bound_unknown(&op, p),
            Err(e) => {
                // The kind of failure only: a vendor's words may echo what it was sent.
                tracing::info!(operation = %op.id, failure = e.kind(), "operation poll failed");
                return Ok(op);
            }
        };
        let known = op.snapshot_id.as_ref().map(|s| s.native_id.as_str());
        let new_native = progress.native_id.filter(|n| Some(n.as_str()) != known);
        let changed = progress.state != op.state
            || new_native.is_some()
            || progress.result.is_some()
            || progress.error.is_some();
        if !changed {
            return Ok(op);
        }
        let mut op = op;
        if let Some(native) = new_native {
            op.snapshot_id = Some(SnapshotId::new(&op.account, &native));
        }
        if progress.result.is_some() {
            op.result = progress.result;
        }
        let error = progress.error.map(|e| resolved.fail(e).problem());
        if progress.state.is_terminal() {
            finish(&mut op, progress.state, error);
        } else {
            op.state = progress.state;
            op.error = error.or(op.error);
            op.updated_at = Utc::now();
        }
        self.save(tenant, op).await
    }

    /// A vendor status nobody documented keeps an operation running only for
    /// `reconciler.unknown_status_secs` after it started; then it fails naming that status.
    fn bound_unknown(&self, op: &Operation, progress: Progress) -> Progress {
        let Some(what) = progress.unknown.as_deref() else {
            return progress;
        };
        crate::domain::count_unknown_status(op.provider, "operation");
        let bound = self.reconciler.unknown_status_secs;
        let waited = (Utc::now() - op.created_at).num_seconds();
        if waited < i64::try_from(bound).unwrap_or(i64::MAX) {
            return progress;
        }
        let vendor = crate::providers::display_name(op.provider);
        Progress {
            native_id: progress.native_id.clone(),
            ..Progress::failed(ProviderError::StatusUnknown {
                message: format!(
                    "{vendor} reports {what}, a status the gateway does not know, {waited} s \
                     after the {} began (bound: reconciler.unknown_status_secs = {bound}); \
                     check it at {vendor}",
                    op.kind.as_str()
                ),
            })
        }
    }

    /// Settles an operation whose vendor call never reported back, from what the vendor shows.
    async fn settle(
        &self,
        tenant: &str,
        resolved: &Resolved,
        op: Operation,
        intent: intent::Intent,
    ) -> Result<Operation, ServiceError> {
        let before = (op.state, op.snapshot_id.clone());
        let settled = match intent::settle(resolved, op.clone(), intent, self.leases.in_flight_call)
            .await
        {
            Ok(settled) => settled,
            Err(e) => {
                tracing::info!(operation = %op.id, failure = e.kind(), "settling an interrupted operation failed");
                return Ok(op);
            }
        };
        if (settled.state, settled.snapshot_id.clone()) == before {
            return Ok(settled);
        }
        self.save(tenant, settled).await
    }

    /// Fails an operation whose account was deleted: nobody can follow the work any more.
    async fn abandon(&self, tenant: &str, mut op: Operation) -> Result<Operation, ServiceError> {
        let gone = Problem::new(
            404,
            "account_not_found",
            format!(
                "account `{}` was deleted while this operation ran; its outcome at the provider is unknown",
                op.account
            ),
        );
        finish(&mut op, OperationState::Failed, Some(stamped(gone)));
        let events = Event::of_finished(&op, &current_actor());
        self.store.update_operation(tenant, &op, &events).await?;
        Ok(op)
    }

    /// Shows the gateway's unfinished work on a snapshot whose vendor has no status for it
    /// (advancing that work from the vendor first).
    pub async fn overlay(&self, tenant: &str, snapshot: &mut Snapshot) -> Result<(), ServiceError> {
        let id = snapshot.id.joined();
        if !self.store.has_unfinished_operation(tenant, &id).await? {
            return Ok(());
        }
        // Boxed: most snapshots have no operation in flight, and the refresh's state (vendor
        // calls) would otherwise sit in every read's future.
        Box::pin(self.overlay_tracked(tenant, snapshot, id)).await
    }

    /// [`Service::overlay`] for a snapshot with unfinished operations.
    async fn overlay_tracked(
        &self,
        tenant: &str,
        snapshot: &mut Snapshot,
        id: String,
    ) -> Result<(), ServiceError> {
        let filter = OperationFilter {
            snapshot_id: Some(id),
            unfinished_only: true,
            limit: 10,
            ..Default::default()
        };
        for op in self.store.list_operations(tenant, &filter).await? {
            let op = self.refresh(tenant, op).await?;
            if op.state.is_terminal() || !snapshot.show_pending(op.kind) {
                continue;
            }
            if snapshot.vendor_status.is_none() {
                let source = match op.vendor_ref.kind {
                    VendorRefKind::Ticket => "ticket",
                    VendorRefKind::Action => "action",
                    VendorRefKind::List => "list",
                    VendorRefKind::Resource => "resource",
                    VendorRefKind::SnapshotStatus | VendorRefKind::None => "operation",
                };
                let id = op.vendor_ref.id.as_deref().unwrap_or(&op.id);
                snapshot.vendor_status = Some(format!("{source}:{id}:{}", op.kind.as_str()));
            }
        }
        Ok(())
    }

    /// Shows the gateway's unfinished work on listed snapshots (one store query, no vendor
    /// calls).
    pub async fn overlay_pending(
        &self,
        tenant: &str,
        items: &mut [Snapshot],
    ) -> Result<(), ServiceError> {
        let pending = self.store.pending_snapshots(tenant).await?;
        if pending.is_empty() {
            return Ok(());
        }
        for s in items.iter_mut() {
            if let Some(kind) = pending.get(&s.id.to_string()) {
                s.show_pending(*kind);
            }
        }
        Ok(())
    }
}
