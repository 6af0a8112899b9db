//! Snapshot policies: stored per tenant, run by a worker in every `serve` process.
//!
//! Each (policy, slot) runs once across replicas: the slot's run is started by moving the
//! policy's schedule compared-and-set in the transaction that inserts the run, and a run in
//! progress is worked by whoever holds its claim (a lease that lapses if its replica dies, so
//! another goes on with it). Every create goes through the same idempotent path as
//! `POST /v1/snapshots`, under a key derived from the policy, the slot and the source: a run
//! taken over mid-way replays the first create's answer and never makes a second snapshot.
//! Retention prunes only what the policy recorded making, only after that source's new
//! snapshot succeeded, and never the newest.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{worker::Worker, Outcome, Service, ServiceError, SnapshotAction};
use crate::{
    domain::{
        policy::{render_name, Invalid, Kept},
        AccountId, Capability, Event, EventType, OperationState, Policy, PolicyRun, PolicySnapshot,
        PolicySpec, Problem, Pruned, RunState, RunTarget, SnapshotId, TargetState,
    },
    providers::CreateRequest,
    store::RunUpdate,
};

/// How long a source's create is retried while its failure is one a retry may fix (the
/// store, a rate limit, a vendor outage) before the run records it failed.
const RETRY_FOR: TimeDelta = TimeDelta::minutes(15);
/// Runs kept in a policy's view.
const LAST_RUNS: u32 = 5;
/// Sources a run over all of an account's sources snapshots at most (a run's record holds
/// each one).
const MAX_LISTED_SOURCES: usize = 1000;

/// A change to a policy (`PATCH`): absent members stay as they are.
#[derive(Debug, Default)]
pub struct PolicyChanges {
    pub description: Option<Option<String>>,
    pub source_ids: Option<Vec<String>>,
    pub all_sources: Option<bool>,
    pub schedule: Option<crate::domain::Schedule>,
    pub name_template: Option<String>,
    pub retention: Option<crate::domain::Retention>,
    pub enabled: Option<bool>,
}

/// What a policy's next run would do, computed without doing it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    /// The slot the next run is for (`null` while the policy is disabled).
    #[serde(serialize_with = "crate::domain::time::rfc3339_opt")]
    pub slot: Option<DateTime<Utc>>,
    /// When it starts (the slot plus its jitter).
    #[serde(serialize_with = "crate::domain::time::rfc3339_opt")]
    pub run_at: Option<DateTime<Utc>>,
    /// The snapshots it would create.
    pub creates: Vec<PlannedCreate>,
    /// Per source, every snapshot the policy made and holds, with the new one, and what
    /// retention would decide once the new one succeeds: `reasons` empty means pruned.
    pub retention: Vec<PlannedRetention>,
    /// What the account's provider changes about it (e.g. a provider that keeps one snapshot
    /// per source replaces it instead).
    pub notes: Vec<String>,
}

/// One snapshot a run would create.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlannedCreate {
    pub account: String,
    pub source_id: String,
    pub name: String,
}

/// Retention's decision for one source.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlannedRetention {
    pub source_id: String,
    /// Newest first; the first is the snapshot the run would create (`snapshot_id`
    /// `(next)`).
    pub snapshots: Vec<Kept>,
}

fn invalid(e: Invalid) -> ServiceError {
    ServiceError::Invalid {
        field: e.field.to_owned(),
        message: e.message,
    }
}

impl Service {
    /// Stores a new policy after checking it: its rules and its account (of this tenant, whose
    /// provider can create snapshots).
    pub async fn create_policy(
        &self,
        tenant: &str,
        spec: PolicySpec,
    ) -> Result<Policy, ServiceError> {
        self.check_policy(tenant, &spec).await?;
        let now = Utc::now();
        let mut policy = Policy {
            tenant: tenant.to_owned(),
            id: format!("pol_{}", uuid::Uuid::now_v7().simple()),
            spec,
            next_slot: None,
            next_due_at: None,
            created_at: now,
            updated_at: now,
        };
        self.schedule_from(&mut policy, now);
        self.store.insert_policy(&policy).await?;
        Ok(policy)
    }

