//! Service configuration: a TOML file plus `SNAPGATE_*` environment overrides.
//!
//! Nested keys use `__` in the environment (`SNAPGATE_SERVER__LISTEN` is `server.listen`).
//! Secrets are `SecretString`s so no `Debug` or log line can print them.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

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
    pub upstream: crate::upstream::UpstreamConfig,
    /// Base64 of 32 random bytes; seals stored credentials (`SNAPGATE_MASTER_KEY`).
    #[serde(default)]
    pub master_key: Option<SecretString>,
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
            max_in_flight_per_tenant: 64,
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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// SQLite path or `sqlite://` URL; created on first start.
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/snapgate.db".to_owned(),
        }
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
}

impl Default for ListingConfig {
    fn default() -> Self {
        Self {
            account_timeout_ms: 10_000,
            max_concurrency: 8,
        }
    }
}

/// Where each vendor's API lives. Operator configuration only: callers never choose it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvidersConfig {
    pub hyperstack: Endpoint,
    pub koyeb: Endpoint,
    pub oktawave: OktawaveEndpoint,
    pub hostinger: Endpoint,
    pub syminet: SyminetEndpoint,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        Self {
            hyperstack: Endpoint::new("https://infrahub-api.nexgencloud.com/v1"),
            koyeb: Endpoint::new("https://app.koyeb.com"),
            oktawave: OktawaveEndpoint::default(),
            hostinger: Endpoint::new("https://developers.hostinger.com"),
            syminet: SyminetEndpoint::default(),
        }
    }
}

/// One vendor's base URL.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub base_url: String,
}

impl Endpoint {
    fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_owned(),
        }
    }
}

/// Syminet's base URL, and how long an accepted restore is assumed to take: Syminet has no way
/// to tell when a restore has finished.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyminetEndpoint {
    pub base_url: String,
    /// Seconds after which an accepted restore is reported done (`completion: assumed`). The
    /// panel's own estimate is 2 GB per minute; the default covers a 20 GB slice.
    pub restore_settle_secs: u64,
}

impl Default for SyminetEndpoint {
    fn default() -> Self {
        Self {
            base_url: "https://cloud.syminet.com/api/v1".to_owned(),
            restore_settle_secs: 600,
        }
    }
}

/// Oktawave picks the region by base URL and issues tokens from a separate identity server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OktawaveEndpoint {
    /// Serves every region unless a region-specific URL is set.
    pub base_url: Option<String>,
    pub pl1_base_url: Option<String>,
    pub pl2_base_url: Option<String>,
    /// OAuth2 token endpoint (password grant).
    pub token_url: String,
}

impl Default for OktawaveEndpoint {
    fn default() -> Self {
        Self {
            base_url: None,
            pl1_base_url: None,
            pl2_base_url: None,
            token_url: "https://id.oktawave.com/core/connect/token".to_owned(),
        }
    }
}

impl OktawaveEndpoint {
    /// The services URL for a region (`pl1` or `pl2`).
    pub fn base_url_for(&self, region: &str) -> String {
        let specific = match region {
            "pl2" => self.pl2_base_url.as_ref(),
            _ => self.pl1_base_url.as_ref(),
        };
        specific
            .or(self.base_url.as_ref())
            .cloned()
            .unwrap_or_else(|| format!("https://{region}-api.oktawave.com/services"))
    }
}

impl ProvidersConfig {
    /// The base URL of a provider that has a single one (Oktawave: its shared URL or PL1's).
    pub fn base_url(&self, kind: ProviderKind) -> String {
        match kind {
            ProviderKind::Hyperstack => self.hyperstack.base_url.clone(),
            ProviderKind::Koyeb => self.koyeb.base_url.clone(),
            ProviderKind::Oktawave => self.oktawave.base_url_for("pl1"),
            ProviderKind::Hostinger => self.hostinger.base_url.clone(),
            ProviderKind::Syminet => self.syminet.base_url.clone(),
        }
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
        let mut config: Config = figment.extract().map_err(|e| ConfigError(Box::new(e)))?;
        config.drop_empty_values();
        Ok(config)
    }

    /// Treats empty strings (e.g. `SNAPGATE_AUTH__ISSUER=` from a compose file) as unset.
    fn drop_empty_values(&mut self) {
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
