//! Which sealing keys each replica holds, for both back-ends (each query written once and
//! compiled per back-end by `queries!`, as in [`super::webhooks`]).

use chrono::{DateTime, Utc};

use super::{rows::ts, StoreError};

macro_rules! queries {
    ($db:ty) => {
        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Records the keys a process holds now (and forgets announcements an hour old).
        pub async fn announce(
            conn: &mut Conn,
            replica: &str,
            key_ids: &[String],
            now: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            for key in key_ids {
                sqlx::query(
                    "INSERT INTO replica_keys (replica, key_id, seen_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (replica, key_id) DO UPDATE SET seen_at = excluded.seen_at",
                )
                .bind(replica)
                .bind(key)
                .bind(ts(now))
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query("DELETE FROM replica_keys WHERE seen_at < $1")
                .bind(ts(now - chrono::TimeDelta::hours(1)))
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        pub async fn retire(conn: &mut Conn, replica: &str) -> Result<(), StoreError> {
            sqlx::query("DELETE FROM replica_keys WHERE replica = $1")
                .bind(replica)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        /// The keys announced since `since`, with the replica holding each.
        pub async fn announced(
            conn: &mut Conn,
            since: DateTime<Utc>,
        ) -> Result<Vec<(String, String)>, StoreError> {
            Ok(
                sqlx::query_as("SELECT replica, key_id FROM replica_keys WHERE seen_at >= $1")
                    .bind(ts(since))
                    .fetch_all(&mut *conn)
                    .await?,
            )
        }

        /// The keys the stored records are sealed under.
        pub async fn stored(conn: &mut Conn) -> Result<Vec<String>, StoreError> {
            Ok(
                sqlx::query_scalar("SELECT key_id FROM accounts UNION SELECT key_id FROM webhooks")
                    .fetch_all(&mut *conn)
                    .await?,
            )
        }
    };
}

pub(super) mod sqlite {
    queries!(sqlx::Sqlite);
}

pub(super) mod postgres {
    queries!(sqlx::Postgres);
}