    async fn check_policy(&self, tenant: &str, spec: &PolicySpec) -> Result<(), ServiceError> {
        spec.check().map_err(invalid)?;
        let account: AccountId = spec.account.parse().map_err(|_| ServiceError::Invalid {
            field: "account".to_owned(),
            message: "account must be an account id".to_owned(),
        })?;
        let resolved = self.resolve(tenant, &account).await.map_err(|e| match e {
            ServiceError::AccountNotFound(id) => ServiceError::Invalid {
                field: "account".to_owned(),
                message: format!("account `{id}` does not exist"),
            },
            other => other,
        })?;
        // Each source id is checked as the provider reads it by the create itself: one it
        // refuses fails that source's snapshot in every run, with the provider's reason.
        resolved.require(Capability::Create)?;
        if spec.all_sources {
            resolved.require(Capability::ListSources)?;
        }
        Ok(())
    }

    /// Sets the policy's next slot after `after` (none while disabled).
    fn schedule_from(&self, policy: &mut Policy, after: DateTime<Utc>) {
        let anchor = anchor(policy);
        policy.next_slot = policy
            .spec
            .enabled
            .then(|| policy.spec.schedule.next_after(anchor, after))
            .flatten();
        policy.next_due_at = policy.next_slot.map(|slot| self.due_at(policy, slot));
    }

