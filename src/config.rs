//! Service configuration: a TOML file plus `SNAPGATE_*` environment overrides.
//!
//! Nested keys use `__` in the environment (`SNAPGATE_SERVER__LISTEN` is `server.listen`).
//! Secrets are `SecretString`s so no `Debug` or log line can print them.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use secrecy::SecretString;
use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};

use crate::domain::ProviderKind;

/// Everything `snapgate serve` needs to run.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub providers: ProvidersConfig,
    #[serde(default)]
    pub listing: ListingConfig,
    #[serde(default)]
    pub reconciler: ReconcilerConfig,
    #[serde(default)]
    pub upstream: crate::upstream::UpstreamConfig,
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    #[serde(default)]
    pub policies: PoliciesConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Base64 of 32 random bytes; seals stored credentials (`SNAPGATE_MASTER_KEY`).
    #[serde(default)]
    pub master_key: Option<SecretString>,
    /// Earlier master keys, comma-separated base64 (`SNAPGATE_PREVIOUS_MASTER_KEYS`): they open
    /// records sealed before a rotation, never seal new ones.
    #[serde(default)]
    pub previous_master_keys: Option<SecretString>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// End-to-end deadline for one gateway request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Requests handled at once; more wait (within their deadline) before any work starts.
    pub max_in_flight: usize,
    /// `/v1` requests of one tenant handled at once; more of that tenant's wait (within their
    /// deadline) without taking a slot of `max_in_flight`, so one tenant cannot fill them all.
    pub max_in_flight_per_tenant: usize,
    /// Long-polls (`GET /v1/operations/{id}?wait=`) held at once across the gateway. A
    /// long-poll holds no slot of `max_in_flight`: waiting is not work. One more is answered
    /// `429 too_many_waiters` with `Retry-After`.
    pub max_waiters: usize,
    /// Long-polls of one tenant held at once; one more is answered `429 too_many_waiters`.
    pub max_waiters_per_tenant: usize,
    /// On SIGTERM, how long the process keeps serving with `/readyz` answering `503 draining`
    /// (long-polls answered at once) before it stops accepting connections, in milliseconds:
    /// the time a load balancer needs to take it out of rotation.
    pub drain_delay_ms: u64,
    /// Open connections at once; one more is answered `503 too_many_connections` and closed.
    pub max_connections: usize,
    /// Threads serving connections, each with its own single-threaded runtime and vendor
    /// connection pool (0: one per CPU). A connection stays on the thread that accepted it.
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 64 * 1024,
            request_timeout_ms: 30_000,
            max_in_flight: 256,
            max_in_flight_per_tenant: 32,
            max_waiters: 2048,
            max_waiters_per_tenant: 128,
            drain_delay_ms: 2_000,
            max_connections: 4096,
            workers: 0,
        }
    }
}

impl ServerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// SQLite path or `sqlite://` URL (one process; created on first start), or a
    /// `postgres://` URL (any number of replicas on one database; migrated on start).
    pub url: String,
    /// PostgreSQL connections pooled per process.
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/snapgate.db".to_owned(),
            max_connections: 10,
        }
    }
}

/// The URL's password never reaches a log line.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &crate::store::redacted(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Shared secret for HS256 tokens (also what `snapgate token` signs with).
    pub hs256_secret: Option<SecretString>,
    /// PEM public key accepting RS256 tokens.
    pub rs256_public_key_pem: Option<String>,
    /// PEM public key accepting ES256 tokens.
    pub es256_public_key_pem: Option<String>,
    /// PEM public key accepting EdDSA (Ed25519) tokens.
    pub eddsa_public_key_pem: Option<String>,
    /// JWKS URL of an identity provider: tokens with a `kid` are verified with its keys
    /// (RS256/384/512, PS256/384/512, ES256/384, EdDSA).
    pub jwks_url: Option<String>,
    /// How long fetched JWKS keys are trusted before a re-fetch, in seconds.
    pub jwks_cache_secs: u64,
    /// Required `iss` value; unset = not checked.
    pub issuer: Option<String>,
    /// Required `aud` value; unset = not checked.
    pub audience: Option<String>,
    /// Claim holding the caller's tenant.
    pub tenant_claim: String,
    /// Clock leeway for `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
    /// When set, `GET /metrics` requires `Authorization: Bearer <this>`; unset = open.
    pub metrics_token: Option<SecretString>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            rs256_public_key_pem: None,
            es256_public_key_pem: None,
            eddsa_public_key_pem: None,
            jwks_url: None,
            jwks_cache_secs: 300,
            issuer: None,
            audience: None,
            tenant_claim: "tenant".to_owned(),
            leeway_secs: 30,
            metrics_token: None,
        }
    }
}

