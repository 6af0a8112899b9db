//! Operations and their reconciler claims, for both back-ends (each query written once and
//! compiled per back-end by `queries!`, as in [`super::webhooks`]).

use chrono::{DateTime, Utc};

use super::{
    rows::{bind_operation, ts, OperationRow, TenantOperationRow, OPERATION_COLUMNS as COLUMNS},
    OperationFilter, StoreError,
};
use crate::domain::Operation;

/// The advisory lock reconciler claims take turns on across PostgreSQL replicas ("sg-claim").
const CLAIM_LOCK: i64 = 0x7367_2d63_6c61_696d;

macro_rules! queries {
    ($db:ty, advisory_locks: $advisory:literal) => {
        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Writes an operation row; with `keep_existing` a row already there is kept (copies).
        pub async fn insert(
            conn: &mut Conn,
            tenant: String,
            row: OperationRow,
            keep_existing: bool,
        ) -> Result<usize, StoreError> {
            let conflict = if keep_existing { " ON CONFLICT DO NOTHING" } else { "" };
            let done = bind_operation(
                sqlx::query(&format!(
                    "INSERT INTO operations (tenant, {COLUMNS}) VALUES \
                     ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17){conflict}"
                )),
                tenant,
                row,
            )
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() as usize)
        }

        pub async fn get(
            conn: &mut Conn,
            tenant: &str,
            id: &str,
        ) -> Result<Option<Operation>, StoreError> {
            sqlx::query_as::<_, OperationRow>(&format!(
                "SELECT {COLUMNS} FROM operations WHERE tenant = $1 AND id = $2"
            ))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .map(OperationRow::into_operation)
            .transpose()
        }

        /// Rewrites an unfinished operation; false when it had finished already (a finished
        /// operation is never rewritten: a slower concurrent refresh must not undo it).
        pub async fn update(
            conn: &mut Conn,
            tenant: &str,
            r: OperationRow,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "UPDATE operations SET state = $1, snapshot_id = $2, result = $3, \
                 vendor_ref = $4, tracking = $5, error = $6, updated_at = $7, \
                 finished_at = $8, completion_note = $9, next_check_at = $10, checks = $11 \
                 WHERE tenant = $12 AND id = $13 AND state IN ('pending', 'running')",
            )
            .bind(r.state)
            .bind(r.snapshot_id)
            .bind(r.result)
            .bind(r.vendor_ref)
            .bind(r.tracking)
            .bind(r.error)
            .bind(r.updated_at)
            .bind(r.finished_at)
            .bind(r.completion_note)
            .bind(r.next_check_at)
            .bind(r.checks)
            .bind(tenant)
            .bind(r.id)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() > 0)
        }

        /// A tenant's operations, newest first (see [`super::super::Store::list_operations`]).
        pub async fn list(
            conn: &mut Conn,
            tenant: &str,
            filter: &OperationFilter,
        ) -> Result<Vec<Operation>, StoreError> {
            let mut sql = format!("SELECT {COLUMNS} FROM operations WHERE tenant = $1");
            let mut n = 1;
            let mut next = || {
                n += 1;
                format!("${n}")
            };
            if filter.account.is_some() {
                sql.push_str(&format!(" AND account = {}", next()));
            }
            if filter.snapshot_id.is_some() {
                sql.push_str(&format!(" AND snapshot_id = {}", next()));
            }
            if filter.unfinished_only {
                sql.push_str(" AND state IN ('pending', 'running')");
            }
            if filter.before.is_some() {
                let (at, id) = (next(), next());
                sql.push_str(&format!(
                    " AND (created_at < {at} OR (created_at = {at} AND id < {id}))"
                ));
            }
            sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT {}", next()));
            let mut q = sqlx::query_as::<_, OperationRow>(&sql).bind(tenant);
            if let Some(a) = &filter.account {
                q = q.bind(a.as_str());
            }
            if let Some(s) = &filter.snapshot_id {
                q = q.bind(s);
            }
            if let Some((at, id)) = &filter.before {
                q = q.bind(ts(*at)).bind(id);
            }
            let limit = if filter.limit == 0 { 100 } else { filter.limit };
            q.bind(i64::from(limit))
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(OperationRow::into_operation)
                .collect()
        }

        /// Every unfinished operation with its tenant (the in-memory index is built from it).
        pub async fn unfinished(conn: &mut Conn) -> Result<Vec<(String, Operation)>, StoreError> {
            let rows: Vec<TenantOperationRow> = sqlx::query_as(&format!(
                "SELECT tenant, {COLUMNS} FROM operations WHERE state IN ('pending', 'running')"
            ))
            .fetch_all(&mut *conn)
            .await?;
            rows.into_iter()
                .map(|r| Ok((r.tenant, r.row.into_operation()?)))
                .collect()
        }

        /// Every row, in a stable order (copies).
        pub async fn rows(conn: &mut Conn) -> Result<Vec<TenantOperationRow>, StoreError> {
            Ok(sqlx::query_as(&format!(
                "SELECT tenant, {COLUMNS} FROM operations ORDER BY tenant, created_at, id"
            ))
            .fetch_all(&mut *conn)
            .await?)
        }

        /// Claims due unfinished operations (see [`super::super::Store::claim_due`]), in the
        /// caller's transaction.
        pub async fn claim_due(
            conn: &mut Conn,
            now: DateTime<Utc>,
            lease_until: DateTime<Utc>,
            limit: u32,
            per_tenant: u32,
        ) -> Result<Vec<(String, Operation)>, StoreError> {
            if $advisory {
                // Claims take turns across replicas (to the end of the transaction), so the
                // busy count each sees is exact and no operation is claimed twice.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(CLAIM_LOCK)
                    .execute(&mut *conn)
                    .await?;
            }
            // Each tenant's due operations take turns (its first, then everyone's second, …),
            // and a tenant with `per_tenant` checks already claimed anywhere gets no more.
            // Each part reads its own partial index (due checks by time, live leases), never
            // every unfinished operation: a claim costs the same at 10,000 open operations as
            // at 100 (`bench/scale.sh`). SQLite would flatten the parts into one scan in key
            // order; `LIMIT -1` keeps each apart.
            let apart = if $advisory { "" } else { " LIMIT -1" };
            let rows: Vec<TenantOperationRow> = sqlx::query_as(&format!(
                "UPDATE operations SET lease_until = $1 WHERE (tenant, id) IN ( \
                     SELECT due.tenant, due.id FROM ( \
                         SELECT tenant, id, next_check_at, ROW_NUMBER() OVER ( \
                             PARTITION BY tenant \
                             ORDER BY next_check_at IS NOT NULL, next_check_at, id \
                         ) AS turn FROM ( \
                             SELECT tenant, id, next_check_at, lease_until FROM operations \
                             WHERE state IN ('pending', 'running') AND next_check_at <= $2 \
                             UNION ALL \
                             SELECT tenant, id, next_check_at, lease_until FROM operations \
                             WHERE state IN ('pending', 'running') AND next_check_at IS NULL \
                             {apart}) unfinished \
                         WHERE lease_until IS NULL OR lease_until < $2 \
                     ) due LEFT JOIN ( \
                         SELECT tenant, COUNT(*) AS busy FROM ( \
                             SELECT tenant FROM operations \
                             WHERE state IN ('pending', 'running') AND lease_until >= $2{apart} \
                         ) leased GROUP BY tenant \
                     ) held ON held.tenant = due.tenant \
                     WHERE due.turn + COALESCE(held.busy, 0) <= $4 \
                     ORDER BY due.turn, due.next_check_at IS NOT NULL, due.next_check_at \
                     LIMIT $3) \
                 AND state IN ('pending', 'running') \
                 RETURNING tenant, {COLUMNS}"
            ))
            .bind(ts(lease_until))
            .bind(ts(now))
            .bind(i64::from(limit))
            .bind(i64::from(per_tenant))
            .fetch_all(&mut *conn)
            .await?;
            rows.into_iter()
                .map(|r| Ok((r.tenant, r.row.into_operation()?)))
                .collect()
        }

        /// Schedules an unfinished operation's next check and releases its claim.
        pub async fn schedule_check(
            conn: &mut Conn,
            tenant: &str,
            id: &str,
            next_check_at: DateTime<Utc>,
            checks: u32,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE operations SET next_check_at = $1, checks = $2, lease_until = NULL \
                 WHERE tenant = $3 AND id = $4 AND state IN ('pending', 'running')",
            )
            .bind(ts(next_check_at))
            .bind(i64::from(checks))
            .bind(tenant)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Extends a claim still held on an unfinished operation.
        pub async fn renew_claim(
            conn: &mut Conn,
            tenant: &str,
            id: &str,
            lease_until: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "UPDATE operations SET lease_until = $1 \
                 WHERE tenant = $2 AND id = $3 AND lease_until IS NOT NULL \
                 AND state IN ('pending', 'running')",
            )
            .bind(ts(lease_until))
            .bind(tenant)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() > 0)
        }
    };
}

pub(super) mod sqlite {
    queries!(sqlx::Sqlite, advisory_locks: false);
}

pub(super) mod postgres {
    queries!(sqlx::Postgres, advisory_locks: true);
}