    /// When a slot's run starts: the slot, plus a jitter spread per policy and slot, at most
    /// `policies.jitter_secs` and a quarter of the time to the following slot.
    fn due_at(&self, policy: &Policy, slot: DateTime<Utc>) -> DateTime<Utc> {
        let gap = policy
            .spec
            .schedule
            .next_after(anchor(policy), slot)
            .map_or(0, |next| (next - slot).num_seconds().max(0) as u64);
        let max = self.policies.jitter_secs.min(gap / 4);
        if max == 0 {
            return slot;
        }
        let digest = Sha256::digest(format!("{}/{}", policy.id, slot.timestamp()));
        let n = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default());
        slot + TimeDelta::seconds((n % (max + 1)) as i64)
    }

    pub async fn policy(&self, tenant: &str, id: &str) -> Result<Policy, ServiceError> {
        self.store
            .get_policy(tenant, id)
            .await?
            .ok_or_else(|| ServiceError::PolicyNotFound(id.to_owned()))
    }

    /// The tenant's policies, oldest first.
    pub async fn policies(&self, tenant: &str) -> Result<Vec<Policy>, ServiceError> {
        Ok(self.store.list_policies(tenant).await?)
    }

    /// Applies `changes`; a new schedule, or enabling, starts from the next slot after now
    /// (slots missed while disabled are not run).
    pub async fn update_policy(
        &self,
        tenant: &str,
        id: &str,
        changes: PolicyChanges,
    ) -> Result<Policy, ServiceError> {
        let mut policy = self.policy(tenant, id).await?;
        let spec = &mut policy.spec;
        let rescheduled = changes.schedule.is_some() || changes.enabled.is_some();
        if let Some(d) = changes.description {
            spec.description = d;
        }
        // Naming sources turns "all sources" off, and turning it on clears the names, unless
        // the change says both (which the check then refuses).
        match (changes.source_ids, changes.all_sources) {
            (Some(ids), all) => {
                spec.source_ids = ids;
                spec.all_sources = all.unwrap_or(false);
            }
            (None, Some(true)) => {
                spec.source_ids.clear();
                spec.all_sources = true;
            }
            (None, Some(false)) => spec.all_sources = false,
            (None, None) => {}
        }
        if let Some(s) = changes.schedule {
            spec.schedule = s;
        }
        if let Some(t) = changes.name_template {
            spec.name_template = t;
        }
        if let Some(r) = changes.retention {
            spec.retention = r;
        }
        if let Some(e) = changes.enabled {
            spec.enabled = e;
        }
        self.check_policy(tenant, &policy.spec).await?;
        let now = Utc::now();
        if rescheduled {
            self.schedule_from(&mut policy, now);
        }
        policy.updated_at = now;
        if !self.store.update_policy(&policy).await? {
            return Err(ServiceError::PolicyNotFound(id.to_owned()));
        }
        Ok(policy)
    }

    /// Deletes a policy and its runs; the snapshots it made stay at the vendor.
    pub async fn delete_policy(&self, tenant: &str, id: &str) -> Result<(), ServiceError> {
        if self.store.delete_policy(tenant, id).await? {
            Ok(())
        } else {
            Err(ServiceError::PolicyNotFound(id.to_owned()))
        }
    }

    /// A policy's runs, newest first (at most `limit`).
    pub async fn policy_runs(
        &self,
        tenant: &str,
        id: &str,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<PolicyRun>, ServiceError> {
        self.policy(tenant, id).await?;
        Ok(self.store.policy_runs(tenant, id, before, limit).await?)
    }

    /// A policy with its last runs (newest first).
    pub async fn policy_with_runs(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(Policy, Vec<PolicyRun>), ServiceError> {
        let policy = self.policy(tenant, id).await?;
        let runs = self.last_runs(&policy).await?;
        Ok((policy, runs))
    }

    /// A policy's last runs, newest first (the policy already read).
    pub async fn last_runs(&self, policy: &Policy) -> Result<Vec<PolicyRun>, ServiceError> {
        Ok(self
            .store
            .policy_runs(&policy.tenant, &policy.id, None, LAST_RUNS)
            .await?)
    }

    /// What the provider of a policy's account changes about it.
    pub async fn policy_notes(&self, tenant: &str, spec: &PolicySpec) -> Vec<String> {
        let Ok(account) = spec.account.parse::<AccountId>() else {
            return Vec::new();
        };
        let Ok(resolved) = self.resolve(tenant, &account).await else {
            return vec![format!(
                "account `{}` cannot be read now: runs fail until it can",
                spec.account
            )];
        };
        let info = resolved.adapter.info();
        let mut notes = Vec::new();
        if info.capabilities.create_replaces_existing {
            notes.push(format!(
                "{} keeps one snapshot per source: each run replaces the previous one \
                 (retention has only the newest to keep)",
                info.display_name
            ));
        }
        if !info.capabilities.restore {
            notes.push(format!(
                "{} cannot restore through the gateway: the snapshots are for restoring at the \
                 provider",
                info.display_name
            ));
        }
        notes
    }

    /// What the next run of policy `id` would create and prune, without doing it.
    pub async fn preview_policy(&self, tenant: &str, id: &str) -> Result<Preview, ServiceError> {
        let policy = self.policy(tenant, id).await?;
        let spec = &policy.spec;
        let slot = policy.next_slot;
        let at = slot.unwrap_or_else(Utc::now);
        let sources = self.sources_now(&policy).await?;
        let creates = sources
            .iter()
            .map(|source| PlannedCreate {
                account: spec.account.clone(),
                source_id: source.clone(),
                name: render_name(&spec.name_template, &policy.id, source, at),
            })
            .collect();
        let held = self.store.policy_snapshots(tenant, id).await?;
        let tz = spec.schedule.time_zone();
        let retention = sources
            .iter()
            .map(|source| {
                let mut items = holdings(&held, &spec.account, source);
                items.push(("(next)".to_owned(), at));
                PlannedRetention {
                    source_id: source.clone(),
                    snapshots: spec.retention.apply(&items, tz),
                }
            })
            .collect();
        Ok(Preview {
            slot,
            run_at: policy.next_due_at,
            creates,
            retention,
            notes: self.policy_notes(tenant, spec).await,
        })
    }

    /// The sources a run starting now would snapshot: those named, or all the account's
    /// sources as its provider lists them now.
    async fn sources_now(&self, policy: &Policy) -> Result<Vec<String>, ServiceError> {
        let spec = &policy.spec;
        if !spec.all_sources {
            return Ok(spec.source_ids.clone());
        }
        let account: AccountId = spec.account.parse().map_err(|_| ServiceError::Invalid {
            field: "account".to_owned(),
            message: "the policy's account id does not read".to_owned(),
        })?;
        let listed = self.account_sources(&policy.tenant, &account).await?;
        Ok(listed.into_iter().map(|s| s.id).collect())
    }

    /// Runs policies until the process stops.
    pub async fn run_policies_forever(&self) {
        super::worker::run(&Runner(self)).await
    }

    /// One round: starts every due slot's run and works every run due a check once; how
    /// many runs were worked. Tests and tools drive the runner with it.
    pub async fn run_policies_once(&self) -> Result<usize, ServiceError> {
        let limit = self.policies.max_concurrent_runs.max(1) * 4;
        super::worker::run_once(&Runner(self), limit).await
    }

    /// Starts the run of every due policy's latest due slot (one run, however many slots
    /// were missed), moving its schedule past now.
    async fn start_due(&self, limit: u32) -> Result<(), ServiceError> {
        let now = Utc::now();
        for due in self.store.due_policies(now, limit).await? {
            let Some(expected) = due.next_slot else {
                continue;
            };
            let anchor = anchor(&due);
            let slot = due
                .spec
                .schedule
                .latest_due(anchor, expected, now)
                .unwrap_or(expected);
            let mut moved = due.clone();
            self.schedule_from(&mut moved, now.max(slot));
            let run = new_run(&due, slot, now);
            if self.store.start_run(&moved, expected, &run).await? {
                let lag = (now - slot).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("snapgate_policy_run_lag_seconds").record(lag);
                tracing::info!(policy = %due.id, slot = %slot, "policy run started");
            }
        }
        Ok(())
    }

    /// Works one claimed run a step further: submits its pending creates, follows their
    /// operations, and once every create has ended applies retention and finishes it.
    async fn advance_run(&self, tenant: &str, mut run: PolicyRun) -> Result<(), ServiceError> {
        let Some(policy) = self.store.get_policy(tenant, &run.policy_id).await? else {
            return Ok(());
        };
        if !self.list_sources_of_run(&policy, &mut run).await? {
            // Backing off as the failure lasts (a quarter of its age, 1 minute at most), not
            // walking every list of the account each check.
            let now = Utc::now();
            let waited = (now - run.started_at).num_milliseconds().max(0) as u64 / 4;
            let check_at = now + delta(waited.clamp(self.policies.check_ms, 60_000));
            return self
                .save_run(&policy, &run, Some(check_at), true, Vec::new(), Vec::new())
                .await;
        }
        let mut made = self.submit_and_follow(&policy, &mut run).await?;
        self.note_replaced(&policy, &mut run, &made).await?;
        let mut events = Vec::new();
        let now = Utc::now();
        let done = run.creates_done();
        if done {
            // Each source's new snapshot is recorded first (the claim kept, the run due again
            // should this process die now), so retention sees it.
            self.save_run(
                &policy,
                &run,
                Some(now),
                false,
                std::mem::take(&mut made),
                Vec::new(),
            )
            .await?;
            let pruned = self.prune(&policy, &mut run).await?;
            made = pruned;
            let failed = run.targets.iter().any(|t| t.state == TargetState::Failed);
            run.state = if failed || run.error.is_some() {
                RunState::Failed
            } else {
                RunState::Succeeded
            };
            run.finished_at = Some(now);
            events = run_events(&policy, &run);
            metrics::counter!("snapgate_policy_runs_total", "outcome" => state_name(run.state))
                .increment(1);
        }
        let check_at = (!done).then(|| now + delta(self.policies.check_ms));
        self.save_run(&policy, &run, check_at, true, made, events)
            .await
    }

    /// For a policy over all of an account's sources, lists them once per run as its
    /// targets (a run taken over keeps the list it has). `false`: the listing failed in a way
    /// a retry may fix, and the run is due again later; a failure that persists, or that no
    /// retry fixes, fails the run as a whole with the provider's reason.
    async fn list_sources_of_run(
        &self,
        policy: &Policy,
        run: &mut PolicyRun,
    ) -> Result<bool, ServiceError> {
        let listed = run.sources_listed_at.is_some() || run.error.is_some();
        if listed || !run.targets.is_empty() {
            return Ok(true);
        }
        if !policy.spec.all_sources {
            // The policy was changed to name its sources before this run listed all of them:
            // the run takes the names, rather than ending with nothing done.
            run.targets = policy
                .spec
                .source_ids
                .iter()
                .map(|source| target(policy, source, run.slot))
                .collect();
            return Ok(true);
        }
        let account: AccountId =
            policy
                .spec
                .account
                .parse()
                .map_err(|_| ServiceError::Invalid {
                    field: "account".to_owned(),
                    message: "the policy's account id does not read".to_owned(),
                })?;
        match self.account_sources(&policy.tenant, &account).await {
            Ok(sources) if sources.len() > MAX_LISTED_SOURCES => {
                let too_many = ServiceError::Invalid {
                    field: "all_sources".to_owned(),
                    message: format!(
                        "the account lists {} sources; a run snapshots at most \
                         {MAX_LISTED_SOURCES}: name them in policies with source_ids",
                        sources.len()
                    ),
                };
                run.error = Some(too_many.problem());
            }
            Ok(sources) => {
                run.targets = sources
                    .iter()
                    .map(|source| target(policy, &source.id, run.slot))
                    .collect();
                run.sources_listed_at = Some(Utc::now());
            }
            Err(e) => {
                let problem = e.problem();
                let retry = problem.retryable == Some(true) || problem.status == 429;
                if retry && Utc::now() - run.started_at < RETRY_FOR {
                    return Ok(false);
                }
                run.error = Some(problem);
            }
        }
        Ok(true)
    }

    async fn save_run(
        &self,
        policy: &Policy,
        run: &PolicyRun,
        check_at: Option<DateTime<Utc>>,
        release: bool,
        snapshots: Vec<PolicySnapshot>,
        events: Vec<Event>,
    ) -> Result<(), ServiceError> {
        let saved = self
            .store
            .save_run(RunUpdate {
                tenant: policy.tenant.clone(),
                run: run.clone(),
                check_at,
                claimant: self.replica.clone(),
                release,
                snapshots,
                events,
            })
            .await?;
        if !saved {
            // Our claim lapsed and another replica holds the run: it goes on from the store,
            // and the idempotency keys keep its creates from being made twice.
            tracing::warn!(policy = %policy.id, run = %run.id, "a policy run's claim lapsed");
        }
        Ok(())
    }

    /// Submits each pending create (under its derived key) and follows each running one;
    /// what the run made.
    async fn submit_and_follow(
        &self,
        policy: &Policy,
        run: &mut PolicyRun,
    ) -> Result<Vec<PolicySnapshot>, ServiceError> {
        let (slot, started) = (run.slot, run.started_at);
        let mut steps = Vec::with_capacity(run.targets.len());
        for target in run.targets.iter_mut() {
            steps.push(self.step(policy, slot, started, target));
        }
        let results: Vec<Result<Option<PolicySnapshot>, ServiceError>> =
            futures::stream::iter(steps).buffered(4).collect().await;
        let mut made = Vec::new();
        for result in results {
            made.extend(result?);
        }
        Ok(made)
    }

    /// One source's step: submit it, or follow its operation.
    async fn step(
        &self,
        policy: &Policy,
        slot: DateTime<Utc>,
        started: DateTime<Utc>,
        target: &mut RunTarget,
    ) -> Result<Option<PolicySnapshot>, ServiceError> {
        match target.state {
            TargetState::Pending => self.submit(policy, slot, started, target).await,
            TargetState::Creating => self.follow(policy, slot, target).await,
            TargetState::Succeeded | TargetState::Failed => Ok(None),
        }
    }

    async fn submit(
        &self,
        policy: &Policy,
        slot: DateTime<Utc>,
        started: DateTime<Utc>,
        target: &mut RunTarget,
    ) -> Result<Option<PolicySnapshot>, ServiceError> {
        let account: AccountId = target.account.parse().map_err(|_| ServiceError::Invalid {
            field: "account".to_owned(),
            message: "the policy's account id does not read".to_owned(),
        })?;
        let key = format!(
            "snapgate-policy:{}:{}:{}",
            policy.id,
            slot.timestamp(),
            target.source_id
        );
        let request = serde_json::json!({
            "account": target.account, "source_id": target.source_id, "name": target.name,
        })
        .to_string();
        let capabilities = self
            .resolve(&policy.tenant, &account)
            .await
            .map(|r| r.adapter.info().capabilities)
            .ok();
        let create = CreateRequest {
            source_id: target.source_id.clone(),
            name: target.name.clone(),
            // Where the provider keeps a description, it says who made the snapshot.
            description: capabilities
                .filter(|c| c.describe)
                .map(|_| format!("made by snapgate policy {}", policy.id)),
            replace_existing: capabilities.is_some_and(|c| c.create_replaces_existing),
        };
        let outcome = self
            .create(&policy.tenant, Some(&key), &request, &account, create)
            .await;
        let answer = match outcome {
            Ok(Outcome::Done(a) | Outcome::Replayed(a)) => a,
            Err(e) => {
                let problem = e.problem();
                let retry = problem.retryable == Some(true) || problem.status == 429;
                if retry && Utc::now() - started < RETRY_FOR {
                    return Ok(None);
                }
                target.state = TargetState::Failed;
                target.error = Some(problem);
                return Ok(None);
            }
        };
        if answer.status == 202 {
            target.operation_id = answer.body["operation"]["id"].as_str().map(str::to_owned);
            target.state = TargetState::Creating;
            return self.follow(policy, slot, target).await;
        }
        target.state = TargetState::Failed;
        target.error = serde_json::from_value::<Problem>(answer.body).ok();
        Ok(None)
    }

    /// Reads a create's operation (refreshed from the vendor); what it made once it succeeded.
    async fn follow(
        &self,
        policy: &Policy,
        slot: DateTime<Utc>,
        target: &mut RunTarget,
    ) -> Result<Option<PolicySnapshot>, ServiceError> {
        let Some(op_id) = target.operation_id.clone() else {
            target.state = TargetState::Pending;
            return Ok(None);
        };
        let Some(op) = self.operation(&policy.tenant, &op_id).await? else {
            target.state = TargetState::Failed;
            target.error = Some(Problem::new(
                502,
                "operation_not_found",
                format!("the create's operation {op_id} is no longer recorded"),
            ));
            return Ok(None);
        };
        match op.state {
            OperationState::Succeeded => {
                let Some(snapshot) = op.snapshot_id else {
                    target.state = TargetState::Failed;
                    target.error = Some(Problem::new(
                        502,
                        "upstream_error",
                        "the create succeeded but the provider did not name the snapshot",
                    ));
                    return Ok(None);
                };
                target.state = TargetState::Succeeded;
                target.snapshot_id = Some(snapshot.to_string());
                Ok(Some(PolicySnapshot {
                    snapshot_id: snapshot.to_string(),
                    account: target.account.clone(),
                    source_id: target.source_id.clone(),
                    slot,
                    pruned_at: None,
                    prune_operation: None,
                }))
            }
            OperationState::Failed => {
                target.state = TargetState::Failed;
                target.error = op.error;
                Ok(None)
            }
            OperationState::Pending | OperationState::Running => Ok(None),
        }
    }

    /// Applies retention to each source whose new snapshot succeeded in this run: deletes
    /// (through the idempotent path) what no rule keeps, never the newest. What it recorded
    /// pruned.
    async fn prune(
        &self,
        policy: &Policy,
        run: &mut PolicyRun,
    ) -> Result<Vec<PolicySnapshot>, ServiceError> {
        let held = self
            .store
            .policy_snapshots(&policy.tenant, &policy.id)
            .await?;
        let tz = policy.spec.schedule.time_zone();
        let mut recorded = Vec::new();
        let done: Vec<RunTarget> = run
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Succeeded)
            .cloned()
            .collect();
        for target in done {
            let items = holdings(&held, &target.account, &target.source_id);
            let replaced = self.replaces(policy, &target.account).await;
            for decision in policy.spec.retention.apply(&items, tz) {
                let keep = !decision.reasons.is_empty() && !replaced
                    || decision.reasons.iter().any(|r| r == "newest");
                if keep {
                    continue;
                }
                let Some(record) = held.iter().find(|h| h.snapshot_id == decision.snapshot_id)
                else {
                    continue;
                };
                let (pruned, record) = self.prune_one(policy, record, replaced).await;
                run.pruned.push(pruned);
                recorded.extend(record);
            }
        }
        Ok(recorded)
    }

    /// A new snapshot the vendor gave the id of one the policy made before (a provider that
    /// keeps one snapshot per source answers with the same id) replaced that one: the run
    /// says so.
    async fn note_replaced(
        &self,
        policy: &Policy,
        run: &mut PolicyRun,
        made: &[PolicySnapshot],
    ) -> Result<(), ServiceError> {
        if made.is_empty() {
            return Ok(());
        }
        let held = self
            .store
            .policy_snapshots(&policy.tenant, &policy.id)
            .await?;
        for new in made {
            if let Some(old) = held
                .iter()
                .find(|h| h.snapshot_id == new.snapshot_id && h.slot < new.slot)
            {
                metrics::counter!("snapgate_policy_prunes_total", "outcome" => "replaced")
                    .increment(1);
                run.pruned.push(Pruned {
                    snapshot_id: old.snapshot_id.clone(),
                    source_id: old.source_id.clone(),
                    slot: old.slot,
                    reason: "replaced_by_vendor".to_owned(),
                    operation_id: None,
                    error: None,
                });
            }
        }
        Ok(())
    }

    /// Whether the account's provider replaces a source's snapshot with each new one.
    async fn replaces(&self, policy: &Policy, account: &str) -> bool {
        let Ok(account) = account.parse::<AccountId>() else {
            return false;
        };
        self.resolve(&policy.tenant, &account)
            .await
            .is_ok_and(|r| r.adapter.info().capabilities.create_replaces_existing)
    }

    /// Deletes one snapshot the policy made (or, where the vendor replaced it, records it
    /// gone); the run's entry and the record to save.
    async fn prune_one(
        &self,
        policy: &Policy,
        record: &PolicySnapshot,
        replaced: bool,
    ) -> (Pruned, Option<PolicySnapshot>) {
        let mut entry = Pruned {
            snapshot_id: record.snapshot_id.clone(),
            source_id: record.source_id.clone(),
            slot: record.slot,
            reason: if replaced {
                "replaced_by_vendor"
            } else {
                "retention"
            }
            .to_owned(),
            operation_id: None,
            error: None,
        };
        let gone = |operation: Option<String>| PolicySnapshot {
            pruned_at: Some(Utc::now()),
            prune_operation: operation,
            ..record.clone()
        };
        if replaced {
            metrics::counter!("snapgate_policy_prunes_total", "outcome" => "replaced").increment(1);
            return (entry, Some(gone(None)));
        }
        let Ok(id) = record.snapshot_id.parse::<SnapshotId>() else {
            return (entry, Some(gone(None)));
        };
        let key = format!("snapgate-policy:{}:prune:{}", policy.id, record.snapshot_id);
        let outcome = self
            .change(
                &policy.tenant,
                Some(&key),
                &key,
                &id,
                SnapshotAction::Delete,
            )
            .await;
        match outcome {
            Ok(Outcome::Done(a) | Outcome::Replayed(a)) if a.status == 202 => {
                let op = a.body["operation"]["id"].as_str().map(str::to_owned);
                entry.operation_id = op.clone();
                metrics::counter!("snapgate_policy_prunes_total", "outcome" => "deleted")
                    .increment(1);
                (entry, Some(gone(op)))
            }
            Ok(Outcome::Done(a) | Outcome::Replayed(a)) => {
                entry.error = serde_json::from_value::<Problem>(a.body).ok();
                (entry, None)
            }
            // Already gone at the vendor: nothing left to prune.
            Err(ServiceError::SnapshotNotFound) => (entry, Some(gone(None))),
            Err(e) => {
                metrics::counter!("snapgate_policy_prunes_total", "outcome" => "failed")
                    .increment(1);
                entry.error = Some(e.problem());
                (entry, None)
            }
        }
    }
}

