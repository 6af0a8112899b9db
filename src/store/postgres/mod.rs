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
//! serving threads with their own runtimes never drive another runtime's sockets. The queries
//! themselves, and the [`Store`] implementation, are shared with SQLite (see `store::sql`).

mod coherence;

use std::{future::Future, time::Duration};

use futures::future::BoxFuture;
use sqlx::{
    postgres::{PgListener, PgPoolOptions},
    PgConnection, PgPool,
};

use super::pending::{Pending, Queued};

use coherence::{account_version, check_forever, listen, Stamps};

/// PostgreSQL-backed [`Store`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    pending: Pending,
    queued: Queued,
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
            queued: Queued::default(),
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
            // Listening again after an outage is tried every half second, not once per 30 s.
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect_with(options)
            .await?;
        let listener = PgListener::connect_with(&own).await?;
        tokio::spawn(listen(store.clone(), own, listener));
        tokio::spawn(check_forever(store.clone()));
        Ok(store)
    }

    /// Reads on a connection of the pool, on the store's runtime.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let pool = self.pool.clone();
        self.run(async move { work(&mut *pool.acquire().await?).await })
            .await
    }

    /// Writes outside a transaction (one statement, or statements each safe alone).
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.read(work).await
    }

    /// Writes in one transaction, on the store's runtime.
    async fn transaction<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let pool = self.pool.clone();
        self.run(async move {
            let mut tx = pool.begin().await?;
            let out = work(&mut tx).await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
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

/// Every unfinished operation with its tenant (the in-memory index is rebuilt from it).
async fn list_unfinished(pool: &PgPool) -> Result<Vec<(String, Operation)>, StoreError> {
    operations::unfinished(&mut *pool.acquire().await?).await
}

sql_store!(PostgresStore, postgres, advisory_locks: true, {
    fn account_stamp(&self, tenant: &str, id: &AccountId) -> u64 {
        self.stamps.get(tenant, id.as_str())
    }
});

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
