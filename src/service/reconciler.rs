//! The reconciler: every `serve` process advances unfinished operations from the vendor's
//! truth on its own, so an operation finishes whether or not anyone reads it.
//!
//! Level-triggered: each round claims the operations whose next check is due (a claim is a
//! short lease in the store, so one process checks a given operation at a time), asks the vendor once per operation through the same adapters,
//! breakers, concurrency caps and retry budget as caller traffic, and schedules the next check
//! with a per-operation backoff. An operation past its deadline fails with a clear problem.

use std::time::Duration;

use super::{operations::finish, stamped, worker::Worker, ReconcilerConfig, Service, ServiceError};
use crate::domain::{Operation, OperationState, Problem};
use chrono::{TimeDelta, Utc};

impl ReconcilerConfig {
    /// The wait before check number `checks + 1`.
    pub fn backoff(&self, checks: u32) -> Duration {
        let first = Duration::from_millis(self.first_check_ms.max(1));
        first
            .saturating_mul(1u32 << checks.min(20))
            .min(Duration::from_secs(self.max_interval_secs.max(1)))
    }

    fn claim_lease(&self) -> Duration {
        Duration::from_secs(self.claim_lease_secs.max(1))
    }
}

impl Service {
    /// When a new operation is first checked.
    pub(super) fn first_check(&self, op: &mut Operation) {
        if !op.state.is_terminal() {
            op.next_check_at = Some(Utc::now() + delta(self.reconciler.backoff(0)));
        }
    }

    /// Runs the reconciler until the process stops (see [`super::worker`]): a pipeline of at
    /// most `max_concurrent_checks` checks, every claim renewed while its check runs.
    pub async fn reconcile_forever(&self) {
        super::worker::run(&Reconciler(self)).await
    }

    /// One round: checks every due operation once (at most a pipeline's worth); how many were
    /// checked. Tests and tools drive the reconciler with it.
    pub async fn reconcile_once(&self) -> Result<usize, ServiceError> {
        let limit = self.reconciler.max_concurrent_checks.max(1) * 4;
        super::worker::run_once(&Reconciler(self), limit).await
    }

    /// Advances one operation from the vendor, or fails it past its deadline; schedules its
    /// next check while it runs.
    async fn check(&self, tenant: &str, op: Operation) -> Result<(), ServiceError> {
        let cfg = &self.reconciler;
        let (id, checks) = (op.id.clone(), op.checks);
        let deadline = op.created_at + delta(Duration::from_secs(cfg.deadline_secs));
        if Utc::now() > deadline {
            let mut op = op;
            let late = Problem::new(
                504,
                "operation_deadline_exceeded",
                format!(
                    "the provider did not report this {} finished within {} s; check the resource at the provider",
                    op.kind.as_str(),
                    cfg.deadline_secs
                ),
            );
            finish(&mut op, OperationState::Failed, Some(stamped(late)));
            self.save(tenant, op).await?;
            return Ok(());
        }
        tracing::debug!(operation = %id, checks, "reconciler checks an operation");
        let op = self.refresh(tenant, op).await?;
        if !op.state.is_terminal() {
            let next = Utc::now() + delta(cfg.backoff(checks + 1));
            self.store
                .schedule_check(tenant, &id, next, checks + 1)
                .await?;
        }
        Ok(())
    }
}

/// The reconciler as a [`Worker`]: its items are claimed unfinished operations.
struct Reconciler<'a>(&'a Service);

#[async_trait::async_trait]
impl Worker for Reconciler<'_> {
    type Item = (String, Operation);
    type Key = (String, String);
    const NAME: &'static str = "reconciler";

    fn slots(&self) -> usize {
        self.0.reconciler.max_concurrent_checks
    }

    fn tick(&self) -> Duration {
        Duration::from_millis(self.0.reconciler.tick_ms)
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(self.0.reconciler.claim_lease() / 3)
    }

    fn key(&self, (tenant, op): &Self::Item) -> Self::Key {
        (tenant.clone(), op.id.clone())
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Self::Item>, ServiceError> {
        let cfg = &self.0.reconciler;
        let now = Utc::now();
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let lease = now + delta(cfg.claim_lease());
        let per_tenant = u32::try_from(cfg.max_checks_per_tenant.max(1)).unwrap_or(1);
        Ok(self
            .0
            .store
            .claim_due(now, lease, limit, per_tenant)
            .await?)
    }

    async fn work(&self, (tenant, op): Self::Item) -> Result<(), ServiceError> {
        self.0.check(&tenant, op).await
    }

    async fn renew(&self, held: &[Self::Key]) {
        let until = Utc::now() + delta(self.0.reconciler.claim_lease());
        for (tenant, id) in held {
            if let Err(e) = self.0.store.renew_claim(tenant, id, until).await {
                tracing::warn!(error = %e, "could not renew a reconciler claim");
            }
        }
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_back_off_to_the_cap() {
        let cfg = ReconcilerConfig {
            first_check_ms: 1_000,
            max_interval_secs: 60,
            ..Default::default()
        };
        let waits: Vec<u64> = (0..8).map(|n| cfg.backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(cfg.backoff(u32::MAX).as_secs(), 60);
    }
}
