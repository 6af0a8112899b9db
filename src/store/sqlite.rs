//! The embedded SQLite back-end (WAL mode, migrations applied on open).

use std::{path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    SqlitePool,
};

use super::{
    pending::Pending,
    rows::{bind_account, to_json, ts, AccountRow, EventRow, ACCOUNT_COLUMNS},
    sqlite_ops,
    webhooks::{self, Claimed},
    AccountPatch, Counts, Dump, IdempotencyBegin, NewAccount, OperationFilter, Sealed, Store,
    StoreError,
};
use crate::domain::{
    Account, AccountHealth, AccountId, Delivery, Event, EventType, Operation, OperationKind,
    Webhook,
};
use crate::private_files;

/// SQLite-backed [`Store`].
///
/// An embedded database has one writer process, so the set of unfinished operations is
/// mirrored in memory (loaded on open, kept on every write) and a snapshot get needs no query
/// to learn whether an operation is pending on it.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    pending: Pending,
    /// This process's writers, one at a time in arrival order. SQLite has one writer anyway;
    /// left to its busy handler, waiting writers retry at random and one can lose for
    /// seconds under a steady stream of others (a `503 store_unavailable` at its 5 s busy
    /// timeout). The busy timeout remains for other processes (`store copy`).
    write: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at a path or `sqlite://` URL.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let path = super::sqlite_path(url);
        if path != ":memory:" {
            let file = Path::new(path);
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                private_files::create_dir_all(dir).map_err(|e| StoreError::Database(e.into()))?;
            }
            // SQLite gives `-wal` and `-shm` the database file's mode: 0600 for all three.
            private_files::ensure_private(file).map_err(|e| StoreError::Database(e.into()))?;
            for suffix in ["-wal", "-shm"] {
                let mut side = file.as_os_str().to_owned();
                side.push(suffix);
                private_files::narrow(Path::new(&side))
                    .map_err(|e| StoreError::Database(e.into()))?;
            }
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let store = Self {
            pool,
            pending: Default::default(),
            write: Default::default(),
        };
        store
            .pending
            .replace(sqlite_ops::list_unfinished(&store.pool).await?);
        Ok(store)
    }

    /// The pool, for back-end specific tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_account(&self, new: NewAccount) -> Result<Account, StoreError> {
        let _write = self.write.lock().await;
        let result = bind_account(
            sqlx::query(&format!(
                "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            )),
            AccountRow::of_new(&new),
        )
        .execute(&self.pool)
        .await;
        match result {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
            Ok(_) => self
                .get_account(&new.tenant, &new.id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("inserted account vanished".into())),
        }
    }

    async fn get_account(
        &self,
        tenant: &str,
        id: &AccountId,
    ) -> Result<Option<Account>, StoreError> {
        Ok(self.get_account_sealed(tenant, id).await?.map(|(a, _)| a))
    }

    async fn get_account_sealed(
        &self,
        tenant: &str,
        id: &AccountId,
    ) -> Result<Option<(Account, Sealed)>, StoreError> {
        let row: Option<AccountRow> = sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = ? AND id = ?"
        ))
        .bind(tenant)
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(AccountRow::into_parts).transpose()
    }

    async fn list_accounts(&self, tenant: &str) -> Result<Vec<Account>, StoreError> {
        let rows: Vec<AccountRow> = sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = ? ORDER BY id"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| r.into_parts().map(|(account, _)| account))
            .collect()
    }

    async fn update_account(
        &self,
        tenant: &str,
        id: &AccountId,
        patch: AccountPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Account>, StoreError> {
        let _write = self.write.lock().await;
        // IMMEDIATE: take the write lock before reading. A deferred transaction that reads and
        // then writes fails at once ("database is locked") when another writer went first,
        // which the busy timeout cannot wait out.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let exists = sqlx::query("SELECT 1 FROM accounts WHERE tenant = ? AND id = ?")
            .bind(tenant)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let now = ts(now);
        if let Some(name) = &patch.display_name {
            sqlx::query("UPDATE accounts SET display_name = ? WHERE tenant = ? AND id = ?")
                .bind(name)
                .bind(tenant)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(settings) = &patch.settings {
            sqlx::query("UPDATE accounts SET settings = ? WHERE tenant = ? AND id = ?")
                .bind(to_json(settings))
                .bind(tenant)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(c) = &patch.credentials {
            sqlx::query(
                "UPDATE accounts SET credential_fields = ?, credential_fingerprint = ?, key_id = ?, \
                 nonce = ?, ciphertext = ?, credentials_updated_at = ?, health = ? \
                 WHERE tenant = ? AND id = ?",
            )
            .bind(to_json(&c.fields))
            .bind(&c.fingerprint)
            .bind(&c.sealed.key_id)
            .bind(&c.sealed.nonce)
            .bind(&c.sealed.ciphertext)
            .bind(&now)
            .bind(to_json(&AccountHealth::default()))
            .bind(tenant)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE accounts SET updated_at = ? WHERE tenant = ? AND id = ?")
            .bind(&now)
            .bind(tenant)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.get_account(tenant, id).await
    }

    async fn delete_account(&self, tenant: &str, id: &AccountId) -> Result<bool, StoreError> {
        let _write = self.write.lock().await;
        let done = sqlx::query("DELETE FROM accounts WHERE tenant = ? AND id = ?")
            .bind(tenant)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_health(
        &self,
        tenant: &str,
        id: &AccountId,
        health: &AccountHealth,
    ) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        sqlx::query("UPDATE accounts SET health = ? WHERE tenant = ? AND id = ?")
            .bind(to_json(health))
            .bind(tenant)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_operation(
        &self,
        tenant: &str,
        op: &Operation,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlite_ops::insert(&mut tx, tenant, op).await?;
        let events: Vec<EventRow> = events.iter().map(|e| EventRow::of(tenant, e)).collect();
        sqlite_ops::insert_events(&mut tx, &events, false).await?;
        tx.commit().await?;
        self.pending.set(tenant, op);
        Ok(())
    }

    async fn append_events(&self, tenant: &str, events: &[Event]) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let events: Vec<EventRow> = events.iter().map(|e| EventRow::of(tenant, e)).collect();
        sqlite_ops::insert_events(&mut tx, &events, false).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_events(
        &self,
        tenant: &str,
        after: i64,
        types: &[EventType],
        limit: u32,
    ) -> Result<Vec<(i64, Event)>, StoreError> {
        let types: Vec<String> = types.iter().map(|t| t.as_str().to_owned()).collect();
        sqlite_ops::list_events(&self.pool, tenant, after, &types, limit)
            .await?
            .into_iter()
            .map(EventRow::into_event)
            .collect()
    }

    async fn has_unfinished_operation(
        &self,
        tenant: &str,
        snapshot_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.pending.targets(tenant, snapshot_id))
    }

    async fn pending_snapshots(
        &self,
        tenant: &str,
    ) -> Result<std::collections::HashMap<String, OperationKind>, StoreError> {
        Ok(self.pending.of_tenant(tenant))
    }

    async fn get_operation(&self, tenant: &str, id: &str) -> Result<Option<Operation>, StoreError> {
        sqlite_ops::get(&self.pool, tenant, id).await
    }

    async fn update_operation(
        &self,
        tenant: &str,
        op: &Operation,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let updated = sqlite_ops::update(&mut tx, tenant, op).await?;
        if updated {
            let events: Vec<EventRow> = events.iter().map(|e| EventRow::of(tenant, e)).collect();
            sqlite_ops::insert_events(&mut tx, &events, false).await?;
        }
        tx.commit().await?;
        if updated {
            self.pending.set(tenant, op);
        }
        Ok(updated)
    }

    async fn list_operations(
        &self,
        tenant: &str,
        filter: &OperationFilter,
    ) -> Result<Vec<Operation>, StoreError> {
        sqlite_ops::list(&self.pool, tenant, filter).await
    }

    async fn begin_idempotent(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<IdempotencyBegin, StoreError> {
        let _write = self.write.lock().await;
        sqlite_ops::begin_idempotent(&self.pool, tenant, key, fingerprint, now, lease).await
    }

    async fn renew_idempotent(
        &self,
        tenant: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        sqlx::query(
            "UPDATE idempotency SET created_at = ? WHERE tenant = ? AND key = ? AND status IS NULL",
        )
        .bind(ts(now))
        .bind(tenant)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn finish_idempotent(
        &self,
        tenant: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        sqlite_ops::finish_idempotent(&self.pool, tenant, key, status, body).await
    }

    async fn abandon_idempotent(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        sqlite_ops::abandon_idempotent(&self.pool, tenant, key).await
    }

    async fn insert_webhook(&self, webhook: &Webhook, secrets: &Sealed) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        let mut conn = self.pool.acquire().await?;
        webhooks::sqlite::insert_webhook(&mut conn, webhooks::WebhookRow::of(webhook, secrets))
            .await
    }

    async fn get_webhook(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Webhook, Sealed)>, StoreError> {
        webhooks::sqlite::get_webhook(&mut *self.pool.acquire().await?, tenant, id).await
    }

    async fn list_webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError> {
        webhooks::sqlite::list_webhooks(&mut *self.pool.acquire().await?, tenant).await
    }

    async fn backlog(&self) -> Result<super::Backlog, StoreError> {
        webhooks::sqlite::backlog(&mut *self.pool.acquire().await?).await
    }

    async fn update_webhook(
        &self,
        webhook: &Webhook,
        secrets: Option<&Sealed>,
    ) -> Result<bool, StoreError> {
        let _write = self.write.lock().await;
        webhooks::sqlite::update_webhook(&mut *self.pool.acquire().await?, webhook, secrets).await
    }

    async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let deleted = webhooks::sqlite::delete_webhook(&mut tx, tenant, id).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn insert_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        webhooks::sqlite::insert_delivery(&mut *self.pool.acquire().await?, delivery).await
    }

    async fn list_deliveries(
        &self,
        tenant: &str,
        webhook_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, Delivery)>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        webhooks::sqlite::list_deliveries(&mut conn, tenant, webhook_id, before, limit).await
    }

    async fn get_delivery(
        &self,
        tenant: &str,
        webhook_id: &str,
        id: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        webhooks::sqlite::get_delivery(&mut conn, tenant, webhook_id, id).await
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
        per_tenant: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        let _write = self.write.lock().await;
        // One writer at a time: no other claim runs beside this one.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let claimed =
            webhooks::sqlite::claim(&mut tx, now, lease_until, limit, per_endpoint, per_tenant)
                .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        token: &str,
        disable: Option<&str>,
    ) -> Result<bool, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let held = webhooks::sqlite::finish(&mut tx, delivery, token, disable).await?;
        tx.commit().await?;
        Ok(held)
    }

    async fn sealed_webhook_secrets(&self) -> Result<Vec<(String, String, Sealed)>, StoreError> {
        webhooks::sqlite::sealed_secrets(&mut *self.pool.acquire().await?).await
    }

    async fn reseal_webhook(
        &self,
        tenant: &str,
        id: &str,
        from_key_id: &str,
        sealed: &Sealed,
    ) -> Result<bool, StoreError> {
        let _write = self.write.lock().await;
        let mut conn = self.pool.acquire().await?;
        webhooks::sqlite::reseal(&mut conn, tenant, id, from_key_id, sealed).await
    }

    async fn sealed_credentials(&self) -> Result<Vec<(String, AccountId, Sealed)>, StoreError> {
        let rows: Vec<AccountRow> = sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY tenant, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let tenant = r.tenant.clone();
                r.into_parts().map(|(a, sealed)| (tenant, a.id, sealed))
            })
            .collect()
    }

    async fn reseal(
        &self,
        tenant: &str,
        id: &AccountId,
        from_key_id: &str,
        sealed: &Sealed,
    ) -> Result<bool, StoreError> {
        let _write = self.write.lock().await;
        let done = sqlx::query(
            "UPDATE accounts SET key_id = ?, nonce = ?, ciphertext = ? \
             WHERE tenant = ? AND id = ? AND key_id = ?",
        )
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(tenant)
        .bind(id.as_str())
        .bind(from_key_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_tenant: u32,
    ) -> Result<Vec<(String, Operation)>, StoreError> {
        let _write = self.write.lock().await;
        sqlite_ops::claim_due(&self.pool, now, lease_until, limit, per_tenant).await
    }

    async fn schedule_check(
        &self,
        tenant: &str,
        id: &str,
        next_check_at: DateTime<Utc>,
        checks: u32,
    ) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        sqlite_ops::schedule_check(&self.pool, tenant, id, next_check_at, checks).await
    }

    async fn announce_keys(
        &self,
        replica: &str,
        key_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        sqlite_ops::announce_keys(&self.pool, replica, key_ids, now).await
    }

    async fn retire_replica(&self, replica: &str) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        sqlx::query("DELETE FROM replica_keys WHERE replica = ?")
            .bind(replica)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn announced_keys(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        sqlite_ops::announced_keys(&self.pool, since).await
    }

    async fn stored_key_ids(&self) -> Result<Vec<String>, StoreError> {
        sqlite_ops::stored_key_ids(&self.pool).await
    }

    async fn renew_claim(
        &self,
        tenant: &str,
        id: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _write = self.write.lock().await;
        sqlite_ops::renew_claim(&self.pool, tenant, id, lease_until).await
    }

    fn operation_changes(&self) -> tokio::sync::broadcast::Receiver<(String, String)> {
        self.pending.subscribe()
    }

    async fn dump(&self) -> Result<Dump, StoreError> {
        sqlite_ops::dump(&self.pool).await
    }

    async fn load(&self, dump: Dump) -> Result<Counts, StoreError> {
        let _write = self.write.lock().await;
        let written = sqlite_ops::load(&self.pool, dump).await?;
        self.pending
            .replace(sqlite_ops::list_unfinished(&self.pool).await?);
        Ok(written)
    }
}
