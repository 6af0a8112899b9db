//! The gate every vendor-API request passes first: request counters, the request journal and fault
//! injection (latency, error status, 429, connection reset, malformed body, failing async work).
//!
//! Owns the run-time control state shared by all vendors (`Shared`). It knows each vendor only
//! through that vendor's error-body function; it must not know vendor routes or vendor state.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::variants::VariantCell;
use super::{delta, lock, SimulatorConfig, Vendor};

/// Largest request body the simulator reads.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Oldest journal entries are dropped beyond this many, so a long demo run stays bounded.
const JOURNAL_CAP: usize = 10_000;

/// A misbehaviour injected into one vendor's API (and, for Oktawave, its token endpoint).
///
/// Order of effect: `latency_ms` first, then the first of `reset`, `rate_limit_retry_after`,
/// `status`, `malformed` that is set answers the request without running it. `fail_async` lets the
/// request run but makes the async operation it starts end in failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Delay before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Answer with this status (400..=599) and the vendor's error body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Answer 429 with this `Retry-After` (seconds) and the vendor's error body (no header under
    /// the `rate_limit.no_retry_after` variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_retry_after: Option<u64>,
    /// Close the TCP connection abruptly (RST) without answering.
    #[serde(default)]
    pub reset: bool,
    /// Answer 200, `application/json`, with a body that is not valid JSON.
    #[serde(default)]
    pub malformed: bool,
    /// Async work started while set fails: Hyperstack status `ERROR`, Oktawave ticket 137,
    /// Hostinger action `error`, Syminet job vanishes. Koyeb has no failure state and ignores it.
    #[serde(default)]
    pub fail_async: bool,
    /// Apply to the next N affected requests only, then clear; absent = until cleared. Every API
    /// request counts, except that a `fail_async`-only fault counts only non-GET requests (the
    /// Oktawave token endpoint never counts for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

impl Fault {
    /// Whether the fault acts on every request, not only on those starting async work.
    fn acts_on_transport(&self) -> bool {
        self.latency_ms.is_some()
            || self.status.is_some()
            || self.rate_limit_retry_after.is_some()
            || self.reset
            || self.malformed
    }

    /// Why the fault cannot be installed, if it cannot.
    pub(super) fn problem(&self) -> Option<&'static str> {
        if self.status.is_some_and(|s| !(400..=599).contains(&s)) {
            return Some("status must be within 400..=599");
        }
        if self.times == Some(0) {
            return Some("times must be at least 1 (omit it for a permanent fault)");
        }
        None
    }
}

/// One vendor-API request as the simulator received it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub vendor: Vendor,
    pub method: String,
    /// The vendor's own path, without the simulator prefix (e.g. `/core/snapshots`).
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Lowercase header name → value (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// Body as (lossy) UTF-8.
    pub body: String,
    pub received_at: DateTime<Utc>,
}

/// Request counters of one vendor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorStats {
    /// Requests received since the last reset.
    pub requests: u64,
    /// Requests being answered right now.
    pub in_flight: u64,
    /// Highest `in_flight` seen since the last reset.
    pub max_in_flight: u64,
}

/// Run-time control state shared by the gate, the control plane and `RunningSimulator`.
pub(super) struct Shared {
    pub(super) async_delay: TimeDelta,
    pub(super) token_ttl: Duration,
    faults: Mutex<HashMap<Vendor, Fault>>,
    journal: Mutex<VecDeque<RecordedRequest>>,
    stats: Mutex<HashMap<Vendor, VendorStats>>,
    /// TCP connections accepted since start (benchmarks check the gateway pools its sockets).
    pub(super) connections: std::sync::atomic::AtomicU64,
    /// Which reading of undocumented behaviour each vendor plays.
    pub(super) variants: VariantCell,
}

impl Shared {
    pub(super) fn new(config: &SimulatorConfig) -> Self {
        let faults = config
            .faults
            .iter()
            .filter(|(_, f)| f.times != Some(0))
            .map(|(v, f)| (*v, f.clone()))
            .collect();
        Self {
            async_delay: delta(config.async_delay),
            token_ttl: config.token_ttl,
            faults: Mutex::new(faults),
            journal: Mutex::new(VecDeque::new()),
            stats: Mutex::new(HashMap::new()),
            connections: std::sync::atomic::AtomicU64::new(0),
            variants: VariantCell::new(config.variants.clone()),
        }
    }

    pub(super) fn set_fault(&self, v: Vendor, f: Fault) {
        let mut faults = lock(&self.faults);
        if f.times == Some(0) {
            faults.remove(&v);
        } else {
            faults.insert(v, f);
        }
    }

    pub(super) fn clear_fault(&self, v: Vendor) {
        lock(&self.faults).remove(&v);
    }

    pub(super) fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    pub(super) fn faults(&self) -> BTreeMap<Vendor, Fault> {
        lock(&self.faults)
            .iter()
            .map(|(v, f)| (*v, f.clone()))
            .collect()
    }

