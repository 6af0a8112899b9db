//! `snapgate store copy` into PostgreSQL: a dump written in one transaction.

use sqlx::PgPool;

use crate::store::{
    rows::{
        bind_account, bind_event, bind_operation, EventRow, IdempotencyRow, TenantOperationRow,
        ACCOUNT_COLUMNS, EVENT_COLUMNS, OPERATION_COLUMNS,
    },
    Counts, Dump, StoreError,
};

/// The advisory lock event writers take turns on ("sg-event").
const EVENTS_LOCK: i64 = 0x7367_2d65_7665_6e74;

/// Writes every record of a dump in one transaction, keeping records already here.
pub(super) async fn load(pool: &PgPool, dump: Dump) -> Result<Counts, StoreError> {
    let mut tx = pool.begin().await?;
    let mut written = Counts::default();
    for a in dump.accounts {
        written.accounts += bind_account(
            sqlx::query(&format!(
                "INSERT INTO accounts ({ACCOUNT_COLUMNS}) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) ON CONFLICT DO NOTHING"
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
                "INSERT INTO operations (tenant, {OPERATION_COLUMNS}) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) \
                 ON CONFLICT DO NOTHING"
            )),
            tenant,
            row,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected() as usize;
    }
    for k in dump.idempotency {
        let IdempotencyRow {
            tenant,
            key,
            fingerprint,
            status,
            body,
            created_at,
        } = k;
        written.idempotency_keys += sqlx::query(
            "INSERT INTO idempotency (tenant, key, fingerprint, status, body, created_at) \
             VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(key)
        .bind(fingerprint)
        .bind(status)
        .bind(body)
        .bind(created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected() as usize;
    }
    written.events += insert_events(&mut tx, &dump.events, true).await?;
    (written.webhooks, written.deliveries) =
        crate::store::webhooks::postgres::load(&mut tx, dump.webhooks, dump.deliveries).await?;
    tx.commit().await?;
    Ok(written)
}

/// Appends events (keeping ones already here when `keep_existing`, for copies); how many
/// were written.
pub(super) async fn insert_events(
    conn: &mut sqlx::PgConnection,
    events: &[EventRow],
    keep_existing: bool,
) -> Result<usize, StoreError> {
    let conflict = if keep_existing {
        " ON CONFLICT DO NOTHING"
    } else {
        ""
    };
    if events.is_empty() {
        return Ok(0);
    }
    // Event positions come from a sequence at insert but become visible at commit; were two
    // writers to commit out of order, a follower past position N would never see a late N-1.
    // So writers take turns from their first event to their commit (this is the transaction's
    // last step): positions become visible in the order they were given, and a cursor never
    // moves past a number that can still appear.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(EVENTS_LOCK)
        .execute(&mut *conn)
        .await?;
    let mut written = 0;
    for e in events {
        written += bind_event(
            sqlx::query(&format!(
                "INSERT INTO events ({EVENT_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6){conflict}"
            )),
            e,
        )
        .execute(&mut *conn)
        .await?
        .rows_affected() as usize;
    }
    if !keep_existing {
        crate::store::webhooks::postgres::enqueue(conn, events).await?;
    }
    Ok(written)
}
