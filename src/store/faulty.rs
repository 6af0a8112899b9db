//! A store that fails on purpose: it wraps a real one and makes chosen calls fail as a lost
//! database connection would (`PoolTimedOut`). Tests and the soak use it to prove that every
//! guarantee holds when the store fails at the worst moment — after a vendor call, say.
//!
//! The same wrapper, with no faults planned, is how store calls become trace spans (one per
//! call, named by the method) when traces are exported: [`Faulty::traced`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    AccountPatch, Claimed, Counts, Cutoffs, Dump, IdempotencyBegin, NewAccount, OperationFilter,
    PruneCounts, RunUpdate, Sealed, Store, StoreError,
};
use crate::domain::{
    Account, AccountHealth, AccountId, Delivery, Event, EventType, Operation, Policy, PolicyRun,
    PolicySnapshot, Webhook,
};

/// Which calls fail: by method name, how many of its next calls to let through, then how many
/// to fail.
#[derive(Debug, Default)]
pub struct FaultPlan {
    calls: Mutex<HashMap<&'static str, Planned>>,
    /// Every call fails (the database is down).
    down: std::sync::atomic::AtomicBool,
    /// Calls that panic instead (a bug met mid-work), by method: how many more.
    panics: Mutex<HashMap<&'static str, u32>>,
    /// Every call made, by method (what a bench counts: store queries per unit of work).
    counted: Mutex<HashMap<&'static str, u64>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Planned {
    pass: u32,
    fail: u32,
    failed: u32,
}

impl FaultPlan {
    /// Lets the next `pass` calls of `method` through, then fails `fail` of them.
    pub fn fail(&self, method: &'static str, pass: u32, fail: u32) {
        self.lock().insert(
            method,
            Planned {
                pass,
                fail,
                failed: 0,
            },
        );
    }

    /// Makes the next `times` calls of `method` panic, as a bug met mid-work would.
    pub fn panic_on(&self, method: &'static str, times: u32) {
        self.panics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(method, times);
    }

    /// Takes the whole store down (every call fails) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many calls of `method` failed on purpose so far (under its latest plan).
    pub fn failed(&self, method: &'static str) -> u32 {
        self.lock().get(method).map_or(0, |p| p.failed)
    }

