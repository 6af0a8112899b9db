//! The webhook worker: every `serve` process delivers from the outbox.
//!
//! Each round claims due deliveries (a lease in the store: one process per attempt, at most
//! `max_concurrent_per_endpoint` in flight to one endpoint across all processes), signs each
//! attempt per Standard Webhooks with the endpoint's current secret (and the previous one
//! during a rotation's grace period), POSTs it without following redirects, and records the
//! attempt. A failed attempt is retried on the schedule; a delivery failing for the whole
//! schedule disables its endpoint with the reason. A process killed mid-attempt loses nothing:
//! its lease ends and another process makes the attempt, with the same `webhook-id`.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rand::Rng;

use super::{worker::Worker, Service, ServiceError, WebhooksConfig};
use crate::{
    domain::{Attempt, Delivery, DeliveryState},
    store::Claimed,
    webhooks::{sign, target},
};

/// Response bytes read at most (the rest is dropped with the connection).
const MAX_RESPONSE_BYTES: usize = 4096;

/// The HTTP client of deliveries: no redirects, short timeouts, only permitted addresses.
#[allow(
    clippy::disallowed_methods,
    reason = "one of the places HTTP clients are built (clippy.toml)"
)]
pub fn delivery_client(config: &WebhooksConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(config.timeout_ms.max(1)))
        .connect_timeout(Duration::from_millis(config.timeout_ms.clamp(1, 5_000)))
        .dns_resolver(target::resolver(config.allow_private_targets))
        .user_agent(concat!("snapgate-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

impl Service {
    /// Delivers until the process stops (see [`super::worker`]): a pipeline of at most
    /// `max_in_flight` attempts, refilled as each one ends (not rounds that wait for their
    /// slowest receiver), woken when deliveries are queued here or by a replica.
    pub async fn deliver_forever(&self) {
        super::worker::run(&Deliverer::new(self)).await
    }

    /// One round: makes one attempt of every due delivery it can claim; how many.
    pub async fn deliver_once(&self) -> Result<usize, ServiceError> {
        let limit = self.webhooks.max_in_flight.max(1) as usize;
        super::worker::run_once(&Deliverer::new(self), limit).await
    }

    /// [`Service::attempt`] in a span of its own.
    async fn attempt_traced(&self, claimed: Claimed) -> Result<(), ServiceError> {
        let span = tracing::info_span!(
            "webhook delivery",
            otel.kind = "client",
            delivery = %claimed.delivery.id,
            webhook = %claimed.webhook.id,
            event_type = claimed.delivery.event_type.as_str(),
        );
        tracing::Instrument::instrument(self.attempt(claimed), span).await
    }

    /// Makes (or, before its first attempt is due, postpones) one attempt and records it.
    ///
    /// A delivery this process cannot sign is no attempt: see [`UNSIGNED_RETRY_SECS`].
    async fn attempt(&self, claimed: Claimed) -> Result<(), ServiceError> {
        let Claimed {
            mut delivery,
            webhook,
            secrets,
            token,
        } = claimed;
        let schedule = &self.webhooks.retry_schedule_secs;
        let first_due = delivery.created_at + secs(schedule.first().copied().unwrap_or(0));
        if delivery.attempts.is_empty() && first_due > Utc::now() {
            delivery.next_attempt_at = Some(first_due);
            self.store.finish_delivery(&delivery, &token, None).await?;
            return Ok(());
        }
        let keys = match self.open_secrets(&webhook, &secrets) {
            Ok(keys) => keys,
            Err(e) => {
                // This process lacks the key the secret is sealed under (a key rollout under
                // way): nothing was sent, so it is no attempt. The delivery waits a little for
                // a replica that holds the key, its retry schedule untouched.
                tracing::warn!(
                    delivery = %delivery.id, webhook = %webhook.id, error = %e,
                    "cannot sign this delivery here; left to a replica that can"
                );
                metrics::counter!("snapgate_webhook_attempts_total", "status" => "unsigned")
                    .increment(1);
                delivery.next_attempt_at = Some(Utc::now() + secs(UNSIGNED_RETRY_SECS));
                self.store.finish_delivery(&delivery, &token, None).await?;
                return Ok(());
            }
        };
        let (attempt, retry_after) = self.send(&webhook.url, &delivery, &keys).await;
        let outcome = match (attempt.status_code, &attempt.error) {
            (Some(code), _) => code.to_string(),
            (None, _) => "error".to_owned(),
        };
        metrics::counter!("snapgate_webhook_attempts_total", "status" => outcome).increment(1);
        tracing::info!(
            delivery = %delivery.id, webhook = %webhook.id, event = %delivery.event_id,
            status = ?attempt.status_code, latency_ms = attempt.latency_ms,
            error = attempt.error.as_deref().unwrap_or(""), "webhook attempt"
        );
        let disable = record(&mut delivery, attempt, schedule, retry_after);
        self.store
            .finish_delivery(&delivery, &token, disable.as_deref())
            .await?;
        Ok(())
    }

    /// POSTs the delivery, signed; the attempt as it went, and the `Retry-After` (seconds) of
    /// a receiver that answered 429 or 503 with one.
    async fn send(
        &self,
        url: &str,
        delivery: &Delivery,
        keys: &[secrecy::SecretString],
    ) -> (Attempt, Option<u64>) {
        let at = Utc::now();
        let started = std::time::Instant::now();
        let failed = |error: String| {
            let attempt = Attempt {
                at,
                status_code: None,
                latency_ms: started.elapsed().as_millis() as u64,
                error: Some(error),
            };
            (attempt, None)
        };
        // The resolver guards names; an address written in the URL is checked here.
        let parsed = match target::parse(url) {
            Ok(parsed) => parsed,
            Err(e) => return failed(e.to_string()),
        };
        if let Err(e) = target::check_literal(&parsed, self.webhooks.allow_private_targets) {
            return failed(e.to_string());
        }
        let timestamp = at.timestamp();
        let body = delivery.payload.as_bytes();
        let signature = sign::header(keys, &delivery.event_id, timestamp, body);
        // The receiver can join the delivery's trace (`traceparent`), when traces are on.
        let mut trace = http::HeaderMap::new();
        crate::otel::inject(&tracing::Span::current(), &mut trace);
        let sent = self
            .webhook_client
            .get_or_init(|| delivery_client(&self.webhooks))
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .headers(trace)
            .body(delivery.payload.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return failed(describe(&e)),
        };
        let status = response.status().as_u16();
        let retry_after = matches!(status, 429 | 503)
            .then(|| response.headers().get(reqwest::header::RETRY_AFTER))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let latency_ms = started.elapsed().as_millis() as u64;
        // Read a little of the answer (so the connection can be reused), never more.
        let mut read = 0;
        while read < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        let error = (300..400)
            .contains(&status)
            .then(|| "redirects are not followed".to_owned());
        let attempt = Attempt {
            at,
            status_code: Some(status),
            latency_ms,
            error,
        };
        (attempt, retry_after)
    }
}

/// The longest `Retry-After` a receiver is granted, in seconds (a day).
const MAX_RETRY_AFTER_SECS: u64 = 24 * 3600;

/// Adds an attempt to a delivery and sets what comes next: done on a 2xx, the next attempt
/// per the schedule, or failed when the schedule is spent — then the endpoint's disabling
/// reason. A receiver that asked for time or did not answer in time gets more of it than the
/// schedule's wait: its `Retry-After` (429 or 503, up to a day) when it said one, else twice
/// the wait after a 429 or a timeout.
pub fn record(
    delivery: &mut Delivery,
    attempt: Attempt,
    schedule: &[u64],
    retry_after: Option<u64>,
) -> Option<String> {
    let ok = attempt.succeeded();
    let overwhelmed = attempt.status_code == Some(429)
        || attempt
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("timed out"));
    let last = match (attempt.status_code, &attempt.error) {
        (Some(code), _) => format!("HTTP {code}"),
        (None, Some(e)) => e.clone(),
        (None, None) => "no answer".to_owned(),
    };
    delivery.attempts.push(attempt);
    let made = delivery.attempts.len();
    if ok {
        delivery.state = DeliveryState::Succeeded;
        delivery.next_attempt_at = None;
        return None;
    }
    match schedule.get(made) {
        Some(&wait) => {
            let wait = match retry_after {
                Some(asked) => wait.max(asked.min(MAX_RETRY_AFTER_SECS)),
                None if overwhelmed => wait.saturating_mul(2),
                None => wait,
            };
            delivery.next_attempt_at = Some(Utc::now() + jittered(wait));
            None
        }
        None => {
            delivery.state = DeliveryState::Failed;
            delivery.next_attempt_at = None;
            Some(format!(
                "delivery {} of event {} failed all {made} attempts of the retry schedule (last: {last})",
                delivery.id, delivery.event_id
            ))
        }
    }
}

/// `wait` seconds, give or take a tenth (so endpoints that failed together are not retried
/// together).
fn jittered(wait: u64) -> TimeDelta {
    let ms = wait.saturating_mul(1000) as f64;
    let factor = rand::thread_rng().gen_range(0.9..=1.1);
    TimeDelta::milliseconds((ms * factor) as i64)
}

fn secs(s: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

/// A transport failure in a few words (never the URL: it may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirects are not followed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut cause = String::new();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {}", cause.chars().take(200).collect::<String>())
    }
}

