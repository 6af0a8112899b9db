//! A tenant's webhook endpoints: created with a `whsec_` secret shown once (sealed at rest like
//! credentials), changed, rotated, tested, and their delivery logs.

use chrono::{TimeDelta, Utc};
use secrecy::SecretString;

use super::{Service, ServiceError, WebhooksConfig};
use crate::{
    domain::{Credentials, Delivery, EventType, Webhook, TEST_EVENT_TYPE},
    store::Sealed,
    webhooks::{sign, target},
};

/// What a caller asks for when creating an endpoint.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub event_types: Vec<EventType>,
    pub description: Option<String>,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    pub description: Option<Option<String>>,
    /// `true` re-enables an endpoint the gateway disabled (and clears the reason).
    pub enabled: Option<bool>,
}

const CURRENT: &str = "current";
const PREVIOUS: &str = "previous";

impl Service {
    /// Creates an endpoint; its secret, returned here, is never shown again.
    pub async fn create_webhook(
        &self,
        tenant: &str,
        new: NewWebhook,
    ) -> Result<(Webhook, SecretString), ServiceError> {
        self.check_target(&new.url).await?;
        // A bound on fan-out: each event becomes one delivery per endpoint.
        let most = self.webhooks.max_endpoints_per_tenant.max(1);
        if self.store.list_webhooks(tenant).await?.len() >= most as usize {
            return Err(ServiceError::WebhookLimit(most));
        }
        let now = Utc::now();
        let webhook = Webhook {
            id: format!("wh_{}", uuid::Uuid::now_v7().simple()),
            tenant: tenant.to_owned(),
            url: new.url,
            description: new.description,
            event_types: dedup(new.event_types),
            enabled: true,
            disabled_reason: None,
            previous_secret_until: None,
            created_at: now,
            updated_at: now,
        };
        let secret = sign::new_secret();
        let sealed = self.seal_secrets(&webhook, &secret, None);
        self.store.insert_webhook(&webhook, &sealed).await?;
        Ok((webhook, secret))
    }

    pub async fn webhook(&self, tenant: &str, id: &str) -> Result<Webhook, ServiceError> {
        Ok(self.webhook_sealed(tenant, id).await?.0)
    }

    pub async fn webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, ServiceError> {
        Ok(self.store.list_webhooks(tenant).await?)
    }

    /// What waits on the reconciler and the delivery worker, across tenants and replicas.
    pub async fn backlog(&self) -> Result<crate::store::Backlog, ServiceError> {
        Ok(self.store.backlog().await?)
    }

    pub async fn update_webhook(
        &self,
        tenant: &str,
        id: &str,
        changes: WebhookChanges,
    ) -> Result<Webhook, ServiceError> {
        let mut webhook = self.webhook(tenant, id).await?;
        if let Some(url) = changes.url {
            self.check_target(&url).await?;
            webhook.url = url;
        }
        if let Some(types) = changes.event_types {
            webhook.event_types = dedup(types);
        }
        if let Some(description) = changes.description {
            webhook.description = description;
        }
        if let Some(enabled) = changes.enabled {
            webhook.enabled = enabled;
            if enabled {
                webhook.disabled_reason = None;
            }
        }
        webhook.updated_at = Utc::now();
        if !self.store.update_webhook(&webhook, None).await? {
            return Err(ServiceError::WebhookNotFound(id.to_owned()));
        }
        Ok(webhook)
    }

    pub async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<(), ServiceError> {
        match self.store.delete_webhook(tenant, id).await? {
            true => Ok(()),
            false => Err(ServiceError::WebhookNotFound(id.to_owned())),
        }
    }

