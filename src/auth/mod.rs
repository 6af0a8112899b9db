//! Caller authentication: JWT verification, scopes and tenants.
//!
//! Knows nothing of routes; the API layer turns [`AuthError`] into problems.

mod jwks;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;

/// A permission a token can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    SnapshotsRead,
    SnapshotsWrite,
    AccountsRead,
    AccountsWrite,
    WebhooksRead,
    WebhooksWrite,
    PoliciesRead,
    PoliciesWrite,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::SnapshotsRead,
        Scope::SnapshotsWrite,
        Scope::AccountsRead,
        Scope::AccountsWrite,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::PoliciesRead,
        Scope::PoliciesWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::SnapshotsRead => "snapshots:read",
            Scope::SnapshotsWrite => "snapshots:write",
            Scope::AccountsRead => "accounts:read",
            Scope::AccountsWrite => "accounts:write",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::PoliciesRead => "policies:read",
            Scope::PoliciesWrite => "policies:write",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

impl Scope {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The authenticated caller of one request (cheap to clone).
#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant: Arc<str>,
    pub subject: Option<Arc<str>>,
    scopes: u8,
}

impl Caller {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes & scope.bit() != 0
    }

    /// The event types this caller may read: an event is read with the scope of what it is
    /// about (`account.*` with `accounts:read`, the rest with `snapshots:read`). `None`: all.
    pub fn readable_events(&self) -> Option<Vec<crate::domain::EventType>> {
        use crate::domain::EventType;
        let readable: Vec<EventType> = EventType::ALL
            .into_iter()
            .filter(|k| self.has(event_scope(*k)))
            .collect();
        (readable.len() < EventType::ALL.len()).then_some(readable)
    }

    /// Succeeds when the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(AuthError::MissingScope(scope))
        }
    }
}

/// The scope that reads events of `kind`, in the event log and through a webhook alike.
pub fn event_scope(kind: crate::domain::EventType) -> Scope {
    match kind {
        crate::domain::EventType::AccountHealthChanged => Scope::AccountsRead,
        crate::domain::EventType::PolicyRunSucceeded
        | crate::domain::EventType::PolicyRunFailed => Scope::PoliciesRead,
        _ => Scope::SnapshotsRead,
    }
}

/// Why a request was not authenticated or not allowed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("token lacks the `{}` scope", .0.as_str())]
    MissingScope(Scope),
}

/// Why the authenticator could not be built from config.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("no token verification key is configured: set SNAPGATE_AUTH__HS256_SECRET or a PEM public key")]
    NoKeys,
    #[error("auth.{field} is not a valid PEM public key: {source}")]
    BadPem {
        field: &'static str,
        source: jsonwebtoken::errors::Error,
    },
    #[error("auth.tenant_claim must not be empty")]
    EmptyTenantClaim,
}

/// Verifies bearer tokens against the explicitly configured algorithms.
///
/// Verified tokens are remembered until their `exp`, so a client reusing its token pays for
/// the signature check and claim parsing once, not on every request. A token verified with an
/// identity provider's key is remembered only while that key is among the provider's keys: a
/// key the provider withdraws stops its tokens at the next JWKS refresh, which a remembered
/// token's use starts when the keys are stale, as a verification would.
pub struct Authenticator {
    keys: Vec<(Algorithm, DecodingKey, Validation)>,
    /// Validation rules for tokens verified with JWKS keys, by algorithm.
    jwks: Option<(jwks::Jwks, Vec<(Algorithm, Validation)>)>,
    tenant_claim: String,
    verified: Mutex<HashMap<Box<str>, Verified>>,
}

/// A verified token, as remembered.
#[derive(Clone)]
struct Verified {
    caller: Caller,
    /// Its `exp`: a token without one is never remembered.
    exp: Option<u64>,
    /// The identity provider's key it was verified with, by kid and fingerprint (`None`: a
    /// configured key).
    kid: Option<(Box<str>, u64)>,
}

/// Verified tokens remembered at most; the map is emptied when full.
const VERIFIED_CACHE_MAX: usize = 10_000;

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algs: Vec<_> = self.keys.iter().map(|(a, _, _)| *a).collect();
        f.debug_struct("Authenticator")
            .field("algorithms", &algs)
            .field("tenant_claim", &self.tenant_claim)
            .finish()
    }
}

#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    scope: Option<String>,
    scp: Option<ScpClaim>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScpClaim {
    List(Vec<String>),
    Spaced(String),
}