/// Shared by the worker and the service's constructor.
/// The delivery worker as a [`Worker`]: its items are claimed deliveries; its signal is the
/// store's [`crate::store::Store::deliveries_queued`].
struct Deliverer<'a> {
    service: &'a Service,
    queued: tokio::sync::Mutex<tokio::sync::watch::Receiver<u64>>,
}

impl<'a> Deliverer<'a> {
    fn new(service: &'a Service) -> Self {
        let queued = tokio::sync::Mutex::new(service.store.deliveries_queued());
        Self { service, queued }
    }
}

#[async_trait::async_trait]
impl Worker for Deliverer<'_> {
    type Item = Claimed;
    type Key = String;
    const NAME: &'static str = "webhooks";

    fn slots(&self) -> usize {
        self.service.webhooks.max_in_flight as usize
    }

    fn tick(&self) -> Duration {
        Duration::from_millis(self.service.webhooks.tick_ms)
    }

    fn key(&self, item: &Claimed) -> String {
        item.delivery.id.clone()
    }

    /// Claims up to `limit` due deliveries for this process (fair across tenants).
    async fn claim(&self, limit: usize) -> Result<Vec<Claimed>, ServiceError> {
        let cfg = &self.service.webhooks;
        let now = Utc::now();
        let lease = now + TimeDelta::milliseconds(cfg.lease_ms.max(1) as i64);
        Ok(self
            .service
            .store
            .claim_deliveries(
                now,
                lease,
                u32::try_from(limit).unwrap_or(u32::MAX),
                cfg.max_concurrent_per_endpoint.max(1),
                cfg.max_in_flight_per_tenant.max(1),
            )
            .await?)
    }

    async fn work(&self, item: Claimed) -> Result<(), ServiceError> {
        self.service.attempt_traced(item).await
    }

    async fn signalled(&self) {
        let mut queued = self.queued.lock().await;
        if queued.changed().await.is_err() {
            // The store is gone: the tick is all there is.
            std::future::pending::<()>().await
        }
    }
}

