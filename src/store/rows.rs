//! The stored form of records, shared by both back-ends: one row type per table, read with
//! `sqlx::FromRow` and written with one binder per table from SQLite or PostgreSQL, and the
//! text forms of timestamps, JSON and enums.

use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::{IdempotencyBegin, NewAccount, Sealed, StoreError};
use crate::domain::{Account, AccountHealth, Completion, Event, Operation, ProviderKind};

/// Timestamps as fixed-width RFC 3339 text (UTC, microseconds): they sort as text.
pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(super) fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp `{s}`: {e}")))
}

pub(super) fn json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A unit enum's wire name (`running`, `create`, …).
pub(super) fn enum_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn enum_from<T: serde::de::DeserializeOwned>(s: String, what: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(s))
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The columns of `accounts`, in table order.
pub(super) const ACCOUNT_COLUMNS: &str = "tenant, id, provider, display_name, settings, \
    credential_fields, credential_fingerprint, key_id, nonce, ciphertext, \
    credentials_updated_at, health, created_at, updated_at";

/// One `accounts` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AccountRow {
    pub tenant: String,
    pub id: String,
    pub provider: String,
    pub display_name: Option<String>,
    pub settings: String,
    pub credential_fields: String,
    pub credential_fingerprint: String,
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub credentials_updated_at: String,
    pub health: String,
    pub created_at: String,
    pub updated_at: String,
}

impl AccountRow {
    /// The account and its sealed credentials.
    pub fn into_parts(self) -> Result<(Account, Sealed), StoreError> {
        let account = Account {
            id: self
                .id
                .parse()
                .map_err(|e: crate::domain::AccountIdError| StoreError::Corrupt(e.to_string()))?,
            tenant: self.tenant,
            provider: ProviderKind::from_str(&self.provider)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            display_name: self.display_name,
            settings: json(&self.settings, "settings")?,
            credential_fields: json(&self.credential_fields, "credential_fields")?,
            credential_fingerprint: self.credential_fingerprint,
            credentials_updated_at: parse_ts(&self.credentials_updated_at)?,
            health: json(&self.health, "health")?,
            created_at: parse_ts(&self.created_at)?,
            updated_at: parse_ts(&self.updated_at)?,
        };
        let sealed = Sealed {
            key_id: self.key_id,
            nonce: self.nonce,
            ciphertext: self.ciphertext,
        };
        Ok((account, sealed))
    }
}

/// The columns of `operations` after `tenant`, in table order.
pub(super) const OPERATION_COLUMNS: &str =
    "id, account, provider, kind, state, snapshot_id, result, vendor_ref, tracking, \
    error, created_at, updated_at, finished_at, completion_note, next_check_at, checks";

/// One `operations` row as stored (its tenant aside).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct OperationRow {
    pub id: String,
    pub account: String,
    pub provider: String,
    pub kind: String,
    pub state: String,
    pub snapshot_id: Option<String>,
    pub result: Option<String>,
    pub vendor_ref: String,
    pub tracking: String,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    pub completion_note: Option<String>,
    pub next_check_at: Option<String>,
    pub checks: i64,
}

impl OperationRow {
    /// The row of an operation, to write.
    pub fn of(op: &Operation) -> Self {
        Self {
            id: op.id.clone(),
            account: op.account.to_string(),
            provider: op.provider.as_str().to_owned(),
            kind: op.kind.as_str().to_owned(),
            state: enum_text(&op.state),
            snapshot_id: op.snapshot_id.as_ref().map(ToString::to_string),
            result: op.result.as_ref().map(to_json),
            vendor_ref: to_json(&op.vendor_ref),
            tracking: to_json(&op.tracking),
            error: op.error.as_ref().map(to_json),
            created_at: ts(op.created_at),
            updated_at: ts(op.updated_at),
            finished_at: op.finished_at.map(ts),
            completion_note: op.completion_note.clone(),
            next_check_at: op.next_check_at.map(ts),
            checks: i64::from(op.checks),
        }
    }

    pub fn into_operation(self) -> Result<Operation, StoreError> {
        Ok(Operation {
            id: self.id,
            kind: enum_from(self.kind, "kind")?,
            state: enum_from(self.state, "state")?,
            account: self
                .account
                .parse()
                .map_err(|e: crate::domain::AccountIdError| StoreError::Corrupt(e.to_string()))?,
            provider: enum_from(self.provider, "provider")?,
            snapshot_id: self
                .snapshot_id
                .map(|s| s.parse::<crate::domain::SnapshotId>())
                .transpose()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            result: self.result.map(|s| json(&s, "result")).transpose()?,
            vendor_ref: json(&self.vendor_ref, "vendor_ref")?,
            tracking: json(&self.tracking, "tracking")?,
            error: self.error.map(|s| json(&s, "error")).transpose()?,
            created_at: parse_ts(&self.created_at)?,
            updated_at: parse_ts(&self.updated_at)?,
            finished_at: self.finished_at.map(|s| parse_ts(&s)).transpose()?,
            completion: Completion::of_note(self.completion_note.as_deref()),
            completion_note: self.completion_note,
            next_check_at: self.next_check_at.map(|s| parse_ts(&s)).transpose()?,
            checks: u32::try_from(self.checks).unwrap_or(u32::MAX),
        })
    }
}

