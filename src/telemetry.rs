//! Logging setup: `RUST_LOG`-filtered, human-readable or JSON (`SNAPGATE_LOG_FORMAT=json`).

use tracing_subscriber::{fmt, EnvFilter};

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
