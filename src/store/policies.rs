//! Snapshot policies, their runs and the snapshots they made, for both back-ends (each query
//! written once and compiled per back-end by `queries!`, as in [`super::webhooks`]).
//!
//! Two rules make a policy run once per slot across replicas without a lock: starting a slot
//! moves the policy's `next_slot` compared-and-set in the transaction that inserts the run
//! (whose key is the slot), and a run in progress is worked by whoever holds its claim, which
//! is taken compared-and-set too and lapses if its holder dies.

use chrono::{DateTime, Utc};

use super::{
    rows::{json, parse_ts, to_json, ts},
    StoreError,
};
use crate::domain::{Policy, PolicyRun, PolicySnapshot, RunState};

const POLICY_COLUMNS: &str = "tenant, id, spec, next_slot, next_due_at, created_at, updated_at";
const RUN_COLUMNS: &str = "tenant, policy_id, slot, id, state, check_at, record";

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct PolicyRow {
    tenant: String,
    id: String,
    spec: String,
    next_slot: Option<String>,
    next_due_at: Option<String>,
    created_at: String,
    updated_at: String,
}

impl PolicyRow {
    pub fn of(p: &Policy) -> Self {
        Self {
            tenant: p.tenant.clone(),
            id: p.id.clone(),
            spec: to_json(&p.spec),
            next_slot: p.next_slot.map(ts),
            next_due_at: p.next_due_at.map(ts),
            created_at: ts(p.created_at),
            updated_at: ts(p.updated_at),
        }
    }

