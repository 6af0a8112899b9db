//! Webhook endpoints and the delivery outbox, for both back-ends.
//!
//! The SQL is written once (numbered parameters, which SQLite reads too) and compiled for each
//! back-end's connection type by [`queries!`]; the back-ends only open the transactions (and,
//! on PostgreSQL, serialize claims across replicas).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{
    rows::{json, parse_ts, to_json, ts, EventRow},
    Sealed, StoreError,
};
use crate::domain::{Attempt, Delivery, DeliveryState, EventType, Webhook};

/// The columns of `webhooks`, in table order.
pub(super) const WEBHOOK_COLUMNS: &str = "tenant, id, url, description, event_types, enabled, \
    disabled_reason, key_id, nonce, ciphertext, previous_secret_until, created_at, updated_at";

/// The columns of `deliveries` a [`DeliveryRow`] holds.
pub(super) const DELIVERY_COLUMNS: &str = "seq, id, tenant, webhook_id, event_id, event_type, \
    payload, state, attempts, next_attempt_at, created_at";

/// One `webhooks` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct WebhookRow {
    pub tenant: String,
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    pub event_types: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub previous_secret_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl WebhookRow {
    pub fn of(w: &Webhook, secrets: &Sealed) -> Self {
        Self {
            tenant: w.tenant.clone(),
            id: w.id.clone(),
            url: w.url.clone(),
            description: w.description.clone(),
            event_types: to_json(&w.event_types),
            enabled: w.enabled,
            disabled_reason: w.disabled_reason.clone(),
            key_id: secrets.key_id.clone(),
            nonce: secrets.nonce.clone(),
            ciphertext: secrets.ciphertext.clone(),
            previous_secret_until: w.previous_secret_until.map(ts),
            created_at: ts(w.created_at),
            updated_at: ts(w.updated_at),
        }
    }

    pub fn into_parts(self) -> Result<(Webhook, Sealed), StoreError> {
        let webhook = Webhook {
            event_types: json(&self.event_types, "event_types")?,
            previous_secret_until: self
                .previous_secret_until
                .as_deref()
                .map(parse_ts)
                .transpose()?,
            created_at: parse_ts(&self.created_at)?,
            updated_at: parse_ts(&self.updated_at)?,
            id: self.id,
            tenant: self.tenant,
            url: self.url,
            description: self.description,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
        };
        let sealed = Sealed {
            key_id: self.key_id,
            nonce: self.nonce,
            ciphertext: self.ciphertext,
        };
        Ok((webhook, sealed))
    }
}

/// One `deliveries` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct DeliveryRow {
    pub seq: i64,
    pub id: String,
    pub tenant: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub state: String,
    pub attempts: String,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
}

impl DeliveryRow {
    pub fn of(d: &Delivery) -> Self {
        Self {
            seq: 0,
            id: d.id.clone(),
            tenant: d.tenant.clone(),
            webhook_id: d.webhook_id.clone(),
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            payload: d.payload.clone(),
            state: super::rows::enum_text(&d.state),
            attempts: to_json(&d.attempts),
            next_attempt_at: d.next_attempt_at.map(ts),
            created_at: ts(d.created_at),
        }
    }

    pub fn into_delivery(self) -> Result<(i64, Delivery), StoreError> {
        let state: DeliveryState = json(&format!("\"{}\"", self.state), "delivery state")?;
        let attempts: Vec<Attempt> = json(&self.attempts, "attempts")?;
        Ok((
            self.seq,
            Delivery {
                id: self.id,
                tenant: self.tenant,
                webhook_id: self.webhook_id,
                event_id: self.event_id,
                event_type: self.event_type,
                payload: self.payload,
                state,
                attempts,
                next_attempt_at: self.next_attempt_at.as_deref().map(parse_ts).transpose()?,
                created_at: parse_ts(&self.created_at)?,
            },
        ))
    }
}

/// A delivery claimed for one attempt, with its endpoint and the claim's token.
#[derive(Debug)]
pub struct Claimed {
    pub delivery: Delivery,
    pub webhook: Webhook,
    pub secrets: Sealed,
    /// Proves the claim when the attempt is recorded: a claim that lapsed (and was taken by
    /// another process) records nothing.
    pub token: String,
}

