//! The PostgreSQL back-end: every replica of snapgate on one database.
//!
//! Rows are shared, so idempotency keys, operations and their leases hold across replicas. What
//! each replica keeps in memory is kept coherent from the database's own notifications:
//! - accounts: every change notifies `snapgate_accounts` (a trigger), so a replica drops its
//!   cached opening of that account at once; a sequence numbers the changes, and a replica that
//!   finds the sequence ahead of what it heard (a notification lost while its listening
//!   connection was down) drops its whole account cache;
//! - unfinished operations: every change notifies `snapgate_operations`, applied to the in-memory
//!   index; the index is also rebuilt from the table every few seconds and after a reconnect.
//!
//! Queries run on the runtime that opened the store (its I/O driver owns the connections), so
//! serving threads with their own runtimes never drive another runtime's sockets.

mod coherence;
mod copy;

use std::{collections::HashMap, future::Future, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{
    postgres::{PgListener, PgPoolOptions},
    PgPool,
};

use super::{
    pending::Pending,
    rows::{
        bind_account, bind_operation, to_json, ts, AccountRow, EventRow, KeyRow, OperationRow,
        TenantOperationRow, ACCOUNT_COLUMNS, EVENT_COLUMNS, OPERATION_COLUMNS,
    },
    webhooks::{self, Claimed, WebhookRow},
    AccountPatch, Counts, Dump, IdempotencyBegin, NewAccount, OperationFilter, Sealed, Store,
    StoreError,
};
use crate::domain::{
    Account, AccountHealth, AccountId, Delivery, Event, EventType, Operation, OperationKind,
    Webhook,
};

use coherence::{account_version, check_forever, listen, Stamps};
use copy::{insert_events, load};

/// The advisory lock delivery claims take turns on.
const CLAIM_LOCK: i64 = 0x736e_6170_6761_7465; // "snapgate"

/// PostgreSQL-backed [`Store`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    pending: Pending,
    stamps: Stamps,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects (at most `max_connections` at once), migrates under PostgreSQL's advisory lock
    /// (replicas starting together take turns), loads the unfinished operations and starts
    /// listening for other replicas' changes.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = connect_options(url)?;
        // One connection first, for its own error: a pool that cannot connect only says it
        // timed out, naming neither the host nor the cause.
        let at = format!("{}:{}", options.get_host(), options.get_port());
        let probe = tokio::time::timeout(
            Duration::from_secs(10),
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options),
        )
        .await;
        match probe {
            Err(_) => {
                return Err(StoreError::Unreachable {
                    at,
                    cause: "no answer within 10 s".to_owned(),
                })
            }
            Ok(Err(e)) => {
                return Err(StoreError::Unreachable {
                    at,
                    cause: e.to_string(),
                })
            }
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            // Fail fast during an outage (`503 store_unavailable` with `Retry-After`) rather
            // than hold every request for seconds.
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(options.clone())
            .await?;
        // sqlx's migrator takes `pg_advisory_lock` for the run.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = Self {
            pending: Pending::default(),
            stamps: Stamps::default(),
            runtime: tokio::runtime::Handle::current(),
            pool,
        };
        store.pending.replace(list_unfinished(&store.pool).await?);
        let heard = account_version(&store.pool).await?;
        store.stamps.heard_up_to(heard);
        // Its own connection: never one of the pool's, which load may keep busy.
        // (A pool of one, with the same TLS settings, that the listener reconnects through.)
        let own = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let listener = PgListener::connect_with(&own).await?;
        tokio::spawn(listen(store.clone(), listener));
        tokio::spawn(check_forever(store.clone()));
        Ok(store)
    }

    /// Runs a query on the store's runtime.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.runtime
            .spawn(work)
            .await
            .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))?
    }

    /// The pool, for back-end specific tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

pub(super) async fn list_unfinished(pool: &PgPool) -> Result<Vec<(String, Operation)>, StoreError> {
    let rows: Vec<TenantOperationRow> = sqlx::query_as(&format!(
        "SELECT tenant, {OPERATION_COLUMNS} FROM operations WHERE state IN ('pending', 'running')"
    ))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| Ok((r.tenant, r.row.into_operation()?)))
        .collect()
}

