//! The fake vendors behind `snapgate simulate` and the demo: faithful, stateful stand-ins for
//! the Hyperstack, Koyeb, Oktawave, Hostinger and Syminet snapshot APIs on one port, each under its
//! own path prefix, plus a `/_sim` control plane (faults, request journal, stats).
//!
//! This module owns the public entry points (`start`, `RunningSimulator`), the vendor list, the
//! configuration and the time rules shared by the vendor files. It is an independent reading of the
//! vendor contracts in `shared/vendors/`: it must not know the gateway's providers, domain model or
//! store, so that an adapter which misreads a contract fails against it.
//!
//! Async work (snapshot creation, tickets, actions, 202 jobs) is derived lazily from timestamps: an
//! operation started at `t` is done at `t + async_delay`, evaluated on every read. No background
//! task mutates state, which keeps the simulator deterministic under test.

mod control;
mod digitalocean;
mod faults;
mod hetzner;
mod hostinger;
mod hyperstack;
mod koyeb;
mod oktawave;
mod oktawave_id;
mod server;
mod syminet;
mod variants;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::{http::StatusCode, response::Response, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{Fault, RecordedRequest, VendorStats};
use faults::{Gate, Shared};
pub use variants::{names as variant_names, VariantSpec, VariantValue, Variants};

/// Hyperstack API key (header `api_key`).
pub const HYPERSTACK_API_KEY: &str = "sim-hyperstack-key";
/// Koyeb API token (`Authorization: Bearer …`).
pub const KOYEB_TOKEN: &str = "sim-koyeb-token";
/// Oktawave OAuth2 client id (HTTP Basic user at the token endpoint).
pub const OKTAWAVE_CLIENT_ID: &str = "sim-oktawave-client";
/// Oktawave OAuth2 client secret (HTTP Basic password at the token endpoint).
pub const OKTAWAVE_CLIENT_SECRET: &str = "sim-oktawave-secret";
/// Oktawave account login (password grant `username`).
pub const OKTAWAVE_USERNAME: &str = "sim-oktawave-user";
/// Oktawave account password (password grant `password`).
pub const OKTAWAVE_PASSWORD: &str = "sim-oktawave-password";
/// Hostinger API token (`Authorization: Bearer …`).
pub const HOSTINGER_TOKEN: &str = "sim-hostinger-token";
/// DigitalOcean personal access token (`Authorization: Bearer …`).
pub const DIGITALOCEAN_TOKEN: &str = "sim-digitalocean-token";
/// Hetzner Cloud API token (`Authorization: Bearer …`).
pub const HETZNER_TOKEN: &str = "sim-hetzner-token";
/// Syminet API token (`authorization: bearer …`).
pub const SYMINET_TOKEN: &str = "sim-syminet-token";

/// One of the simulated vendors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Hyperstack,
    Koyeb,
    Oktawave,
    Hostinger,
    Syminet,
    Hetzner,
    Digitalocean,
}

impl Vendor {
    /// Every vendor, in the fixed order used for listings and `env_lines`.
    pub const ALL: [Vendor; 7] = [
        Vendor::Hyperstack,
        Vendor::Koyeb,
        Vendor::Oktawave,
        Vendor::Hostinger,
        Vendor::Syminet,
        Vendor::Hetzner,
        Vendor::Digitalocean,
    ];

    /// What the simulator knows of the vendor: the one place a vendor is wired in.
    fn spec(self) -> &'static Spec {
        match self {
            Vendor::Hyperstack => &hyperstack::SPEC,
            Vendor::Koyeb => &koyeb::SPEC,
            Vendor::Oktawave => &oktawave::SPEC,
            Vendor::Hostinger => &hostinger::SPEC,
            Vendor::Syminet => &syminet::SPEC,
            Vendor::Hetzner => &hetzner::SPEC,
            Vendor::Digitalocean => &digitalocean::SPEC,
        }
    }

    /// Lowercase name, as used in paths and JSON.
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The fixed credentials it accepts, by the gateway's field names.
    pub fn credentials(self) -> &'static [(&'static str, &'static str)] {
        self.spec().credentials
    }

    /// The readings of its undocumented behaviour it can play (see [`Variants`]).
    pub fn variants(self) -> &'static [VariantSpec] {
        self.spec().variants
    }

    /// Path prefix of the vendor's API base URL on the simulator.
    fn prefix(self) -> &'static str {
        self.spec().prefix
    }

    /// The vendor's own error body for `status`.
    fn error(self, status: StatusCode, message: &str) -> Response {
        (self.spec().error)(status, message)
    }
}

