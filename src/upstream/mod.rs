//! The one place that builds vendor HTTP clients and sends vendor requests: timeouts,
//! no redirects, capped bodies, request ids, tracing, and the generic status mapping.
//!
//! Adapters describe a request; this module sends it and turns every failure into a
//! [`ProviderError`]. It knows no vendor's wire format.

mod answer;
mod connector;
mod guard;
mod outbound;
mod url;

pub use answer::{classify, retry_after, RateLimitHeaders};
use answer::{count, hold_if_spent, outcome, read_answer, transport_error, upstream_status};
pub use outbound::Outbound;
use outbound::Ready;

use std::{
    hash::{Hash, Hasher},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use rand::Rng;
use reqwest::{header::HeaderMap, Method, StatusCode};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::scrub::Sent;
use crate::{
    domain::{ProviderError, ProviderKind},
    telemetry,
};
use guard::{Admission, GuardConfig, Guards, RetryBudget};

/// Largest vendor response body read, in bytes.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// How vendor calls are made: timeouts, retries, breaker and concurrency cap.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// TCP connect timeout, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Timeout of one vendor call (one attempt), in milliseconds.
    pub request_timeout_ms: u64,
    /// Per-provider overrides of `request_timeout_ms` (e.g. `{ oktawave = 20000 }`).
    pub provider_timeout_ms: std::collections::BTreeMap<ProviderKind, u64>,
    /// Retries of an idempotent call (GET) after a 5xx or reset (never after a timeout, which
    /// would only spend the caller's deadline, nor after a 429).
    pub max_retries: u32,
    /// Retries earned per first attempt (0.2: retries stay within ~20% extra load).
    pub retry_budget_ratio: f64,
    /// Consecutive failures that open an account's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker fails fast before one probe, in milliseconds.
    pub breaker_cooldown_ms: u64,
    /// Simultaneous calls per account (credential identity) and vendor; more wait.
    pub max_concurrency_per_account: usize,
    /// Idle connections kept open to one vendor host, per serving thread: a list across a
    /// thousand accounts of one vendor opens a connection for each account it reads at once,
    /// and the next list reuses them instead of connecting again.
    pub max_idle_connections_per_host: usize,
    /// How long a `429` without `Retry-After` holds the account, in seconds, for a vendor that
    /// declares no window of its own.
    pub rate_limit_hold_secs: u64,
    /// Per-provider overrides of the hold: by default each vendor's documented window, as its
    /// adapter declares it ([`Vendor::rate_limit_window_secs`]).
    pub provider_rate_limit_hold_secs: std::collections::BTreeMap<ProviderKind, u64>,
    /// Overrides which vendors rate-limit by caller address (a 429 from one account holds every
    /// account of that vendor, as they share the gateway's address). By default each vendor's
    /// adapter declares it ([`Vendor::limits_by_address`]).
    pub address_rate_limited_providers: Option<std::collections::BTreeSet<ProviderKind>>,
}

/// What the HTTP layer needs to know of a vendor, declared once by its adapter.
#[derive(Clone, Copy, Debug)]
pub struct Vendor {
    pub kind: ProviderKind,
    /// How long a `429` without `Retry-After` holds the account: the vendor's documented window
    /// (`None`: `rate_limit_hold_secs`).
    pub rate_limit_window_secs: Option<u64>,
    /// The vendor limits by caller address: one account's 429 holds every account of it.
    pub limits_by_address: bool,
    /// A header whose value is a credential, besides the standard ones (`Authorization`, …).
    pub secret_header: Option<&'static str>,
    /// Where the vendor says how much of its limit is left: an account that has spent it is
    /// held before the vendor has to answer 429.
    pub rate_limit_headers: Option<RateLimitHeaders>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 2_000,
            request_timeout_ms: 10_000,
            provider_timeout_ms: Default::default(),
            max_retries: 2,
            retry_budget_ratio: 0.2,
            breaker_failures: 5,
            breaker_cooldown_ms: 10_000,
            max_concurrency_per_account: 16,
            max_idle_connections_per_host: 1_024,
            rate_limit_hold_secs: 30,
            provider_rate_limit_hold_secs: Default::default(),
            address_rate_limited_providers: None,
        }
    }
}

