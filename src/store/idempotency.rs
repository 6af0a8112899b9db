//! Idempotency records, for both back-ends (each query written once and compiled per
//! back-end by `queries!`, as in [`super::webhooks`]).

use chrono::{DateTime, Utc};

use super::{
    rows::{ts, IdempotencyRow, KeyRow},
    IdempotencyBegin, StoreError,
};

macro_rules! queries {
    ($db:ty) => {
        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Takes a key for a request (see [`super::super::Store::begin_idempotent`]).
        pub async fn begin(
            conn: &mut Conn,
            tenant: &str,
            key: &str,
            fingerprint: &str,
            now: DateTime<Utc>,
            lease: std::time::Duration,
        ) -> Result<IdempotencyBegin, StoreError> {
            // An in-flight record not renewed within its lease belongs to a request that died
            // (a replica killed, a dropped connection): the key passes to this request.
            let expired =
                now - chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
            sqlx::query(
                "DELETE FROM idempotency WHERE tenant = $1 AND key = $2 AND status IS NULL \
                 AND created_at < $3",
            )
            .bind(tenant)
            .bind(key)
            .bind(ts(expired))
            .execute(&mut *conn)
            .await?;
            // ON CONFLICT DO NOTHING makes "first use wins" atomic across requests and replicas.
            let inserted = sqlx::query(
                "INSERT INTO idempotency (tenant, key, fingerprint, created_at) \
                 VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(key)
            .bind(fingerprint)
            .bind(ts(now))
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(IdempotencyBegin::Started);
            }
            let row: Option<KeyRow> = sqlx::query_as(
                "SELECT fingerprint, status, body FROM idempotency WHERE tenant = $1 AND key = $2",
            )
            .bind(tenant)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
            Ok(KeyRow::verdict(row, fingerprint))
        }

        /// Keeps an in-flight record's lease.
        pub async fn renew(
            conn: &mut Conn,
            tenant: &str,
            key: &str,
            now: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE idempotency SET created_at = $1 WHERE tenant = $2 AND key = $3 \
                 AND status IS NULL",
            )
            .bind(ts(now))
            .bind(tenant)
            .bind(key)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Records the answer a key replays.
        pub async fn finish(
            conn: &mut Conn,
            tenant: &str,
            key: &str,
            status: u16,
            body: &str,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE idempotency SET status = $1, body = $2 WHERE tenant = $3 AND key = $4",
            )
            .bind(i64::from(status))
            .bind(body)
            .bind(tenant)
            .bind(key)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Frees a key (also when an intent already answered for it: the refusal it ended in
        /// changed nothing).
        pub async fn abandon(conn: &mut Conn, tenant: &str, key: &str) -> Result<(), StoreError> {
            sqlx::query("DELETE FROM idempotency WHERE tenant = $1 AND key = $2")
                .bind(tenant)
                .bind(key)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        /// Every record (copies).
        pub async fn rows(conn: &mut Conn) -> Result<Vec<IdempotencyRow>, StoreError> {
            Ok(sqlx::query_as(
                "SELECT tenant, key, fingerprint, status, body, created_at FROM idempotency \
                 ORDER BY tenant, key",
            )
            .fetch_all(&mut *conn)
            .await?)
        }

        /// Writes a record, keeping one already here (copies); how many were written.
        pub async fn load(conn: &mut Conn, k: IdempotencyRow) -> Result<usize, StoreError> {
            let done = sqlx::query(
                "INSERT INTO idempotency (tenant, key, fingerprint, status, body, created_at) \
                 VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING",
            )
            .bind(k.tenant)
            .bind(k.key)
            .bind(k.fingerprint)
            .bind(k.status)
            .bind(k.body)
            .bind(k.created_at)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() as usize)
        }
    };
}

pub(super) mod sqlite {
    queries!(sqlx::Sqlite);
}

pub(super) mod postgres {
    queries!(sqlx::Postgres);
}