/// One simulated vendor, declared in its own file.
pub(super) struct Spec {
    /// Lowercase name, as the gateway's provider is named.
    name: &'static str,
    /// Path prefix of its API base URL.
    prefix: &'static str,
    /// The fixed credentials it accepts, by the gateway's field names.
    credentials: &'static [(&'static str, &'static str)],
    /// Ids of its seeded sources (VMs, volumes, instances, slices).
    source_ids: fn() -> Vec<String>,
    /// Its own error body for a status.
    error: fn(StatusCode, &str) -> Response,
    /// Its routers: the API under `prefix`, plus any side service under its own path (an
    /// identity server, marked `true`: the fault gate treats it as a token endpoint).
    routers: fn(&Build) -> Vec<(&'static str, bool, Router)>,
    /// Gateway settings (`providers.<name>.*`) besides `base_url` that point the gateway at
    /// this simulation, from the simulator's root URL (`http://127.0.0.1:PORT`).
    gateway_settings: fn(&str) -> Vec<(&'static str, serde_json::Value)>,
    /// The variants it plays beside the shared ones (`{name}.{what}`).
    variants: &'static [VariantSpec],
}

/// What a vendor's routers are built from.
pub(super) struct Build {
    delay: TimeDelta,
    token_ttl: Duration,
    seed: bool,
    now: DateTime<Utc>,
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A vendor name that is not one of [`Vendor::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVendor(pub String);

impl fmt::Display for UnknownVendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown vendor `{}`", self.0)
    }
}

impl std::error::Error for UnknownVendor {}

impl FromStr for Vendor {
    type Err = UnknownVendor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownVendor(s.to_owned()))
    }
}

/// How the simulator behaves; `Default` is what `snapgate simulate` uses.
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    /// How long every async vendor operation takes (create, delete, restore, tickets, actions).
    pub async_delay: Duration,
    /// Lifetime of Oktawave access tokens (`expires_in`).
    pub token_ttl: Duration,
    /// Start with pre-existing snapshots. Sources (VMs, volumes, instances, slices) always exist.
    pub seed: bool,
    /// Faults active from the first request.
    pub faults: HashMap<Vendor, Fault>,
    /// Readings of undocumented vendor behaviour to play (see [`Variants`]).
    pub variants: Variants,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            async_delay: Duration::from_secs(1),
            token_ttl: Duration::from_secs(3600),
            seed: true,
            faults: HashMap::new(),
            variants: Variants::default(),
        }
    }
}

/// A simulator serving on its listener until `shutdown` (or drop).
pub struct RunningSimulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Serves every vendor API and `/_sim` on `listener` until the returned handle is shut down or
/// dropped.
pub async fn start(
    listener: TcpListener,
    config: SimulatorConfig,
) -> std::io::Result<RunningSimulator> {
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(&config));
    let app = router(&shared, config.seed);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(server::serve(listener, app, shared.clone(), stopped));
    Ok(RunningSimulator {
        addr,
        shared,
        stop,
        task,
    })
}

/// Every vendor API under its prefix, each behind its fault/journal gate, plus `/_sim`.
fn router(shared: &Arc<Shared>, seed: bool) -> Router {
    let now = Utc::now();
    let gate = |vendor, token_endpoint| Gate {
        shared: shared.clone(),
        vendor,
        token_endpoint,
    };
    let build = Build {
        delay: shared.async_delay,
        token_ttl: shared.token_ttl,
        seed,
        now,
    };
    let mut router = Router::new();
    for vendor in Vendor::ALL {
        for (prefix, token_endpoint, api) in (vendor.spec().routers)(&build) {
            router = router.nest(prefix, gate(vendor, token_endpoint).wrap(api));
        }
    }
    router.nest("/_sim", control::router(shared.clone()))
}

impl RunningSimulator {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The vendor's API base URL, e.g. `http://127.0.0.1:PORT/hyperstack/v1`.
    pub fn base_url(&self, v: Vendor) -> String {
        format!("http://{}{}", self.addr, v.prefix())
    }

    /// The gateway settings (`providers.<vendor>.*`) that point it at this simulation.
    pub fn gateway_settings(&self, v: Vendor) -> Vec<(&'static str, serde_json::Value)> {
        let mut settings = vec![("base_url", self.base_url(v).into())];
        settings.extend((v.spec().gateway_settings)(&format!(
            "http://{}",
            self.addr
        )));
        settings
    }

    /// The Oktawave OAuth2 token endpoint (password grant).
    pub fn oktawave_token_url(&self) -> String {
        format!("http://{}/oktawave/connect/token", self.addr)
    }

    /// The fixed credentials the vendor accepts, as `(field, value)` pairs.
    pub fn credentials(&self, v: Vendor) -> Vec<(&'static str, String)> {
        credentials(v)
    }

    /// Ids of the vendor's seeded sources (VMs, volumes, instances, slices).
    pub fn sources(&self, v: Vendor) -> Vec<String> {
        (v.spec().source_ids)()
    }

    /// Shell `export` lines: every base URL, every credential, then the Oktawave token URL.
    pub fn env_lines(&self) -> String {
        let mut out = String::new();
        for v in Vendor::ALL {
            let name = v.as_str().to_uppercase();
            out.push_str(&format!(
                "export SIMULATOR_{name}_URL={}\n",
                self.base_url(v)
            ));
        }
        for v in Vendor::ALL {
            let name = v.as_str().to_uppercase();
            for (field, value) in credentials(v) {
                let field = field.to_uppercase();
                out.push_str(&format!("export SIMULATOR_{name}_{field}={value}\n"));
            }
        }
        out.push_str(&format!(
            "export SIMULATOR_OKTAWAVE_TOKEN_URL={}\n",
            self.oktawave_token_url()
        ));
        out
    }

    /// Replaces the vendor's fault (`Fault::default()` behaves like no fault).
    pub fn set_fault(&self, v: Vendor, f: Fault) {
        self.shared.set_fault(v, f);
    }

    /// Replaces the active variants.
    pub fn set_variants(&self, v: Variants) {
        self.shared.variants.put(v);
    }

    /// Removes every vendor's fault.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Recorded vendor-API requests, oldest first, optionally of one vendor.
    pub fn requests(&self, v: Option<Vendor>) -> Vec<RecordedRequest> {
        self.shared.requests(v)
    }

    /// Forgets every recorded request.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Request counters of one vendor.
    pub fn stats(&self, v: Vendor) -> VendorStats {
        self.shared.stats(v)
    }

    /// Stops accepting, lets in-flight requests finish (bounded), and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The credentials each vendor accepts; field names are the ones the gateway's accounts use.
fn credentials(v: Vendor) -> Vec<(&'static str, String)> {
    v.spec()
        .credentials
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect()
}

/// An early answer carrying the vendor's error body, boxed so `Result`s stay small.
struct Refusal(Box<axum::response::Response>);

impl From<axum::response::Response> for Refusal {
    fn from(r: axum::response::Response) -> Self {
        Self(Box::new(r))
    }
}

impl axum::response::IntoResponse for Refusal {
    fn into_response(self) -> axum::response::Response {
        *self.0
    }
}

/// What a vendor handler answers: a success body, or a refusal in the vendor's error shape.
type Reply = Result<axum::response::Response, Refusal>;

/// A std duration as a chrono one, clamped to a century so timestamp arithmetic cannot overflow.
fn delta(d: Duration) -> TimeDelta {
    let century = TimeDelta::days(36_525);
    TimeDelta::from_std(d).map_or(century, |d| d.min(century))
}

/// Locks a mutex, ignoring poisoning: simulator state stays usable after a panicking handler.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where an async operation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Accepted, not started (first quarter of the delay).
    Queued,
    /// Started; percent done, 0..=99.
    Running(u8),
    /// Finished at `started + delay`.
    Done,
}

/// The phase at `now` of an operation started at `started` that takes `delay`.
fn phase(started: DateTime<Utc>, delay: TimeDelta, now: DateTime<Utc>) -> Phase {
    let elapsed = now - started;
    if delay <= TimeDelta::zero() || elapsed >= delay {
        return Phase::Done;
    }
    let (elapsed, delay) = (
        elapsed.num_microseconds().unwrap_or(0).max(0),
        delay.num_microseconds().unwrap_or(i64::MAX).max(1),
    );
    let percent = u8::try_from((elapsed.saturating_mul(100) / delay).clamp(0, 99)).unwrap_or(99);
    if percent < 25 {
        Phase::Queued
    } else {
        Phase::Running(percent)
    }
}

/// Parses an optional integer query value (empty = absent); `Err` keeps the raw text.
fn query_int(params: &HashMap<String, String>, key: &str) -> Result<Option<i64>, String> {
    match params.get(key) {
        None => Ok(None),
        Some(raw) if raw.trim().is_empty() => Ok(None),
        Some(raw) => raw.trim().parse::<i64>().map(Some).map_err(|_| raw.clone()),
    }
}

/// Query string pairs of a request (last value wins for repeated keys).
fn query_map(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Decodes a JSON request body; `Err` is a message for the vendor's 400 body.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("request body must be a JSON object".to_owned());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

/// A bearer token from an `Authorization` header value, scheme matched case-insensitively.
fn bearer(value: Option<&axum::http::HeaderValue>) -> Option<&str> {
    let value = value?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_moves_from_queued_through_running_to_done() {
        let t0 = Utc::now();
        let d = TimeDelta::milliseconds(1000);
        assert_eq!(phase(t0, d, t0), Phase::Queued);
        assert_eq!(
            phase(t0, d, t0 + TimeDelta::milliseconds(500)),
            Phase::Running(50)
        );
        assert_eq!(phase(t0, d, t0 + d), Phase::Done);
        assert_eq!(phase(t0, TimeDelta::zero(), t0), Phase::Done);
    }

    #[test]
    fn vendor_names_round_trip() {
        for v in Vendor::ALL {
            assert_eq!(v.as_str().parse::<Vendor>(), Ok(v));
        }
        assert!("aws".parse::<Vendor>().is_err());
    }
}