/// The connection pool of one serving thread: hyper's client over rustls (HTTP/1.1), no
/// redirect or retry machinery of its own (this module decides both).
type VendorClient = hyper_util::client::legacy::Client<
    connector::Quiet<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    >,
    http_body_util::Full<Bytes>,
>;

/// Pooled HTTP clients shared by every adapter and tenant: one per serving thread, so a vendor
/// connection is driven by the thread whose request uses it (see [`set_worker`]).
#[derive(Clone)]
pub struct Upstream {
    clients: Arc<[VendorClient]>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("clients", &self.clients.len())
            .field("inner", &self.inner)
            .finish()
    }
}

thread_local! {
    /// The serving thread's index, choosing its client (0 off the serving threads).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as serving thread `index`: its vendor calls use its own pool.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

#[derive(Debug)]
struct Inner {
    config: UpstreamConfig,
    guards: Guards,
    budget: RetryBudget,
}

/// A vendor's successful answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Decodes the body into a typed wire struct; garbage is a `502 upstream_error`.
    pub fn json<T: DeserializeOwned>(&self, vendor: ProviderKind) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| ProviderError::Upstream {
            status: Some(self.status.as_u16()),
            message: format!(
                "{vendor} answered with a body snapgate could not read ({})",
                crate::scrub::unreadable_json(&e)
            ),
        })
    }
}

impl Upstream {
    /// One pool for callers on any thread.
    pub fn new(config: UpstreamConfig) -> Self {
        Self::for_workers(config, 1)
    }

