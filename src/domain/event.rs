//! Events: each state change a caller cares about, kept in an ordered log per tenant.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Operation, OperationKind, OperationState};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "operation.succeeded")]
    OperationSucceeded,
    #[serde(rename = "operation.failed")]
    OperationFailed,
    #[serde(rename = "snapshot.created")]
    SnapshotCreated,
    #[serde(rename = "snapshot.deleted")]
    SnapshotDeleted,
    #[serde(rename = "snapshot.restored")]
    SnapshotRestored,
    #[serde(rename = "account.health_changed")]
    AccountHealthChanged,
    #[serde(rename = "snapshot.pruned")]
    SnapshotPruned,
    #[serde(rename = "policy.run_succeeded")]
    PolicyRunSucceeded,
    #[serde(rename = "policy.run_failed")]
    PolicyRunFailed,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        EventType::OperationSucceeded,
        EventType::OperationFailed,
        EventType::SnapshotCreated,
        EventType::SnapshotDeleted,
        EventType::SnapshotRestored,
        EventType::AccountHealthChanged,
        EventType::SnapshotPruned,
        EventType::PolicyRunSucceeded,
        EventType::PolicyRunFailed,
    ];

    /// The wire name (`operation.succeeded`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OperationSucceeded => "operation.succeeded",
            EventType::OperationFailed => "operation.failed",
            EventType::SnapshotCreated => "snapshot.created",
            EventType::SnapshotDeleted => "snapshot.deleted",
            EventType::SnapshotRestored => "snapshot.restored",
            EventType::AccountHealthChanged => "account.health_changed",
            EventType::SnapshotPruned => "snapshot.pruned",
            EventType::PolicyRunSucceeded => "policy.run_succeeded",
            EventType::PolicyRunFailed => "policy.run_failed",
        }
    }
}

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// `evt_…`, unique.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(serialize_with = "super::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Who caused it: the caller's `sub`, or `reconciler` for what the gateway saw by itself.
    pub actor: String,
    /// The subject as the API returns it: `{"operation": …}`, with `snapshot_id` for snapshot
    /// events, or `{"account": …}`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(kind: EventType, actor: &str, data: serde_json::Value) -> Self {
        Self {
            id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            kind,
            created_at: Utc::now(),
            actor: actor.to_owned(),
            data,
        }
    }

    /// What an operation that just finished tells: its end, and what it did to its snapshot.
    pub fn of_finished(op: &Operation, actor: &str) -> Vec<Event> {
        let data = || serde_json::json!({ "operation": op, "snapshot_id": op.snapshot_id });
        match op.state {
            OperationState::Succeeded => {
                let mut events = vec![Event::new(EventType::OperationSucceeded, actor, data())];
                let snapshot = match op.kind {
                    OperationKind::Create => Some(EventType::SnapshotCreated),
                    OperationKind::Delete => Some(EventType::SnapshotDeleted),
                    OperationKind::Restore => Some(EventType::SnapshotRestored),
                    OperationKind::Rename | OperationKind::Image => None,
                };
                events.extend(snapshot.map(|kind| Event::new(kind, actor, data())));
                events
            }
            OperationState::Failed => vec![Event::new(EventType::OperationFailed, actor, data())],
            OperationState::Pending | OperationState::Running => Vec::new(),
        }
    }
}
