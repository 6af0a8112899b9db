//! Simulated Oktawave identity server (id.oktawave.com in production): the OAuth2 token endpoint
//! (resource-owner password grant) and the bearer-token check in front of the services API.
//!
//! Tokens are opaque, live `token_ttl`, and carry their scope: `oktawave.api` may do anything,
//! `oktawave.api.readonly` gets 403 on modifying calls. Token-endpoint failures are RFC 6749
//! 400 `{error}` bodies. Owns only tokens; snapshots live in `oktawave`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{bearer, delta, lock, oktawave};
use super::{OKTAWAVE_CLIENT_ID, OKTAWAVE_CLIENT_SECRET, OKTAWAVE_PASSWORD, OKTAWAVE_USERNAME};

const DENIED: &str = "Authorization has been denied for this request.";

struct Token {
    expires: DateTime<Utc>,
    read_only: bool,
}

/// Issued access tokens.
pub(super) struct Tokens {
    ttl: Duration,
    issued: Mutex<HashMap<String, Token>>,
}

impl Tokens {
    pub(super) fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            issued: Mutex::new(HashMap::new()),
        })
    }
}

/// `POST /connect/token`.
pub(super) fn router(tokens: Arc<Tokens>) -> Router {
    Router::new()
        .route("/connect/token", post(token))
        .with_state(tokens)
}

/// Lets a request through only with a live token (401 `{Message}` otherwise).
pub(super) async fn require_token(
    State(tokens): State<Arc<Tokens>>,
    req: Request,
    next: Next,
) -> Response {
    let now = Utc::now();
    let read_only = {
        let issued = lock(&tokens.issued);
        bearer(req.headers().get(header::AUTHORIZATION))
            .and_then(|t| issued.get(t))
            .filter(|t| t.expires > now)
            .map(|t| t.read_only)
    };
    match read_only {
        None => oktawave::error(StatusCode::UNAUTHORIZED, DENIED),
        Some(true) if req.method() != Method::GET => oktawave::error(StatusCode::FORBIDDEN, DENIED),
        Some(_) => next.run(req).await,
    }
}

fn oauth_error(code: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": code }))).into_response()
}

/// The client from HTTP Basic, or else from `client_id`/`client_secret` form fields.
fn client(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(String, String)> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b)| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    match basic.as_deref().and_then(|b| b.split_once(':')) {
        Some((id, secret)) => Some((id.to_owned(), secret.to_owned())),
        None => Some((
            form.get("client_id")?.clone(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )),
    }
}

async fn token(State(tokens): State<Arc<Tokens>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str);
    let expected = (
        OKTAWAVE_CLIENT_ID.to_owned(),
        OKTAWAVE_CLIENT_SECRET.to_owned(),
    );
    if client(&headers, &form) != Some(expected) {
        return oauth_error("invalid_client");
    }
    if field("grant_type") != Some("password") {
        return oauth_error("unsupported_grant_type");
    }
    if field("username") != Some(OKTAWAVE_USERNAME) || field("password") != Some(OKTAWAVE_PASSWORD)
    {
        return oauth_error("invalid_grant");
    }
    let scopes: Vec<&str> = field("scope").unwrap_or("").split_whitespace().collect();
    let known = |s: &&str| {
        matches!(
            *s,
            "oktawave.api" | "oktawave.api.readonly" | "offline_access"
        )
    };
    let read_only = !scopes.contains(&"oktawave.api");
    if !scopes.iter().all(known) || (read_only && !scopes.contains(&"oktawave.api.readonly")) {
        return oauth_error("invalid_scope");
    }
    let now = Utc::now();
    let access_token = format!("sim-oktawave-{}", uuid::Uuid::new_v4().simple());
    let expires = now + delta(tokens.ttl);
    let mut issued = lock(&tokens.issued);
    issued.retain(|_, t| t.expires > now);
    issued.insert(access_token.clone(), Token { expires, read_only });
    Json(json!({
        "access_token": access_token,
        "expires_in": tokens.ttl.as_secs(),
        "token_type": "Bearer",
    }))
    .into_response()
}
