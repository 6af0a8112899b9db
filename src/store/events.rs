//! The event log, for both back-ends (each query written once and compiled per back-end by
//! `queries!`, as in [`super::webhooks`]).

use super::{
    rows::{bind_event, EventRow, EVENT_COLUMNS},
    StoreError,
};

/// What an append wrote.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Appended {
    pub events: usize,
    /// Deliveries queued for the events (the delivery worker's signal).
    pub deliveries: usize,
}

/// The advisory lock event writers take turns on across PostgreSQL replicas ("sg-event").
const EVENTS_LOCK: i64 = 0x7367_2d65_7665_6e74;

macro_rules! queries {
    ($db:ty, $backend:ident, advisory_locks: $advisory:literal) => {
        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Appends events and queues their deliveries, in the caller's transaction (with
        /// `keep_existing`, for copies, events already here are kept and nothing is queued);
        /// what was written.
        pub async fn insert(
            conn: &mut Conn,
            events: &[EventRow],
            keep_existing: bool,
        ) -> Result<Appended, StoreError> {
            if events.is_empty() {
                return Ok(Appended::default());
            }
            if $advisory {
                // Positions come from a sequence at insert but become visible at commit; were
                // two writers to commit out of order, a follower past position N would never
                // see a late N-1. So writers take turns from their first event to their commit
                // (this is the transaction's last step): positions become visible in the order
                // they were given, and a cursor never moves past a number that can still
                // appear. (SQLite has one writer: its order is the commit order.)
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(EVENTS_LOCK)
                    .execute(&mut *conn)
                    .await?;
            }
            let conflict = if keep_existing { " ON CONFLICT DO NOTHING" } else { "" };
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
            let deliveries = if keep_existing {
                0
            } else {
                super::super::webhooks::$backend::enqueue(conn, events).await?
            };
            Ok(Appended {
                events: written,
                deliveries,
            })
        }

        /// A tenant's events after a position, of the given types (all when empty).
        pub async fn list(
            conn: &mut Conn,
            tenant: &str,
            after: i64,
            types: &[String],
            limit: u32,
        ) -> Result<Vec<EventRow>, StoreError> {
            let mut sql =
                format!("SELECT seq, {EVENT_COLUMNS} FROM events WHERE tenant = $1 AND seq > $2");
            if !types.is_empty() {
                let params: Vec<String> = (0..types.len()).map(|i| format!("${}", i + 3)).collect();
                sql.push_str(&format!(" AND type IN ({})", params.join(",")));
            }
            sql.push_str(&format!(" ORDER BY seq LIMIT ${}", types.len() + 3));
            let mut q = sqlx::query_as::<_, EventRow>(&sql).bind(tenant).bind(after);
            for t in types {
                q = q.bind(t);
            }
            Ok(q.bind(i64::from(limit)).fetch_all(&mut *conn).await?)
        }

        /// Every event, in log order (copies).
        pub async fn rows(conn: &mut Conn) -> Result<Vec<EventRow>, StoreError> {
            Ok(sqlx::query_as(&format!(
                "SELECT seq, {EVENT_COLUMNS} FROM events ORDER BY seq"
            ))
            .fetch_all(&mut *conn)
            .await?)
        }
    };
}

pub(super) mod sqlite {
    queries!(sqlx::Sqlite, sqlite, advisory_locks: false);
}

pub(super) mod postgres {
    queries!(sqlx::Postgres, postgres, advisory_locks: true);
}
