//! The [`Store`](super::Store) implementation shared by both SQL back-ends.
//!
//! `sql_store!` writes the trait once over the per-aggregate queries (`accounts`, `operations`,
//! `idempotency`, `events`, `webhooks`, `keys`, `copy`), each also written once and compiled
//! for the back-end's connection type. A back-end supplies only what really differs:
//! - `read`, `write` and `transaction`: how work gets a connection (SQLite: its one writer at
//!   a time, `BEGIN IMMEDIATE`; PostgreSQL: on the store's own runtime);
//! - whether claims and event writers take PostgreSQL advisory locks (replicas) or not;
//! - `pending`: its in-memory index of unfinished operations, kept on every write, and
//!   `queued`: the delivery worker's signal, moved on every write that queues deliveries;
//! - any trait method it answers otherwise (PostgreSQL's `account_stamp`), as extra items.

/// The advisory lock delivery claims take turns on across PostgreSQL replicas ("snapgate").
pub(super) const DELIVERY_CLAIM_LOCK: i64 = 0x736e_6170_6761_7465;

macro_rules! sql_store {
    ($store:ty, $backend:ident, advisory_locks: $advisory:literal, { $($extra:tt)* }) => {
        use $crate::store::{
            accounts::$backend as accounts, copy::$backend as copy, events::$backend as events,
            idempotency::$backend as idempotency, keys::$backend as keys,
            operations::$backend as operations, policies::{$backend as policies, PolicyRow, RunRow},
            retention::$backend as retention, rows::{AccountRow, EventRow, OperationRow},
            Cutoffs, PruneCounts, RunUpdate,
            webhooks::{$backend as webhooks, Claimed, WebhookRow},
            AccountPatch, Backlog, Counts, Dump, IdempotencyBegin, NewAccount, OperationFilter,
            Sealed, Store, StoreError,
        };
        use $crate::domain::{
            Account, AccountHealth, AccountId, Delivery, Event, EventType, Operation,
            OperationKind, Policy, PolicyRun, PolicySnapshot, Webhook,
        };
        use chrono::{DateTime, Utc};

        fn event_rows(tenant: &str, events: &[Event]) -> Vec<EventRow> {
            events.iter().map(|e| EventRow::of(tenant, e)).collect()
        }

        impl $store {
            /// After an append commits: the delivery worker is woken if it queued any.
            fn appended(&self, appended: $crate::store::events::Appended) {
                if appended.deliveries > 0 {
                    self.queued.bump();
                }
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            $($extra)*

            async fn ping(&self) -> Result<(), StoreError> {
                self.read(|c| Box::pin(async move {
                    sqlx::query("SELECT 1").execute(&mut *c).await?;
                    Ok(())
                }))
                .await
            }

            async fn insert_account(&self, new: NewAccount) -> Result<Account, StoreError> {
                let (tenant, id) = (new.tenant.clone(), new.id.to_string());
                let row = AccountRow::of_new(&new);
                self.write(move |c| Box::pin(async move {
                    accounts::insert(c, row, false).await?;
                    accounts::get(c, &tenant, &id).await
                }))
                .await?
                .map(|(account, _)| account)
                .ok_or_else(|| StoreError::Corrupt("inserted account vanished".into()))
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
                let (tenant, id) = (tenant.to_owned(), id.to_string());
                self.read(move |c| Box::pin(async move { accounts::get(c, &tenant, &id).await }))
                    .await
            }

            async fn list_accounts(&self, tenant: &str) -> Result<Vec<Account>, StoreError> {
                let tenant = tenant.to_owned();
                self.read(move |c| Box::pin(async move { accounts::list(c, &tenant).await }))
                    .await
            }

            async fn account_keys(
                &self,
                tenant: &str,
            ) -> Result<Vec<(AccountId, crate::domain::ProviderKind)>, StoreError> {
                let tenant = tenant.to_owned();
                self.read(move |c| Box::pin(async move { accounts::keys(c, &tenant).await }))
                    .await
            }

            async fn update_account(
                &self,
                tenant: &str,
                id: &AccountId,
                patch: AccountPatch,
                now: DateTime<Utc>,
            ) -> Result<Option<Account>, StoreError> {
                let (tenant, id) = (tenant.to_owned(), id.to_string());
                self.transaction(move |c| Box::pin(async move {
                    accounts::update(c, &tenant, &id, &patch, now).await
                }))
                .await
            }

            async fn delete_account(
                &self,
                tenant: &str,
                id: &AccountId,
            ) -> Result<bool, StoreError> {
                let (tenant, id) = (tenant.to_owned(), id.to_string());
                self.write(move |c| Box::pin(async move {
                    accounts::delete(c, &tenant, &id).await
                }))
                .await
            }

            async fn record_health(
                &self,
                tenant: &str,
                id: &AccountId,
                health: &AccountHealth,
            ) -> Result<(), StoreError> {
                let (tenant, id, health) = (tenant.to_owned(), id.to_string(), health.clone());
                self.write(move |c| Box::pin(async move {
                    accounts::record_health(c, &tenant, &id, &health).await
                }))
                .await
            }

            async fn sealed_credentials(
                &self,
            ) -> Result<Vec<(String, AccountId, Sealed)>, StoreError> {
                self.read(|c| Box::pin(async move { accounts::sealed(c).await })).await
            }

            async fn reseal(
                &self,
                tenant: &str,
                id: &AccountId,
                from_key_id: &str,
                sealed: &Sealed,
            ) -> Result<bool, StoreError> {
                let (tenant, id) = (tenant.to_owned(), id.to_string());
                let (from, sealed) = (from_key_id.to_owned(), sealed.clone());
                self.write(move |c| Box::pin(async move {
                    accounts::reseal(c, &tenant, &id, &from, &sealed).await
                }))
                .await
            }

            async fn insert_operation(
                &self,
                tenant: &str,
                op: &Operation,
                events: &[Event],
            ) -> Result<(), StoreError> {
                let (owner, row) = (tenant.to_owned(), OperationRow::of(op));
                let events = event_rows(tenant, events);
                let appended = self
                    .transaction(move |c| Box::pin(async move {
                        operations::insert(c, owner, row, false).await?;
                        events::insert(c, &events, false).await
                    }))
                    .await?;
                self.pending.set(tenant, op);
                self.appended(appended);
                Ok(())
            }

            async fn get_operation(
                &self,
                tenant: &str,
                id: &str,
            ) -> Result<Option<Operation>, StoreError> {
                let (tenant, id) = (tenant.to_owned(), id.to_owned());
                self.read(move |c| Box::pin(async move {
                    operations::get(c, &tenant, &id).await
                }))
                .await
            }

            async fn update_operation(
                &self,
                tenant: &str,
                op: &Operation,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let (owner, row) = (tenant.to_owned(), OperationRow::of(op));
                let events = event_rows(tenant, events);
                let appended = self
                    .transaction(move |c| Box::pin(async move {
                        if !operations::update(c, &owner, row).await? {
                            return Ok(None);
                        }
                        events::insert(c, &events, false).await.map(Some)
                    }))
                    .await?;
                let Some(appended) = appended else {
                    return Ok(false);
                };
                self.pending.set(tenant, op);
                self.appended(appended);
                Ok(true)
            }

            async fn list_operations(
                &self,
                tenant: &str,
                filter: &OperationFilter,
            ) -> Result<Vec<Operation>, StoreError> {
                let (tenant, filter) = (tenant.to_owned(), filter.clone());
                self.read(move |c| Box::pin(async move {
                    operations::list(c, &tenant, &filter).await
                }))
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
            ) -> Result<std::collections::HashMap<String, OperationKind>, StoreError> {
                Ok(self.pending.of_tenant(tenant))
            }

            fn operation_changes(&self) -> tokio::sync::broadcast::Receiver<(String, String)> {
                self.pending.subscribe()
            }

            fn deliveries_queued(&self) -> tokio::sync::watch::Receiver<u64> {
                self.queued.subscribe()
            }

            async fn claim_due(
                &self,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: u32,
                per_tenant: u32,
            ) -> Result<Vec<(String, Operation)>, StoreError> {
                self.transaction(move |c| Box::pin(async move {
                    operations::claim_due(c, now, lease_until, limit, per_tenant).await
                }))
                .await
            }

            async fn schedule_check(
                &self,
                tenant: &str,
                id: &str,
                next_check_at: DateTime<Utc>,
                checks: u32,
            ) -> Result<(), StoreError> {
                let (tenant, id) = (tenant.to_owned(), id.to_owned());
                self.write(move |c| Box::pin(async move {
                    operations::schedule_check(c, &tenant, &id, next_check_at, checks).await
                }))
                .await
            }

            async fn renew_claim(
                &self,
                tenant: &str,
                id: &str,
                lease_until: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let (tenant, id) = (tenant.to_owned(), id.to_owned());
                self.write(move |c| Box::pin(async move {
                    operations::renew_claim(c, &tenant, &id, lease_until).await
                }))
                .await
            }

            async fn append_events(
                &self,
                tenant: &str,
                events: &[Event],
            ) -> Result<(), StoreError> {
                let events = event_rows(tenant, events);
                let appended = self
                    .transaction(move |c| Box::pin(async move {
                        events::insert(c, &events, false).await
                    }))
                    .await?;
                self.appended(appended);
                Ok(())
            }

            async fn list_events(
                &self,
                tenant: &str,
                after: i64,
                types: &[EventType],
                limit: u32,
            ) -> Result<Vec<(i64, Event)>, StoreError> {
                let tenant = tenant.to_owned();
                let types: Vec<String> = types.iter().map(|t| t.as_str().to_owned()).collect();
                self.read(move |c| Box::pin(async move {
                    events::list(c, &tenant, after, &types, limit).await
                }))
                .await?
                .into_iter()
                .map(EventRow::into_event)
                .collect()
            }

            async fn begin_idempotent(
                &self,
                tenant: &str,
                key: &str,
                fingerprint: &str,
                now: DateTime<Utc>,
                lease: std::time::Duration,
            ) -> Result<IdempotencyBegin, StoreError> {
                let (tenant, key) = (tenant.to_owned(), key.to_owned());
                let fingerprint = fingerprint.to_owned();
                self.transaction(move |c| Box::pin(async move {
                    idempotency::begin(c, &tenant, &key, &fingerprint, now, lease).await
                }))
                .await
            }

            async fn renew_idempotent(
                &self,
                tenant: &str,
                key: &str,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let (tenant, key) = (tenant.to_owned(), key.to_owned());
                self.write(move |c| Box::pin(async move {
                    idempotency::renew(c, &tenant, &key, now).await
                }))
                .await
            }

            async fn finish_idempotent(
                &self,
                tenant: &str,
                key: &str,
                status: u16,
                body: &str,
            ) -> Result<(), StoreError> {
                let (tenant, key, body) = (tenant.to_owned(), key.to_owned(), body.to_owned());
                self.write(move |c| Box::pin(async move {
                    idempotency::finish(c, &tenant, &key, status, &body).await
                }))
                .await
            }

            async fn abandon_idempotent(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
                let (tenant, key) = (tenant.to_owned(), key.to_owned());
                self.write(move |c| Box::pin(async move {
                    idempotency::abandon(c, &tenant, &key).await
                }))
                .await
            }

            async fn prune_expired(
                &self,
                cutoffs: Cutoffs,
                batch: u32,
            ) -> Result<PruneCounts, StoreError> {
                self.transaction(move |c| Box::pin(async move {
                    retention::prune(c, cutoffs, batch).await
                }))
                .await
            }

            async fn events_pruned_through(&self) -> Result<i64, StoreError> {
                self.read(|c| Box::pin(async move { retention::events_pruned_through(c).await }))
                    .await
            }

            async fn insert_policy(&self, policy: &Policy) -> Result<(), StoreError> {
                let row = PolicyRow::of(policy);
                self.write(move |c| Box::pin(async move { policies::insert(c, row).await }))
                    .await
            }

            async fn get_policy(
                &self,
                tenant: &str,
                id: &str,
            ) -> Result<Option<Policy>, StoreError> {
                let (tenant, id) = (tenant.to_owned(), id.to_owned());
                self.read(move |c| Box::pin(async move { policies::get(c, &tenant, &id).await }))
                    .await
            }

            async fn list_policies(&self, tenant: &str) -> Result<Vec<Policy>, StoreError> {
                let tenant = tenant.to_owned();
                self.read(move |c| Box::pin(async move { policies::list(c, &tenant).await }))
                    .await
            }

            async fn update_policy(&self, policy: &Policy) -> Result<bool, StoreError> {
                let row = PolicyRow::of(policy);
                self.write(move |c| Box::pin(async move { policies::update(c, row).await }))
                    .await
            }

            async fn delete_policy(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
                let (tenant, id) = (tenant.to_owned(), id.to_owned());
                self.transaction(move |c| Box::pin(async move {
                    policies::delete(c, &tenant, &id).await
                }))
                .await
            }

            async fn due_policies(
                &self,
                now: DateTime<Utc>,
                limit: u32,
            ) -> Result<Vec<Policy>, StoreError> {
                self.read(move |c| Box::pin(async move { policies::due(c, now, limit).await }))
                    .await
            }

            async fn start_run(
                &self,
                policy: &Policy,
                expected: DateTime<Utc>,
                run: &PolicyRun,
            ) -> Result<bool, StoreError> {
                let row = RunRow::of(&policy.tenant, run, Some(run.started_at));
                let policy = policy.clone();
                self.transaction(move |c| Box::pin(async move {
                    policies::start_run(c, &policy, expected, row).await
                }))
                .await
            }

            async fn claim_runs(
                &self,
                now: DateTime<Utc>,
                claimant: &str,
                until: DateTime<Utc>,
                limit: u32,
            ) -> Result<Vec<(String, PolicyRun)>, StoreError> {
                let claimant = claimant.to_owned();
                let rows = self
                    .transaction(move |c| Box::pin(async move {
                        policies::claim_runs(c, now, &claimant, until, limit).await
                    }))
                    .await?;
                rows.into_iter().map(RunRow::into_run).collect()
            }

            async fn renew_run_claim(
                &self,
                tenant: &str,
                run_id: &str,
                claimant: &str,
                until: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let (tenant, run_id, claimant) =
                    (tenant.to_owned(), run_id.to_owned(), claimant.to_owned());
                self.transaction(move |c| Box::pin(async move {
                    policies::renew_run_claim(c, &tenant, &run_id, &claimant, until).await
                }))
                .await
            }

            async fn save_run(&self, u: RunUpdate) -> Result<bool, StoreError> {
                let row = RunRow::of(&u.tenant, &u.run, u.check_at);
                let events = event_rows(&u.tenant, &u.events);
                let (saved, appended) = self
                    .transaction(move |c| Box::pin(async move {
                        if !policies::save_run(c, row, &u.claimant, u.release).await? {
                            return Ok((false, Default::default()));
                        }
                        for s in &u.snapshots {
                            policies::record_snapshot(c, &u.tenant, &u.run.policy_id, s).await?;
                        }
                        // The event log's write is the transaction's last step.
                        Ok((true, events::insert(c, &events, false).await?))
                    }))
                    .await?;
                self.appended(appended);
                Ok(saved)
            }

            async fn policy_runs(
                &self,
                tenant: &str,
                policy_id: &str,
                before: Option<DateTime<Utc>>,
                limit: u32,
            ) -> Result<Vec<PolicyRun>, StoreError> {
                let (tenant, id) = (tenant.to_owned(), policy_id.to_owned());
                self.read(move |c| Box::pin(async move {
                    policies::runs(c, &tenant, &id, before, limit).await
                }))
                .await
            }

            async fn policy_snapshots(
                &self,
                tenant: &str,
                policy_id: &str,
            ) -> Result<Vec<PolicySnapshot>, StoreError> {
                let (tenant, id) = (tenant.to_owned(), policy_id.to_owned());
                self.read(move |c| Box::pin(async move {
                    policies::snapshots(c, &tenant, &id).await
                }))
                .await
            }

            async fn insert_webhook(
                &self,
                webhook: &Webhook,
                secrets: &Sealed,
            ) -> Result<(), StoreError> {
                let row = WebhookRow::of(webhook, secrets);
                self.write(move |c| Box::pin(async move {
                    webhooks::insert_webhook(c, row).await
                }))
                .await
            }

            async fn get_webhook(
                &self,
                tenant: &str,
                id: &str,
            ) -> Result<Option<(Webhook, Sealed)>, StoreError> {
                let (tenant, id) = (tenant.to_owned(), id.to_owned());
                self.read(move |c| Box::pin(async move {
                    webhooks::get_webhook(c, &tenant, &id).await
                }))
                .await
            }

            async fn list_webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError> {
                let tenant = tenant.to_owned();
                self.read(move |c| Box::pin(async move {
                    webhooks::list_webhooks(c, &tenant).await
                }))
                .await
            }

            async fn backlog(&self) -> Result<Backlog, StoreError> {
                self.read(|c| Box::pin(async move { webhooks::backlog(c).await })).await
            }

            async fn update_webhook(
                &self,
                webhook: &Webhook,
                secrets: Option<&Sealed>,
            ) -> Result<bool, StoreError> {
                let (webhook, secrets) = (webhook.clone(), secrets.cloned());
                self.write(move |c| Box::pin(async move {
                    webhooks::update_webhook(c, &webhook, secrets.as_ref()).await
                }))
                .await
            }

            async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
                let (tenant, id) = (tenant.to_owned(), id.to_owned());
                self.transaction(move |c| Box::pin(async move {
                    webhooks::delete_webhook(c, &tenant, &id).await
                }))
                .await
            }

            async fn insert_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
                let delivery = delivery.clone();
                self.write(move |c| Box::pin(async move {
                    webhooks::insert_delivery(c, &delivery).await
                }))
                .await?;
                self.queued.bump();
                Ok(())
            }

            async fn list_deliveries(
                &self,
                tenant: &str,
                webhook_id: &str,
                before: Option<i64>,
                limit: u32,
            ) -> Result<Vec<(i64, Delivery)>, StoreError> {
                let (tenant, webhook) = (tenant.to_owned(), webhook_id.to_owned());
                self.read(move |c| Box::pin(async move {
                    webhooks::list_deliveries(c, &tenant, &webhook, before, limit).await
                }))
                .await
            }

            async fn get_delivery(
                &self,
                tenant: &str,
                webhook_id: &str,
                id: &str,
            ) -> Result<Option<Delivery>, StoreError> {
                let (tenant, webhook, id) =
                    (tenant.to_owned(), webhook_id.to_owned(), id.to_owned());
                self.read(move |c| Box::pin(async move {
                    webhooks::get_delivery(c, &tenant, &webhook, &id).await
                }))
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
                self.transaction(move |c| Box::pin(async move {
                    if $advisory {
                        // Claims take turns across replicas (to the end of the transaction),
                        // so the in-flight count each sees is exact and no delivery is
                        // claimed twice.
                        sqlx::query("SELECT pg_advisory_xact_lock($1)")
                            .bind($crate::store::sql::DELIVERY_CLAIM_LOCK)
                            .execute(&mut *c)
                            .await?;
                    }
                    webhooks::claim(c, now, lease_until, limit, per_endpoint, per_tenant).await
                }))
                .await
            }

            async fn finish_delivery(
                &self,
                delivery: &Delivery,
                token: &str,
                disable: Option<&str>,
            ) -> Result<bool, StoreError> {
                let (delivery, token) = (delivery.clone(), token.to_owned());
                let disable = disable.map(str::to_owned);
                self.transaction(move |c| Box::pin(async move {
                    webhooks::finish(c, &delivery, &token, disable.as_deref()).await
                }))
                .await
            }

            async fn sealed_webhook_secrets(
                &self,
            ) -> Result<Vec<(String, String, Sealed)>, StoreError> {
                self.read(|c| Box::pin(async move { webhooks::sealed_secrets(c).await })).await
            }

            async fn reseal_webhook(
                &self,
                tenant: &str,
                id: &str,
                from_key_id: &str,
                sealed: &Sealed,
            ) -> Result<bool, StoreError> {
                let (tenant, id) = (tenant.to_owned(), id.to_owned());
                let (from, sealed) = (from_key_id.to_owned(), sealed.clone());
                self.write(move |c| Box::pin(async move {
                    webhooks::reseal(c, &tenant, &id, &from, &sealed).await
                }))
                .await
            }

            async fn announce_keys(
                &self,
                replica: &str,
                key_ids: &[String],
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let (replica, key_ids) = (replica.to_owned(), key_ids.to_vec());
                self.write(move |c| Box::pin(async move {
                    keys::announce(c, &replica, &key_ids, now).await
                }))
                .await
            }

            async fn retire_replica(&self, replica: &str) -> Result<(), StoreError> {
                let replica = replica.to_owned();
                self.write(move |c| Box::pin(async move { keys::retire(c, &replica).await }))
                    .await
            }

            async fn announced_keys(
                &self,
                since: DateTime<Utc>,
            ) -> Result<Vec<(String, String)>, StoreError> {
                self.read(move |c| Box::pin(async move { keys::announced(c, since).await }))
                    .await
            }

            async fn stored_key_ids(&self) -> Result<Vec<String>, StoreError> {
                self.read(|c| Box::pin(async move { keys::stored(c).await })).await
            }

            async fn dump(&self) -> Result<Dump, StoreError> {
                self.read(|c| Box::pin(async move { copy::dump(c).await })).await
            }

            async fn load(&self, dump: Dump) -> Result<Counts, StoreError> {
                let written = self
                    .transaction(move |c| Box::pin(async move { copy::load(c, dump).await }))
                    .await?;
                let unfinished = self
                    .read(|c| Box::pin(async move { operations::unfinished(c).await }))
                    .await?;
                self.pending.replace(unfinished);
                Ok(written)
            }
        }
    };
}