/// Where interval slots count from: the policy's creation, to the second.
fn anchor(policy: &Policy) -> DateTime<Utc> {
    DateTime::from_timestamp(policy.created_at.timestamp(), 0).unwrap_or(policy.created_at)
}

fn delta(ms: u64) -> TimeDelta {
    TimeDelta::from_std(Duration::from_millis(ms)).unwrap_or(TimeDelta::seconds(1))
}

/// The snapshots a policy holds of one source, as retention reads them.
fn holdings(held: &[PolicySnapshot], account: &str, source: &str) -> Vec<(String, DateTime<Utc>)> {
    held.iter()
        .filter(|h| h.account == account && h.source_id == source)
        .map(|h| (h.snapshot_id.clone(), h.slot))
        .collect()
}

fn new_run(policy: &Policy, slot: DateTime<Utc>, now: DateTime<Utc>) -> PolicyRun {
    let spec = &policy.spec;
    PolicyRun {
        id: format!("run_{}", uuid::Uuid::now_v7().simple()),
        policy_id: policy.id.clone(),
        slot,
        state: RunState::Running,
        started_at: now,
        finished_at: None,
        // A policy over all sources lists them when the run is first worked.
        targets: spec
            .source_ids
            .iter()
            .map(|source| target(policy, source, slot))
            .collect(),
        sources_listed_at: None,
        error: None,
        pruned: Vec::new(),
    }
}

