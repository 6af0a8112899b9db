//! Bounded growth: finished records past their retention, pruned in small batches on either
//! back-end (each query written once and compiled per back-end by `queries!`). Never a row that
//! work in progress needs: unfinished operations, pending deliveries, idempotency keys whose
//! request is in flight and runs in progress are never selected.

use chrono::{DateTime, Utc};

use super::{rows::ts, StoreError};

/// Records older than these are pruned (`None`: kept forever).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cutoffs {
    pub events: Option<DateTime<Utc>>,
    pub deliveries: Option<DateTime<Utc>>,
    pub operations: Option<DateTime<Utc>>,
    pub idempotency_keys: Option<DateTime<Utc>>,
    pub policy_runs: Option<DateTime<Utc>>,
}

/// How many records one pass pruned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneCounts {
    pub events: usize,
    pub deliveries: usize,
    pub operations: usize,
    pub idempotency_keys: usize,
    pub policy_runs: usize,
}

impl PruneCounts {
    /// Each table's count, by table name.
    pub fn by_table(&self) -> [(&'static str, usize); 5] {
        [
            ("events", self.events),
            ("deliveries", self.deliveries),
            ("operations", self.operations),
            ("idempotency_keys", self.idempotency_keys),
            ("policy_runs", self.policy_runs),
        ]
    }

    pub fn total(&self) -> usize {
        self.by_table().iter().map(|(_, n)| n).sum()
    }
}

impl std::ops::AddAssign for PruneCounts {
    fn add_assign(&mut self, other: Self) {
        self.events += other.events;
        self.deliveries += other.deliveries;
        self.operations += other.operations;
        self.idempotency_keys += other.idempotency_keys;
        self.policy_runs += other.policy_runs;
    }
}

/// Below this position, events may have been pruned.
const WATERMARK: &str = "events_pruned_through";

macro_rules! queries {
    ($db:ty) => {
        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// One batch of at most `batch` records per table, in the caller's transaction.
        pub async fn prune(
            conn: &mut Conn,
            cutoffs: Cutoffs,
            batch: u32,
        ) -> Result<PruneCounts, StoreError> {
            let batch = i64::from(batch);
            let mut pruned = PruneCounts::default();
            if let Some(cutoff) = cutoffs.events {
                pruned.events = prune_events(conn, ts(cutoff), batch).await?;
            }
            let statements: [(Option<DateTime<Utc>>, &str); 4] = [
                (
                    cutoffs.deliveries,
                    "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries \
                     WHERE state <> 'pending' AND created_at < $1 ORDER BY seq LIMIT $2)",
                ),
                (
                    cutoffs.operations,
                    "DELETE FROM operations WHERE (tenant, id) IN (SELECT tenant, id FROM \
                     operations WHERE state IN ('succeeded', 'failed') AND finished_at < $1 \
                     ORDER BY finished_at LIMIT $2)",
                ),
                (
                    cutoffs.idempotency_keys,
                    "DELETE FROM idempotency WHERE (tenant, key) IN (SELECT tenant, key FROM \
                     idempotency WHERE status IS NOT NULL AND created_at < $1 \
                     ORDER BY created_at LIMIT $2)",
                ),
                (
                    cutoffs.policy_runs,
                    "DELETE FROM policy_runs WHERE (tenant, policy_id, slot) IN (SELECT tenant, \
                     policy_id, slot FROM policy_runs WHERE state <> 'running' AND slot < $1 \
                     ORDER BY slot LIMIT $2)",
                ),
            ];
            let mut counts = [0usize; 4];
            for (i, (cutoff, sql)) in statements.into_iter().enumerate() {
                let Some(cutoff) = cutoff else { continue };
                counts[i] = sqlx::query(sql)
                    .bind(ts(cutoff))
                    .bind(batch)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected() as usize;
            }
            [
                pruned.deliveries,
                pruned.operations,
                pruned.idempotency_keys,
                pruned.policy_runs,
            ] = counts;
            Ok(pruned)
        }

        /// Prunes the oldest events before `cutoff` (in log order) and raises the watermark
        /// to the last position pruned.
        async fn prune_events(
            conn: &mut Conn,
            cutoff: String,
            batch: i64,
        ) -> Result<usize, StoreError> {
            let last: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(seq) FROM (SELECT seq FROM events WHERE created_at < $1 \
                 ORDER BY seq LIMIT $2) AS oldest",
            )
            .bind(&cutoff)
            .bind(batch)
            .fetch_one(&mut *conn)
            .await?;
            let Some(last) = last else { return Ok(0) };
            let done = sqlx::query("DELETE FROM events WHERE seq <= $1 AND created_at < $2")
                .bind(last)
                .bind(&cutoff)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) \
                 DO UPDATE SET value = CASE WHEN excluded.value > store_meta.value \
                 THEN excluded.value ELSE store_meta.value END",
            )
            .bind(WATERMARK)
            .bind(last)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() as usize)
        }

        /// The highest event position that may have been pruned (0: none).
        pub async fn events_pruned_through(conn: &mut Conn) -> Result<i64, StoreError> {
            let value: Option<i64> =
                sqlx::query_scalar("SELECT value FROM store_meta WHERE key = $1")
                    .bind(WATERMARK)
                    .fetch_optional(&mut *conn)
                    .await?;
            Ok(value.unwrap_or(0))
        }
    };
}

pub(super) mod sqlite {
    queries!(sqlx::Sqlite);
}

pub(super) mod postgres {
    queries!(sqlx::Postgres);
}
