//! SQLite queries for operations and idempotency records.

use chrono::{DateTime, Utc};
use sqlx::{sqlite::SqliteRow, Row, SqlitePool};

use super::{
    sqlite::{json, parse_ts, to_json, ts},
    IdempotencyBegin, OperationFilter, StoreError,
};
use crate::domain::{Completion, Operation};

const COLUMNS: &str =
    "id, account, provider, kind, state, snapshot_id, result, vendor_ref, tracking, \
    error, created_at, updated_at, finished_at, completion_note";

fn enum_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn enum_from<T: serde::de::DeserializeOwned>(s: String, what: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(s))
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn opt_json(s: Option<String>, what: &str) -> Result<Option<serde_json::Value>, StoreError> {
    s.map(|s| json(&s, what)).transpose()
}

fn from_row(row: &SqliteRow) -> Result<Operation, StoreError> {
    let account: String = row.try_get("account")?;
    let note: Option<String> = row.try_get("completion_note")?;
    Ok(Operation {
        id: row.try_get("id")?,
        kind: enum_from(row.try_get("kind")?, "kind")?,
        state: enum_from(row.try_get("state")?, "state")?,
        account: account
            .parse()
            .map_err(|e: crate::domain::AccountIdError| StoreError::Corrupt(e.to_string()))?,
        provider: enum_from(row.try_get("provider")?, "provider")?,
        snapshot_id: row
            .try_get::<Option<String>, _>("snapshot_id")?
            .map(|s| s.parse::<crate::domain::SnapshotId>())
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        result: opt_json(row.try_get("result")?, "result")?,
        vendor_ref: json(row.try_get("vendor_ref")?, "vendor_ref")?,
        tracking: json(row.try_get("tracking")?, "tracking")?,
        error: opt_json(row.try_get("error")?, "error")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("error: {e}")))?,
        created_at: parse_ts(row.try_get("created_at")?)?,
        updated_at: parse_ts(row.try_get("updated_at")?)?,
        finished_at: row
            .try_get::<Option<String>, _>("finished_at")?
            .map(|s| parse_ts(&s))
            .transpose()?,
        completion: Completion::of_note(note.as_deref()),
        completion_note: note,
    })
}

pub async fn insert(pool: &SqlitePool, tenant: &str, op: &Operation) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO operations (tenant, {COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    ))
    .bind(tenant)
    .bind(&op.id)
    .bind(op.account.as_str())
    .bind(op.provider.as_str())
    .bind(op.kind.as_str())
    .bind(enum_text(&op.state))
    .bind(op.snapshot_id.as_ref().map(ToString::to_string))
    .bind(op.result.as_ref().map(to_json))
    .bind(to_json(&op.vendor_ref))
    .bind(to_json(&op.tracking))
    .bind(op.error.as_ref().map(to_json))
    .bind(ts(op.created_at))
    .bind(ts(op.updated_at))
    .bind(op.finished_at.map(ts))
    .bind(&op.completion_note)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get(
    pool: &SqlitePool,
    tenant: &str,
    id: &str,
) -> Result<Option<Operation>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM operations WHERE tenant = ? AND id = ?"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn update(pool: &SqlitePool, tenant: &str, op: &Operation) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE operations SET state = ?, snapshot_id = ?, result = ?, vendor_ref = ?, tracking = ?, \
         error = ?, updated_at = ?, finished_at = ?, completion_note = ? \
         WHERE tenant = ? AND id = ? AND state IN ('pending', 'running')",
    )
    .bind(enum_text(&op.state))
    .bind(op.snapshot_id.as_ref().map(ToString::to_string))
    .bind(op.result.as_ref().map(to_json))
    .bind(to_json(&op.vendor_ref))
    .bind(to_json(&op.tracking))
    .bind(op.error.as_ref().map(to_json))
    .bind(ts(op.updated_at))
    .bind(op.finished_at.map(ts))
    .bind(&op.completion_note)
    .bind(tenant)
    .bind(&op.id)
    .execute(pool)
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
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
    let mut q = sqlx::query(&sql).bind(tenant);
    if let Some(a) = &filter.account {
        q = q.bind(a.as_str());
    }
    if let Some(s) = &filter.snapshot_id {
        q = q.bind(s);
    }
    let limit = if filter.limit == 0 { 100 } else { filter.limit };
    let rows = q.bind(i64::from(limit)).fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
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
    let row = sqlx::query(
        "SELECT fingerprint, status, body FROM idempotency WHERE tenant = ? AND key = ?",
    )
    .bind(tenant)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        // Abandoned between our insert and select: treat as in flight; the caller retries.
        return Ok(IdempotencyBegin::InFlight);
    };
    let stored: String = row.try_get("fingerprint")?;
    if stored != fingerprint {
        return Ok(IdempotencyBegin::Mismatch);
    }
    let status: Option<i64> = row.try_get("status")?;
    let body: Option<String> = row.try_get("body")?;
    Ok(match (status, body) {
        (Some(status), Some(body)) => IdempotencyBegin::Replay {
            status: u16::try_from(status).unwrap_or(500),
            body,
        },
        _ => IdempotencyBegin::InFlight,
    })
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
    let rows = sqlx::query(&format!(
        "SELECT tenant, {COLUMNS} FROM operations WHERE state IN ('pending', 'running')"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("tenant")?, from_row(r)?)))
        .collect()
}