/// One source's snapshot in the slot's run, not yet submitted.
fn target(policy: &Policy, source: &str, slot: DateTime<Utc>) -> RunTarget {
    let spec = &policy.spec;
    RunTarget {
        account: spec.account.clone(),
        source_id: source.to_owned(),
        name: render_name(&spec.name_template, &policy.id, source, slot),
        state: TargetState::Pending,
        operation_id: None,
        snapshot_id: None,
        error: None,
    }
}

fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Running => "running",
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
    }
}

/// What a finished run tells: its end, and each snapshot it pruned.
fn run_events(policy: &Policy, run: &PolicyRun) -> Vec<Event> {
    let actor = format!("policy:{}", policy.id);
    let kind = match run.state {
        RunState::Failed => EventType::PolicyRunFailed,
        _ => EventType::PolicyRunSucceeded,
    };
    let mut events = vec![Event::new(
        kind,
        &actor,
        serde_json::json!({ "policy_id": policy.id, "run": run }),
    )];
    for pruned in run.pruned.iter().filter(|p| p.error.is_none()) {
        events.push(Event::new(
            EventType::SnapshotPruned,
            &actor,
            serde_json::json!({
                "policy_id": policy.id,
                "run_id": run.id,
                "snapshot_id": pruned.snapshot_id,
                "pruned": pruned,
            }),
        ));
    }
    events
}