/// The fan-out list across accounts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListingConfig {
    /// How long one account may take before it is reported in `errors`, in milliseconds.
    pub account_timeout_ms: u64,
    /// Accounts listed at once for one request.
    pub max_concurrency: usize,
    /// Accounts listed at once by this process, across every list in flight: what one list
    /// cannot take waits for another's account to finish.
    pub max_total_concurrency: usize,
}

impl Default for ListingConfig {
    fn default() -> Self {
        Self {
            account_timeout_ms: 10_000,
            max_concurrency: 1_024,
            max_total_concurrency: 4_096,
        }
    }
}

/// Where each vendor's API lives, keyed by provider: `providers.<provider>.base_url`, plus any
/// setting that provider's adapter declares (Oktawave's region and token URLs, Syminet's
/// restore settle time). Operator configuration only: callers never choose it. Each adapter
/// reads its own part, with its own defaults, so this module knows no vendor.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProvidersConfig(BTreeMap<ProviderKind, serde_json::Map<String, serde_json::Value>>);

/// A provider setting its adapter does not accept.
#[derive(Debug, thiserror::Error)]
#[error("invalid providers.{provider} settings: {message}")]
pub struct ProviderConfigError {
    provider: ProviderKind,
    message: String,
}

impl ProviderConfigError {
    /// A setting of `provider` that parsed but cannot be used.
    pub fn new(provider: ProviderKind, message: impl Into<String>) -> Self {
        Self {
            provider,
            message: message.into(),
        }
    }
}

impl ProvidersConfig {
    /// Sets one setting of a provider, as `providers.<provider>.<key>` in the file would.
    pub fn set(&mut self, provider: ProviderKind, key: &str, value: impl Into<serde_json::Value>) {
        self.0
            .entry(provider)
            .or_default()
            .insert(key.to_owned(), value.into());
    }

    /// A provider's settings as its adapter's type (absent settings take its defaults).
    pub fn of<T: DeserializeOwned>(
        &self,
        provider: ProviderKind,
    ) -> Result<T, ProviderConfigError> {
        let given = self.0.get(&provider).cloned().unwrap_or_default();
        serde_json::from_value(serde_json::Value::Object(given)).map_err(|e| ProviderConfigError {
            provider,
            message: e.to_string(),
        })
    }
}

/// The sections (and top-level keys) a configuration may have.
pub const SECTIONS: [&str; 10] = [
    "server",
    "store",
    "auth",
    "providers",
    "listing",
    "reconciler",
    "upstream",
    "webhooks",
    "master_key",
    "previous_master_keys",
];

/// Refuses a section name that is not one of [`SECTIONS`], naming where it came from.
fn unknown_section<'a>(
    mut names: impl Iterator<Item = &'a str>,
    source: &str,
) -> Result<(), ConfigError> {
    match names.find(|name| !SECTIONS.contains(name)) {
        Some(name) => Err(ConfigError(Box::new(figment::Error::from(format!(
            "{source}: unknown section `{name}` (known: {})",
            SECTIONS.join(", ")
        ))))),
        None => Ok(()),
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl Config {
    /// Loads defaults, then the TOML file (if given), then `SNAPGATE_*` environment variables.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::default("server", ServerConfig::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("SNAPGATE_").split("__"));
        // Unknown keys inside a section are refused by its type; an unknown *section* would
        // be dropped silently (`[sever]`, `SNAPGATE_SEVER__LISTEN`), the setting with it.
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if let Ok(toml::Value::Table(table)) = text.parse::<toml::Value>() {
                let keys = table.keys().map(String::as_str);
                unknown_section(keys, &path.display().to_string())?;
            }
        }
        let nested: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter_map(|k| {
                let rest = k.strip_prefix("SNAPGATE_")?;
                let (section, _) = rest.split_once("__")?;
                Some(section.to_ascii_lowercase())
            })
            .collect();
        unknown_section(
            nested.iter().map(String::as_str),
            "the environment (SNAPGATE_*__*)",
        )?;
        let mut config: Config = figment.extract().map_err(|e| ConfigError(Box::new(e)))?;
        config.drop_empty_values();
        Ok(config)
    }

    /// Treats empty strings (e.g. `SNAPGATE_AUTH__ISSUER=` from a compose file) as unset.
    fn drop_empty_values(&mut self) {
        for settings in self.providers.0.values_mut() {
            settings.retain(|_, v| v.as_str().is_none_or(|s| !s.trim().is_empty()));
        }
        let auth = &mut self.auth;
        for field in [
            &mut auth.issuer,
            &mut auth.audience,
            &mut auth.rs256_public_key_pem,
            &mut auth.es256_public_key_pem,
            &mut auth.eddsa_public_key_pem,
            &mut auth.jwks_url,
        ] {
            if field.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *field = None;
            }
        }
        use secrecy::ExposeSecret;
        if auth
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().trim().is_empty())
        {
            auth.metrics_token = None;
        }
    }

    /// Defaults only, for tests and the demo to adjust.
    pub fn defaults() -> Self {
        Self {
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            auth: AuthConfig::default(),
            providers: ProvidersConfig::default(),
            previous_master_keys: None,
            reconciler: Default::default(),
            webhooks: Default::default(),
            policies: Default::default(),
            retention: Default::default(),
            listing: ListingConfig::default(),
            upstream: crate::upstream::UpstreamConfig::default(),
            master_key: None,
        }
    }
}