    pub fn into_policy(self) -> Result<Policy, StoreError> {
        let opt = |s: Option<String>| s.as_deref().map(parse_ts).transpose();
        Ok(Policy {
            spec: json(&self.spec, "policy spec")?,
            next_slot: opt(self.next_slot)?,
            next_due_at: opt(self.next_due_at)?,
            created_at: parse_ts(&self.created_at)?,
            updated_at: parse_ts(&self.updated_at)?,
            tenant: self.tenant,
            id: self.id,
        })
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct RunRow {
    pub tenant: String,
    policy_id: String,
    slot: String,
    id: String,
    state: String,
    check_at: Option<String>,
    record: String,
}

impl RunRow {
    pub fn of(tenant: &str, run: &PolicyRun, check_at: Option<DateTime<Utc>>) -> Self {
        Self {
            tenant: tenant.to_owned(),
            policy_id: run.policy_id.clone(),
            slot: ts(run.slot),
            id: run.id.clone(),
            state: super::rows::enum_text(&run.state),
            check_at: check_at.filter(|_| run.state == RunState::Running).map(ts),
            record: to_json(run),
        }
    }

    pub fn into_run(self) -> Result<(String, PolicyRun), StoreError> {
        Ok((self.tenant, json(&self.record, "policy run")?))
    }
}

/// Every policy record, as `store copy` carries them (claims on runs are not carried: a copy
/// is made with no replica running).
#[derive(Debug, Default)]
pub(super) struct PolicyDump {
    pub policies: Vec<PolicyRow>,
    pub runs: Vec<RunRow>,
    pub snapshots: Vec<TenantSnapshotRow>,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct TenantSnapshotRow {
    tenant: String,
    policy_id: String,
    snapshot_id: String,
    account: String,
    source_id: String,
    slot: String,
    pruned_at: Option<String>,
    prune_operation: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
struct SnapshotRow {
    snapshot_id: String,
    account: String,
    source_id: String,
    slot: String,
    pruned_at: Option<String>,
    prune_operation: Option<String>,
}

impl SnapshotRow {
    fn into_snapshot(self) -> Result<PolicySnapshot, StoreError> {
        Ok(PolicySnapshot {
            slot: parse_ts(&self.slot)?,
            pruned_at: self.pruned_at.as_deref().map(parse_ts).transpose()?,
            snapshot_id: self.snapshot_id,
            account: self.account,
            source_id: self.source_id,
            prune_operation: self.prune_operation,
        })
    }
}

macro_rules! queries {
    ($db:ty) => {
        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        pub async fn insert(conn: &mut Conn, row: PolicyRow) -> Result<(), StoreError> {
            insert_row(conn, row, "").await.map(|_| ())
        }

        async fn insert_row(
            conn: &mut Conn,
            row: PolicyRow,
            conflict: &str,
        ) -> Result<usize, StoreError> {
            let done = sqlx::query(&format!(
                "INSERT INTO policies ({POLICY_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7){conflict}"
            ))
            .bind(row.tenant)
            .bind(row.id)
            .bind(row.spec)
            .bind(row.next_slot)
            .bind(row.next_due_at)
            .bind(row.created_at)
            .bind(row.updated_at)
            .execute(&mut *conn)
            .await;
            match done {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    Err(StoreError::Conflict)
                }
                other => Ok(other?.rows_affected() as usize),
            }
        }

        /// Every policy record, for a copy.
        pub async fn dump(conn: &mut Conn) -> Result<PolicyDump, StoreError> {
            Ok(PolicyDump {
                policies: sqlx::query_as(&format!("SELECT {POLICY_COLUMNS} FROM policies"))
                    .fetch_all(&mut *conn)
                    .await?,
                runs: sqlx::query_as(&format!("SELECT {RUN_COLUMNS} FROM policy_runs"))
                    .fetch_all(&mut *conn)
                    .await?,
                snapshots: sqlx::query_as(
                    "SELECT tenant, policy_id, snapshot_id, account, source_id, slot, \
                     pruned_at, prune_operation FROM policy_snapshots",
                )
                .fetch_all(&mut *conn)
                .await?,
            })
        }

        /// Writes a dump's policy records, keeping those already here; how many of each
        /// (policies, runs, snapshot records) were written.
        pub async fn load(
            conn: &mut Conn,
            dump: PolicyDump,
        ) -> Result<(usize, usize, usize), StoreError> {
            let mut written = (0, 0, 0);
            for p in dump.policies {
                written.0 += insert_row(conn, p, " ON CONFLICT DO NOTHING").await?;
            }
            for r in dump.runs {
                written.1 += sqlx::query(&format!(
                    "INSERT INTO policy_runs ({RUN_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7) \
                     ON CONFLICT DO NOTHING"
                ))
                .bind(r.tenant)
                .bind(r.policy_id)
                .bind(r.slot)
                .bind(r.id)
                .bind(r.state)
                .bind(r.check_at)
                .bind(r.record)
                .execute(&mut *conn)
                .await?
                .rows_affected() as usize;
            }
            for s in dump.snapshots {
                written.2 += sqlx::query(
                    "INSERT INTO policy_snapshots (tenant, policy_id, snapshot_id, account, \
                     source_id, slot, pruned_at, prune_operation) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO NOTHING",
                )
                .bind(s.tenant)
                .bind(s.policy_id)
                .bind(s.snapshot_id)
                .bind(s.account)
                .bind(s.source_id)
                .bind(s.slot)
                .bind(s.pruned_at)
                .bind(s.prune_operation)
                .execute(&mut *conn)
                .await?
                .rows_affected() as usize;
            }
            Ok(written)
        }

        pub async fn get(
            conn: &mut Conn,
            tenant: &str,
            id: &str,
        ) -> Result<Option<Policy>, StoreError> {
            sqlx::query_as::<_, PolicyRow>(&format!(
                "SELECT {POLICY_COLUMNS} FROM policies WHERE tenant = $1 AND id = $2"
            ))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .map(PolicyRow::into_policy)
            .transpose()
        }

        pub async fn list(conn: &mut Conn, tenant: &str) -> Result<Vec<Policy>, StoreError> {
            sqlx::query_as::<_, PolicyRow>(&format!(
                "SELECT {POLICY_COLUMNS} FROM policies WHERE tenant = $1 ORDER BY created_at, id"
            ))
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(PolicyRow::into_policy)
            .collect()
        }

        /// Replaces a policy's spec and schedule; whether it was there.
        pub async fn update(conn: &mut Conn, row: PolicyRow) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "UPDATE policies SET spec = $3, next_slot = $4, next_due_at = $5, updated_at = $6 \
                 WHERE tenant = $1 AND id = $2",
            )
            .bind(row.tenant)
            .bind(row.id)
            .bind(row.spec)
            .bind(row.next_slot)
            .bind(row.next_due_at)
            .bind(row.updated_at)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        /// Deletes a policy with its runs and its record of what it made (the snapshots
        /// themselves stay at the vendor); whether it was there.
        pub async fn delete(conn: &mut Conn, tenant: &str, id: &str) -> Result<bool, StoreError> {
            for table in ["policy_runs", "policy_snapshots"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE tenant = $1 AND policy_id = $2"
                ))
                .bind(tenant)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            let done = sqlx::query("DELETE FROM policies WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        /// Policies whose next slot is due, the longest due first.
        pub async fn due(
            conn: &mut Conn,
            now: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<Policy>, StoreError> {
            sqlx::query_as::<_, PolicyRow>(&format!(
                "SELECT {POLICY_COLUMNS} FROM policies WHERE next_due_at <= $1 \
                 ORDER BY next_due_at LIMIT $2"
            ))
            .bind(ts(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(PolicyRow::into_policy)
            .collect()
        }

        /// Starts a slot's run if the policy's next slot is still `expected` (no replica
        /// started it yet), moving the schedule on; whether this call started it.
        pub async fn start_run(
            conn: &mut Conn,
            policy: &Policy,
            expected: DateTime<Utc>,
            run: RunRow,
        ) -> Result<bool, StoreError> {
            let moved = sqlx::query(
                "UPDATE policies SET next_slot = $3, next_due_at = $4 \
                 WHERE tenant = $1 AND id = $2 AND next_slot = $5",
            )
            .bind(&policy.tenant)
            .bind(&policy.id)
            .bind(policy.next_slot.map(ts))
            .bind(policy.next_due_at.map(ts))
            .bind(ts(expected))
            .execute(&mut *conn)
            .await?;
            if moved.rows_affected() != 1 {
                return Ok(false);
            }
            let inserted = sqlx::query(&format!(
                "INSERT INTO policy_runs ({RUN_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7) \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(run.tenant)
            .bind(run.policy_id)
            .bind(run.slot)
            .bind(run.id)
            .bind(run.state)
            .bind(run.check_at)
            .bind(run.record)
            .execute(&mut *conn)
            .await?;
            Ok(inserted.rows_affected() == 1)
        }

        /// Claims up to `limit` runs in progress that are due a check and held by nobody
        /// (or by a claim that lapsed), each compared-and-set.
        pub async fn claim_runs(
            conn: &mut Conn,
            now: DateTime<Utc>,
            claimant: &str,
            until: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<RunRow>, StoreError> {
            let now = ts(now);
            let candidates: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT tenant, policy_id, slot FROM policy_runs \
                 WHERE state = 'running' AND check_at <= $1 \
                 AND (claimed_until IS NULL OR claimed_until < $1) \
                 ORDER BY check_at LIMIT $2",
            )
            .bind(&now)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            let mut claimed = Vec::new();
            for (tenant, policy_id, slot) in candidates {
                let row = sqlx::query_as::<_, RunRow>(&format!(
                    "UPDATE policy_runs SET claimed_by = $4, claimed_until = $5 \
                     WHERE tenant = $1 AND policy_id = $2 AND slot = $3 AND state = 'running' \
                     AND (claimed_until IS NULL OR claimed_until < $6) RETURNING {RUN_COLUMNS}"
                ))
                .bind(tenant)
                .bind(policy_id)
                .bind(slot)
                .bind(claimant)
                .bind(ts(until))
                .bind(&now)
                .fetch_optional(&mut *conn)
                .await?;
                claimed.extend(row);
            }
            Ok(claimed)
        }

        /// Extends `claimant`'s claim on a run in progress to `until`; whether it still
        /// held it.
        pub async fn renew_run_claim(
            conn: &mut Conn,
            tenant: &str,
            run_id: &str,
            claimant: &str,
            until: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            let renewed = sqlx::query(
                "UPDATE policy_runs SET claimed_until = $4 \
                 WHERE tenant = $1 AND id = $2 AND claimed_by = $3 AND state = 'running'",
            )
            .bind(tenant)
            .bind(run_id)
            .bind(claimant)
            .bind(ts(until))
            .execute(&mut *conn)
            .await?;
            Ok(renewed.rows_affected() == 1)
        }

        /// Saves a run if `claimant` still holds it (releasing the claim with `release`);
        /// whether it did.
        pub async fn save_run(
            conn: &mut Conn,
            run: RunRow,
            claimant: &str,
            release: bool,
        ) -> Result<bool, StoreError> {
            let release = if release {
                ", claimed_by = NULL, claimed_until = NULL"
            } else {
                ""
            };
            let done = sqlx::query(&format!(
                "UPDATE policy_runs SET state = $4, check_at = $5, record = $6{release} \
                 WHERE tenant = $1 AND policy_id = $2 AND slot = $3 AND claimed_by = $7"
            ))
            .bind(run.tenant)
            .bind(run.policy_id)
            .bind(run.slot)
            .bind(run.state)
            .bind(run.check_at)
            .bind(run.record)
            .bind(claimant)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        /// A policy's runs, newest slot first, those before `before` when given.
        pub async fn runs(
            conn: &mut Conn,
            tenant: &str,
            policy_id: &str,
            before: Option<DateTime<Utc>>,
            limit: u32,
        ) -> Result<Vec<PolicyRun>, StoreError> {
            let older = if before.is_some() {
                " AND slot < $4"
            } else {
                ""
            };
            sqlx::query_as::<_, RunRow>(&format!(
                "SELECT {RUN_COLUMNS} FROM policy_runs WHERE tenant = $1 AND policy_id = $2\
                 {older} ORDER BY slot DESC LIMIT $3"
            ))
            .bind(tenant)
            .bind(policy_id)
            .bind(i64::from(limit))
            .bind(before.map(ts))
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| r.into_run().map(|(_, run)| run))
            .collect()
        }

        /// Records what a policy made, or that it was pruned.
        pub async fn record_snapshot(
            conn: &mut Conn,
            tenant: &str,
            policy_id: &str,
            s: &PolicySnapshot,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO policy_snapshots (tenant, policy_id, snapshot_id, account, \
                 source_id, slot, pruned_at, prune_operation) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) \
                 ON CONFLICT (tenant, policy_id, snapshot_id) DO UPDATE SET slot = excluded.slot, \
                 pruned_at = excluded.pruned_at, prune_operation = excluded.prune_operation",
            )
            .bind(tenant)
            .bind(policy_id)
            .bind(&s.snapshot_id)
            .bind(&s.account)
            .bind(&s.source_id)
            .bind(ts(s.slot))
            .bind(s.pruned_at.map(ts))
            .bind(&s.prune_operation)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// What a policy made and has not pruned, oldest first.
        pub async fn snapshots(
            conn: &mut Conn,
            tenant: &str,
            policy_id: &str,
        ) -> Result<Vec<PolicySnapshot>, StoreError> {
            sqlx::query_as::<_, SnapshotRow>(
                "SELECT snapshot_id, account, source_id, slot, pruned_at, prune_operation \
                 FROM policy_snapshots WHERE tenant = $1 AND policy_id = $2 \
                 AND pruned_at IS NULL ORDER BY slot, snapshot_id",
            )
            .bind(tenant)
            .bind(policy_id)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(SnapshotRow::into_snapshot)
            .collect()
        }
    };
}

pub(super) mod sqlite {
    queries!(sqlx::Sqlite);
}

pub(super) mod postgres {
    queries!(sqlx::Postgres);
}
