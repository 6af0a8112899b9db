//! SQLite queries for operations and idempotency records.

use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqlitePool};

use super::{
    rows::{
        bind_account, bind_event, bind_operation, ts, EventRow, KeyRow, OperationRow,
        TenantOperationRow, ACCOUNT_COLUMNS, EVENT_COLUMNS, OPERATION_COLUMNS as COLUMNS,
    },
    Counts, Dump, IdempotencyBegin, OperationFilter, StoreError,
};
use crate::domain::Operation;

pub async fn insert(
    conn: &mut SqliteConnection,
    tenant: &str,
    op: &Operation,
) -> Result<(), StoreError> {
    bind_operation(
        sqlx::query(&format!(
            "INSERT INTO operations (tenant, {COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        )),
        tenant.to_owned(),
        OperationRow::of(op),
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(
    pool: &SqlitePool,
    tenant: &str,
    id: &str,
) -> Result<Option<Operation>, StoreError> {
    let row: Option<OperationRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM operations WHERE tenant = ? AND id = ?"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(OperationRow::into_operation).transpose()
}

pub async fn update(
    conn: &mut SqliteConnection,
    tenant: &str,
    op: &Operation,
) -> Result<bool, StoreError> {
    let r = OperationRow::of(op);
    let done = sqlx::query(
        "UPDATE operations SET state = ?, snapshot_id = ?, result = ?, vendor_ref = ?, tracking = ?, \
         error = ?, updated_at = ?, finished_at = ?, completion_note = ?, next_check_at = ?, \
         checks = ? WHERE tenant = ? AND id = ? AND state IN ('pending', 'running')",
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
    .bind(&op.id)
    .execute(conn)
    .await?;
    // A finished operation is never rewritten (a slower concurrent refresh must not undo it).
    Ok(done.rows_affected() > 0)
}

pub async fn list(
    pool: &SqlitePool,
    tenant: &str,
    filter: &OperationFilter,
) -> Result<Vec<Operation>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM operations WHERE tenant = ?");
    if filter.account.is_some() {
        sql.push_str(" AND account = ?");
    }
    if filter.snapshot_id.is_some() {
        sql.push_str(" AND snapshot_id = ?");
    }
    if filter.unfinished_only {
        sql.push_str(" AND state IN ('pending', 'running')");
    }
    if filter.before.is_some() {
        sql.push_str(" AND (created_at < ? OR (created_at = ? AND id < ?))");
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
    let mut q = sqlx::query_as::<_, OperationRow>(&sql).bind(tenant);
    if let Some(a) = &filter.account {
        q = q.bind(a.as_str());
    }
    if let Some(s) = &filter.snapshot_id {
        q = q.bind(s);
    }
    if let Some((at, id)) = &filter.before {
        q = q
            .bind(super::rows::ts(*at))
            .bind(super::rows::ts(*at))
            .bind(id);
    }
    let limit = if filter.limit == 0 { 100 } else { filter.limit };
    let rows = q.bind(i64::from(limit)).fetch_all(pool).await?;
    rows.into_iter().map(OperationRow::into_operation).collect()
}

pub async fn begin_idempotent(
    pool: &SqlitePool,
    tenant: &str,
    key: &str,
    fingerprint: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
) -> Result<IdempotencyBegin, StoreError> {
    // An in-flight record older than its lease belongs to a request that died (crash, dropped
    // connection, deadline): hand the key to this request instead of answering 409 forever.
    let expired = now - chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
    sqlx::query(
        "DELETE FROM idempotency WHERE tenant = ? AND key = ? AND status IS NULL AND created_at < ?",
    )
    .bind(tenant)
    .bind(key)
    .bind(ts(expired))
    .execute(pool)
    .await?;
    // INSERT OR IGNORE makes "first use wins" atomic across concurrent requests.
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO idempotency (tenant, key, fingerprint, created_at) VALUES (?,?,?,?)",
    )
    .bind(tenant)
    .bind(key)
    .bind(fingerprint)
    .bind(ts(now))
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(IdempotencyBegin::Started);
    }
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT fingerprint, status, body FROM idempotency WHERE tenant = ? AND key = ?",
    )
    .bind(tenant)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(KeyRow::verdict(row, fingerprint))
}

pub async fn finish_idempotent(
    pool: &SqlitePool,
    tenant: &str,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE idempotency SET status = ?, body = ? WHERE tenant = ? AND key = ?")
        .bind(i64::from(status))
        .bind(body)
        .bind(tenant)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn abandon_idempotent(
    pool: &SqlitePool,
    tenant: &str,
    key: &str,
) -> Result<(), StoreError> {
    // Also when an intent already answered for the key: the refusal it ended in changed nothing.
    sqlx::query("DELETE FROM idempotency WHERE tenant = ? AND key = ?")
        .bind(tenant)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Every unfinished operation with its tenant (to rebuild the in-memory index on open).
pub async fn list_unfinished(pool: &SqlitePool) -> Result<Vec<(String, Operation)>, StoreError> {
    let rows: Vec<TenantOperationRow> = sqlx::query_as(&format!(
        "SELECT tenant, {COLUMNS} FROM operations WHERE state IN ('pending', 'running')"
    ))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| Ok((r.tenant, r.row.into_operation()?)))
        .collect()
}

/// Every record, as stored.
pub async fn dump(pool: &SqlitePool) -> Result<Dump, StoreError> {
    let (webhooks, deliveries) = super::webhooks::sqlite::dump(&mut *pool.acquire().await?).await?;
    Ok(Dump {
        webhooks,
        deliveries,
        accounts: sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY tenant, id"
        ))
        .fetch_all(pool)
        .await?,
        operations: sqlx::query_as(&format!(
            "SELECT tenant, {COLUMNS} FROM operations ORDER BY tenant, created_at, id"
        ))
        .fetch_all(pool)
        .await?,
        idempotency: sqlx::query_as(
            "SELECT tenant, key, fingerprint, status, body, created_at FROM idempotency \
             ORDER BY tenant, key",
        )
        .fetch_all(pool)
        .await?,
        events: sqlx::query_as(&format!(
            "SELECT seq, {EVENT_COLUMNS} FROM events ORDER BY seq"
        ))
        .fetch_all(pool)
        .await?,
    })
}

/// Writes every record of a dump in one transaction, keeping records already here.
pub async fn load(pool: &SqlitePool, dump: Dump) -> Result<Counts, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut written = Counts::default();
    for a in dump.accounts {
        written.accounts += bind_account(
            sqlx::query(&format!(
                "INSERT OR IGNORE INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            )),
            a,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected() as usize;
    }
    for TenantOperationRow { tenant, row } in dump.operations {
        written.operations += bind_operation(
            sqlx::query(&format!(
                "INSERT OR IGNORE INTO operations (tenant, {COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            )),
            tenant,
            row,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected() as usize;
    }
    for k in dump.idempotency {
        written.idempotency_keys += sqlx::query(
            "INSERT OR IGNORE INTO idempotency (tenant, key, fingerprint, status, body, created_at) \
             VALUES (?,?,?,?,?,?)",
        )
        .bind(k.tenant)
        .bind(k.key)
        .bind(k.fingerprint)
        .bind(k.status)
        .bind(k.body)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected() as usize;
    }
    let events: Vec<EventRow> = dump.events;
    written.events += insert_events(&mut tx, &events, true).await?;
    (written.webhooks, written.deliveries) =
        super::webhooks::sqlite::load(&mut tx, dump.webhooks, dump.deliveries).await?;
    tx.commit().await?;
    Ok(written)
}

/// Appends events (keeping ones already here when `keep_existing`, for copies); how many
/// were written.
pub async fn insert_events(
    conn: &mut SqliteConnection,
    events: &[EventRow],
    keep_existing: bool,
) -> Result<usize, StoreError> {
    let verb = if keep_existing {
        "INSERT OR IGNORE"
    } else {
        "INSERT"
    };
    let mut written = 0;
    for e in events {
        written += bind_event(
            sqlx::query(&format!(
                "{verb} INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?)"
            )),
            e,
        )
        .execute(&mut *conn)
        .await?
        .rows_affected() as usize;
    }
    if !keep_existing {
        super::webhooks::sqlite::enqueue(conn, events).await?;
    }
    Ok(written)
}

/// A tenant's events after a position (see [`super::Store::list_events`]).
pub async fn list_events(
    pool: &SqlitePool,
    tenant: &str,
    after: i64,
    types: &[String],
    limit: u32,
) -> Result<Vec<EventRow>, StoreError> {
    let mut sql = format!("SELECT seq, {EVENT_COLUMNS} FROM events WHERE tenant = ? AND seq > ?");
    if !types.is_empty() {
        sql.push_str(&format!(
            " AND type IN ({})",
            vec!["?"; types.len()].join(",")
        ));
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    let mut q = sqlx::query_as::<_, EventRow>(&sql).bind(tenant).bind(after);
    for t in types {
        q = q.bind(t);
    }
    Ok(q.bind(i64::from(limit)).fetch_all(pool).await?)
}

/// Claims due unfinished operations (see [`super::Store::claim_due`]).
pub async fn claim_due(
    pool: &SqlitePool,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
    per_tenant: u32,
) -> Result<Vec<(String, Operation)>, StoreError> {
    let now = ts(now);
    // Each tenant's due operations take turns (its first, then everyone's second, …), and a
    // tenant with `per_tenant` checks already claimed anywhere gets no more this time.
    let rows: Vec<TenantOperationRow> = sqlx::query_as(&format!(
        "UPDATE operations SET lease_until = ? WHERE rowid IN ( \
             SELECT due.rid FROM ( \
                 SELECT rowid AS rid, tenant, next_check_at, ROW_NUMBER() OVER ( \
                     PARTITION BY tenant ORDER BY next_check_at IS NOT NULL, next_check_at, id \
                 ) AS turn FROM operations WHERE state IN ('pending', 'running') \
                 AND (next_check_at IS NULL OR next_check_at <= ?) \
                 AND (lease_until IS NULL OR lease_until < ?) \
             ) due LEFT JOIN ( \
                 SELECT tenant, COUNT(*) AS busy FROM operations \
                 WHERE state IN ('pending', 'running') AND lease_until >= ? GROUP BY tenant \
             ) held ON held.tenant = due.tenant \
             WHERE due.turn + COALESCE(held.busy, 0) <= ? \
             ORDER BY due.turn, due.next_check_at IS NOT NULL, due.next_check_at LIMIT ?) \
         RETURNING tenant, {COLUMNS}"
    ))
    .bind(ts(lease_until))
    .bind(&now)
    .bind(&now)
    .bind(&now)
    .bind(i64::from(per_tenant))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| Ok((r.tenant, r.row.into_operation()?)))
        .collect()
}

/// Schedules an unfinished operation's next check and releases its claim.
pub async fn schedule_check(
    pool: &SqlitePool,
    tenant: &str,
    id: &str,
    next_check_at: DateTime<Utc>,
    checks: u32,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE operations SET next_check_at = ?, checks = ?, lease_until = NULL \
         WHERE tenant = ? AND id = ? AND state IN ('pending', 'running')",
    )
    .bind(ts(next_check_at))
    .bind(i64::from(checks))
    .bind(tenant)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Extends a claim still held on an unfinished operation.
pub async fn renew_claim(
    pool: &SqlitePool,
    tenant: &str,
    id: &str,
    lease_until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE operations SET lease_until = ? \
         WHERE tenant = ? AND id = ? AND lease_until IS NOT NULL \
         AND state IN ('pending', 'running')",
    )
    .bind(ts(lease_until))
    .bind(tenant)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Records the keys a process holds now.
pub async fn announce_keys(
    pool: &SqlitePool,
    replica: &str,
    key_ids: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for key in key_ids {
        sqlx::query(
            "INSERT INTO replica_keys (replica, key_id, seen_at) VALUES (?, ?, ?) \
             ON CONFLICT (replica, key_id) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(replica)
        .bind(key)
        .bind(ts(now))
        .execute(pool)
        .await?;
    }
    sqlx::query("DELETE FROM replica_keys WHERE seen_at < ?")
        .bind(ts(now - chrono::TimeDelta::hours(1)))
        .execute(pool)
        .await?;
    Ok(())
}

/// The keys announced since `since`.
pub async fn announced_keys(
    pool: &SqlitePool,
    since: DateTime<Utc>,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT replica, key_id FROM replica_keys WHERE seen_at >= ?")
            .bind(ts(since))
            .fetch_all(pool)
            .await?,
    )
}

/// The keys the stored records are sealed under.
pub async fn stored_key_ids(pool: &SqlitePool) -> Result<Vec<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT key_id FROM accounts UNION SELECT key_id FROM webhooks")
            .fetch_all(pool)
            .await?,
    )
}