    /// A new secret, returned here only; the old one keeps signing (beside it) for the grace
    /// period, so receivers can switch without losing a delivery.
    pub async fn rotate_webhook_secret(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(Webhook, SecretString), ServiceError> {
        let (mut webhook, sealed) = self.webhook_sealed(tenant, id).await?;
        let old = self.open_secrets(&webhook, &sealed)?;
        let current = old
            .first()
            .cloned()
            .ok_or_else(|| ServiceError::internal("webhook secret", &"no current secret"))?;
        let secret = sign::new_secret();
        let now = Utc::now();
        webhook.previous_secret_until = Some(now + grace(&self.webhooks));
        webhook.updated_at = now;
        let sealed = self.seal_secrets(&webhook, &secret, Some(current));
        if !self.store.update_webhook(&webhook, Some(&sealed)).await? {
            return Err(ServiceError::WebhookNotFound(id.to_owned()));
        }
        Ok((webhook, secret))
    }

    /// Queues a signed `webhook.test` event to the endpoint (sent even when it is disabled).
    pub async fn test_webhook(&self, tenant: &str, id: &str) -> Result<Delivery, ServiceError> {
        let webhook = self.webhook(tenant, id).await?;
        let event_id = format!("evt_{}", uuid::Uuid::now_v7().simple());
        let now = crate::domain::time::format(&Utc::now());
        let data = serde_json::json!({ "webhook_id": webhook.id, "message": "test delivery from snapgate" });
        let actor = crate::telemetry::current_actor();
        let payload = crate::domain::payload_of(&event_id, TEST_EVENT_TYPE, &now, &actor, data);
        let delivery = Delivery::new(tenant, &webhook.id, &event_id, TEST_EVENT_TYPE, payload);
        self.queue(&delivery, &webhook).await?;
        Ok(delivery)
    }

    /// A delivery's log page: newest first, before position `before`.
    pub async fn deliveries(
        &self,
        tenant: &str,
        id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, Delivery)>, ServiceError> {
        self.webhook(tenant, id).await?;
        Ok(self
            .store
            .list_deliveries(tenant, id, before, limit)
            .await?)
    }

    /// Sends a delivery's event again, as a new delivery with the same `webhook-id`.
    pub async fn redeliver(
        &self,
        tenant: &str,
        id: &str,
        delivery_id: &str,
    ) -> Result<Delivery, ServiceError> {
        let webhook = self.webhook(tenant, id).await?;
        let old = self
            .store
            .get_delivery(tenant, id, delivery_id)
            .await?
            .ok_or_else(|| ServiceError::DeliveryNotFound(delivery_id.to_owned()))?;
        let delivery = Delivery::new(tenant, id, &old.event_id, &old.event_type, old.payload);
        self.queue(&delivery, &webhook).await?;
        Ok(delivery)
    }

    /// Queues a delivery made by hand; a disabled endpoint is sent it anyway (a test is how an
    /// operator checks a repaired receiver before enabling it again).
    async fn queue(&self, delivery: &Delivery, webhook: &Webhook) -> Result<(), ServiceError> {
        self.store.insert_delivery(delivery).await?;
        if !webhook.enabled {
            tracing::info!(webhook = %webhook.id, "delivery queued to a disabled endpoint: it waits until the endpoint is enabled");
        }
        Ok(())
    }

    async fn webhook_sealed(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(Webhook, Sealed), ServiceError> {
        self.store
            .get_webhook(tenant, id)
            .await?
            .ok_or_else(|| ServiceError::WebhookNotFound(id.to_owned()))
    }

    /// Refuses a URL that is not `http(s)`, or (unless allowed) reaches a private address.
    async fn check_target(&self, url: &str) -> Result<(), ServiceError> {
        let parsed = target::parse(url).map_err(ServiceError::TargetRefused)?;
        target::check(&parsed, self.webhooks.allow_private_targets)
            .await
            .map_err(ServiceError::TargetRefused)
    }

    fn seal_secrets(
        &self,
        webhook: &Webhook,
        current: &SecretString,
        previous: Option<SecretString>,
    ) -> Sealed {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert(CURRENT.to_owned(), current.clone());
        if let Some(previous) = previous {
            fields.insert(PREVIOUS.to_owned(), previous);
        }
        self.sealer
            .seal_webhook(&webhook.tenant, &webhook.id, &Credentials::new(fields))
    }

    /// The secrets that sign a delivery now: the current one, then the one before the last
    /// rotation while its grace period lasts.
    pub(super) fn open_secrets(
        &self,
        webhook: &Webhook,
        sealed: &Sealed,
    ) -> Result<Vec<SecretString>, ServiceError> {
        let opened = self
            .sealer
            .open_webhook(&webhook.tenant, &webhook.id, sealed)
            .map_err(|e| ServiceError::internal("opening a webhook secret", &e))?;
        let in_grace = webhook
            .previous_secret_until
            .is_some_and(|until| until > Utc::now());
        Ok([Some(CURRENT), in_grace.then_some(PREVIOUS)]
            .into_iter()
            .flatten()
            .filter_map(|name| opened.get(name).cloned())
            .collect())
    }
}

fn grace(config: &WebhooksConfig) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(config.rotation_grace_secs).unwrap_or(i64::MAX / 1000))
}

fn dedup(mut types: Vec<EventType>) -> Vec<EventType> {
    let mut seen = Vec::with_capacity(types.len());
    types.retain(|t| {
        let new = !seen.contains(t);
        seen.push(*t);
        new
    });
    types
}
