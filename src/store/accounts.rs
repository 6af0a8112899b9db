//! Accounts and their sealed credentials, for both back-ends.
//!
//! Each query is written once, with numbered parameters (which SQLite reads too), and compiled
//! for each back-end's connection type by `queries!` (as in [`super::webhooks`]).

use chrono::{DateTime, Utc};

use super::{
    rows::{bind_account, to_json, ts, AccountRow, ACCOUNT_COLUMNS},
    AccountPatch, Sealed, StoreError,
};
use crate::domain::{Account, AccountHealth, AccountId, ProviderKind};

macro_rules! queries {
    ($db:ty) => {
        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Writes an account row; with `keep_existing` a row already there is kept (copies),
        /// otherwise it is a [`StoreError::Conflict`]. How many rows were written.
        pub async fn insert(
            conn: &mut Conn,
            row: AccountRow,
            keep_existing: bool,
        ) -> Result<usize, StoreError> {
            let conflict = if keep_existing { " ON CONFLICT DO NOTHING" } else { "" };
            let done = bind_account(
                sqlx::query(&format!(
                    "INSERT INTO accounts ({ACCOUNT_COLUMNS}) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14){conflict}"
                )),
                row,
            )
            .execute(&mut *conn)
            .await;
            match done {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    Err(StoreError::Conflict)
                }
                other => Ok(other?.rows_affected() as usize),
            }
        }

        pub async fn get(
            conn: &mut Conn,
            tenant: &str,
            id: &str,
        ) -> Result<Option<(Account, Sealed)>, StoreError> {
            sqlx::query_as::<_, AccountRow>(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = $1 AND id = $2"
            ))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .map(AccountRow::into_parts)
            .transpose()
        }

        pub async fn list(conn: &mut Conn, tenant: &str) -> Result<Vec<Account>, StoreError> {
            sqlx::query_as::<_, AccountRow>(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = $1 ORDER BY id"
            ))
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| r.into_parts().map(|(account, _)| account))
            .collect()
        }

        /// The id and provider of each of the tenant's accounts, by id: what a list across
        /// accounts picks from, without reading (or decoding) anything else.
        pub async fn keys(
            conn: &mut Conn,
            tenant: &str,
        ) -> Result<Vec<(AccountId, ProviderKind)>, StoreError> {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, provider FROM accounts WHERE tenant = $1 ORDER BY id",
            )
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await?;
            rows.into_iter()
                .map(|(id, provider)| {
                    let corrupt = |e: String| StoreError::Corrupt(e);
                    let id = id.parse().map_err(|e: crate::domain::AccountIdError| corrupt(e.to_string()))?;
                    let provider = std::str::FromStr::from_str(&provider)
                        .map_err(|e: crate::domain::UnknownProvider| corrupt(e.to_string()))?;
                    Ok((id, provider))
                })
                .collect()
        }

        /// Every row, in a stable order (copies and key rotation).
        pub async fn rows(conn: &mut Conn) -> Result<Vec<AccountRow>, StoreError> {
            Ok(sqlx::query_as(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY tenant, id"
            ))
            .fetch_all(&mut *conn)
            .await?)
        }

        /// Applies a patch (in the caller's transaction) and reads the account back; `None`
        /// when there is no such account.
        pub async fn update(
            conn: &mut Conn,
            tenant: &str,
            id: &str,
            patch: &AccountPatch,
            now: DateTime<Utc>,
        ) -> Result<Option<Account>, StoreError> {
            let now = ts(now);
            // First: it says whether the account exists and, on PostgreSQL, takes the row's
            // lock until the transaction ends.
            let touched = sqlx::query(
                "UPDATE accounts SET updated_at = $1 WHERE tenant = $2 AND id = $3",
            )
            .bind(&now)
            .bind(tenant)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            if touched.rows_affected() == 0 {
                return Ok(None);
            }
            if let Some(name) = &patch.display_name {
                sqlx::query("UPDATE accounts SET display_name = $1 WHERE tenant = $2 AND id = $3")
                    .bind(name)
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            if let Some(settings) = &patch.settings {
                sqlx::query("UPDATE accounts SET settings = $1 WHERE tenant = $2 AND id = $3")
                    .bind(to_json(settings))
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *conn)
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
                .bind(tenant)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            Ok(get(conn, tenant, id).await?.map(|(account, _)| account))
        }

        pub async fn delete(conn: &mut Conn, tenant: &str, id: &str) -> Result<bool, StoreError> {
            let done = sqlx::query("DELETE FROM accounts WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn record_health(
            conn: &mut Conn,
            tenant: &str,
            id: &str,
            health: &AccountHealth,
        ) -> Result<(), StoreError> {
            sqlx::query("UPDATE accounts SET health = $1 WHERE tenant = $2 AND id = $3")
                .bind(to_json(health))
                .bind(tenant)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        /// Every account's sealed credentials, with its tenant (key rotation).
        pub async fn sealed(
            conn: &mut Conn,
        ) -> Result<Vec<(String, AccountId, Sealed)>, StoreError> {
            rows(conn)
                .await?
                .into_iter()
                .map(|r| {
                    let tenant = r.tenant.clone();
                    r.into_parts().map(|(a, sealed)| (tenant, a.id, sealed))
                })
                .collect()
        }

        /// Replaces sealed credentials still sealed under `from_key_id`.
        pub async fn reseal(
            conn: &mut Conn,
            tenant: &str,
            id: &str,
            from_key_id: &str,
            sealed: &Sealed,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "UPDATE accounts SET key_id = $1, nonce = $2, ciphertext = $3 \
                 WHERE tenant = $4 AND id = $5 AND key_id = $6",
            )
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(tenant)
            .bind(id)
            .bind(from_key_id)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() > 0)
        }
    };
}

pub(super) mod sqlite {
    queries!(sqlx::Sqlite);
}

pub(super) mod postgres {
    queries!(sqlx::Postgres);
}
