//! Bounded growth: every `serve` process prunes finished records past their retention
//! (`retention.*`) in small batches, each its own transaction, so no table grows forever and
//! no prune holds the store for long. Any replica may prune: a batch deletes only what is
//! there, so two replicas pruning at once prune each record once.

use std::time::Duration;

use chrono::{TimeDelta, Utc};

use super::{Service, ServiceError};
use crate::store::{Cutoffs, PruneCounts};

/// Batches one pass makes at most, so a backlog is worked off over passes, never in one burst.
const MAX_BATCHES: usize = 20;

impl Service {
    /// Prunes every `retention.interval_ms` until the process stops.
    pub async fn prune_forever(&self) {
        let every = Duration::from_millis(self.retention.interval_ms.max(10));
        loop {
            if let Err(e) = self.prune_once().await {
                tracing::warn!(error = %e, "could not prune expired records");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// One pass: batches until one prunes less than a full batch in every table (at most
    /// [`MAX_BATCHES`]); what it pruned.
    pub async fn prune_once(&self) -> Result<PruneCounts, ServiceError> {
        let cfg = &self.retention;
        let now = Utc::now();
        let before = |secs: u64| {
            (secs > 0).then(|| now - TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX)))
        };
        let cutoffs = Cutoffs {
            events: before(cfg.events_secs),
            deliveries: before(cfg.deliveries_secs),
            operations: before(cfg.operations_secs),
            idempotency_keys: before(cfg.idempotency_keys_secs),
            policy_runs: before(cfg.policy_runs_secs),
        };
        let batch = cfg.batch.max(1);
        let mut total = PruneCounts::default();
        for _ in 0..MAX_BATCHES {
            let pruned = self.store.prune_expired(cutoffs, batch).await?;
            for (table, n) in pruned.by_table() {
                metrics::counter!("snapgate_pruned_records_total", "table" => table)
                    .increment(n as u64);
            }
            total += pruned;
            if pruned.by_table().iter().all(|(_, n)| *n < batch as usize) {
                break;
            }
        }
        if total.total() > 0 {
            tracing::info!(?total, "pruned expired records");
        }
        Ok(total)
    }
}