/// Which due deliveries to claim, from `due` in turn order (each tenant's oldest first, then
/// everyone's second, …): at most `per_endpoint` in flight for any endpoint and `per_tenant`
/// for any tenant, counting those already in flight anywhere.
fn choose(
    due: Vec<DeliveryRow>,
    in_flight: Vec<(String, String, i64)>,
    per_endpoint: u32,
    per_tenant: u32,
) -> Vec<DeliveryRow> {
    let mut tenants: HashMap<String, i64> = HashMap::new();
    for (tenant, _, n) in &in_flight {
        *tenants.entry(tenant.clone()).or_default() += n;
    }
    let mut busy: HashMap<(String, String), i64> = in_flight
        .into_iter()
        .map(|(tenant, webhook, n)| ((tenant, webhook), n))
        .collect();
    due.into_iter()
        .filter(|d| {
            let tenant = tenants.entry(d.tenant.clone()).or_default();
            let n = busy
                .entry((d.tenant.clone(), d.webhook_id.clone()))
                .or_default();
            let take = *n < i64::from(per_endpoint) && *tenant < i64::from(per_tenant);
            *n += i64::from(take);
            *tenant += i64::from(take);
            take
        })
        .collect()
}

/// The deliveries `events` make: one per event and enabled endpoint of its tenant that wants it.
fn deliveries_for(events: &[EventRow], endpoints: &[(String, String, String)]) -> Vec<Delivery> {
    let mut out = Vec::new();
    for e in events {
        let Ok(kind) = serde_json::from_value::<EventType>(e.kind.clone().into()) else {
            continue;
        };
        for (tenant, webhook_id, types) in endpoints {
            let types: Vec<EventType> = serde_json::from_str(types).unwrap_or_default();
            if *tenant != e.tenant || !(types.is_empty() || types.contains(&kind)) {
                continue;
            }
            let data = serde_json::from_str(&e.data).unwrap_or_default();
            let payload = crate::domain::payload_of(&e.id, &e.kind, &e.created_at, &e.actor, data);
            out.push(Delivery::new(tenant, webhook_id, &e.id, &e.kind, payload));
        }
    }
    out
}

