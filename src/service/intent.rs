//! Durable intent: before a vendor call that may change something, the operation it starts is
//! stored — and with an `Idempotency-Key` it becomes the key's answer (`202`) at once. A gateway
//! deadline, a dropped connection or a `kill -9` in the middle of the call therefore leaves an
//! operation that a retry with the same key replays (the vendor is never called twice), and that
//! the gateway settles later from what the vendor shows (the snapshot found by name and source,
//! a deleted snapshot gone) — or, where the vendor cannot tell, fails plainly as
//! `outcome_unknown` instead of guessing.

use std::sync::Mutex;

use chrono::{TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{
    operations::{finish, new_operation},
    stamped, Resolved, Service, ServiceError,
};
use crate::{
    domain::{
        Event, Operation, OperationKind, OperationState, Problem, SnapshotId, SnapshotStatus,
        VendorRefKind,
    },
    providers::{ListFilter, ProviderError},
};

/// What an interrupted call meant to do, kept in the operation's tracking until the vendor's
/// answer replaces it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Intent {
    Create {
        source_id: String,
        name: String,
    },
    Delete,
    Restore,
    Image,
    /// A rename and/or a new description: what the snapshot should read afterwards.
    Update {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
}

/// The record of one mutating request: where its intent is made durable.
pub struct Journal<'a> {
    service: &'a Service,
    tenant: &'a str,
    key: Option<&'a str>,
    intended: Mutex<Option<Operation>>,
}

impl<'a> Journal<'a> {
    pub(super) fn new(service: &'a Service, tenant: &'a str, key: Option<&'a str>) -> Self {
        Self {
            service,
            tenant,
            key,
            intended: Mutex::new(None),
        }
    }

    /// Stores the operation a vendor call is about to start (state `running`, no vendor handle
    /// yet) and, with an `Idempotency-Key`, makes its `202` the key's answer. Call it after every
    /// check that can refuse the request and right before the vendor call.
    pub async fn intend(
        &self,
        resolved: &Resolved,
        kind: OperationKind,
        native_id: Option<&str>,
        intent: Intent,
    ) -> Result<(), ServiceError> {
        let mut op = new_operation(resolved, kind, native_id, Utc::now());
        op.tracking = serde_json::json!({ "intent": intent });
        // Should this request die mid-call, the reconciler settles what it started.
        self.service.first_check(&mut op);
        self.service
            .store
            .insert_operation(self.tenant, &op, &[])
            .await?;
        if let Some(key) = self.key {
            let body = serde_json::json!({"operation": op, "snapshot": null});
            let answered = self
                .service
                .store
                .finish_idempotent(self.tenant, key, ACCEPTED, &body.to_string())
                .await;
            if let Err(e) = answered {
                // Nothing was asked of the vendor: the operation says so (best effort; if the
                // store is gone, the reconciler later finds nothing was created).
                let never = Problem::new(
                    503,
                    "store_unavailable",
                    "the gateway's store failed before the provider was called; nothing was done",
                );
                finish(&mut op, OperationState::Failed, Some(stamped(never)));
                let events = Event::of_finished(&op, &crate::telemetry::current_actor());
                let _ = self
                    .service
                    .store
                    .update_operation(self.tenant, &op, &events)
                    .await;
                return Err(e.into());
            }
        }
        *self.lock() = Some(op);
        Ok(())
    }

    /// The operation [`Journal::intend`] stored, for the vendor's answer to complete.
    pub fn intended(&self) -> Option<Operation> {
        self.lock().clone()
    }