    /// One pool per serving thread, over one TLS configuration (rustls with `ring`, built in:
    /// nothing here can fail at run time).
    #[allow(
        clippy::disallowed_methods,
        reason = "one of the places HTTP clients are built (clippy.toml)"
    )]
    pub fn for_workers(config: UpstreamConfig, workers: usize) -> Self {
        // One TLS configuration (root store parsed once) shared by every thread's pool.
        let tls = tls_config();
        let build = || {
            let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
            http.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
            http.set_nodelay(true);
            http.enforce_http(false);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(config.max_idle_connections_per_host)
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(connector::Quiet(https))
        };
        let clients: Arc<[VendorClient]> = (0..workers.max(1)).map(|_| build()).collect();
        let guards = Guards::new(GuardConfig {
            failure_threshold: config.breaker_failures.max(1),
            cooldown: Duration::from_millis(config.breaker_cooldown_ms),
            max_concurrency: config.max_concurrency_per_account,
        });
        Self {
            clients,
            inner: Arc::new(Inner {
                budget: RetryBudget::new(config.retry_budget_ratio),
                config,
                guards,
            }),
        }
    }

    /// The calling thread's client.
    fn client(&self) -> &VendorClient {
        &self.clients[WORKER.with(std::cell::Cell::get) % self.clients.len()]
    }

    /// Starts a request to `url`; the adapter adds auth, query and body.
    pub fn request(&self, method: Method, url: String) -> Outbound {
        let request = Outbound::new(method, url);
        match telemetry::request_id_header() {
            Some(id) => request.header(http::HeaderName::from_static("x-request-id"), id),
            None => request,
        }
    }

    /// Sends a request; non-2xx answers become [`ProviderError`]s, with the vendor's message
    /// taken from the body by `message` (a vendor-specific reader). The breaker and the
    /// concurrency cap are kept per `identity` at the request's host: the adapter names the
    /// account's credential identity (a hash of what authenticates it), so this layer knows no
    /// vendor's auth scheme.
    ///
    /// GETs are retried after a 5xx or reset (backoff with jitter, within the retry budget);
    /// nothing is retried after a 429 or a timeout.
    pub async fn send(
        &self,
        policy: Vendor,
        operation: &'static str,
        identity: u64,
        request: Outbound,
        message: fn(&[u8]) -> Option<String>,
    ) -> Result<Reply, ProviderError> {
        let vendor = policy.kind;
        let request = self.ready(vendor, request)?;
        // A vendor limiting by address: one account's 429 holds every account behind it.
        let address = limits_by_address(&self.inner.config, &policy)
            .then(|| self.inner.guards.get(address_identity(&request)));
        if let Some(retry_after) = address.as_ref().and_then(|a| a.held_for()) {
            tracing::info!(%vendor, operation, retry_after, "rate limited by address: not calling before Retry-After");
            return Err(ProviderError::RateLimited { retry_after });
        }
        let guard = self.inner.guards.get(named_identity(&request, identity));
        let probe = admit(&guard, vendor, operation)?;
        // If this call is the breaker's probe and its future is dropped (caller deadline,
        // disconnect) before it reports, the guard lets the next call probe instead.
        let mut probe_slot = ProbeSlot {
            guard: &guard,
            armed: probe,
        };
        let config = &self.inner.config;
        let wait = request
            .timeout()
            .unwrap_or(Duration::from_millis(config.request_timeout_ms));
        // A free permit is taken at once; only a call that has to queue arms a timer.
        let _permit = match guard.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => match tokio::time::timeout(wait, guard.permits.acquire()).await {
                Ok(Ok(permit)) => permit,
                _ => return Err(ProviderError::Timeout),
            },
        };
        let retryable_method = request.method() == Method::GET;
        self.inner.budget.deposit();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = self
                .observed_attempt(policy, operation, attempt, &request, message)
                .await;
            let unwell = matches!(
                &result,
                Err(ProviderError::Timeout) | Err(ProviderError::Upstream { .. })
            );
            if !unwell {
                // The vendor answered (2xx, 4xx or 429): it is alive.
                probe_slot.armed = false;
                guard.success();
                hold_if_spent(&policy, operation, &result, &guard);
                if let Err(ProviderError::RateLimited { retry_after }) = &result {
                    guard.rate_limited(*retry_after);
                    if let Some(address) = &address {
                        address.rate_limited(*retry_after);
                    }
                }
                return result;
            }
            // A hang is not retried: another attempt would only spend the caller's deadline.
            let may_retry = retryable_method
                && !matches!(result, Err(ProviderError::Timeout))
                && attempt <= config.max_retries
                && !probe
                && self.inner.budget.withdraw();
            if !may_retry {
                probe_slot.armed = false;
                guard.failure();
                return result;
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// The request, with the vendor's own timeout where one is configured.
    fn ready(&self, vendor: ProviderKind, request: Outbound) -> Result<Ready, ProviderError> {
        let mut request = request.ready().map_err(|e| ProviderError::Upstream {
            status: None,
            message: format!("could not build the {vendor} request ({e})"),
        })?;
        if let Some(ms) = self.inner.config.provider_timeout_ms.get(&vendor) {
            request.set_timeout(Duration::from_millis(*ms));
        }
        Ok(request)
    }

    /// One attempt, counted, timed and logged.
    async fn observed_attempt(
        &self,
        policy: Vendor,
        operation: &'static str,
        attempt: u32,
        request: &Ready,
        message: fn(&[u8]) -> Option<String>,
    ) -> Result<Reply, ProviderError> {
        let vendor = policy.kind;
        let started = Instant::now();
        let mut this_try = request.attempt();
        let span = tracing::info_span!(
            "vendor call",
            otel.name = %format_args!("{vendor} {operation}"),
            otel.kind = "client",
            provider = %vendor,
            operation,
            attempt,
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        crate::otel::inject(&span, this_try.headers_mut());
        let wait = request
            .timeout()
            .unwrap_or(Duration::from_millis(self.inner.config.request_timeout_ms));
        // What this very call carried, so a vendor echoing it cannot pass it on.
        let sent = Sent::of(request.headers(), request.body(), policy.secret_header);
        let exchange = self.attempt(policy, this_try, wait, sent, message);
        let result = tracing::Instrument::instrument(exchange, span.clone()).await;
        span.record("outcome", outcome(&result));
        match &result {
            Ok(reply) => span.record("status", reply.status.as_u16()),
            Err(e) => span.record("status", upstream_status(e)),
        };
        let took = started.elapsed();
        let ms = took.as_millis() as u64;
        count(vendor, operation, outcome(&result), took);
        match &result {
            Ok(reply) => {
                tracing::debug!(%vendor, operation, attempt, status = reply.status.as_u16(), ms, "upstream call")
            }
            // The outcome and status only: a vendor message may echo what it was sent.
            Err(e) => tracing::info!(
                %vendor,
                operation,
                attempt,
                outcome = outcome(&result),
                upstream_status = upstream_status(e),
                ms,
                "upstream call failed"
            ),
        }
        result
    }

    async fn attempt(
        &self,
        policy: Vendor,
        request: http::Request<http_body_util::Full<Bytes>>,
        wait: Duration,
        sent: Sent,
        message: fn(&[u8]) -> Option<String>,
    ) -> Result<Reply, ProviderError> {
        let vendor = policy.kind;
        let client = self.client();
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| transport_error(vendor, &e))?;
            read_answer(vendor, response).await
        };
        let (status, headers, body) = tokio::time::timeout(wait, exchange)
            .await
            .map_err(|_| ProviderError::Timeout)??;
        if status.is_success() {
            // A vendor that echoes what it was sent (the token, the Basic pair) in its data
            // must not pass it on to names, messages, events or the store.
            let body = match sent.scrubber().scrub_data(&body) {
                Some(clean) => {
                    metrics::counter!("snapgate_vendor_echoed_secret_total", "provider" => vendor.as_str())
                        .increment(1);
                    clean.into()
                }
                None => body,
            };
            return Ok(Reply {
                status,
                headers,
                body,
            });
        }
        let text = message(&body).map(|m| sent.scrubber().scrub(&m));
        Err(classify(
            vendor,
            status,
            &headers,
            text,
            self.hold_secs(&policy),
        ))
    }

    /// How long a 429 without `Retry-After` holds the vendor's account: the operator's setting
    /// for it, else the vendor's documented window, else the general setting.
    fn hold_secs(&self, vendor: &Vendor) -> u64 {
        let config = &self.inner.config;
        config
            .provider_rate_limit_hold_secs
            .get(&vendor.kind)
            .copied()
            .or(vendor.rate_limit_window_secs)
            .unwrap_or(config.rate_limit_hold_secs)
    }
}