/// One `operations` row with its tenant, for copies and index rebuilds.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct TenantOperationRow {
    pub tenant: String,
    #[sqlx(flatten)]
    pub row: OperationRow,
}

/// One `idempotency` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct IdempotencyRow {
    pub tenant: String,
    pub key: String,
    pub fingerprint: String,
    pub status: Option<i64>,
    pub body: Option<String>,
    pub created_at: String,
}

/// The columns of `events` written (its `seq` is the store's).
pub(super) const EVENT_COLUMNS: &str = "id, tenant, type, actor, created_at, data";

/// One `events` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct EventRow {
    pub seq: i64,
    pub id: String,
    pub tenant: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub actor: String,
    pub created_at: String,
    pub data: String,
}

impl EventRow {
    /// The row of an event, to write (`seq` is assigned by the store).
    pub fn of(tenant: &str, e: &Event) -> Self {
        Self {
            seq: 0,
            id: e.id.clone(),
            tenant: tenant.to_owned(),
            kind: e.kind.as_str().to_owned(),
            actor: e.actor.clone(),
            created_at: ts(e.created_at),
            data: to_json(&e.data),
        }
    }

    /// The event and its position in the log.
    pub fn into_event(self) -> Result<(i64, Event), StoreError> {
        Ok((
            self.seq,
            Event {
                id: self.id,
                kind: enum_from(self.kind, "type")?,
                created_at: parse_ts(&self.created_at)?,
                actor: self.actor,
                data: json(&self.data, "data")?,
            },
        ))
    }
}

/// A query, on either back-end, taking a row's values.
type Bound<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>;

/// Binds an `accounts` row, in [`ACCOUNT_COLUMNS`] order.
pub(super) fn bind_account<'q, DB>(q: Bound<'q, DB>, a: AccountRow) -> Bound<'q, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(a.tenant)
        .bind(a.id)
        .bind(a.provider)
        .bind(a.display_name)
        .bind(a.settings)
        .bind(a.credential_fields)
        .bind(a.credential_fingerprint)
        .bind(a.key_id)
        .bind(a.nonce)
        .bind(a.ciphertext)
        .bind(a.credentials_updated_at)
        .bind(a.health)
        .bind(a.created_at)
        .bind(a.updated_at)
}

/// Binds a tenant and an `operations` row, in `tenant, `[`OPERATION_COLUMNS`] order.
pub(super) fn bind_operation<'q, DB>(
    q: Bound<'q, DB>,
    tenant: String,
    r: OperationRow,
) -> Bound<'q, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(tenant)
        .bind(r.id)
        .bind(r.account)
        .bind(r.provider)
        .bind(r.kind)
        .bind(r.state)
        .bind(r.snapshot_id)
        .bind(r.result)
        .bind(r.vendor_ref)
        .bind(r.tracking)
        .bind(r.error)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.finished_at)
        .bind(r.completion_note)
        .bind(r.next_check_at)
        .bind(r.checks)
}

/// Binds an `events` row, in [`EVENT_COLUMNS`] order.
pub(super) fn bind_event<'q, DB>(q: Bound<'q, DB>, e: &EventRow) -> Bound<'q, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(e.id.clone())
        .bind(e.tenant.clone())
        .bind(e.kind.clone())
        .bind(e.actor.clone())
        .bind(e.created_at.clone())
        .bind(e.data.clone())
}

impl AccountRow {
    /// The row of a new account (healthy until checked).
    pub fn of_new(new: &NewAccount) -> Self {
        let now = ts(new.now);
        Self {
            tenant: new.tenant.clone(),
            id: new.id.to_string(),
            provider: new.provider.as_str().to_owned(),
            display_name: new.display_name.clone(),
            settings: to_json(&new.settings),
            credential_fields: to_json(&new.credentials.fields),
            credential_fingerprint: new.credentials.fingerprint.clone(),
            key_id: new.credentials.sealed.key_id.clone(),
            nonce: new.credentials.sealed.nonce.clone(),
            ciphertext: new.credentials.sealed.ciphertext.clone(),
            credentials_updated_at: now.clone(),
            health: to_json(&AccountHealth::default()),
            created_at: now.clone(),
            updated_at: now,
        }
    }
}

/// What an earlier use of an idempotency key left: its request's fingerprint and, once it
/// finished, its answer.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct KeyRow {
    pub fingerprint: String,
    pub status: Option<i64>,
    pub body: Option<String>,
}

impl KeyRow {
    /// What a request with `fingerprint` meets under a key already taken: the first answer,
    /// a refusal of another request, or the first request still in flight (also when the
    /// record vanished between the insert and this read: the caller retries).
    pub fn verdict(row: Option<KeyRow>, fingerprint: &str) -> IdempotencyBegin {
        let Some(row) = row else {
            return IdempotencyBegin::InFlight;
        };
        if row.fingerprint != fingerprint {
            return IdempotencyBegin::Mismatch;
        }
        match (row.status, row.body) {
            (Some(status), Some(body)) => IdempotencyBegin::Replay {
                status: u16::try_from(status).unwrap_or(500),
                body,
            },
            _ => IdempotencyBegin::InFlight,
        }
    }
}