impl Authenticator {
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, AuthConfigError> {
        if cfg.tenant_claim.is_empty() {
            return Err(AuthConfigError::EmptyTenantClaim);
        }
        let mut keys = Vec::new();
        if let Some(secret) = &cfg.hs256_secret {
            keys.push((
                Algorithm::HS256,
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            ));
        }
        let pem =
            |field,
             pem: &Option<String>,
             alg,
             parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>| {
                pem.as_ref()
                    .map(|p| {
                        parse(p.as_bytes())
                            .map(|k| (alg, k))
                            .map_err(|source| AuthConfigError::BadPem { field, source })
                    })
                    .transpose()
            };
        keys.extend(pem(
            "rs256_public_key_pem",
            &cfg.rs256_public_key_pem,
            Algorithm::RS256,
            DecodingKey::from_rsa_pem,
        )?);
        keys.extend(pem(
            "es256_public_key_pem",
            &cfg.es256_public_key_pem,
            Algorithm::ES256,
            DecodingKey::from_ec_pem,
        )?);
        keys.extend(pem(
            "eddsa_public_key_pem",
            &cfg.eddsa_public_key_pem,
            Algorithm::EdDSA,
            DecodingKey::from_ed_pem,
        )?);
        if keys.is_empty() && cfg.jwks_url.is_none() {
            return Err(AuthConfigError::NoKeys);
        }
        let jwks = cfg.jwks_url.as_ref().map(|url| {
            let rules = jwks::ASYMMETRIC
                .iter()
                .map(|alg| (*alg, validation(cfg, *alg)))
                .collect();
            (
                jwks::Jwks::new(
                    url.clone(),
                    std::time::Duration::from_secs(cfg.jwks_cache_secs),
                ),
                rules,
            )
        });
        let keys = keys
            .into_iter()
            .map(|(alg, key)| (alg, key, validation(cfg, alg)))
            .collect();
        Ok(Self {
            keys,
            jwks,
            tenant_claim: cfg.tenant_claim.clone(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Verifies a raw `Authorization` header value and returns the caller.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let header = authorization.ok_or(AuthError::MissingToken)?;
        // The scheme name is case-insensitive (RFC 7235 §2.1): `Bearer`, `bearer`, `BEARER`.
        let token = header
            .trim_start()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(caller) = self.remembered(token, now) {
            return Ok(caller);
        }
        // Boxed: the first sight of a token (and a JWKS fetch) is rare, and its state would
        // otherwise sit in every request's future, waiting or not.
        let verified = Box::pin(self.verify(token)).await?;
        if let Some(exp) = verified.exp {
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= VERIFIED_CACHE_MAX {
                cache.retain(|_, v| v.exp.is_some_and(|e| now < e));
                if cache.len() >= VERIFIED_CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(
                token.into(),
                Verified {
                    exp: Some(exp),
                    ..verified.clone()
                },
            );
        }
        Ok(verified.caller)
    }

    /// The caller of a token verified before, while it has not expired and the key it was
    /// verified with is still the identity provider's.
    fn remembered(&self, token: &str, now: u64) -> Option<Caller> {
        let found = {
            let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            let v = cache.get(token)?;
            if v.exp.is_none_or(|exp| now >= exp) {
                return None;
            }
            (v.caller.clone(), v.kid.clone())
        };
        match (found, &self.jwks) {
            ((caller, None), _) => Some(caller),
            ((caller, Some((kid, key))), Some((jwks, _))) if jwks.still_holds(&kid, key) => {
                Some(caller)
            }
            _ => {
                // Withdrawn: forgotten, and verified afresh (which refuses it).
                let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
                cache.remove(token);
                None
            }
        }
    }

    /// Checks signature and claims: the caller, the token's `exp` and the identity provider's
    /// key it was verified with.
    async fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        refuse_critical_extensions(token)?;
        let jwt_header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::InvalidToken(format!("malformed token header ({e})")))?;
        let alg = jwt_header.alg;
        let not_accepted = || AuthError::InvalidToken(format!("algorithm {alg:?} is not accepted"));
        // A token naming a key id is checked against the identity provider's keys.
        let from_jwks = match (&self.jwks, &jwt_header.kid) {
            (Some((jwks, rules)), Some(kid)) => {
                let (key, print) = jwks.key(kid, alg).await.map_err(AuthError::InvalidToken)?;
                let rule = rules
                    .iter()
                    .find(|(a, _)| *a == alg)
                    .ok_or_else(not_accepted)?;
                Some((key, rule.1.clone(), print))
            }
            _ => None,
        };
        let data = match &from_jwks {
            Some((key, validation, _)) => jsonwebtoken::decode::<RawClaims>(token, key, validation),
            None => {
                let (_, key, validation) = self
                    .keys
                    .iter()
                    .find(|(a, _, _)| *a == alg)
                    .ok_or_else(not_accepted)?;
                jsonwebtoken::decode::<RawClaims>(token, key, validation)
            }
        }
        .map_err(|e| AuthError::InvalidToken(describe(&e)))?;
        let claims = data.claims;
        let tenant = claims
            .rest
            .get(&self.tenant_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                AuthError::InvalidToken(format!(
                    "the `{}` claim naming the tenant is missing",
                    self.tenant_claim
                ))
            })?;
        if !is_valid_tenant(tenant) {
            return Err(AuthError::InvalidToken(format!(
                "the `{}` claim is not a tenant id: {TENANT_SYNTAX}",
                self.tenant_claim
            )));
        }
        let tenant = tenant.to_owned();
        let mut scopes = 0u8;
        let mut add = |s: &str| {
            s.split_whitespace()
                .filter_map(Scope::parse)
                .for_each(|scope| scopes |= scope.bit())
        };
        if let Some(s) = &claims.scope {
            add(s);
        }
        match &claims.scp {
            Some(ScpClaim::List(list)) => list.iter().for_each(|s| add(s)),
            Some(ScpClaim::Spaced(s)) => add(s),
            None => {}
        }
        let exp = claims.rest.get("exp").and_then(|v| v.as_u64());
        Ok(Verified {
            caller: Caller {
                tenant: tenant.into(),
                subject: claims.sub.map(Into::into),
                scopes,
            },
            exp,
            kid: from_jwks.map(|(_, _, print)| (jwt_header.kid.unwrap_or_default().into(), print)),
        })
    }
}

fn validation(cfg: &AuthConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = cfg.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    match &cfg.issuer {
        Some(iss) => {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        None => v.iss = None,
    }
    match &cfg.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token has expired".into(),
        K::ImmatureSignature => "token is not valid yet (nbf)".into(),
        K::InvalidSignature => "signature does not verify".into(),
        K::InvalidIssuer => "issuer (iss) is not accepted".into(),
        K::InvalidAudience => "audience (aud) is not accepted".into(),
        K::MissingRequiredClaim(c) => format!("required claim `{c}` is missing"),
        K::InvalidAlgorithm => "algorithm is not accepted".into(),
        _ => "token could not be decoded".into(),
    }
}

/// Claims of a development token minted by `snapgate token`.
#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    #[serde(flatten)]
    tenant: serde_json::Map<String, serde_json::Value>,
    scope: String,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("no HS256 secret is configured (set SNAPGATE_AUTH__HS256_SECRET)")]
    NoSecret,
    #[error(
        "unknown scope `{0}`; known: snapshots:read snapshots:write accounts:read accounts:write"
    )]
    UnknownScope(String),
    #[error("`{0}` is not a tenant id: {TENANT_SYNTAX}")]
    Tenant(String),
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// What a tenant id may be, in words.
pub const TENANT_SYNTAX: &str =
    "1 to 128 characters from A-Z a-z 0-9 . _ : @ + -, starting with a letter or digit";