/// The policy runner as a [`Worker`]: claims start due slots and take runs due a check.
struct Runner<'a>(&'a Service);

impl Runner<'_> {
    fn lease(&self) -> Duration {
        Duration::from_secs(self.0.policies.claim_lease_secs.max(1))
    }
}

#[async_trait::async_trait]
impl Worker for Runner<'_> {
    type Item = (String, PolicyRun);
    type Key = (String, String);
    const NAME: &'static str = "policies";

    fn slots(&self) -> usize {
        self.0.policies.max_concurrent_runs
    }

    fn tick(&self) -> Duration {
        Duration::from_millis(self.0.policies.tick_ms)
    }

    /// A run's work (listing an account's sources, a thousand creates) may outlast its
    /// lease: the claim is renewed while it goes on, so it does not change hands mid-run.
    fn renew_every(&self) -> Option<Duration> {
        Some(self.lease() / 3)
    }

    fn key(&self, (tenant, run): &Self::Item) -> Self::Key {
        (tenant.clone(), run.id.clone())
    }

    async fn renew(&self, held: &[Self::Key]) {
        let until = Utc::now() + TimeDelta::from_std(self.lease()).unwrap_or(TimeDelta::MAX);
        for (tenant, run) in held {
            let renewed = self
                .0
                .store
                .renew_run_claim(tenant, run, &self.0.replica, until)
                .await;
            if let Err(e) = renewed {
                tracing::warn!(error = %e, "could not renew a policy run's claim");
            }
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Self::Item>, ServiceError> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        self.0.start_due(limit).await?;
        let now = Utc::now();
        let lease = now + TimeDelta::from_std(self.lease()).unwrap_or(TimeDelta::MAX);
        Ok(self
            .0
            .store
            .claim_runs(now, &self.0.replica, lease, limit)
            .await?)
    }

    async fn work(&self, (tenant, run): Self::Item) -> Result<(), ServiceError> {
        self.0.advance_run(&tenant, run).await
    }
}
