//! Logging setup: `RUST_LOG`-filtered, human-readable or JSON (`SNAPGATE_LOG_FORMAT=json`).

use std::sync::Arc;

use tracing_subscriber::{fmt, EnvFilter};

tokio::task_local! {
    /// The id of the gateway request being served; set by the API's request-id middleware.
    pub static REQUEST_ID: Arc<str>;
}

/// The current request's id, or an empty string outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(|id| id.to_string()).unwrap_or_default()
}

/// Installs the global subscriber; logs go to stderr so stdout stays for `export` lines.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let json = std::env::var("SNAPGATE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