/// Whether `tenant` is a tenant id: every store key and sealing context is built from it, so
/// blank, control-character or unbounded values are refused at the door.
pub fn is_valid_tenant(tenant: &str) -> bool {
    let bytes = tenant.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@+-".contains(b))
}

/// RFC 7515 §4.1.11: a token whose header lists `crit` extensions must be refused by a verifier
/// that does not understand them — and snapgate understands none.
fn refuse_critical_extensions(token: &str) -> Result<(), AuthError> {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let segment = token.split('.').next().unwrap_or_default();
    let header: serde_json::Map<String, serde_json::Value> = URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    if header.contains_key("crit") {
        return Err(AuthError::InvalidToken(
            "the token header names critical extensions (`crit`) this verifier does not support"
                .into(),
        ));
    }
    Ok(())
}

/// Mints an HS256 token for `tenant` with `scopes`, valid for `ttl_secs`.
pub fn mint(
    cfg: &AuthConfig,
    tenant: &str,
    scopes: &[String],
    ttl_secs: u64,
) -> Result<String, MintError> {
    let secret: &SecretString = cfg.hs256_secret.as_ref().ok_or(MintError::NoSecret)?;
    if !is_valid_tenant(tenant) {
        return Err(MintError::Tenant(tenant.chars().take(40).collect()));
    }
    for s in scopes.iter().flat_map(|s| s.split_whitespace()) {
        if Scope::parse(s).is_none() {
            return Err(MintError::UnknownScope(s.to_owned()));
        }
    }
    let now = jsonwebtoken::get_current_timestamp();
    let mut tenant_claim = serde_json::Map::new();
    tenant_claim.insert(cfg.tenant_claim.clone(), tenant.into());
    let claims = MintClaims {
        sub: "snapgate-dev",
        tenant: tenant_claim,
        scope: scopes.join(" "),
        iat: now,
        exp: now + ttl_secs,
        iss: cfg.issuer.as_deref(),
        aud: cfg.audience.as_deref(),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )?)
}

/// All four scopes, space separated.
pub fn all_scopes() -> Vec<String> {
    Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect()
}