pub(super) async fn get_operation(
    pool: &PgPool,
    tenant: &str,
    id: &str,
) -> Result<Option<Operation>, StoreError> {
    let row: Option<OperationRow> = sqlx::query_as(&format!(
        "SELECT {OPERATION_COLUMNS} FROM operations WHERE tenant = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(OperationRow::into_operation).transpose()
}

async fn get_account_sealed(
    pool: &PgPool,
    tenant: &str,
    id: &str,
) -> Result<Option<(Account, Sealed)>, StoreError> {
    let row: Option<AccountRow> = sqlx::query_as(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(AccountRow::into_parts).transpose()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            sqlx::query("SELECT 1").execute(&pool).await?;
            Ok(())
        })
        .await
    }

    fn account_stamp(&self, tenant: &str, id: &AccountId) -> u64 {
        self.stamps.get(tenant, id.as_str())
    }

    async fn insert_account(&self, new: NewAccount) -> Result<Account, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let result = bind_account(
                sqlx::query(&format!(
                    "INSERT INTO accounts ({ACCOUNT_COLUMNS}) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"
                )),
                AccountRow::of_new(&new),
            )
            .execute(&pool)
            .await;
            match result {
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict),
                Err(e) => Err(e.into()),
                Ok(_) => get_account_sealed(&pool, &new.tenant, new.id.as_str())
                    .await?
                    .map(|(a, _)| a)
                    .ok_or_else(|| StoreError::Corrupt("inserted account vanished".into())),
            }
        })
        .await
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
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_string());
        self.run(async move { get_account_sealed(&pool, &tenant, &id).await })
            .await
    }

    async fn list_accounts(&self, tenant: &str) -> Result<Vec<Account>, StoreError> {
        let (pool, tenant) = (self.pool.clone(), tenant.to_owned());
        self.run(async move {
            let rows: Vec<AccountRow> = sqlx::query_as(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = $1 ORDER BY id"
            ))
            .bind(&tenant)
            .fetch_all(&pool)
            .await?;
            rows.into_iter()
                .map(|r| r.into_parts().map(|(account, _)| account))
                .collect()
        })
        .await
    }

    async fn update_account(
        &self,
        tenant: &str,
        id: &AccountId,
        patch: AccountPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Account>, StoreError> {
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_string());
        self.run(async move {
            let now = ts(now);
            let mut tx = pool.begin().await?;
            let exists =
                sqlx::query("SELECT 1 FROM accounts WHERE tenant = $1 AND id = $2 FOR UPDATE")
                    .bind(&tenant)
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
            if !exists {
                return Ok(None);
            }
            if let Some(name) = &patch.display_name {
                sqlx::query("UPDATE accounts SET display_name = $1 WHERE tenant = $2 AND id = $3")
                    .bind(name)
                    .bind(&tenant)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(settings) = &patch.settings {
                sqlx::query("UPDATE accounts SET settings = $1 WHERE tenant = $2 AND id = $3")
                    .bind(to_json(settings))
                    .bind(&tenant)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(c) = &patch.credentials {
                sqlx::query(
                    "UPDATE accounts SET credential_fields = $1, credential_fingerprint = $2, \
                     key_id = $3, nonce = $4, ciphertext = $5, credentials_updated_at = $6, \
                     health = $7 WHERE tenant = $8 AND id = $9",
                )
                .bind(to_json(&c.fields))
                .bind(&c.fingerprint)
                .bind(&c.sealed.key_id)
                .bind(&c.sealed.nonce)
                .bind(&c.sealed.ciphertext)
                .bind(&now)
                .bind(to_json(&AccountHealth::default()))
                .bind(&tenant)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE accounts SET updated_at = $1 WHERE tenant = $2 AND id = $3")
                .bind(&now)
                .bind(&tenant)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(get_account_sealed(&pool, &tenant, &id)
                .await?
                .map(|(a, _)| a))
        })
        .await
    }

    async fn delete_account(&self, tenant: &str, id: &AccountId) -> Result<bool, StoreError> {
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_string());
        self.run(async move {
            let done = sqlx::query("DELETE FROM accounts WHERE tenant = $1 AND id = $2")
                .bind(&tenant)
                .bind(&id)
                .execute(&pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn record_health(
        &self,
        tenant: &str,
        id: &AccountId,
        health: &AccountHealth,
    ) -> Result<(), StoreError> {
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_string());
        let health = to_json(health);
        self.run(async move {
            sqlx::query("UPDATE accounts SET health = $1 WHERE tenant = $2 AND id = $3")
                .bind(&health)
                .bind(&tenant)
                .bind(&id)
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn insert_operation(
        &self,
        tenant: &str,
        op: &Operation,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let (pool, owner, r) = (self.pool.clone(), tenant.to_owned(), OperationRow::of(op));
        let events: Vec<EventRow> = events.iter().map(|e| EventRow::of(tenant, e)).collect();
        self.run(async move {
            let mut tx = pool.begin().await?;
            bind_operation(
                sqlx::query(&format!(
                    "INSERT INTO operations (tenant, {OPERATION_COLUMNS}) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)"
                )),
                owner,
                r,
            )
            .execute(&mut *tx)
            .await?;
            insert_events(&mut tx, &events, false).await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        self.pending.set(tenant, op);
        Ok(())
    }

    async fn append_events(&self, tenant: &str, events: &[Event]) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let events: Vec<EventRow> = events.iter().map(|e| EventRow::of(tenant, e)).collect();
        self.run(async move {
            let mut tx = pool.begin().await?;
            insert_events(&mut tx, &events, false).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn list_events(
        &self,
        tenant: &str,
        after: i64,
        types: &[EventType],
        limit: u32,
    ) -> Result<Vec<(i64, Event)>, StoreError> {
        let (pool, tenant) = (self.pool.clone(), tenant.to_owned());
        let types: Vec<String> = types.iter().map(|t| t.as_str().to_owned()).collect();
        self.run(async move {
            let rows: Vec<EventRow> = sqlx::query_as(&format!(
                "SELECT seq, {EVENT_COLUMNS} FROM events WHERE tenant = $1 AND seq > $2 \
                 AND (cardinality($3::text[]) = 0 OR type = ANY($3)) ORDER BY seq LIMIT $4"
            ))
            .bind(&tenant)
            .bind(after)
            .bind(&types)
            .bind(i64::from(limit))
            .fetch_all(&pool)
            .await?;
            rows.into_iter().map(EventRow::into_event).collect()
        })
        .await
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
    ) -> Result<HashMap<String, OperationKind>, StoreError> {
        Ok(self.pending.of_tenant(tenant))
    }

    async fn get_operation(&self, tenant: &str, id: &str) -> Result<Option<Operation>, StoreError> {
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_owned());
        self.run(async move { get_operation(&pool, &tenant, &id).await })
            .await
    }

    async fn update_operation(
        &self,
        tenant: &str,
        op: &Operation,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let (pool, owner, r) = (self.pool.clone(), tenant.to_owned(), OperationRow::of(op));
        let events: Vec<EventRow> = events.iter().map(|e| EventRow::of(tenant, e)).collect();
        let updated = self
            .run(async move {
                let mut tx = pool.begin().await?;
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
                .bind(&owner)
                .bind(&r.id)
                .execute(&mut *tx)
                .await?;
                // A finished operation is never rewritten (a slower refresh must not undo it).
                let updated = done.rows_affected() > 0;
                if updated {
                    insert_events(&mut tx, &events, false).await?;
                }
                tx.commit().await?;
                Ok(updated)
            })
            .await?;
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
        let (pool, tenant, filter) = (self.pool.clone(), tenant.to_owned(), filter.clone());
        self.run(async move {
            let mut sql = format!("SELECT {OPERATION_COLUMNS} FROM operations WHERE tenant = $1");
            let mut n = 1;
            if filter.account.is_some() {
                n += 1;
                sql.push_str(&format!(" AND account = ${n}"));
            }
            if filter.snapshot_id.is_some() {
                n += 1;
                sql.push_str(&format!(" AND snapshot_id = ${n}"));
            }
            if filter.unfinished_only {
                sql.push_str(" AND state IN ('pending', 'running')");
            }
            if filter.before.is_some() {
                sql.push_str(&format!(
                    " AND (created_at < ${} OR (created_at = ${} AND id < ${}))",
                    n + 1,
                    n + 1,
                    n + 2
                ));
                n += 2;
            }
            sql.push_str(&format!(
                " ORDER BY created_at DESC, id DESC LIMIT ${}",
                n + 1
            ));
            let mut q = sqlx::query_as::<_, OperationRow>(&sql).bind(&tenant);
            if let Some(a) = &filter.account {
                q = q.bind(a.as_str());
            }
            if let Some(s) = &filter.snapshot_id {
                q = q.bind(s);
            }
            if let Some((at, id)) = &filter.before {
                q = q.bind(super::rows::ts(*at)).bind(id);
            }
            let limit = if filter.limit == 0 { 100 } else { filter.limit };
            let rows = q.bind(i64::from(limit)).fetch_all(&pool).await?;
            rows.into_iter().map(OperationRow::into_operation).collect()
        })
        .await
    }

    async fn begin_idempotent(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<IdempotencyBegin, StoreError> {
        let pool = self.pool.clone();
        let (tenant, key, fingerprint) =
            (tenant.to_owned(), key.to_owned(), fingerprint.to_owned());
        self.run(async move {
            // An in-flight record not renewed within its lease belongs to a request that died
            // (a replica killed, a dropped connection): the key passes to this request.
            let expired =
                now - chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
            sqlx::query(
                "DELETE FROM idempotency WHERE tenant = $1 AND key = $2 AND status IS NULL \
                 AND created_at < $3",
            )
            .bind(&tenant)
            .bind(&key)
            .bind(ts(expired))
            .execute(&pool)
            .await?;
            // ON CONFLICT DO NOTHING makes "first use wins" atomic across replicas.
            let inserted = sqlx::query(
                "INSERT INTO idempotency (tenant, key, fingerprint, created_at) \
                 VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING",
            )
            .bind(&tenant)
            .bind(&key)
            .bind(&fingerprint)
            .bind(ts(now))
            .execute(&pool)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(IdempotencyBegin::Started);
            }
            let row: Option<KeyRow> = sqlx::query_as(
                "SELECT fingerprint, status, body FROM idempotency WHERE tenant = $1 AND key = $2",
            )
            .bind(&tenant)
            .bind(&key)
            .fetch_optional(&pool)
            .await?;
            Ok(KeyRow::verdict(row, &fingerprint))
        })
        .await
    }

    async fn renew_idempotent(
        &self,
        tenant: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (pool, tenant, key) = (self.pool.clone(), tenant.to_owned(), key.to_owned());
        self.run(async move {
            sqlx::query(
                "UPDATE idempotency SET created_at = $1 WHERE tenant = $2 AND key = $3 \
                 AND status IS NULL",
            )
            .bind(ts(now))
            .bind(&tenant)
            .bind(&key)
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn finish_idempotent(
        &self,
        tenant: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let (tenant, key, body) = (tenant.to_owned(), key.to_owned(), body.to_owned());
        self.run(async move {
            sqlx::query(
                "UPDATE idempotency SET status = $1, body = $2 WHERE tenant = $3 AND key = $4",
            )
            .bind(i64::from(status))
            .bind(&body)
            .bind(&tenant)
            .bind(&key)
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn abandon_idempotent(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        let (pool, tenant, key) = (self.pool.clone(), tenant.to_owned(), key.to_owned());
        self.run(async move {
            sqlx::query("DELETE FROM idempotency WHERE tenant = $1 AND key = $2")
                .bind(&tenant)
                .bind(&key)
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn sealed_credentials(&self) -> Result<Vec<(String, AccountId, Sealed)>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let rows: Vec<AccountRow> = sqlx::query_as(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY tenant, id"
            ))
            .fetch_all(&pool)
            .await?;
            rows.into_iter()
                .map(|r| {
                    let tenant = r.tenant.clone();
                    r.into_parts().map(|(a, sealed)| (tenant, a.id, sealed))
                })
                .collect()
        })
        .await
    }

    async fn reseal(
        &self,
        tenant: &str,
        id: &AccountId,
        from_key_id: &str,
        sealed: &Sealed,
    ) -> Result<bool, StoreError> {
        let pool = self.pool.clone();
        let (tenant, id, from, sealed) = (
            tenant.to_owned(),
            id.to_string(),
            from_key_id.to_owned(),
            sealed.clone(),
        );
        self.run(async move {
            let done = sqlx::query(
                "UPDATE accounts SET key_id = $1, nonce = $2, ciphertext = $3 \
                 WHERE tenant = $4 AND id = $5 AND key_id = $6",
            )
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(&tenant)
            .bind(&id)
            .bind(&from)
            .execute(&pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn insert_webhook(&self, webhook: &Webhook, secrets: &Sealed) -> Result<(), StoreError> {
        let (pool, row) = (self.pool.clone(), WebhookRow::of(webhook, secrets));
        self.run(async move {
            webhooks::postgres::insert_webhook(&mut *pool.acquire().await?, row).await
        })
        .await
    }

    async fn get_webhook(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Webhook, Sealed)>, StoreError> {
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_owned());
        self.run(async move {
            webhooks::postgres::get_webhook(&mut *pool.acquire().await?, &tenant, &id).await
        })
        .await
    }

    async fn list_webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError> {
        let (pool, tenant) = (self.pool.clone(), tenant.to_owned());
        self.run(async move {
            webhooks::postgres::list_webhooks(&mut *pool.acquire().await?, &tenant).await
        })
        .await
    }

    async fn backlog(&self) -> Result<super::Backlog, StoreError> {
        let pool = self.pool.clone();
        self.run(async move { webhooks::postgres::backlog(&mut *pool.acquire().await?).await })
            .await
    }

    async fn update_webhook(
        &self,
        webhook: &Webhook,
        secrets: Option<&Sealed>,
    ) -> Result<bool, StoreError> {
        let (pool, webhook, secrets) = (self.pool.clone(), webhook.clone(), secrets.cloned());
        self.run(async move {
            let mut conn = pool.acquire().await?;
            webhooks::postgres::update_webhook(&mut conn, &webhook, secrets.as_ref()).await
        })
        .await
    }

    async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_owned());
        self.run(async move {
            let mut tx = pool.begin().await?;
            let deleted = webhooks::postgres::delete_webhook(&mut tx, &tenant, &id).await?;
            tx.commit().await?;
            Ok(deleted)
        })
        .await
    }

    async fn insert_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let (pool, delivery) = (self.pool.clone(), delivery.clone());
        self.run(async move {
            webhooks::postgres::insert_delivery(&mut *pool.acquire().await?, &delivery).await
        })
        .await
    }

    async fn list_deliveries(
        &self,
        tenant: &str,
        webhook_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, Delivery)>, StoreError> {
        let (pool, tenant, webhook) = (self.pool.clone(), tenant.to_owned(), webhook_id.to_owned());
        self.run(async move {
            let mut conn = pool.acquire().await?;
            webhooks::postgres::list_deliveries(&mut conn, &tenant, &webhook, before, limit).await
        })
        .await
    }

    async fn get_delivery(
        &self,
        tenant: &str,
        webhook_id: &str,
        id: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        let (pool, tenant) = (self.pool.clone(), tenant.to_owned());
        let (webhook, id) = (webhook_id.to_owned(), id.to_owned());
        self.run(async move {
            let mut conn = pool.acquire().await?;
            webhooks::postgres::get_delivery(&mut conn, &tenant, &webhook, &id).await
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
        per_tenant: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let mut tx = pool.begin().await?;
            // Claims take turns across replicas (held to the end of the transaction), so the
            // in-flight count each sees is exact and no delivery is claimed twice.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CLAIM_LOCK)
                .execute(&mut *tx)
                .await?;
            let claimed = webhooks::postgres::claim(
                &mut tx,
                now,
                lease_until,
                limit,
                per_endpoint,
                per_tenant,
            )
            .await?;
            tx.commit().await?;
            Ok(claimed)
        })
        .await
    }

    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        token: &str,
        disable: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (pool, delivery) = (self.pool.clone(), delivery.clone());
        let (token, disable) = (token.to_owned(), disable.map(str::to_owned));
        self.run(async move {
            let mut tx = pool.begin().await?;
            let held =
                webhooks::postgres::finish(&mut tx, &delivery, &token, disable.as_deref()).await?;
            tx.commit().await?;
            Ok(held)
        })
        .await
    }

    async fn sealed_webhook_secrets(&self) -> Result<Vec<(String, String, Sealed)>, StoreError> {
        let pool = self.pool.clone();
        self.run(
            async move { webhooks::postgres::sealed_secrets(&mut *pool.acquire().await?).await },
        )
        .await
    }

    async fn reseal_webhook(
        &self,
        tenant: &str,
        id: &str,
        from_key_id: &str,
        sealed: &Sealed,
    ) -> Result<bool, StoreError> {
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_owned());
        let (from, sealed) = (from_key_id.to_owned(), sealed.clone());
        self.run(async move {
            let mut conn = pool.acquire().await?;
            webhooks::postgres::reseal(&mut conn, &tenant, &id, &from, &sealed).await
        })
        .await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_tenant: u32,
    ) -> Result<Vec<(String, Operation)>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let now = ts(now);
            // Turns across tenants and a per-tenant cap (see the trait); SKIP LOCKED: replicas
            // claiming at once take different operations, and the lease is checked again on
            // the row itself, so one claimed a moment ago by another replica is not taken.
            let rows: Vec<TenantOperationRow> = sqlx::query_as(&format!(
                "UPDATE operations SET lease_until = $1 WHERE (tenant, id) IN ( \
                     SELECT o.tenant, o.id FROM operations o WHERE (o.tenant, o.id) IN ( \
                         SELECT due.tenant, due.id FROM ( \
                             SELECT tenant, id, next_check_at, ROW_NUMBER() OVER ( \
                                 PARTITION BY tenant ORDER BY next_check_at NULLS FIRST, id \
                             ) AS turn FROM operations WHERE state IN ('pending', 'running') \
                             AND (next_check_at IS NULL OR next_check_at <= $2) \
                             AND (lease_until IS NULL OR lease_until < $2) \
                         ) due LEFT JOIN ( \
                             SELECT tenant, COUNT(*) AS busy FROM operations \
                             WHERE state IN ('pending', 'running') AND lease_until >= $2 \
                             GROUP BY tenant \
                         ) held ON held.tenant = due.tenant \
                         WHERE due.turn + COALESCE(held.busy, 0) <= $4 \
                         ORDER BY due.turn, due.next_check_at NULLS FIRST LIMIT $3 \
                     ) FOR UPDATE OF o SKIP LOCKED \
                 ) AND (lease_until IS NULL OR lease_until < $2) \
                 RETURNING tenant, {OPERATION_COLUMNS}"
            ))
            .bind(ts(lease_until))
            .bind(&now)
            .bind(i64::from(limit))
            .bind(i64::from(per_tenant))
            .fetch_all(&pool)
            .await?;
            rows.into_iter()
                .map(|r| Ok((r.tenant, r.row.into_operation()?)))
                .collect()
        })
        .await
    }

    async fn schedule_check(
        &self,
        tenant: &str,
        id: &str,
        next_check_at: DateTime<Utc>,
        checks: u32,
    ) -> Result<(), StoreError> {
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_owned());
        self.run(async move {
            sqlx::query(
                "UPDATE operations SET next_check_at = $1, checks = $2, lease_until = NULL \
                 WHERE tenant = $3 AND id = $4 AND state IN ('pending', 'running')",
            )
            .bind(ts(next_check_at))
            .bind(i64::from(checks))
            .bind(&tenant)
            .bind(&id)
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn announce_keys(
        &self,
        replica: &str,
        key_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (pool, replica, keys) = (self.pool.clone(), replica.to_owned(), key_ids.to_vec());
        self.run(async move {
            for key in &keys {
                sqlx::query(
                    "INSERT INTO replica_keys (replica, key_id, seen_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (replica, key_id) DO UPDATE SET seen_at = excluded.seen_at",
                )
                .bind(&replica)
                .bind(key)
                .bind(ts(now))
                .execute(&pool)
                .await?;
            }
            sqlx::query("DELETE FROM replica_keys WHERE seen_at < $1")
                .bind(ts(now - chrono::TimeDelta::hours(1)))
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn retire_replica(&self, replica: &str) -> Result<(), StoreError> {
        let (pool, replica) = (self.pool.clone(), replica.to_owned());
        self.run(async move {
            sqlx::query("DELETE FROM replica_keys WHERE replica = $1")
                .bind(&replica)
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn announced_keys(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            Ok(
                sqlx::query_as("SELECT replica, key_id FROM replica_keys WHERE seen_at >= $1")
                    .bind(ts(since))
                    .fetch_all(&pool)
                    .await?,
            )
        })
        .await
    }

    async fn stored_key_ids(&self) -> Result<Vec<String>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            Ok(
                sqlx::query_scalar("SELECT key_id FROM accounts UNION SELECT key_id FROM webhooks")
                    .fetch_all(&pool)
                    .await?,
            )
        })
        .await
    }

    async fn renew_claim(
        &self,
        tenant: &str,
        id: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_owned());
        self.run(async move {
            let done = sqlx::query(
                "UPDATE operations SET lease_until = $1 \
                 WHERE tenant = $2 AND id = $3 AND lease_until IS NOT NULL \
                 AND state IN ('pending', 'running')",
            )
            .bind(ts(lease_until))
            .bind(&tenant)
            .bind(&id)
            .execute(&pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    fn operation_changes(&self) -> tokio::sync::broadcast::Receiver<(String, String)> {
        self.pending.subscribe()
    }

    async fn dump(&self) -> Result<Dump, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let (webhooks, deliveries) =
                webhooks::postgres::dump(&mut *pool.acquire().await?).await?;
            Ok(Dump {
                accounts: sqlx::query_as(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY tenant, id"
                ))
                .fetch_all(&pool)
                .await?,
                operations: sqlx::query_as(&format!(
                    "SELECT tenant, {OPERATION_COLUMNS} FROM operations \
                     ORDER BY tenant, created_at, id"
                ))
                .fetch_all(&pool)
                .await?,
                idempotency: sqlx::query_as(
                    "SELECT tenant, key, fingerprint, status, body, created_at FROM idempotency \
                     ORDER BY tenant, key",
                )
                .fetch_all(&pool)
                .await?,
                events: sqlx::query_as(&format!(
                    "SELECT seq, {EVENT_COLUMNS} FROM events ORDER BY seq"
                ))
                .fetch_all(&pool)
                .await?,
                webhooks,
                deliveries,
            })
        })
        .await
    }

    async fn load(&self, dump: Dump) -> Result<Counts, StoreError> {
        let pool = self.pool.clone();
        let written = self.run(async move { load(&pool, dump).await }).await?;
        self.pending.replace(
            self.run({
                let pool = self.pool.clone();
                async move { list_unfinished(&pool).await }
            })
            .await?,
        );
        Ok(written)
    }
}

/// The connection options of a store URL, TLS decided: an `sslmode` in the URL (or
/// `PGSSLMODE`) is honoured as written (`disable`, `prefer`, `require`, `verify-ca`,
/// `verify-full`, with `sslrootcert`); without one, a host other than loopback or a Unix
/// socket is `require`d — never a silent fall back to plaintext across a network. Loopback
/// keeps PostgreSQL's `prefer`.
pub fn connect_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions, StoreError> {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    let options: PgConnectOptions = url.parse()?;
    let explicit = url::Url::parse(url).ok().is_some_and(|u| {
        u.query_pairs()
            .any(|(k, _)| k == "sslmode" || k == "ssl-mode")
    }) || std::env::var_os("PGSSLMODE").is_some();
    let host = options.get_host();
    let local = host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    Ok(if explicit || local {
        options
    } else {
        options.ssl_mode(PgSslMode::Require)
    })
}
