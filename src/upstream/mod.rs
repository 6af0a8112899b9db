//! The one place that builds vendor HTTP clients and sends vendor requests: timeouts,
//! no redirects, capped bodies, request ids, tracing, and the generic status mapping.
//!
//! Adapters describe a request; this module sends it and turns every failure into a
//! [`ProviderError`]. It knows no vendor's wire format.

mod guard;
mod url;

use std::{
    hash::{Hash, Hasher},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use rand::Rng;
use reqwest::{header::HeaderMap, Method, RequestBuilder, StatusCode};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::scrub::Sent;
use crate::{
    domain::{ProviderError, ProviderKind},
    telemetry,
};
use guard::{Admission, GuardConfig, Guards, RetryBudget};
use url::parse_url;

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

/// A vendor's rate-limit headers, as its documentation names them.
#[derive(Clone, Copy, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RateLimitHeaders {
    /// Requests left (`RateLimit-Remaining`).
    pub remaining: &'static str,
    /// Unix time of the reset it documents (`RateLimit-Reset`).
    pub reset: &'static str,
    /// Where the limit refills gradually: seconds until the next request is allowed once none
    /// is left (the reset then being the time of a *full* refill). `None`: the reset is when
    /// the next request is allowed.
    pub refill_secs: Option<u64>,
}

impl RateLimitHeaders {
    /// How long to hold the account after a reply saying none of the limit is left.
    pub fn exhausted_for(&self, headers: &HeaderMap) -> Option<u64> {
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<i64>().ok();
        if number(self.remaining)? > 0 {
            return None;
        }
        let until_reset = number(self.reset)
            .map(|at| at.saturating_sub(chrono::Utc::now().timestamp()).max(1))
            .map(|secs| secs as u64);
        Some(match (self.refill_secs, until_reset) {
            (Some(refill), Some(reset)) => refill.min(reset),
            (Some(refill), None) => refill,
            (None, Some(reset)) => reset,
            (None, None) => 1,
        })
    }
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
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

/// Pooled HTTP clients shared by every adapter and tenant: one per serving thread, so a vendor
/// connection is driven by the thread whose request uses it (see [`set_worker`]).
#[derive(Clone)]
pub struct Upstream {
    /// Builds the adapters' requests (`RequestBuilder`); never sends one.
    builder: reqwest::Client,
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
    pub fn new(config: UpstreamConfig) -> Result<Self, reqwest::Error> {
        Self::for_workers(config, 1)
    }

