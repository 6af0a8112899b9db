//! Oktawave OAuth2 password-grant tokens: fetched from the identity server, cached per
//! credential set until shortly before expiry, refreshed single-flight.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Oktawave, KIND};
use crate::providers::{http, wire, CallContext, ProviderError};

/// Read/write API access (`oktawave.api.readonly` would make every change a 403).
pub(super) const SCOPE: &str = "oktawave.api";
/// A token is replaced this long before its stated expiry, so no call carries a dying one.
pub(super) const REFRESH_EARLY: Duration = Duration::from_secs(30);
/// Lifetime assumed when the identity server does not say (`expires_in` absent).
pub(super) const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Access tokens by credential set; each set has its own lock so one refresh serves every
/// concurrent caller (single flight) while other accounts proceed.
#[derive(Default)]
pub(super) struct TokenCache {
    pub(super) slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>>,
}

pub(super) struct Token {
    pub(super) access: SecretString,
    pub(super) fresh_until: Instant,
}

impl Token {
    fn fresh(&self) -> bool {
        Instant::now() < self.fresh_until
    }
}

impl TokenCache {
    pub(super) fn slot(&self, key: String) -> Arc<tokio::sync::Mutex<Option<Token>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if !slots.contains_key(&key) {
            // Credentials rotate: drop idle slots whose token has expired (or never came).
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot
                        .try_lock()
                        .map_or(true, |t| t.as_ref().is_some_and(Token::fresh))
            });
        }
        slots.entry(key).or_default().clone()
    }
}

/// RFC 6749 §5.1 token response.
#[derive(Deserialize)]
pub(super) struct TokenReply {
    pub(super) access_token: String,
    #[serde(default, deserialize_with = "wire::lenient_f64")]
    pub(super) expires_in: Option<f64>,
}

impl Oktawave {
    /// A valid access token for the account: the cached one, or a new one when there is
    /// none, it is about to expire, or it is `stale` (the API just refused it).
    pub(super) async fn token(
        &self,
        ctx: &CallContext<'_>,
        stale: Option<&SecretString>,
    ) -> Result<SecretString, ProviderError> {
        let slot = self.tokens.slot(cache_key(ctx));
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref() {
            let refused = stale.is_some_and(|s| s.expose_secret() == token.access.expose_secret());
            if token.fresh() && !refused {
                return Ok(token.access.clone());
            }
        }
        *cached = None;
        let token = self.fetch_token(ctx).await?;
        let access = token.access.clone();
        *cached = Some(token);
        Ok(access)
    }

    async fn fetch_token(&self, ctx: &CallContext<'_>) -> Result<Token, ProviderError> {
        let form = [
            ("grant_type", "password"),
            ("username", ctx.secret("username")?),
            ("password", ctx.secret("password")?),
            ("scope", SCOPE),
        ];
        let upstream = self.http.upstream();
        let rb = upstream
            .request(Method::POST, self.endpoints.token_url.clone())
            // RFC 6749 §2.3.1: each part form-urlencoded before HTTP Basic.
            .basic_auth(
                &form_encoded(ctx.secret("client_id")?),
                &form_encoded(ctx.secret("client_secret")?),
            )
            .form(&form);
        let requested = Instant::now();
        let reply: TokenReply = upstream
            .send(
                self.http.vendor(),
                "token",
                http::identity(ctx),
                rb,
                wire::error_message,
            )
            .await
            // The identity server answers 400 (`invalid_grant`, `invalid_client`) for bad credentials.
            .map_err(|e| match e {
                ProviderError::Rejected { status, .. } => ProviderError::Auth { status },
                other => other,
            })?
            .json(KIND)?;
        if reply.access_token.is_empty() {
            return Err(ProviderError::Upstream {
                status: None,
                message: "Oktawave's identity server answered without an access token".to_owned(),
            });
        }
        Ok(Token {
            access: reply.access_token.into(),
            fresh_until: requested + usable_for(reply.expires_in),
        })
    }
}

/// Keys the token cache by tenant, account and every credential value, hashed: a rotated
/// secret gets a new token, and no secret is kept in the key.
pub(super) fn cache_key(ctx: &CallContext<'_>) -> String {
    use secrecy::ExposeSecret;
    let mut h = Sha256::new();
    let account = [ctx.account.tenant.as_str(), ctx.account.id.as_str()];
    let fields = ctx
        .credentials
        .iter()
        .flat_map(|(name, value)| [name.as_str(), value.expose_secret()]);
    for part in account.into_iter().chain(fields) {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// How long a token may be used: its lifetime less the early-refresh margin (at most half).
pub(super) fn usable_for(expires_in: Option<f64>) -> Duration {
    let lifetime = expires_in
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_LIFETIME, |s| Duration::from_secs_f64(s.min(1e9)));
    lifetime - REFRESH_EARLY.min(lifetime / 2)
}

/// `application/x-www-form-urlencoded` of one client credential (RFC 6749 §2.3.1, as the
/// OAuth client libraries send it): `a b:c` → `a+b%3Ac`.
fn form_encoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