/// How long a delivery this process cannot sign waits before any process takes it again.
const UNSIGNED_RETRY_SECS: u64 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(code: u16) -> Attempt {
        Attempt {
            at: Utc::now(),
            status_code: Some(code),
            latency_ms: 1,
            error: None,
        }
    }

    #[test]
    fn a_receiver_that_asks_for_time_or_times_out_is_given_more() {
        let schedule = [0, 10, 10];
        let wait_after = |attempt: Attempt, retry_after: Option<u64>| {
            let mut d = Delivery::new("t", "wh_1", "evt_1", "operation.succeeded", "{}".into());
            assert_eq!(record(&mut d, attempt, &schedule, retry_after), None);
            (d.next_attempt_at.unwrap() - Utc::now()).num_seconds()
        };
        // The schedule's wait, give or take a tenth.
        assert!((8..=11).contains(&wait_after(failed(500), None)));
        // Its Retry-After, when longer than the schedule's wait; capped at a day.
        assert!((530..=661).contains(&wait_after(failed(429), Some(600))));
        assert!((530..=661).contains(&wait_after(failed(503), Some(600))));
        assert!((8..=11).contains(&wait_after(failed(429), Some(2))));
        let day = wait_after(failed(429), Some(10 * 24 * 3600));
        assert!(
            (0.9 * 86400.0..=1.1 * 86400.0).contains(&(day as f64)),
            "{day}"
        );
        // Twice the wait after a 429 without one, or a timeout.
        assert!((17..=22).contains(&wait_after(failed(429), None)));
        let timed_out = Attempt {
            status_code: None,
            error: Some("timed out".into()),
            ..failed(0)
        };
        assert!((17..=22).contains(&wait_after(timed_out, None)));
    }

    #[test]
    fn a_delivery_is_retried_on_the_schedule_then_fails_and_disables() {
        let schedule = [0, 5, 300];
        let mut d = Delivery::new("t", "wh_1", "evt_1", "operation.succeeded", "{}".into());
        assert_eq!(record(&mut d, failed(500), &schedule, None), None);
        let wait = d.next_attempt_at.unwrap() - Utc::now();
        assert!((4..=6).contains(&wait.num_seconds()), "{wait}");
        assert_eq!(record(&mut d, failed(503), &schedule, None), None);
        let wait = d.next_attempt_at.unwrap() - Utc::now();
        assert!((260..=331).contains(&wait.num_seconds()), "{wait}");
        let reason = record(&mut d, failed(500), &schedule, None).expect("disabled");
        assert!(
            reason.contains("all 3 attempts") && reason.contains("HTTP 500"),
            "{reason}"
        );
        assert_eq!(d.state, DeliveryState::Failed);
        assert_eq!(d.next_attempt_at, None);
    }

    #[test]
    fn a_2xx_ends_a_delivery() {
        let mut d = Delivery::new("t", "wh_1", "evt_1", "operation.succeeded", "{}".into());
        assert_eq!(record(&mut d, failed(204), &[0], None), None);
        assert_eq!(d.state, DeliveryState::Succeeded);
        assert_eq!(d.attempts.len(), 1);
    }

    #[test]
    fn the_schedule_reads_from_the_environment_form() {
        let cfg: WebhooksConfig =
            serde_json::from_value(serde_json::json!({"retry_schedule_secs": "0, 1,2"})).unwrap();
        assert_eq!(cfg.retry_schedule_secs, vec![0, 1, 2]);
        assert!(serde_json::from_value::<WebhooksConfig>(
            serde_json::json!({"retry_schedule_secs": "0,x"})
        )
        .is_err());
    }
}
