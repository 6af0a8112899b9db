//! Keys from an identity provider's JWKS URL, cached, with one re-fetch when a token names an
//! unknown `kid` (key rotation) — at most one fetch at a time and one per few seconds.

use std::time::{Duration, Instant};

use jsonwebtoken::{
    jwk::{AlgorithmParameters, JwkSet},
    Algorithm, DecodingKey,
};

/// Shortest wait between two fetches caused by unknown `kid`s (a stream of forged kids must
/// not turn into a stream of requests to the identity provider).
const MIN_REFETCH: Duration = Duration::from_secs(10);

/// The asymmetric algorithms a JWKS key may verify; symmetric keys are never taken from it.
pub const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A JWKS endpoint and the keys last fetched from it.
pub struct Jwks {
    url: String,
    ttl: Duration,
    client: reqwest::Client,
    state: tokio::sync::Mutex<Fetched>,
}

#[derive(Default)]
struct Fetched {
    keys: Option<JwkSet>,
    at: Option<Instant>,
}

impl Jwks {
    pub fn new(url: String, ttl: Duration) -> Self {
        Self {
            url,
            ttl,
            client: crate::upstream::control_client(),
            state: tokio::sync::Mutex::new(Fetched::default()),
        }
    }

    /// The key for `kid`, usable with `alg`, fetching the set when it is missing, stale, or
    /// lacks the kid (rate-limited).
    pub async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, String> {
        if !ASYMMETRIC.contains(&alg) {
            return Err(format!("algorithm {alg:?} is not accepted for JWKS keys"));
        }
        let mut state = self.state.lock().await;
        let age = state.at.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a >= self.ttl);
        let missing = state.keys.as_ref().is_none_or(|k| k.find(kid).is_none());
        let may_refetch = age.is_none_or(|a| a >= MIN_REFETCH.min(self.ttl));
        if stale || (missing && may_refetch) {
            match self.fetch().await {
                Ok(keys) => {
                    state.keys = Some(keys);
                    state.at = Some(Instant::now());
                }
                // Keep serving the keys we have while the identity provider is unreachable.
                Err(e) if state.keys.is_some() => tracing::warn!(error = %e, "JWKS refresh failed"),
                Err(e) => return Err(e),
            }
        }
        let jwk = state
            .keys
            .as_ref()
            .and_then(|k| k.find(kid))
            .ok_or_else(|| {
                format!(
                    "key `{}` is not in the JWKS",
                    kid.chars().take(64).collect::<String>()
                )
            })?;
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err("symmetric JWKS keys are not accepted".to_owned());
        }
        if let Some(declared) = jwk.common.key_algorithm {
            if declared.to_string() != format!("{alg:?}") {
                return Err(format!("key `{kid}` is for {declared}, not {alg:?}"));
            }
        }
        DecodingKey::from_jwk(jwk).map_err(|e| format!("key `{kid}` is unusable ({e})"))
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("JWKS fetch failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("JWKS fetch answered {}", response.status()));
        }
        response
            .json::<JwkSet>()
            .await
            .map_err(|e| format!("JWKS is not a key set: {e}"))
    }
}