    /// The fault that applies to this request, counting it against `times`.
    fn take_fault(&self, v: Vendor, starts_async_work: bool) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let fault = faults.get_mut(&v)?;
        if !(fault.acts_on_transport() || fault.fail_async && starts_async_work) {
            return None;
        }
        let applied = fault.clone();
        match fault.times {
            Some(n) if n <= 1 => {
                faults.remove(&v);
            }
            Some(n) => fault.times = Some(n - 1),
            None => {}
        }
        Some(applied)
    }

    pub(super) fn requests(&self, v: Option<Vendor>) -> Vec<RecordedRequest> {
        lock(&self.journal)
            .iter()
            .filter(|r| v.is_none_or(|v| r.vendor == v))
            .cloned()
            .collect()
    }

    pub(super) fn clear_requests(&self) {
        lock(&self.journal).clear();
    }

    fn record(&self, vendor: Vendor, parts: &Parts, body: &[u8]) {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let entry = RecordedRequest {
            vendor,
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers,
            body: String::from_utf8_lossy(body).into_owned(),
            received_at: Utc::now(),
        };
        let mut journal = lock(&self.journal);
        if journal.len() >= JOURNAL_CAP {
            journal.pop_front();
        }
        journal.push_back(entry);
    }

    pub(super) fn stats(&self, v: Vendor) -> VendorStats {
        lock(&self.stats).get(&v).copied().unwrap_or_default()
    }

    pub(super) fn all_stats(&self) -> BTreeMap<Vendor, VendorStats> {
        let stats = lock(&self.stats);
        Vendor::ALL
            .into_iter()
            .map(|v| (v, stats.get(&v).copied().unwrap_or_default()))
            .collect()
    }

    /// Zeroes the counters; requests still in flight stay counted as in flight.
    pub(super) fn reset_stats(&self) {
        for s in lock(&self.stats).values_mut() {
            *s = VendorStats {
                requests: 0,
                in_flight: s.in_flight,
                max_in_flight: s.in_flight,
            };
        }
    }

    fn enter(self: &Arc<Self>, v: Vendor) -> InFlight {
        let mut stats = lock(&self.stats);
        let s = stats.entry(v).or_default();
        s.requests += 1;
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        InFlight {
            shared: self.clone(),
            vendor: v,
        }
    }
}

/// Counts a request as in flight until dropped (also when the connection is reset mid-request).
struct InFlight {
    shared: Arc<Shared>,
    vendor: Vendor,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.shared.stats).get_mut(&self.vendor) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

/// Request extension: whether async work started by this request must fail.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FailAsync(pub(super) bool);

/// Request extension set by the server: notifying it makes the connection task reset the socket.
#[derive(Clone, Debug)]
pub(super) struct ConnKill(pub(super) Arc<Notify>);

/// The per-vendor gate state.
#[derive(Clone)]
pub(super) struct Gate {
    pub(super) shared: Arc<Shared>,
    pub(super) vendor: Vendor,
    /// The Oktawave token endpoint: faults apply, but it starts no async work.
    pub(super) token_endpoint: bool,
}

impl Gate {
    /// Puts the gate in front of every route (and the fallback) of a vendor router.
    pub(super) fn wrap(self, router: Router) -> Router {
        router.layer(middleware::from_fn_with_state(self, gate))
    }
}

async fn gate(State(g): State<Gate>, req: Request, next: Next) -> Response {
    let _in_flight = g.shared.enter(g.vendor);
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return vendor_error(
            g.vendor,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        );
    };
    g.shared.record(g.vendor, &parts, &bytes);
    let mut req = Request::from_parts(parts, Body::from(bytes));
    let variants = g.shared.variants.get();
    req.extensions_mut().insert(variants.clone());
    let starts_async_work =
        !g.token_endpoint && !matches!(*req.method(), Method::GET | Method::HEAD);
    let Some(fault) = g.shared.take_fault(g.vendor, starts_async_work) else {
        req.extensions_mut().insert(FailAsync(false));
        return next.run(req).await;
    };
    if fault.reset {
        if let Some(ms) = fault.latency_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(ConnKill(kill)) = req.extensions().get::<ConnKill>() {
            kill.notify_one();
            // The connection task drops this future together with the connection.
            return std::future::pending().await;
        }
        return vendor_error(g.vendor, StatusCode::BAD_GATEWAY, "connection reset");
    }
    let vendor = g.vendor;
    let answer = async move {
        if let Some(ms) = fault.latency_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(secs) = fault.rate_limit_retry_after {
            let mut resp = vendor_error(vendor, StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            if !variants.flag(super::variants::RATE_LIMIT_NO_RETRY_AFTER) {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return resp;
        }
        if let Some(status) = fault.status {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = status.canonical_reason().unwrap_or("Error");
            return vendor_error(vendor, status, reason);
        }
        if fault.malformed {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"status\": tru, \"data\": [",
            )
                .into_response();
        }
        req.extensions_mut().insert(FailAsync(fault.fail_async));
        next.run(req).await
    };
    if !starts_async_work {
        return answer.await;
    }
    // A real vendor carries out a change it has received even when the caller hangs up mid-way
    // (a gateway deadline, a crash); so does the simulator, however slow the fault makes it.
    tokio::spawn(answer).await.unwrap_or_else(|_| {
        vendor_error(vendor, StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

/// The vendor's own error body for `status`.
pub(super) fn vendor_error(v: Vendor, status: StatusCode, message: &str) -> Response {
    v.error(status, message)
}