macro_rules! queries {
    ($db:ty) => {
        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Writes an endpoint row; with `keep_existing` a row already there is kept (copies).
        async fn write_webhook(
            conn: &mut Conn,
            r: WebhookRow,
            keep_existing: bool,
        ) -> Result<u64, sqlx::Error> {
            let conflict = if keep_existing { " ON CONFLICT DO NOTHING" } else { "" };
            let done = sqlx::query(&format!(
                "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13){conflict}"
            ))
            .bind(r.tenant)
            .bind(r.id)
            .bind(r.url)
            .bind(r.description)
            .bind(r.event_types)
            .bind(r.enabled)
            .bind(r.disabled_reason)
            .bind(r.key_id)
            .bind(r.nonce)
            .bind(r.ciphertext)
            .bind(r.previous_secret_until)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected())
        }

        /// Writes a delivery row (unclaimed); with `keep_existing` one already there is kept.
        async fn write_delivery(
            conn: &mut Conn,
            r: DeliveryRow,
            keep_existing: bool,
        ) -> Result<u64, sqlx::Error> {
            let conflict = if keep_existing { " ON CONFLICT DO NOTHING" } else { "" };
            let done = sqlx::query(&format!(
                "INSERT INTO deliveries (id, tenant, webhook_id, event_id, event_type, payload, \
                 state, attempts, next_attempt_at, created_at) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10){conflict}"
            ))
            .bind(r.id)
            .bind(r.tenant)
            .bind(r.webhook_id)
            .bind(r.event_id)
            .bind(r.event_type)
            .bind(r.payload)
            .bind(r.state)
            .bind(r.attempts)
            .bind(r.next_attempt_at)
            .bind(r.created_at)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected())
        }

        pub async fn insert_webhook(conn: &mut Conn, r: WebhookRow) -> Result<(), StoreError> {
            let done = write_webhook(conn, r, false).await;
            match done {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    Err(StoreError::Conflict)
                }
                other => other.map(drop).map_err(Into::into),
            }
        }

        pub async fn get_webhook(
            conn: &mut Conn,
            tenant: &str,
            id: &str,
        ) -> Result<Option<(Webhook, Sealed)>, StoreError> {
            sqlx::query_as::<_, WebhookRow>(&format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = $1 AND id = $2"
            ))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .map(WebhookRow::into_parts)
            .transpose()
        }

        /// Unfinished operations and deliveries not yet sent, across tenants (the gauges).
        pub async fn backlog(conn: &mut Conn) -> Result<super::super::Backlog, StoreError> {
            let (operations, deliveries): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM operations WHERE state IN ('pending', 'running')), \
                        (SELECT count(*) FROM deliveries WHERE state = 'pending')",
            )
            .fetch_one(&mut *conn)
            .await?;
            Ok(super::super::Backlog {
                unfinished_operations: operations.max(0) as u64,
                pending_deliveries: deliveries.max(0) as u64,
            })
        }

        pub async fn list_webhooks(
            conn: &mut Conn,
            tenant: &str,
        ) -> Result<Vec<Webhook>, StoreError> {
            sqlx::query_as::<_, WebhookRow>(&format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = $1 ORDER BY created_at, id"
            ))
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| r.into_parts().map(|(w, _)| w))
            .collect()
        }

        /// Saves what a caller may change (and the secrets, when `secrets` is given).
        pub async fn update_webhook(
            conn: &mut Conn,
            w: &Webhook,
            secrets: Option<&Sealed>,
        ) -> Result<bool, StoreError> {
            let r = WebhookRow::of(w, secrets.unwrap_or(&Sealed::default()));
            let mut sql = String::from(
                "UPDATE webhooks SET url = $3, description = $4, event_types = $5, \
                 enabled = $6, disabled_reason = $7, updated_at = $8",
            );
            if secrets.is_some() {
                sql.push_str(
                    ", key_id = $9, nonce = $10, ciphertext = $11, previous_secret_until = $12",
                );
            }
            sql.push_str(" WHERE tenant = $1 AND id = $2");
            let mut q = sqlx::query(&sql)
                .bind(r.tenant)
                .bind(r.id)
                .bind(r.url)
                .bind(r.description)
                .bind(r.event_types)
                .bind(r.enabled)
                .bind(r.disabled_reason)
                .bind(r.updated_at);
            if secrets.is_some() {
                q = q
                    .bind(r.key_id)
                    .bind(r.nonce)
                    .bind(r.ciphertext)
                    .bind(r.previous_secret_until);
            }
            Ok(q.execute(&mut *conn).await?.rows_affected() > 0)
        }

        /// Deletes an endpoint and its delivery log.
        pub async fn delete_webhook(
            conn: &mut Conn,
            tenant: &str,
            id: &str,
        ) -> Result<bool, StoreError> {
            sqlx::query("DELETE FROM deliveries WHERE tenant = $1 AND webhook_id = $2")
                .bind(tenant)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            let done = sqlx::query("DELETE FROM webhooks WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn insert_delivery(conn: &mut Conn, d: &Delivery) -> Result<(), StoreError> {
            write_delivery(conn, DeliveryRow::of(d), false).await?;
            Ok(())
        }

        /// The outbox: a delivery of each of `events` to every enabled endpoint of its tenant
        /// that wants it, on the connection (and so in the transaction) writing the events.
        pub async fn enqueue(conn: &mut Conn, events: &[EventRow]) -> Result<usize, StoreError> {
            let tenants: HashSet<&str> = events.iter().map(|e| e.tenant.as_str()).collect();
            let mut endpoints = Vec::new();
            for tenant in tenants {
                let found: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT tenant, id, event_types FROM webhooks \
                     WHERE tenant = $1 AND enabled",
                )
                .bind(tenant)
                .fetch_all(&mut *conn)
                .await?;
                endpoints.extend(found);
            }
            let deliveries = deliveries_for(events, &endpoints);
            for d in &deliveries {
                insert_delivery(&mut *conn, d).await?;
            }
            Ok(deliveries.len())
        }

        /// An endpoint's deliveries before position `before` (none: the newest), newest first.
        pub async fn list_deliveries(
            conn: &mut Conn,
            tenant: &str,
            webhook_id: &str,
            before: Option<i64>,
            limit: u32,
        ) -> Result<Vec<(i64, Delivery)>, StoreError> {
            sqlx::query_as::<_, DeliveryRow>(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries \
                 WHERE tenant = $1 AND webhook_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4"
            ))
            .bind(tenant)
            .bind(webhook_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(DeliveryRow::into_delivery)
            .collect()
        }

        pub async fn get_delivery(
            conn: &mut Conn,
            tenant: &str,
            webhook_id: &str,
            id: &str,
        ) -> Result<Option<Delivery>, StoreError> {
            sqlx::query_as::<_, DeliveryRow>(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries \
                 WHERE tenant = $1 AND webhook_id = $2 AND id = $3"
            ))
            .bind(tenant)
            .bind(webhook_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.into_delivery().map(|(_, d)| d))
            .transpose()
        }

        /// Claims due deliveries of enabled endpoints (and test deliveries of any) until `lease_until` (see [`choose`]).
        /// Run in a transaction no other claim runs beside.
        pub async fn claim(
            conn: &mut Conn,
            now: DateTime<Utc>,
            lease_until: DateTime<Utc>,
            limit: u32,
            per_endpoint: u32,
            per_tenant: u32,
        ) -> Result<Vec<Claimed>, StoreError> {
            let now = ts(now);
            let in_flight: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT tenant, webhook_id, COUNT(*) FROM deliveries \
                 WHERE state = 'pending' AND lease_until > $1 GROUP BY tenant, webhook_id",
            )
            .bind(&now)
            .fetch_all(&mut *conn)
            .await?;
            // Tenants take turns: each one's due deliveries are numbered oldest first, and the
            // candidates are every tenant's first, then everyone's second, ….
            let due: Vec<DeliveryRow> = sqlx::query_as(
                "SELECT seq, id, tenant, webhook_id, event_id, event_type, payload, state, \
                 attempts, next_attempt_at, created_at FROM ( \
                     SELECT d.seq, d.id, d.tenant, d.webhook_id, d.event_id, d.event_type, \
                     d.payload, d.state, d.attempts, d.next_attempt_at, d.created_at, \
                     ROW_NUMBER() OVER ( \
                         PARTITION BY d.tenant ORDER BY d.next_attempt_at, d.seq \
                     ) AS turn \
                     FROM deliveries d JOIN webhooks w \
                     ON w.tenant = d.tenant AND w.id = d.webhook_id \
                     WHERE d.state = 'pending' AND (w.enabled OR d.event_type = $3) \
                     AND d.next_attempt_at <= $1 \
                     AND (d.lease_until IS NULL OR d.lease_until <= $1) \
                 ) due ORDER BY turn, next_attempt_at, seq LIMIT $2",
            )
            .bind(&now)
            .bind(i64::from(limit) * 4)
            .bind(crate::domain::TEST_EVENT_TYPE)
            .fetch_all(&mut *conn)
            .await?;
            let token = uuid::Uuid::new_v4().simple().to_string();
            let mut claimed = Vec::new();
            let mut endpoints: HashMap<(String, String), (Webhook, Sealed)> = HashMap::new();
            for row in choose(due, in_flight, per_endpoint, per_tenant)
                .into_iter()
                .take(limit as usize)
            {
                sqlx::query("UPDATE deliveries SET lease_until = $1, lease_token = $2 WHERE id = $3")
                    .bind(ts(lease_until))
                    .bind(&token)
                    .bind(&row.id)
                    .execute(&mut *conn)
                    .await?;
                let key = (row.tenant.clone(), row.webhook_id.clone());
                if !endpoints.contains_key(&key) {
                    let Some(found) = get_webhook(&mut *conn, &key.0, &key.1).await? else {
                        continue;
                    };
                    endpoints.insert(key.clone(), found);
                }
                let (webhook, secrets) = endpoints[&key].clone();
                claimed.push(Claimed {
                    delivery: row.into_delivery()?.1,
                    webhook,
                    secrets,
                    token: token.clone(),
                });
            }
            Ok(claimed)
        }

        /// Every endpoint's sealed secrets, by tenant and id.
        pub async fn sealed_secrets(
            conn: &mut Conn,
        ) -> Result<Vec<(String, String, Sealed)>, StoreError> {
            let rows: Vec<(String, String, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
                "SELECT tenant, id, key_id, nonce, ciphertext FROM webhooks ORDER BY tenant, id",
            )
            .fetch_all(&mut *conn)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(tenant, id, key_id, nonce, ciphertext)| {
                    (tenant, id, Sealed { key_id, nonce, ciphertext })
                })
                .collect())
        }

        /// Replaces an endpoint's sealed secrets if still sealed under `from_key_id`.
        pub async fn reseal(
            conn: &mut Conn,
            tenant: &str,
            id: &str,
            from_key_id: &str,
            sealed: &Sealed,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "UPDATE webhooks SET key_id = $1, nonce = $2, ciphertext = $3 \
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

        /// Every endpoint and delivery, as stored (for `store copy`).
        pub async fn dump(
            conn: &mut Conn,
        ) -> Result<(Vec<WebhookRow>, Vec<DeliveryRow>), StoreError> {
            let webhooks = sqlx::query_as(&format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY tenant, created_at, id"
            ))
            .fetch_all(&mut *conn)
            .await?;
            let deliveries = sqlx::query_as(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries ORDER BY seq"
            ))
            .fetch_all(&mut *conn)
            .await?;
            Ok((webhooks, deliveries))
        }

        /// Writes endpoints and deliveries, keeping those already here (same tenant and id);
        /// how many of each were written. Claims are not copied: a pending delivery is due.
        pub async fn load(
            conn: &mut Conn,
            webhooks: Vec<WebhookRow>,
            deliveries: Vec<DeliveryRow>,
        ) -> Result<(usize, usize), StoreError> {
            let mut written = (0, 0);
            for r in webhooks {
                written.0 += write_webhook(&mut *conn, r, true).await? as usize;
            }
            for r in deliveries {
                written.1 += write_delivery(&mut *conn, r, true).await? as usize;
            }
            Ok(written)
        }

        /// Records an attempt's outcome (state, attempts, next attempt) and releases the claim,
        /// if the claim `token` still holds; disables the endpoint with `disable` as the reason
        /// unless a delivery queued after this one has reached it.
        pub async fn finish(
            conn: &mut Conn,
            d: &Delivery,
            token: &str,
            disable: Option<&str>,
        ) -> Result<bool, StoreError> {
            let r = DeliveryRow::of(d);
            let done = sqlx::query(
                "UPDATE deliveries SET state = $1, attempts = $2, next_attempt_at = $3, \
                 lease_until = NULL, lease_token = NULL WHERE id = $4 AND lease_token = $5",
            )
            .bind(r.state)
            .bind(r.attempts)
            .bind(r.next_attempt_at)
            .bind(&r.id)
            .bind(token)
            .execute(&mut *conn)
            .await?;
            let held = done.rows_affected() > 0;
            // Not while the endpoint works: an event that came later and reached it meanwhile
            // says the failures were this delivery's own.
            if let (true, Some(reason)) = (held, disable) {
                sqlx::query(
                    "UPDATE webhooks SET enabled = $1, disabled_reason = $2, updated_at = $3 \
                     WHERE tenant = $4 AND id = $5 AND NOT EXISTS ( \
                         SELECT 1 FROM deliveries later WHERE later.tenant = $4 \
                         AND later.webhook_id = $5 AND later.state = 'succeeded' \
                         AND later.seq > (SELECT seq FROM deliveries WHERE id = $6))",
                )
                .bind(false)
                .bind(reason)
                .bind(ts(Utc::now()))
                .bind(&r.tenant)
                .bind(&r.webhook_id)
                .bind(&r.id)
                .execute(&mut *conn)
                .await?;
            }
            Ok(held)
        }
    };
}

pub(super) mod sqlite {
    queries!(sqlx::Sqlite);
}

pub(super) mod postgres {
    queries!(sqlx::Postgres);
}
