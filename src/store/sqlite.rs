//! The embedded SQLite back-end (WAL mode, migrations applied on open).

use std::{path::Path, str::FromStr, time::Duration};

use futures::future::BoxFuture;
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    SqlitePool,
};

use super::pending::{Pending, Queued};
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
    queued: Queued,
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
            .foreign_keys(true)
            // Reads of a large log page through the OS's cache instead of copying into each
            // connection's small one (2 MB by default): event pages at a million rows cost
            // what they cost at ten thousand (`bench/scale.sh`).
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", "-16384");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let store = Self {
            pool,
            pending: Default::default(),
            queued: Default::default(),
            write: Default::default(),
        };
        let unfinished = operations::unfinished(&mut *store.pool.acquire().await?).await?;
        store.pending.replace(unfinished);
        Ok(store)
    }

    /// The pool, for back-end specific tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

type Conn = sqlx::SqliteConnection;

impl SqliteStore {
    /// Reads on a connection of the pool.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T, StoreError>>,
    {
        work(&mut *self.pool.acquire().await?).await
    }

    /// Writes outside a transaction (one statement, or statements each safe alone), as this
    /// process's one writer.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T, StoreError>>,
    {
        let _write = self.write.lock().await;
        work(&mut *self.pool.acquire().await?).await
    }

    /// Writes in one transaction, as this process's one writer. IMMEDIATE takes the write lock
    /// before reading: a deferred transaction that reads and then writes fails at once
    /// ("database is locked") when another process's writer went first, which the busy
    /// timeout cannot wait out.
    async fn transaction<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T, StoreError>>,
    {
        let _write = self.write.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let out = work(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }
}

sql_store!(SqliteStore, sqlite, advisory_locks: false, {});
