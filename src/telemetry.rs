//! Logging setup: `RUST_LOG`-filtered, human-readable or JSON (`SNAPGATE_LOG_FORMAT=json`).

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use tracing_subscriber::{fmt, EnvFilter};

/// A fresh request id: a UUIDv7 (time-ordered) in 32 lowercase hex digits. Its random bits come
/// from the thread's generator, not a system call per request as `Uuid::now_v7` makes.
pub fn new_request_id() -> Arc<str> {
    use rand::RngCore;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut random = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut random);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    Arc::from(&*id.simple().encode_lower(&mut buf))
}

tokio::task_local! {
    /// The id of the gateway request being served; set by the API's request-id middleware.
    pub static REQUEST_ID: Arc<str>;
}

/// The current request's id, or an empty string outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(|id| id.to_string()).unwrap_or_default()
}

/// The current request's id as a header value, for the vendor calls it makes (none outside a
/// request).
pub fn request_id_header() -> Option<http::HeaderValue> {
    REQUEST_ID
        .try_with(|id| http::HeaderValue::from_str(id).ok())
        .ok()
        .flatten()
}

tokio::task_local! {
    /// Who the request being served acts for (the caller's `sub`), once authenticated.
    pub static ACTOR: std::cell::RefCell<Option<Arc<str>>>;
}

/// Records who the current request acts for (outside a request, nothing happens).
pub fn set_actor(actor: Arc<str>) {
    let _ = ACTOR.try_with(|a| *a.borrow_mut() = Some(actor));
}

/// Who caused what the gateway does now: the caller's `sub`, or `reconciler` for work it does
/// on its own.
pub fn current_actor() -> String {
    ACTOR
        .try_with(|a| a.borrow().as_deref().map(str::to_owned))
        .ok()
        .flatten()
        .unwrap_or_else(|| "reconciler".to_owned())
}

/// Installs the global subscriber; logs go to stderr so stdout stays for `export` lines. With
/// an OTLP endpoint configured, spans are exported too (see [`crate::otel`]).
pub fn init(default_filter: &str) {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colour codes only for a person at a terminal: a file, a pipe or a log collector gets
    // plain text (`NO_COLOR` is honoured too).
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let json = std::env::var("SNAPGATE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let logs = fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let logs = if json {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(crate::otel::layer())
        .try_init();
}

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// A per-thread map from a metric's label set to its handle, for the metrics every request
/// records: `metrics::counter!` hashes the name and labels and looks them up in the registry on
/// every call; a handle kept per serving thread costs one small map lookup instead.
pub type HandleCache<K, V> = std::cell::RefCell<std::collections::HashMap<K, V>>;

/// Runs `f` with the handle `cache` keeps for `key`, made by `make` the first time. Before the
/// process's recorder is installed handles are not kept (they would stay no-ops), so a thread
/// that records early still counts once the recorder is there.
pub fn with_handle<K, V, R>(
    cache: &'static std::thread::LocalKey<HandleCache<K, V>>,
    key: K,
    make: impl FnOnce() -> V,
    f: impl FnOnce(&V) -> R,
) -> R
where
    K: std::hash::Hash + Eq,
{
    if PROMETHEUS.get().is_none() {
        return f(&make());
    }
    cache.with(|cache| {
        if let Some(handle) = cache.borrow().get(&key) {
            return f(handle);
        }
        let handle = make();
        let out = f(&handle);
        cache.borrow_mut().insert(key, handle);
        out
    })
}

/// The process-wide Prometheus recorder, installed on first use (every `Application` in the
/// process shares it); `None` if another recorder was installed first.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            // Histogram samples wait in buckets until drained; without a scrape they would grow
            // with every request, so drain them on a timer.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(2));
                    upkeep.run_upkeep();
                });
            Some(handle)
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "snapgate_http_requests_total",
        "Gateway requests answered, by method and status"
    );
    metrics::describe_histogram!(
        "snapgate_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer a gateway request"
    );
    metrics::describe_counter!(
        "snapgate_upstream_requests_total",
        "Vendor calls (each attempt), by provider, operation and outcome"
    );
    metrics::describe_histogram!(
        "snapgate_upstream_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time of one vendor call attempt, by provider"
    );
    metrics::describe_counter!(
        crate::domain::UNKNOWN_STATUS_METRIC,
        "Vendor statuses the gateway does not know, seen on a snapshot (shown as unknown) or \
         on a restore's new resource, by provider and where"
    );
    metrics::describe_counter!(
        "snapgate_webhook_attempts_total",
        "Webhook delivery attempts, by outcome"
    );
    metrics::describe_gauge!(
        "snapgate_http_requests_in_flight",
        "Gateway requests being worked on now (long-polls waiting are not work)"
    );
    metrics::describe_gauge!(
        "snapgate_long_polls_waiting",
        "Long-polls (GET /v1/operations/{id}?wait=) holding their answer now"
    );
    metrics::describe_counter!(
        "snapgate_long_polls_refused_total",
        "Long-polls refused with 429 too_many_waiters, by whose limit was full"
    );
    metrics::describe_counter!(
        "snapgate_vendor_echoed_secret_total",
        "Vendor 2xx bodies that echoed a secret the call sent (scrubbed before use), by provider"
    );
    metrics::describe_gauge!(
        "snapgate_connections_open",
        "Caller connections open on each serving thread (each new one goes to the thread with the fewest)"
    );
    metrics::describe_counter!(
        "snapgate_accept_errors_total",
        "Failed accepts of new connections (EMFILE and the like), each backed off"
    );
    describe_background();
    metrics::describe_gauge!(
        "snapgate_operations_unfinished",
        "Operations pending or running across every replica (read from the store at scrape time)"
    );
    metrics::describe_gauge!(
        "snapgate_webhook_deliveries_pending",
        "Webhook deliveries waiting to be sent or retried across every replica (read from the store at scrape time)"
    );
    metrics::describe_gauge!(
        "snapgate_upstream_breakers_open",
        "Vendor identities (account credentials) whose circuit breaker is open in this process"
    );
    metrics::gauge!("snapgate_upstream_breakers_open").set(0.0);
    metrics::describe_gauge!(
        "snapgate_build_info",
        "Always 1; the build's version as a label"
    );
    metrics::gauge!("snapgate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// What the background workers count.
fn describe_background() {
    metrics::describe_counter!(
        "snapgate_worker_panics_total",
        "Panics contained in a background worker (reconciler, webhooks, policies), which went on"
    );
    metrics::describe_counter!(
        "snapgate_policy_runs_total",
        "Snapshot policy runs finished in this process, by outcome (succeeded, failed)"
    );
    metrics::describe_histogram!(
        "snapgate_policy_run_lag_seconds",
        "Seconds from a policy's slot to the start of its run (jitter included)"
    );
    metrics::describe_counter!(
        "snapgate_policy_prunes_total",
        "Snapshots pruned by policy retention, by outcome (deleted, replaced by the vendor, failed)"
    );
    metrics::describe_counter!(
        "snapgate_pruned_records_total",
        "Expired records pruned by retention in this process, by table"
    );
}
#[cfg(test)]
mod id_tests {
    #[test]
    fn request_ids_are_uuid_v7_in_hex_and_distinct() {
        let (a, b) = (super::new_request_id(), super::new_request_id());
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 7);
        }
    }
}
