//! Webhooks: a tenant's endpoints, and the deliveries of events to them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Event, EventType};

/// The type of the event `POST /v1/webhooks/{id}/test` sends (never in the event log).
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// A tenant's webhook endpoint as stored (its secrets sealed elsewhere).
#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    /// `wh_…`.
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub description: Option<String>,
    /// Event types delivered; empty: all.
    pub event_types: Vec<EventType>,
    pub enabled: bool,
    /// Why it was disabled, when the gateway disabled it.
    pub disabled_reason: Option<String>,
    /// Until when the secret before the last rotation still signs deliveries.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Webhook {
    /// Whether events of `kind` go to this endpoint.
    pub fn wants(&self, kind: EventType) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&kind)
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet answered with a 2xx; `next_attempt_at` says when it is tried.
    Pending,
    /// An attempt was answered with a 2xx.
    Succeeded,
    /// Every attempt of the retry schedule failed.
    Failed,
}

/// One attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    #[serde(serialize_with = "super::time::rfc3339")]
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status; absent when no answer came (see `error`).
    pub status_code: Option<u16>,
    /// From sending the request to the answer's status line (or the failure).
    pub latency_ms: u64,
    /// Why the attempt failed without an answer, or what was wrong with it.
    pub error: Option<String>,
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

/// One event's delivery to one endpoint, with every attempt made.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Delivery {
    /// `dlv_…`.
    pub id: String,
    pub webhook_id: String,
    /// The event's id: the `webhook-id` header of every attempt.
    pub event_id: String,
    /// The event's type (`webhook.test` for test deliveries).
    pub event_type: String,
    pub state: DeliveryState,
    /// Oldest first.
    pub attempts: Vec<Attempt>,
    /// When the next attempt is due (pending deliveries).
    #[serde(serialize_with = "super::time::rfc3339_opt")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "super::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    /// The body every attempt sends, byte for byte (what the signature covers).
    #[serde(skip)]
    pub payload: String,
    #[serde(skip)]
    pub tenant: String,
}

impl Delivery {
    /// A delivery of `payload` for `event_id`, due now.
    pub fn new(
        tenant: &str,
        webhook_id: &str,
        event_id: &str,
        event_type: &str,
        payload: String,
    ) -> Self {
        let now = Utc::now();
        Self {
            id: format!("dlv_{}", uuid::Uuid::now_v7().simple()),
            tenant: tenant.to_owned(),
            webhook_id: webhook_id.to_owned(),
            event_id: event_id.to_owned(),
            event_type: event_type.to_owned(),
            state: DeliveryState::Pending,
            attempts: Vec::new(),
            next_attempt_at: Some(now),
            created_at: now,
            payload,
        }
    }
}

/// The body of a delivery (Standard Webhooks: `type`, `timestamp`, `data`; plus the event id):
/// `data` is the event's subject with the actor that caused it.
pub fn payload(event: &Event) -> String {
    payload_of(
        &event.id,
        event.kind.as_str(),
        &super::time::format(&event.created_at),
        &event.actor,
        event.data.clone(),
    )
}

/// [`payload`] from an event's parts.
pub fn payload_of(
    id: &str,
    kind: &str,
    timestamp: &str,
    actor: &str,
    data: serde_json::Value,
) -> String {
    let mut data = match data {
        serde_json::Value::Object(map) => map,
        other => serde_json::Map::from_iter([("value".to_owned(), other)]),
    };
    data.insert("actor".to_owned(), actor.into());
    serde_json::json!({ "id": id, "type": kind, "timestamp": timestamp, "data": data }).to_string()
}
