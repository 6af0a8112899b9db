//! Keys from an identity provider's JWKS URL, cached, with one re-fetch when a token names an
//! unknown `kid` (key rotation) — at most one fetch at a time and one per few seconds.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

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

/// Longest a fetch may take: a hanging identity provider costs a waiting request this much at
/// most, and requests with a cached kid never wait for it at all.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A JWKS endpoint and the keys last fetched from it. Cheap to clone (one shared state).
#[derive(Clone)]
pub struct Jwks {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    ttl: Duration,
    client: reqwest::Client,
    /// The keys, read without waiting for any fetch.
    keys: RwLock<Fetched>,
    /// Held while a fetch runs: one at a time (single flight).
    fetching: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct Fetched {
    keys: Option<Arc<JwkSet>>,
    /// When the keys were last fetched successfully.
    at: Option<Instant>,
    /// When a fetch was last tried, successful or not: failures back off from here.
    tried: Option<Instant>,
}

impl Jwks {
    pub fn new(url: String, ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                url,
                ttl,
                client: crate::upstream::control_client(),
                keys: RwLock::new(Fetched::default()),
                fetching: Arc::new(tokio::sync::Mutex::new(())),
            }),
        }
    }

    /// The key for `kid`, usable with `alg`.
    ///
    /// - A cached kid is answered at once; when the keys are stale a refresh starts in the
    ///   background (one at a time) and the cached key is used meanwhile.
    /// - An unknown kid waits for one fetch (shared by everyone waiting, bounded by
    ///   [`FETCH_TIMEOUT`]), unless a fetch was tried within [`MIN_REFETCH`]: then it is refused
    ///   at once. A failing identity provider is therefore asked at most every 10 s, however
    ///   many forged kids arrive.
    ///
    /// The key comes with its fingerprint, for [`Jwks::still_holds`].
    pub async fn key(&self, kid: &str, alg: Algorithm) -> Result<(DecodingKey, u64), String> {
        if !ASYMMETRIC.contains(&alg) {
            return Err(format!("algorithm {alg:?} is not accepted for JWKS keys"));
        }
        let (keys, stale, may_fetch) = self.snapshot();
        if let Some(keys) = keys.as_ref().filter(|k| k.find(kid).is_some()) {
            if stale && may_fetch {
                self.refresh_in_background();
            }
            return usable(keys, kid, alg);
        }
        if !may_fetch && !stale {
            return Err(unknown(kid));
        }
        self.refresh(self.tried()).await;
        let (keys, _, _) = self.snapshot();
        match keys {
            Some(keys) => usable(&keys, kid, alg),
            None => Err("the identity provider's keys are unavailable".to_owned()),
        }
    }

    /// Whether the key `kid` with this `fingerprint` (as [`Jwks::key`] gave it) is still
    /// among the keys: stale keys are refreshed in the background meanwhile, so a key the
    /// identity provider withdraws, or replaces under the same kid, stops being found at the
    /// next refresh.
    pub fn still_holds(&self, kid: &str, fingerprint: u64) -> bool {
        let (keys, stale, may_fetch) = self.snapshot();
        if stale && may_fetch {
            self.refresh_in_background();
        }
        keys.and_then(|k| k.find(kid).map(self::fingerprint)) == Some(fingerprint)
    }

    /// Starts a fetch in the background, unless one is already running.
    fn refresh_in_background(&self) {
        if let Ok(one_at_a_time) = self.inner.fetching.clone().try_lock_owned() {
            let this = self.clone();
            tokio::spawn(async move { this.fetch_and_store(one_at_a_time).await });
        }
    }

    /// (keys, stale, a fetch may be tried now).
    fn snapshot(&self) -> (Option<Arc<JwkSet>>, bool, bool) {
        let state = self.inner.keys.read().unwrap_or_else(|e| e.into_inner());
        let stale = state.at.is_none_or(|t| t.elapsed() >= self.inner.ttl);
        let may_fetch = state
            .tried
            .is_none_or(|t| t.elapsed() >= MIN_REFETCH.min(self.inner.ttl));
        (state.keys.clone(), stale, may_fetch)
    }

    fn tried(&self) -> Option<Instant> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .tried
    }

    /// Fetches once, unless another caller's fetch finished since `tried_before` (then its
    /// result is used) or a fetch is too recent to repeat.
    async fn refresh(&self, tried_before: Option<Instant>) {
        let one_at_a_time = self.inner.fetching.clone().lock_owned().await;
        let (_, _, may_fetch) = self.snapshot();
        if self.tried() != tried_before || !may_fetch {
            return;
        }
        self.fetch_and_store(one_at_a_time).await;
    }

    /// Fetches and stores the result; `_one_at_a_time` is the held fetch lock.
    async fn fetch_and_store(&self, _one_at_a_time: tokio::sync::OwnedMutexGuard<()>) {
        let result = tokio::time::timeout(FETCH_TIMEOUT, self.fetch())
            .await
            .unwrap_or_else(|_| Err("JWKS fetch timed out".to_owned()));
        let mut state = self.inner.keys.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        state.tried = Some(now);
        match result {
            Ok(keys) => {
                state.keys = Some(Arc::new(keys));
                state.at = Some(now);
            }
            // Keep serving the keys we have while the identity provider is unreachable.
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed"),
        }
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let response = self
            .inner
            .client
            .get(&self.inner.url)
            .send()
            .await
            .map_err(|e| format!("JWKS fetch failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("JWKS fetch answered {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("JWKS is over {MAX_JWKS_BYTES} bytes"));
        }
        // Read chunk by chunk, never past the cap: a key set is a few kilobytes, and an
        // identity provider (or whoever answers in its name) sending more is not trusted with
        // the gateway's memory.
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("JWKS fetch failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("JWKS is over {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice::<JwkSet>(&body).map_err(|e| {
            format!(
                "JWKS is not a key set ({})",
                crate::scrub::unreadable_json(&e)
            )
        })
    }
}

/// The largest key set read: real ones are a few kilobytes (a few keys of a few hundred bytes).
const MAX_JWKS_BYTES: usize = 256 * 1024;

fn unknown(kid: &str) -> String {
    format!(
        "key `{}` is not in the JWKS",
        kid.chars().take(64).collect::<String>()
    )
}

/// The key `kid` of `keys`, if it may verify `alg`.
fn usable(keys: &JwkSet, kid: &str, alg: Algorithm) -> Result<(DecodingKey, u64), String> {
    let jwk = keys.find(kid).ok_or_else(|| unknown(kid))?;
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Err("symmetric JWKS keys are not accepted".to_owned());
    }
    if let Some(declared) = jwk.common.key_algorithm {
        if declared.to_string() != format!("{alg:?}") {
            return Err(format!("key `{kid}` is for {declared}, not {alg:?}"));
        }
    }
    DecodingKey::from_jwk(jwk)
        .map(|key| (key, fingerprint(jwk)))
        .map_err(|e| format!("key `{kid}` is unusable ({e})"))
}

/// What tells one key from another under the same `kid` (an identity provider that reuses a
/// kid for a new key has not kept the old one).
fn fingerprint(jwk: &jsonwebtoken::jwk::Jwk) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    jwk.hash(&mut h);
    h.finish()
}
