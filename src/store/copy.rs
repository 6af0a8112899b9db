//! `snapgate store copy`: every record dumped from one store and written into another in one
//! transaction, for both back-ends (compiled per back-end by `queries!`).

use super::{rows::TenantOperationRow, Counts, Dump, StoreError};

macro_rules! queries {
    ($db:ty, $backend:ident) => {
        use super::super::{accounts, events, idempotency, operations, policies, webhooks};
        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Every record, as stored.
        pub async fn dump(conn: &mut Conn) -> Result<Dump, StoreError> {
            let (webhooks, deliveries) = webhooks::$backend::dump(conn).await?;
            Ok(Dump {
                accounts: accounts::$backend::rows(conn).await?,
                operations: operations::$backend::rows(conn).await?,
                idempotency: idempotency::$backend::rows(conn).await?,
                events: events::$backend::rows(conn).await?,
                webhooks,
                deliveries,
                policies: policies::$backend::dump(conn).await?,
            })
        }

        /// Writes every record of a dump in the caller's transaction, keeping records already
        /// here; how many of each were written.
        pub async fn load(conn: &mut Conn, dump: Dump) -> Result<Counts, StoreError> {
            let mut written = Counts::default();
            for a in dump.accounts {
                written.accounts += accounts::$backend::insert(conn, a, true).await?;
            }
            for TenantOperationRow { tenant, row } in dump.operations {
                written.operations += operations::$backend::insert(conn, tenant, row, true).await?;
            }
            for k in dump.idempotency {
                written.idempotency_keys += idempotency::$backend::load(conn, k).await?;
            }
            written.events += events::$backend::insert(conn, &dump.events, true)
                .await?
                .events;
            (written.webhooks, written.deliveries) =
                webhooks::$backend::load(conn, dump.webhooks, dump.deliveries).await?;
            (
                written.policies,
                written.policy_runs,
                written.policy_records,
            ) = policies::$backend::load(conn, dump.policies).await?;
            Ok(written)
        }
    };
}

pub(super) mod sqlite {
    queries!(sqlx::Sqlite, sqlite);
}

pub(super) mod postgres {
    queries!(sqlx::Postgres, postgres);
}