    /// One pool per serving thread. A client that cannot be built (no TLS backend) is an error,
    /// never a silent fallback to a client without the configured timeouts.
    #[allow(
        clippy::disallowed_methods,
        reason = "one of the places HTTP clients are built (clippy.toml)"
    )]
    pub fn for_workers(config: UpstreamConfig, workers: usize) -> Result<Self, reqwest::Error> {
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
                .build(https)
        };
        let clients: Arc<[VendorClient]> = (0..workers.max(1)).map(|_| build()).collect();
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let guards = Guards::new(GuardConfig {
            failure_threshold: config.breaker_failures.max(1),
            cooldown: Duration::from_millis(config.breaker_cooldown_ms),
            max_concurrency: config.max_concurrency_per_account,
        });
        Ok(Self {
            builder,
            clients,
            inner: Arc::new(Inner {
                budget: RetryBudget::new(config.retry_budget_ratio),
                config,
                guards,
            }),
        })
    }

    /// The calling thread's client.
    fn client(&self) -> &VendorClient {
        &self.clients[WORKER.with(std::cell::Cell::get) % self.clients.len()]
    }

    /// Starts a request; the adapter adds auth, query and body.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let client = &self.builder;
        let rb = match parse_url(url) {
            Some(url) => client.request(method, url),
            // Left to reqwest, which reports why it cannot be sent.
            None => client.request(method, url),
        };
        let mut rb = rb.header(reqwest::header::ACCEPT, "application/json");
        let id = telemetry::current_request_id();
        if !id.is_empty() {
            rb = rb.header("x-request-id", id);
        }
        rb
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
        request: RequestBuilder,
        message: fn(&[u8]) -> Option<String>,
    ) -> Result<Reply, ProviderError> {
        let vendor = policy.kind;
        let request = self.build(vendor, request)?;
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
            .copied()
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
    fn build(
        &self,
        vendor: ProviderKind,
        request: RequestBuilder,
    ) -> Result<reqwest::Request, ProviderError> {
        let mut request = request.build().map_err(|e| ProviderError::Upstream {
            status: None,
            message: format!("could not build the {vendor} request ({e})"),
        })?;
        if let Some(ms) = self.inner.config.provider_timeout_ms.get(&vendor) {
            *request.timeout_mut() = Some(Duration::from_millis(*ms));
        }
        Ok(request)
    }

    /// One attempt, counted, timed and logged.
    async fn observed_attempt(
        &self,
        policy: Vendor,
        operation: &'static str,
        attempt: u32,
        request: &reqwest::Request,
        message: fn(&[u8]) -> Option<String>,
    ) -> Result<Reply, ProviderError> {
        let vendor = policy.kind;
        let started = Instant::now();
        let Some(mut this_try) = request.try_clone() else {
            return Err(ProviderError::Upstream {
                status: None,
                message: "request body cannot be resent".into(),
            });
        };
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
        let result =
            tracing::Instrument::instrument(self.attempt(policy, this_try, message), span.clone())
                .await;
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
        request: reqwest::Request,
        message: fn(&[u8]) -> Option<String>,
    ) -> Result<Reply, ProviderError> {
        let vendor = policy.kind;
        // What this very call carried, so a vendor echoing it cannot pass it on.
        let sent = Sent::of(&request, policy.secret_header);
        let wait = request
            .timeout()
            .copied()
            .unwrap_or(Duration::from_millis(self.inner.config.request_timeout_ms));
        let request = to_http(request).map_err(|message| ProviderError::Upstream {
            status: None,
            message: format!("could not build the {vendor} request ({message})"),
        })?;
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
                    clean
                }
                None => body,
            };
            return Ok(Reply {
                status,
                headers,
                body: body.into(),
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

/// The status, headers and whole body of a vendor's answer (at most [`MAX_BODY`] bytes).
async fn read_answer(
    vendor: ProviderKind,
    response: http::Response<hyper::body::Incoming>,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), ProviderError> {
    let (parts, mut incoming) = response.into_parts();
    // The headers outlive the body read: owned, they let hyper reuse its read buffer for the
    // connection's next read instead of allocating another (see `crate::head`).
    let (status, mut headers) = (parts.status, parts.headers);
    drop(parts.extensions);
    crate::head::own_values(&mut headers);
    // Sized once from the declared length (within the cap): no regrowth while reading.
    let declared = headers
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    let mut body = Vec::with_capacity(declared);
    while let Some(frame) = http_body_util::BodyExt::frame(&mut incoming).await {
        let frame = frame.map_err(|_| ProviderError::Upstream {
            status: None,
            message: format!("the connection to {vendor} failed"),
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ProviderError::Upstream {
                status: Some(status.as_u16()),
                message: format!("{vendor} answered with a body over {MAX_BODY} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, body))
}

thread_local! {
    /// The call counter and duration histogram of each (vendor, operation, outcome) this
    /// thread has seen.
    static HANDLES: crate::telemetry::HandleCache<
        (ProviderKind, &'static str, &'static str),
        (metrics::Counter, metrics::Histogram),
    > = Default::default();
}

/// Counts one vendor call and records how long it took.
fn count(vendor: ProviderKind, operation: &'static str, outcome: &'static str, took: Duration) {
    let make = || {
        let provider = vendor.as_str();
        (
            metrics::counter!(
                "snapgate_upstream_requests_total",
                "provider" => provider,
                "operation" => operation,
                "outcome" => outcome
            ),
            metrics::histogram!("snapgate_upstream_request_duration_seconds", "provider" => provider),
        )
    };
    crate::telemetry::with_handle(&HANDLES, (vendor, operation, outcome), make, |h| {
        h.0.increment(1);
        h.1.record(took.as_secs_f64());
    });
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

/// The vendor's HTTP status in a failure, for logs (0 when there was none).
fn upstream_status(e: &ProviderError) -> u16 {
    match e {
        ProviderError::Rejected { status, .. } | ProviderError::Auth { status } => *status,
        ProviderError::Upstream { status, .. } => status.unwrap_or(0),
        ProviderError::Forbidden { .. } => 403,
        ProviderError::NotFound | ProviderError::SourceNotFound { .. } => 404,
        ProviderError::Conflict { .. } => 409,
        ProviderError::RateLimited { .. } => 429,
        _ => 0,
    }
}

/// A metrics label for how a vendor call ended.
fn outcome(result: &Result<Reply, ProviderError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ProviderError::Rejected { .. }) => "rejected",
        Err(ProviderError::Auth { .. }) => "auth_failed",
        Err(ProviderError::Forbidden { .. }) => "forbidden",
        Err(ProviderError::NotFound) => "not_found",
        Err(ProviderError::Conflict { .. }) => "conflict",
        Err(ProviderError::RateLimited { .. }) => "rate_limited",
        Err(ProviderError::Timeout) => "timeout",
        Err(ProviderError::CircuitOpen { .. }) => "circuit_open",
        Err(_) => "error",
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

/// A reply saying the vendor's limit is spent holds the account now, not after a 429.
fn hold_if_spent(
    policy: &Vendor,
    operation: &'static str,
    result: &Result<Reply, ProviderError>,
    guard: &guard::Guard,
) {
    let exhausted = match (result, &policy.rate_limit_headers) {
        (Ok(reply), Some(headers)) => headers.exhausted_for(&reply.headers),
        _ => None,
    };
    if let Some(secs) = exhausted {
        let vendor = policy.kind;
        tracing::info!(%vendor, operation, secs, "rate limit spent: holding the account");
        guard.rate_limited(secs);
    }
}

/// Whether a vendor rate-limits by the caller's address.
fn limits_by_address(config: &UpstreamConfig, vendor: &Vendor) -> bool {
    match &config.address_rate_limited_providers {
        Some(configured) => configured.contains(&vendor.kind),
        None => vendor.limits_by_address,
    }
}

/// Vendor host alone: every account of the vendor, as seen from the gateway's address.
fn address_identity(request: &reqwest::Request) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    "address".hash(&mut h);
    request.url().host_str().hash(&mut h);
    request.url().port_or_known_default().hash(&mut h);
    h.finish()
}

/// Vendor host plus the identity the adapter names: one account's view of one vendor.
fn named_identity(request: &reqwest::Request, id: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    request.url().host_str().hash(&mut h);
    request.url().port_or_known_default().hash(&mut h);
    id.hash(&mut h);
    h.finish()
}

/// A failure to exchange with the vendor: a connect timeout is a timeout (`504`), anything
/// else a failed connection (`502`, retried for GETs).
fn transport_error(vendor: ProviderKind, e: &hyper_util::client::legacy::Error) -> ProviderError {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return ProviderError::Timeout;
            }
        }
        source = s.source();
    }
    ProviderError::Upstream {
        status: None,
        message: if e.is_connect() {
            format!("could not connect to {vendor}")
        } else {
            format!("the connection to {vendor} failed")
        },
    }
}

/// The request as hyper sends it, with the gateway's user agent.
fn to_http(
    mut request: reqwest::Request,
) -> Result<http::Request<http_body_util::Full<Bytes>>, String> {
    let uri: http::Uri = request.url().as_str().parse().map_err(|e| format!("{e}"))?;
    let body = match request.body_mut().take() {
        Some(body) => Bytes::copy_from_slice(body.as_bytes().ok_or("a streamed body")?),
        None => Bytes::new(),
    };
    let mut out = http::Request::new(http_body_util::Full::new(body));
    *out.method_mut() = request.method().clone();
    *out.uri_mut() = uri;
    *out.headers_mut() = std::mem::take(request.headers_mut());
    out.headers_mut()
        .entry(reqwest::header::USER_AGENT)
        .or_insert(http::HeaderValue::from_static(USER_AGENT));
    Ok(out)
}

const USER_AGENT: &str = concat!("snapgate/", env!("CARGO_PKG_VERSION"));

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

/// The wait a `Retry-After` asks for (delta-seconds or an HTTP date), or `default` without one;
/// between 1 s and an hour.
pub fn retry_after(headers: &HeaderMap, default: u64) -> u64 {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let secs = value.and_then(|v| {
        v.parse::<u64>().ok().or_else(|| {
            chrono::DateTime::parse_from_rfc2822(v)
                .ok()
                .map(|at| (at.timestamp() - chrono::Utc::now().timestamp()).max(1) as u64)
        })
    });
    secs.unwrap_or(default).clamp(1, 3600)
}

/// The generic vendor-status mapping (the README's error table), written once for every
/// adapter.
pub fn classify(
    vendor: ProviderKind,
    status: StatusCode,
    headers: &HeaderMap,
    message: Option<String>,
    rate_limit_hold: u64,
) -> ProviderError {
    let message = message
        // Generous here: the API edge scrubs secrets first, then shortens to 500 characters.
        .map(|m| m.chars().take(4000).collect::<String>())
        .unwrap_or_else(|| format!("{vendor} answered {status}"));
    match status.as_u16() {
        400 | 422 => ProviderError::Rejected {
            status: status.as_u16(),
            message,
        },
        401 => ProviderError::Auth { status: 401 },
        403 => ProviderError::Forbidden { message },
        404 => ProviderError::NotFound,
        409 => ProviderError::Conflict { message },
        429 => ProviderError::RateLimited {
            retry_after: retry_after(headers, rate_limit_hold),
        },
        _ => ProviderError::Upstream {
            status: Some(status.as_u16()),
            message,
        },
    }
}

#[cfg(test)]
mod retry_after_tests {
    use super::retry_after;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn seconds_dates_and_absence_are_all_read() {
        assert_eq!(retry_after(&with("7"), 60), 7);
        assert_eq!(retry_after(&HeaderMap::new(), 60), 60);
        let in_two_minutes = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let secs = retry_after(&with(&in_two_minutes), 60);
        assert!((118..=121).contains(&secs), "{secs}");
        assert_eq!(retry_after(&with("soon"), 30), 30);
    }
}

#[cfg(test)]
mod count_tests {
    use crate::domain::ProviderKind;
    use std::time::Duration;

    #[test]
    fn vendor_calls_are_counted_by_provider_operation_and_outcome() {
        let handle = crate::telemetry::metrics_handle().unwrap();
        let value = |series: &str| {
            let text = handle.render();
            text.lines()
                .find(|l| l.starts_with(series))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        };
        // An operation name only this test uses, so the series are its alone.
        let op = "count-test";
        let [one, other, ..] = ProviderKind::ALL;
        for _ in 0..2 {
            super::count(one, op, "ok", Duration::from_millis(1));
        }
        super::count(one, op, "timeout", Duration::ZERO);
        super::count(other, op, "ok", Duration::ZERO);
        let series = |provider: &str, outcome: &str| {
            format!(
                r#"snapgate_upstream_requests_total{{provider="{provider}",operation="{op}",outcome="{outcome}"}}"#
            )
        };
        assert_eq!(value(&series(one.as_str(), "ok")), Some(2.0));
        assert_eq!(value(&series(one.as_str(), "timeout")), Some(1.0));
        assert_eq!(value(&series(other.as_str(), "ok")), Some(1.0));
    }
}

#[cfg(test)]
mod rate_limit_header_tests {
    use super::RateLimitHeaders;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(remaining: &str, reset_in: i64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "ratelimit-remaining",
            HeaderValue::from_str(remaining).unwrap(),
        );
        let reset = (chrono::Utc::now().timestamp() + reset_in).to_string();
        h.insert("ratelimit-reset", HeaderValue::from_str(&reset).unwrap());
        h
    }

    const NEXT_SLOT: RateLimitHeaders = RateLimitHeaders {
        remaining: "ratelimit-remaining",
        reset: "ratelimit-reset",
        refill_secs: None,
    };

    #[test]
    fn a_spent_limit_holds_until_the_reset_or_the_next_refill() {
        assert_eq!(NEXT_SLOT.exhausted_for(&headers("3", 40)), None);
        let held = NEXT_SLOT.exhausted_for(&headers("0", 40)).unwrap();
        assert!((39..=41).contains(&held), "{held}");
        let gradual = RateLimitHeaders {
            refill_secs: Some(1),
            ..NEXT_SLOT
        };
        // A full refill an hour away, one request back every second: hold one second.
        assert_eq!(gradual.exhausted_for(&headers("0", 3600)), Some(1));
        // A reset already past still holds a moment; no headers, no hold.
        assert_eq!(NEXT_SLOT.exhausted_for(&headers("0", -5)), Some(1));
        assert_eq!(NEXT_SLOT.exhausted_for(&HeaderMap::new()), None);
    }
}
