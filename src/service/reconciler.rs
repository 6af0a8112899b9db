//! The reconciler: every `serve` process advances unfinished operations from the vendor's
//! truth on its own, so an operation finishes whether or not anyone reads it.
//!
//! Level-triggered: each round claims the operations whose next check is due (a claim is a
//! short lease in the store, so one process checks a given operation at a time — PostgreSQL
//! claims with `SKIP LOCKED`), asks the vendor once per operation through the same adapters,
//! breakers, concurrency caps and retry budget as caller traffic, and schedules the next check
//! with a per-operation backoff. An operation past its deadline fails with a clear problem.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures::{stream, StreamExt};

use super::{operations::finish, stamped, ReconcilerConfig, Service, ServiceError};
use crate::domain::{Operation, OperationState, Problem};

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

    /// Runs the reconciler until the process stops: a pipeline of at most
    /// `max_concurrent_checks` checks, refilled from the due operations as each one ends, every
    /// claim renewed while its check runs.
    pub async fn reconcile_forever(&self) {
        let cfg = &self.reconciler;
        let tick = Duration::from_millis(cfg.tick_ms.max(10));
        let slots = cfg.max_concurrent_checks.max(1);
        let mut running = futures::stream::FuturesUnordered::new();
        let mut held: std::collections::HashSet<(String, String)> = Default::default();
        let mut renew = tokio::time::interval(cfg.claim_lease() / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The checks in flight are polled while anything else is awaited: one of them may hold
        // the store (a SQLite write) that the other call needs.
        macro_rules! driving {
            ($work:expr) => {
                super::worker::driving($work, &mut running, |done| {
                    held.remove(&done);
                })
                .await
            };
        }
        loop {
            let free = slots.saturating_sub(running.len());
            let claimed = if free > 0 {
                match driving!(super::worker::contained("reconciler", self.claim(free))) {
                    Some(Ok(due)) => due,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "reconciler could not claim operations");
                        Vec::new()
                    }
                    None => Vec::new(),
                }
            } else {
                Vec::new()
            };
            let idle = claimed.is_empty();
            for (tenant, op) in claimed {
                held.insert((tenant.clone(), op.id.clone()));
                running.push(async move {
                    let key = (tenant.clone(), op.id.clone());
                    let checked = super::worker::contained("reconciler", self.check(&tenant, op));
                    if let Some(Err(e)) = checked.await {
                        tracing::info!(error = %e, "reconciler check failed");
                    }
                    key
                });
            }
            if !idle && running.len() < slots {
                continue;
            }
            let renewing = tokio::select! {
                Some(done) = running.next(), if !running.is_empty() => {
                    held.remove(&done);
                    false
                }
                _ = renew.tick() => true,
                _ = tokio::time::sleep(tick), if idle || running.is_empty() => false,
            };
            if renewing && !held.is_empty() {
                let claims: Vec<(String, String)> = held.iter().cloned().collect();
                driving!(self.renew_claims(&claims));
            }
        }
    }

    /// Claims up to `limit` due operations for this process.
    async fn claim(&self, limit: usize) -> Result<Vec<(String, Operation)>, ServiceError> {
        let now = Utc::now();
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let lease = now + delta(self.reconciler.claim_lease());
        let per_tenant = u32::try_from(self.reconciler.max_checks_per_tenant.max(1)).unwrap_or(1);
        Ok(self.store.claim_due(now, lease, limit, per_tenant).await?)
    }

    /// Extends the claims of the checks still running.
    async fn renew_claims(&self, held: &[(String, String)]) {
        let until = Utc::now() + delta(self.reconciler.claim_lease());
        for (tenant, id) in held {
            if let Err(e) = self.store.renew_claim(tenant, id, until).await {
                tracing::warn!(error = %e, "could not renew a reconciler claim");
            }
        }
    }

    /// One round: checks every due operation once (at most a pipeline's worth); how many were
    /// checked. Tests and tools drive the reconciler with it.
    pub async fn reconcile_once(&self) -> Result<usize, ServiceError> {
        let cfg = &self.reconciler;
        let due = self.claim(cfg.max_concurrent_checks.max(1) * 4).await?;
        let checked = due.len();
        stream::iter(due)
            .for_each_concurrent(
                cfg.max_concurrent_checks.max(1),
                |(tenant, op)| async move {
                    let checked = super::worker::contained("reconciler", self.check(&tenant, op));
                    if let Some(Err(e)) = checked.await {
                        tracing::info!(error = %e, "reconciler check failed");
                    }
                },
            )
            .await;
        Ok(checked)
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