    /// The calls made since the last [`FaultPlan::take_counts`], by method.
    pub fn take_counts(&self) -> HashMap<&'static str, u64> {
        std::mem::take(&mut *self.counted.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Planned>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gate(&self, method: &'static str) -> Result<(), StoreError> {
        *self
            .counted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(method)
            .or_default() += 1;
        {
            let mut panics = self.panics.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(left) = panics.get_mut(method).filter(|left| **left > 0) {
                *left -= 1;
                drop(panics);
                panic!("injected panic in store call {method}");
            }
        }
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        let mut calls = self.lock();
        let Some(p) = calls.get_mut(method) else {
            return Ok(());
        };
        if p.pass > 0 {
            p.pass -= 1;
            return Ok(());
        }
        if p.fail > 0 {
            p.fail -= 1;
            p.failed += 1;
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        Ok(())
    }
}

/// A store whose calls fail as its [`FaultPlan`] says.
pub struct Faulty {
    inner: Arc<dyn Store>,
    plan: Arc<FaultPlan>,
    /// Each call is a `store` span (traces are on).
    traced: bool,
}

impl Faulty {
    pub fn wrap(inner: Arc<dyn Store>, plan: Arc<FaultPlan>) -> Arc<dyn Store> {
        Arc::new(Self {
            inner,
            plan,
            traced: crate::otel::enabled(),
        })
    }

    /// `inner` with each call a trace span, when traces are exported; else `inner` itself.
    pub fn traced(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        if !crate::otel::enabled() {
            return inner;
        }
        Arc::new(Self {
            inner,
            plan: Arc::default(),
            traced: true,
        })
    }
}

/// Each call asks the plan first, then goes to the real store (in a span of its own when
/// traces are on).
macro_rules! gated {
    ($self:ident, $name:literal, $call:expr) => {{
        $self.plan.gate($name)?;
        if $self.traced {
            let span = tracing::info_span!(
                "store",
                otel.name = concat!("store ", $name),
                otel.kind = "client",
                db.operation = $name
            );
            tracing::Instrument::instrument($call, span).await
        } else {
            $call.await
        }
    }};
}

#[async_trait]
impl Store for Faulty {
    async fn ping(&self) -> Result<(), StoreError> {
        gated!(self, "ping", self.inner.ping())
    }
    fn account_stamp(&self, tenant: &str, id: &AccountId) -> u64 {
        self.inner.account_stamp(tenant, id)
    }
    async fn insert_account(&self, new: NewAccount) -> Result<Account, StoreError> {
        gated!(self, "insert_account", self.inner.insert_account(new))
    }
    async fn get_account(
        &self,
        tenant: &str,
        id: &AccountId,
    ) -> Result<Option<Account>, StoreError> {
        gated!(self, "get_account", self.inner.get_account(tenant, id))
    }
    async fn get_account_sealed(
        &self,
        tenant: &str,
        id: &AccountId,
    ) -> Result<Option<(Account, Sealed)>, StoreError> {
        gated!(
            self,
            "get_account_sealed",
            self.inner.get_account_sealed(tenant, id)
        )
    }
    async fn list_accounts(&self, tenant: &str) -> Result<Vec<Account>, StoreError> {
        gated!(self, "list_accounts", self.inner.list_accounts(tenant))
    }
    async fn account_keys(
        &self,
        tenant: &str,
    ) -> Result<Vec<(AccountId, crate::domain::ProviderKind)>, StoreError> {
        gated!(self, "account_keys", self.inner.account_keys(tenant))
    }
    async fn update_account(
        &self,
        tenant: &str,
        id: &AccountId,
        patch: AccountPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Account>, StoreError> {
        gated!(
            self,
            "update_account",
            self.inner.update_account(tenant, id, patch, now)
        )
    }
    async fn delete_account(&self, tenant: &str, id: &AccountId) -> Result<bool, StoreError> {
        gated!(
            self,
            "delete_account",
            self.inner.delete_account(tenant, id)
        )
    }
    async fn record_health(
        &self,
        tenant: &str,
        id: &AccountId,
        health: &AccountHealth,
    ) -> Result<(), StoreError> {
        gated!(
            self,
            "record_health",
            self.inner.record_health(tenant, id, health)
        )
    }
    async fn insert_operation(
        &self,
        tenant: &str,
        op: &Operation,
        events: &[Event],
    ) -> Result<(), StoreError> {
        gated!(
            self,
            "insert_operation",
            self.inner.insert_operation(tenant, op, events)
        )
    }
    async fn get_operation(&self, tenant: &str, id: &str) -> Result<Option<Operation>, StoreError> {
        gated!(self, "get_operation", self.inner.get_operation(tenant, id))
    }
    async fn update_operation(
        &self,
        tenant: &str,
        op: &Operation,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        gated!(
            self,
            "update_operation",
            self.inner.update_operation(tenant, op, events)
        )
    }
    async fn append_events(&self, tenant: &str, events: &[Event]) -> Result<(), StoreError> {
        gated!(
            self,
            "append_events",
            self.inner.append_events(tenant, events)
        )
    }
    async fn list_events(
        &self,
        tenant: &str,
        after: i64,
        types: &[EventType],
        limit: u32,
    ) -> Result<Vec<(i64, Event)>, StoreError> {
        gated!(
            self,
            "list_events",
            self.inner.list_events(tenant, after, types, limit)
        )
    }
    async fn has_unfinished_operation(
        &self,
        tenant: &str,
        snapshot_id: &str,
    ) -> Result<bool, StoreError> {
        // Answered from memory by both back-ends: no database to fail.
        self.inner
            .has_unfinished_operation(tenant, snapshot_id)
            .await
    }
    async fn pending_snapshots(
        &self,
        tenant: &str,
    ) -> Result<HashMap<String, crate::domain::OperationKind>, StoreError> {
        self.inner.pending_snapshots(tenant).await
    }
    async fn list_operations(
        &self,
        tenant: &str,
        filter: &OperationFilter,
    ) -> Result<Vec<Operation>, StoreError> {
        gated!(
            self,
            "list_operations",
            self.inner.list_operations(tenant, filter)
        )
    }
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_tenant: u32,
    ) -> Result<Vec<(String, Operation)>, StoreError> {
        gated!(
            self,
            "claim_due",
            self.inner.claim_due(now, lease_until, limit, per_tenant)
        )
    }
    async fn schedule_check(
        &self,
        tenant: &str,
        id: &str,
        next_check_at: DateTime<Utc>,
        checks: u32,
    ) -> Result<(), StoreError> {
        gated!(
            self,
            "schedule_check",
            self.inner.schedule_check(tenant, id, next_check_at, checks)
        )
    }
    async fn announce_keys(
        &self,
        replica: &str,
        key_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        gated!(
            self,
            "announce_keys",
            self.inner.announce_keys(replica, key_ids, now)
        )
    }
    async fn retire_replica(&self, replica: &str) -> Result<(), StoreError> {
        gated!(self, "retire_replica", self.inner.retire_replica(replica))
    }
    async fn announced_keys(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        gated!(self, "announced_keys", self.inner.announced_keys(since))
    }
    async fn stored_key_ids(&self) -> Result<Vec<String>, StoreError> {
        gated!(self, "stored_key_ids", self.inner.stored_key_ids())
    }
    async fn renew_claim(
        &self,
        tenant: &str,
        id: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        gated!(
            self,
            "renew_claim",
            self.inner.renew_claim(tenant, id, lease_until)
        )
    }
    fn operation_changes(&self) -> tokio::sync::broadcast::Receiver<(String, String)> {
        self.inner.operation_changes()
    }
    fn deliveries_queued(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.deliveries_queued()
    }
    async fn begin_idempotent(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<IdempotencyBegin, StoreError> {
        gated!(
            self,
            "begin_idempotent",
            self.inner
                .begin_idempotent(tenant, key, fingerprint, now, lease)
        )
    }
    async fn renew_idempotent(
        &self,
        tenant: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        gated!(
            self,
            "renew_idempotent",
            self.inner.renew_idempotent(tenant, key, now)
        )
    }
    async fn finish_idempotent(
        &self,
        tenant: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        gated!(
            self,
            "finish_idempotent",
            self.inner.finish_idempotent(tenant, key, status, body)
        )
    }
    async fn abandon_idempotent(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        gated!(
            self,
            "abandon_idempotent",
            self.inner.abandon_idempotent(tenant, key)
        )
    }
    async fn prune_expired(&self, cutoffs: Cutoffs, batch: u32) -> Result<PruneCounts, StoreError> {
        gated!(
            self,
            "prune_expired",
            self.inner.prune_expired(cutoffs, batch)
        )
    }
    async fn events_pruned_through(&self) -> Result<i64, StoreError> {
        gated!(
            self,
            "events_pruned_through",
            self.inner.events_pruned_through()
        )
    }
    async fn insert_policy(&self, policy: &Policy) -> Result<(), StoreError> {
        gated!(self, "insert_policy", self.inner.insert_policy(policy))
    }
    async fn get_policy(&self, tenant: &str, id: &str) -> Result<Option<Policy>, StoreError> {
        gated!(self, "get_policy", self.inner.get_policy(tenant, id))
    }
    async fn list_policies(&self, tenant: &str) -> Result<Vec<Policy>, StoreError> {
        gated!(self, "list_policies", self.inner.list_policies(tenant))
    }
    async fn update_policy(&self, policy: &Policy) -> Result<bool, StoreError> {
        gated!(self, "update_policy", self.inner.update_policy(policy))
    }
    async fn delete_policy(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        gated!(self, "delete_policy", self.inner.delete_policy(tenant, id))
    }
    async fn due_policies(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Policy>, StoreError> {
        gated!(self, "due_policies", self.inner.due_policies(now, limit))
    }
    async fn start_run(
        &self,
        policy: &Policy,
        expected: DateTime<Utc>,
        run: &PolicyRun,
    ) -> Result<bool, StoreError> {
        gated!(
            self,
            "start_run",
            self.inner.start_run(policy, expected, run)
        )
    }
    async fn renew_run_claim(
        &self,
        tenant: &str,
        run_id: &str,
        claimant: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        gated!(
            self,
            "renew_run_claim",
            self.inner.renew_run_claim(tenant, run_id, claimant, until)
        )
    }
    async fn claim_runs(
        &self,
        now: DateTime<Utc>,
        claimant: &str,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(String, PolicyRun)>, StoreError> {
        gated!(
            self,
            "claim_runs",
            self.inner.claim_runs(now, claimant, until, limit)
        )
    }
    async fn save_run(&self, update: RunUpdate) -> Result<bool, StoreError> {
        gated!(self, "save_run", self.inner.save_run(update))
    }
    async fn policy_runs(
        &self,
        tenant: &str,
        policy_id: &str,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<PolicyRun>, StoreError> {
        gated!(
            self,
            "policy_runs",
            self.inner.policy_runs(tenant, policy_id, before, limit)
        )
    }
    async fn policy_snapshots(
        &self,
        tenant: &str,
        policy_id: &str,
    ) -> Result<Vec<PolicySnapshot>, StoreError> {
        gated!(
            self,
            "policy_snapshots",
            self.inner.policy_snapshots(tenant, policy_id)
        )
    }
    async fn insert_webhook(&self, webhook: &Webhook, secrets: &Sealed) -> Result<(), StoreError> {
        gated!(
            self,
            "insert_webhook",
            self.inner.insert_webhook(webhook, secrets)
        )
    }
    async fn get_webhook(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Webhook, Sealed)>, StoreError> {
        gated!(self, "get_webhook", self.inner.get_webhook(tenant, id))
    }
    async fn list_webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError> {
        gated!(self, "list_webhooks", self.inner.list_webhooks(tenant))
    }

    async fn backlog(&self) -> Result<super::Backlog, StoreError> {
        gated!(self, "backlog", self.inner.backlog())
    }
    async fn update_webhook(
        &self,
        webhook: &Webhook,
        secrets: Option<&Sealed>,
    ) -> Result<bool, StoreError> {
        gated!(
            self,
            "update_webhook",
            self.inner.update_webhook(webhook, secrets)
        )
    }
    async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        gated!(
            self,
            "delete_webhook",
            self.inner.delete_webhook(tenant, id)
        )
    }
    async fn insert_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        gated!(
            self,
            "insert_delivery",
            self.inner.insert_delivery(delivery)
        )
    }
    async fn list_deliveries(
        &self,
        tenant: &str,
        webhook_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, Delivery)>, StoreError> {
        gated!(
            self,
            "list_deliveries",
            self.inner
                .list_deliveries(tenant, webhook_id, before, limit)
        )
    }
    async fn get_delivery(
        &self,
        tenant: &str,
        webhook_id: &str,
        id: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        gated!(
            self,
            "get_delivery",
            self.inner.get_delivery(tenant, webhook_id, id)
        )
    }
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
        per_tenant: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        gated!(
            self,
            "claim_deliveries",
            self.inner
                .claim_deliveries(now, lease_until, limit, per_endpoint, per_tenant)
        )
    }
    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        token: &str,
        disable: Option<&str>,
    ) -> Result<bool, StoreError> {
        gated!(
            self,
            "finish_delivery",
            self.inner.finish_delivery(delivery, token, disable)
        )
    }
    async fn sealed_webhook_secrets(&self) -> Result<Vec<(String, String, Sealed)>, StoreError> {
        gated!(
            self,
            "sealed_webhook_secrets",
            self.inner.sealed_webhook_secrets()
        )
    }
    async fn reseal_webhook(
        &self,
        tenant: &str,
        id: &str,
        from_key_id: &str,
        sealed: &Sealed,
    ) -> Result<bool, StoreError> {
        gated!(
            self,
            "reseal_webhook",
            self.inner.reseal_webhook(tenant, id, from_key_id, sealed)
        )
    }
    async fn sealed_credentials(&self) -> Result<Vec<(String, AccountId, Sealed)>, StoreError> {
        gated!(self, "sealed_credentials", self.inner.sealed_credentials())
    }
    async fn reseal(
        &self,
        tenant: &str,
        id: &AccountId,
        from_key_id: &str,
        sealed: &Sealed,
    ) -> Result<bool, StoreError> {
        gated!(
            self,
            "reseal",
            self.inner.reseal(tenant, id, from_key_id, sealed)
        )
    }
    async fn dump(&self) -> Result<Dump, StoreError> {
        gated!(self, "dump", self.inner.dump())
    }
    async fn load(&self, dump: Dump) -> Result<Counts, StoreError> {
        gated!(self, "load", self.inner.load(dump))
    }
}
