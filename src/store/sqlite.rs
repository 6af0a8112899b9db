//! The embedded SQLite back-end (WAL mode, migrations applied on open).

use std::{path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
    Row, SqlitePool,
};

use super::{
    sqlite_ops, AccountPatch, IdempotencyBegin, NewAccount, OperationFilter, Sealed, Store,
    StoreError,
};
use crate::domain::{Account, AccountHealth, AccountId, Operation, OperationKind, ProviderKind};
use crate::private_files;

/// SQLite-backed [`Store`].
///
/// An embedded database has one writer process, so the set of unfinished operations is
/// mirrored in memory (loaded on open, kept on every write) and a snapshot get needs no query
/// to learn whether an operation is pending on it.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    pending: std::sync::Arc<std::sync::Mutex<PendingIndex>>,
}

/// Unfinished operations: op → (snapshot, kind), and snapshot → number of such ops.
#[derive(Debug, Default)]
struct PendingIndex {
    by_op: std::collections::HashMap<(String, String), (String, OperationKind)>,
    by_snapshot: std::collections::HashMap<(String, String), usize>,
}

impl PendingIndex {
    fn set(&mut self, tenant: &str, op: &Operation) {
        let key = (tenant.to_owned(), op.id.clone());
        if let Some((old, _)) = self.by_op.remove(&key) {
            let k = (tenant.to_owned(), old);
            if let Some(n) = self.by_snapshot.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    self.by_snapshot.remove(&k);
                }
            }
        }
        if let (false, Some(snapshot)) = (op.state.is_terminal(), &op.snapshot_id) {
            let snapshot = snapshot.to_string();
            self.by_op.insert(key, (snapshot.clone(), op.kind));
            *self
                .by_snapshot
                .entry((tenant.to_owned(), snapshot))
                .or_default() += 1;
        }
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at a path or `sqlite://` URL.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
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
        };
        let unfinished = sqlite_ops::list_unfinished(&store.pool).await?;
        {
            let mut index = store.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (tenant, op) in &unfinished {
                index.set(tenant, op);
            }
        }
        Ok(store)
    }

    /// The pool, for back-end specific tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

const ACCOUNT_COLUMNS: &str = "tenant, id, provider, display_name, settings, credential_fields, \
    credential_fingerprint, key_id, nonce, ciphertext, credentials_updated_at, health, created_at, updated_at";

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

fn account_from_row(row: &SqliteRow) -> Result<Account, StoreError> {
    let id: String = row.try_get("id")?;
    let provider: String = row.try_get("provider")?;
    Ok(Account {
        tenant: row.try_get("tenant")?,
        id: id
            .parse()
            .map_err(|e: crate::domain::AccountIdError| StoreError::Corrupt(e.to_string()))?,
        provider: ProviderKind::from_str(&provider)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        display_name: row.try_get("display_name")?,
        settings: json(row.try_get("settings")?, "settings")?,
        credential_fields: json(row.try_get("credential_fields")?, "credential_fields")?,
        credential_fingerprint: row.try_get("credential_fingerprint")?,
        credentials_updated_at: parse_ts(row.try_get("credentials_updated_at")?)?,
        health: json(row.try_get("health")?, "health")?,
        created_at: parse_ts(row.try_get("created_at")?)?,
        updated_at: parse_ts(row.try_get("updated_at")?)?,
    })
}

fn sealed_from_row(row: &SqliteRow) -> Result<Sealed, StoreError> {
    Ok(Sealed {
        key_id: row.try_get("key_id")?,
        nonce: row.try_get("nonce")?,
        ciphertext: row.try_get("ciphertext")?,
    })
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
        let now = ts(new.now);
        let result = sqlx::query(&format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        ))
        .bind(&new.tenant)
        .bind(new.id.as_str())
        .bind(new.provider.as_str())
        .bind(&new.display_name)
        .bind(to_json(&new.settings))
        .bind(to_json(&new.credentials.fields))
        .bind(&new.credentials.fingerprint)
        .bind(&new.credentials.sealed.key_id)
        .bind(&new.credentials.sealed.nonce)
        .bind(&new.credentials.sealed.ciphertext)
        .bind(&now)
        .bind(to_json(&AccountHealth::default()))
        .bind(&now)
        .bind(&now)
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
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = ? AND id = ?"
        ))
        .bind(tenant)
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((account_from_row(&r)?, sealed_from_row(&r)?)))
            .transpose()
    }

    async fn list_accounts(&self, tenant: &str) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = ? ORDER BY id"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    async fn update_account(
        &self,
        tenant: &str,
        id: &AccountId,
        patch: AccountPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Account>, StoreError> {
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
        sqlx::query("UPDATE accounts SET health = ? WHERE tenant = ? AND id = ?")
            .bind(to_json(health))
            .bind(tenant)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_operation(&self, tenant: &str, op: &Operation) -> Result<(), StoreError> {
        sqlite_ops::insert(&self.pool, tenant, op).await?;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(tenant, op);
        Ok(())
    }

    async fn has_unfinished_operation(
        &self,
        tenant: &str,
        snapshot_id: &str,
    ) -> Result<bool, StoreError> {
        let index = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        Ok(index
            .by_snapshot
            .contains_key(&(tenant.to_owned(), snapshot_id.to_owned())))
    }

    async fn pending_snapshots(
        &self,
        tenant: &str,
    ) -> Result<std::collections::HashMap<String, OperationKind>, StoreError> {
        let index = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        Ok(index
            .by_op
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, (snapshot, kind))| (snapshot.clone(), *kind))
            .collect())
    }

    async fn get_operation(&self, tenant: &str, id: &str) -> Result<Option<Operation>, StoreError> {
        sqlite_ops::get(&self.pool, tenant, id).await
    }

    async fn update_operation(&self, tenant: &str, op: &Operation) -> Result<bool, StoreError> {
        let updated = sqlite_ops::update(&self.pool, tenant, op).await?;
        if updated {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set(tenant, op);
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
        sqlite_ops::begin_idempotent(&self.pool, tenant, key, fingerprint, now, lease).await
    }

    async fn finish_idempotent(
        &self,
        tenant: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        sqlite_ops::finish_idempotent(&self.pool, tenant, key, status, body).await
    }

    async fn abandon_idempotent(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        sqlite_ops::abandon_idempotent(&self.pool, tenant, key).await
    }
}