/// Where the demo and the default SQLite file keep their data.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// How the reconciler paces itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcilerConfig {
    /// Whether this process checks operations in the background (reads refresh them anyway).
    pub enabled: bool,
    /// How often due operations are looked for, in milliseconds.
    pub tick_ms: u64,
    /// First check after an operation starts, in milliseconds; each later one waits twice as
    /// long as the one before.
    pub first_check_ms: u64,
    /// The longest wait between two checks of one operation, in seconds.
    pub max_interval_secs: u64,
    /// An operation still unfinished this long after it started fails
    /// (`operation_deadline_exceeded`), in seconds.
    pub deadline_secs: u64,
    /// Vendor checks in flight at once in this process. Checks are pipelined: as soon as one
    /// ends, the next due operation is claimed, so a slow vendor holds one slot, not a round.
    pub max_concurrent_checks: usize,
    /// Checks of one tenant's operations in flight at once, across every replica; the due
    /// operations of all tenants take turns, so one tenant's backlog on a slow vendor does not
    /// hold another's operation.
    pub max_checks_per_tenant: usize,
    /// How long a claim on an operation lasts, in seconds: renewed every third of it while its
    /// check runs, so a replica that dies frees its operations within this time.
    pub claim_lease_secs: u64,
    /// A create or restore whose vendor keeps reporting a status nobody documented fails
    /// (`vendor_status_unknown`, naming the status) this long after it started, in seconds,
    /// instead of waiting for `deadline_secs`.
    pub unknown_status_secs: u64,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tick_ms: 500,
            first_check_ms: 2_000,
            max_interval_secs: 300,
            deadline_secs: 24 * 3600,
            max_concurrent_checks: 16,
            max_checks_per_tenant: 3,
            claim_lease_secs: 6,
            unknown_status_secs: 15 * 60,
        }
    }
}

/// How snapshot policies are run (`policies.*`, `SNAPGATE_POLICIES__*`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoliciesConfig {
    /// Whether this process runs policies (any replica may; each slot runs once across them).
    pub enabled: bool,
    /// How often due runs are looked for, in milliseconds.
    pub tick_ms: u64,
    /// Runs start up to this many seconds after their slot, spread per policy and slot, so
    /// policies sharing a slot (a hundred at midnight) do not burst a vendor's rate limit.
    /// Never more than a quarter of the time to the policy's next slot.
    pub jitter_secs: u64,
    /// How often a run in progress looks at its snapshots' operations, in milliseconds.
    pub check_ms: u64,
    /// How long a claim on a run lasts, in seconds: a replica that dies mid-run frees it
    /// within this time, and another goes on with it.
    pub claim_lease_secs: u64,
    /// Runs worked at once in this process.
    pub max_concurrent_runs: usize,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tick_ms: 1_000,
            jitter_secs: 60,
            check_ms: 2_000,
            claim_lease_secs: 30,
            max_concurrent_runs: 8,
        }
    }
}

/// How long finished records are kept (`retention.*`, `SNAPGATE_RETENTION__*`): pruned in
/// small batches by every `serve` process; `0` keeps them forever. Never a record work in
/// progress needs (unfinished operations, pending deliveries, keys in flight, running runs).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Whether this process prunes (any replica may; a batch is one transaction).
    pub enabled: bool,
    /// Events, in seconds. A follower whose cursor falls below what was pruned is answered
    /// `410 cursor_expired`, never a silently short log.
    pub events_secs: u64,
    /// Finished webhook deliveries (succeeded or failed; pending ones are kept), in seconds.
    pub deliveries_secs: u64,
    /// Finished operations, from when they finished, in seconds.
    pub operations_secs: u64,
    /// Answered idempotency keys, in seconds: a retry with a key older than this runs again.
    pub idempotency_keys_secs: u64,
    /// Finished policy runs, by slot, in seconds (what policies made is kept regardless).
    pub policy_runs_secs: u64,
    /// Records per table per batch (one transaction each).
    pub batch: u32,
    /// How often a pass runs, in milliseconds.
    pub interval_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            enabled: true,
            events_secs: 30 * DAY,
            deliveries_secs: 30 * DAY,
            operations_secs: 30 * DAY,
            idempotency_keys_secs: DAY,
            policy_runs_secs: 90 * DAY,
            batch: 500,
            interval_ms: 60_000,
        }
    }
}