/// Asks the breaker whether a call may go: `Ok(true)` when it is the probe after a cool-down.
fn admit(
    guard: &guard::Guard,
    vendor: ProviderKind,
    operation: &'static str,
) -> Result<bool, ProviderError> {
    match guard.admit() {
        Admission::Rejected(retry_after) => {
            tracing::info!(%vendor, operation, "circuit open: failing fast");
            Err(ProviderError::CircuitOpen { retry_after })
        }
        Admission::RateLimited(retry_after) => {
            tracing::info!(%vendor, operation, retry_after, "rate limited: not calling before Retry-After");
            Err(ProviderError::RateLimited { retry_after })
        }
        Admission::Probe => Ok(true),
        Admission::Allowed => Ok(false),
    }
}

/// Releases the breaker's probe slot if the probing call ends without reporting.
struct ProbeSlot<'a> {
    guard: &'a guard::Guard,
    armed: bool,
}

impl Drop for ProbeSlot<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.guard.release_probe();
        }
    }
}

/// A small client for the gateway's own control-plane fetches (e.g. an identity provider's
/// JWKS): short timeouts, no redirects.
#[allow(
    clippy::disallowed_methods,
    reason = "one of the places HTTP clients are built (clippy.toml)"
)]
pub fn control_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Full-jitter exponential backoff: up to 50 ms, 100 ms, 200 ms … capped at 1 s.
fn backoff(attempt: u32) -> Duration {
    let ceiling = 50u64.saturating_mul(1 << attempt.min(5)).min(1_000);
    Duration::from_millis(rand::thread_rng().gen_range(ceiling / 2..=ceiling))
}

/// Whether a vendor rate-limits by the caller's address.
fn limits_by_address(config: &UpstreamConfig, vendor: &Vendor) -> bool {
    match &config.address_rate_limited_providers {
        Some(configured) => configured.contains(&vendor.kind),
        None => vendor.limits_by_address,
    }
}

/// Vendor host alone: every account of the vendor, as seen from the gateway's address.
fn address_identity(request: &Ready) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    "address".hash(&mut h);
    host_and_port(request.uri()).hash(&mut h);
    h.finish()
}

/// Vendor host plus the identity the adapter names: one account's view of one vendor.
fn named_identity(request: &Ready, id: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    host_and_port(request.uri()).hash(&mut h);
    id.hash(&mut h);
    h.finish()
}

/// The host a URI names and its port, the scheme's default where none is written.
fn host_and_port(uri: &http::Uri) -> (Option<&str>, Option<u16>) {
    let default = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    (uri.host(), uri.port_u16().or(default))
}

/// TLS for vendor calls: rustls with the Mozilla roots (as reqwest's `rustls-tls` has them).
fn tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
        .with_root_certificates(roots)
        .with_no_client_auth()
}