    /// After a failure: a refusal known to have changed nothing fails the intended operation;
    /// an uncertain one leaves it `running`, to be settled from the vendor.
    pub(super) async fn failed(&self, problem: &Problem) -> Result<(), ServiceError> {
        let Some(mut op) = self.intended() else {
            return Ok(());
        };
        if problem.outcome_uncertain_after_call() {
            return Ok(());
        }
        finish(&mut op, OperationState::Failed, Some(problem.clone()));
        let events = Event::of_finished(&op, &crate::telemetry::current_actor());
        self.service
            .store
            .update_operation(self.tenant, &op, &events)
            .await?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Operation>> {
        self.intended.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long past the interrupted call a create's snapshot may take to be listed.
const CREATE_LISTING_WAIT: TimeDelta = TimeDelta::minutes(10);

/// The status the intended operation's key answers with: `202 Accepted`.
const ACCEPTED: u16 = 202;

/// The intent of an operation that has not heard from its vendor call, if any.
pub fn interrupted(op: &Operation) -> Option<Intent> {
    if op.vendor_ref.kind != VendorRefKind::None || op.state.is_terminal() {
        return None;
    }
    serde_json::from_value(op.tracking.get("intent")?.clone()).ok()
}

/// Settles an operation whose vendor call never reported back (deadline, restart), from what
/// the vendor shows. Until `grace` has passed since it began, "not there yet" keeps it running
/// (the call may still be in flight); after it, what cannot be found is `outcome_unknown`.
pub async fn settle(
    resolved: &Resolved,
    mut op: Operation,
    intent: Intent,
    grace: std::time::Duration,
) -> Result<Operation, ProviderError> {
    let overdue = Utc::now() - op.created_at > TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
    let ctx = resolved.ctx();
    let unknown = |what: String| stamped(Problem::new(502, "outcome_unknown", what));
    let verdict: Option<(OperationState, Option<Problem>)> = match &intent {
        Intent::Create { source_id, name } => {
            settle_create(resolved, &mut op, source_id, name, grace).await?
        }
        Intent::Delete => {
            let native = op
                .snapshot_id
                .as_ref()
                .map(|s| s.native_id.clone())
                .unwrap_or_default();
            match resolved.adapter.get(&ctx, &native).await {
                Err(ProviderError::NotFound) => Some((OperationState::Succeeded, None)),
                Ok(s) if s.status == SnapshotStatus::Deleted => {
                    Some((OperationState::Succeeded, None))
                }
                Ok(_) if overdue => Some((
                    OperationState::Failed,
                    Some(unknown(
                        "the request was interrupted (gateway deadline or restart) and the snapshot still exists: delete it again".to_owned(),
                    )),
                )),
                Ok(_) => None,
                Err(e) => return Err(e),
            }
        }
        // No vendor shows whether a restore or an image began: say so once the call is over.
        Intent::Restore | Intent::Image if overdue => Some((
            OperationState::Failed,
            Some(unknown(
                "the request was interrupted (gateway deadline or restart) before the provider answered; whether it started cannot be read back — check the target before retrying".to_owned(),
            )),
        )),
        Intent::Restore | Intent::Image => None,
        Intent::Update { name, description } => {
            let native = op
                .snapshot_id
                .as_ref()
                .map(|s| s.native_id.clone())
                .unwrap_or_default();
            let now = resolved.adapter.get(&ctx, &native).await?;
            let reads = |want: &Option<String>, has: &Option<String>| {
                want.as_ref().is_none_or(|w| has.as_ref() == Some(w))
            };
            if reads(name, &now.name) && reads(description, &now.description) {
                Some((OperationState::Succeeded, None))
            } else if overdue {
                Some((
                    OperationState::Failed,
                    Some(unknown(
                        "the request was interrupted (gateway deadline or restart) and the snapshot does not read as asked: send the change again".to_owned(),
                    )),
                ))
            } else {
                None
            }
        }
    };
    if let Some((state, error)) = verdict {
        finish(&mut op, state, error);
    }
    Ok(op)
}

/// The verdict on an interrupted create: the snapshot it made, found in the source's list by
/// its name (or, for vendors without names, its time), or none after a while.
async fn settle_create(
    resolved: &Resolved,
    op: &mut Operation,
    source_id: &str,
    name: &str,
    grace: std::time::Duration,
) -> Result<Option<(OperationState, Option<Problem>)>, ProviderError> {
    let unknown = |what: String| stamped(Problem::new(502, "outcome_unknown", what));
    let filter = ListFilter {
        source_id: Some(source_id),
        statuses: &[],
    };
    let listed = resolved.adapter.list(&resolved.ctx(), &filter).await?;
    // Only a snapshot that appeared after the request (give or take the vendor's clock
    // skew) can be its result. A vendor whose snapshots have no names (Hostinger) is
    // matched by that time alone, so it must state one, and the skew allowed is
    // narrower: an earlier snapshot of the same source has no name to tell it apart.
    let named_since = op.created_at - TimeDelta::minutes(10);
    let nameless_since = op.created_at - TimeDelta::minutes(1);
    let found = listed
        .complete()?
        .into_iter()
        .find(|s| match s.name.as_deref() {
            Some(n) => n == name && s.created_at.is_none_or(|t| t >= named_since),
            None => s.created_at.is_some_and(|t| t >= nameless_since),
        });
    Ok(match found {
            Some(s) => {
                op.snapshot_id = Some(SnapshotId::new(&op.account, &s.native_id));
                match s.status {
                    SnapshotStatus::Available => Some((OperationState::Succeeded, None)),
                    SnapshotStatus::Error => Some((
                        OperationState::Failed,
                        Some(unknown(format!("the provider reports snapshot `{name}` in error"))),
                    )),
                    _ => None,
                }
            }
            // A vendor may list a new snapshot only once its ticket or action ends, so a
            // create is given longer to show than the call itself took.
            None if Utc::now() - op.created_at
                > TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX) + CREATE_LISTING_WAIT =>
            {
                Some((
                    OperationState::Failed,
                    Some(unknown(format!(
                        "the request was interrupted (gateway store, deadline or restart) and, {} minutes later, the provider lists no snapshot `{name}` of `{source_id}` taken since: it most likely was not created, but the gateway cannot be sure — check `{source_id}` at the provider before creating it again",
                        CREATE_LISTING_WAIT.num_minutes()
                    ))),
                ))
            }
            None => None,
        })
}