/// How webhooks are delivered (`webhooks.*`, `SNAPGATE_WEBHOOKS__*`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Whether this process delivers (any replica may; the store keeps them from colliding).
    pub enabled: bool,
    /// Seconds before each attempt: the first (from the event), then after each failure.
    /// Comma-separated in the environment. An endpoint whose delivery fails every attempt is
    /// disabled.
    #[serde(deserialize_with = "seconds_list")]
    pub retry_schedule_secs: Vec<u64>,
    /// Whether endpoints may point at loopback, private, link-local or metadata addresses (and
    /// use plain HTTP).
    pub allow_private_targets: bool,
    /// One attempt's limit, connecting to the end of the answer, in milliseconds.
    pub timeout_ms: u64,
    /// Attempts in flight to one endpoint at once, across every replica.
    pub max_concurrent_per_endpoint: u32,
    /// Attempts in flight at once in this process.
    pub max_in_flight: u32,
    /// Attempts for one tenant's endpoints in flight at once, across every replica; tenants'
    /// due deliveries take turns, so one tenant's fan-out does not hold another's delivery.
    pub max_in_flight_per_tenant: u32,
    /// Endpoints one tenant may have; one more is refused (`409 webhook_limit_reached`).
    pub max_endpoints_per_tenant: u32,
    /// How often due deliveries are looked for, in milliseconds (new events wake the worker
    /// of the process that wrote them at once).
    pub tick_ms: u64,
    /// How long a claimed attempt is reserved for the process that claimed it, in
    /// milliseconds; after that (the process died) another makes it.
    pub lease_ms: u64,
    /// How long the previous secret keeps signing after a rotation, in seconds.
    pub rotation_grace_secs: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            // Svix's schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
            retry_schedule_secs: vec![0, 5, 300, 1800, 7200, 18000, 36000, 36000],
            allow_private_targets: false,
            timeout_ms: 10_000,
            max_concurrent_per_endpoint: 4,
            max_in_flight: 64,
            max_in_flight_per_tenant: 8,
            max_endpoints_per_tenant: 50,
            tick_ms: 500,
            lease_ms: 60_000,
            rotation_grace_secs: 24 * 3600,
        }
    }
}

/// `0,5,300` (the environment's form) or a list.
fn seconds_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Text(String),
        One(u64),
        List(Vec<u64>),
    }
    let list = match Form::deserialize(d)? {
        Form::List(list) => list,
        Form::One(n) => vec![n],
        Form::Text(text) => text
            .split(',')
            .map(|s| s.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "retry_schedule_secs: expected comma-separated seconds, got `{text}`"
                ))
            })?,
    };
    if list.is_empty() {
        return Err(serde::de::Error::custom(
            "retry_schedule_secs: at least one attempt is needed",
        ));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Regional {
        base_url: Option<String>,
        pl2_base_url: Option<String>,
        restore_settle_secs: Option<u64>,
    }

    #[test]
    fn provider_settings_are_read_per_provider_from_the_file() {
        let dir = std::env::temp_dir().join(format!("snapgate-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapgate.toml");
        let [one, two, ..] = ProviderKind::ALL;
        std::fs::write(
            &path,
            format!(
                "[providers.{one}]\npl2_base_url = \"http://pl2.example\"\nbase_url = \"\"\n\n\
                 [providers.{two}]\nrestore_settle_secs = 30\n"
            ),
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let first: Regional = config.providers.of(one).unwrap();
        assert_eq!(
            first,
            Regional {
                // An empty value (as a compose file writes it) is unset.
                base_url: None,
                pl2_base_url: Some("http://pl2.example".to_owned()),
                restore_settle_secs: None,
            }
        );
        let second: Regional = config.providers.of(two).unwrap();
        assert_eq!(second.restore_settle_secs, Some(30));
        let err = config.providers.of::<Endpointless>(one).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "invalid providers.{one} settings: unknown field `pl2_base_url`"
            )),
            "{err}"
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Endpointless {
        base_url: Option<String>,
    }
}
