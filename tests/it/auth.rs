//! Caller authentication through the public API.

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use crate::helpers::*;

async fn assert_rejected(app: &TestApp, token: &str, why: &str) {
    let resp = app.get("/v1/accounts", token).await;
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = assert_problem(resp, 401, "invalid_token").await;
    assert!(
        www.starts_with("Bearer error=\"invalid_token\""),
        "{why}: WWW-Authenticate was {www:?}"
    );
    assert!(body["detail"].is_string(), "{why}");
}

#[tokio::test]
async fn requests_without_a_token_get_401_with_www_authenticate() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(format!("{}/v1/providers", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\", error_description=\"missing bearer token\""
    );
    assert_problem(resp, 401, "invalid_token").await;
}

#[tokio::test]
async fn unsigned_wrongly_signed_expired_and_premature_tokens_are_rejected() {
    let app = spawn_app().await;
    // alg "none": header {"alg":"none","typ":"JWT"}, no signature.
    let none = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64_url(&json!({"tenant": "t", "scope": ALL_SCOPES, "exp": now() + 600}).to_string())
    );
    assert_rejected(&app, &none, "alg none").await;
    let wrong_key = jsonwebtoken::encode(
        &Header::default(),
        &json!({"tenant": "t", "scope": ALL_SCOPES, "exp": now() + 600}),
        &EncodingKey::from_secret(b"another-secret"),
    )
    .unwrap();
    assert_rejected(&app, &wrong_key, "wrong key").await;
    let expired = sign(&json!({"tenant": "t", "scope": ALL_SCOPES, "exp": now() - 3600}));
    assert_rejected(&app, &expired, "expired").await;
    let no_exp = sign(&json!({"tenant": "t", "scope": ALL_SCOPES}));
    assert_rejected(&app, &no_exp, "no exp").await;
    let premature = sign(
        &json!({"tenant": "t", "scope": ALL_SCOPES, "exp": now() + 7200, "nbf": now() + 3600}),
    );
    assert_rejected(&app, &premature, "future nbf").await;
    let no_tenant = sign(&json!({"scope": ALL_SCOPES, "exp": now() + 600}));
    assert_rejected(&app, &no_tenant, "no tenant claim").await;
    assert_rejected(&app, "not-a-jwt", "garbage").await;
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn issuer_and_audience_are_required_and_checked_when_configured() {
    let app = spawn_app_with(|c| {
        c.auth.issuer = Some("https://idp.example".into());
        c.auth.audience = Some("snapgate".into());
    })
    .await;
    let base = json!({"tenant": "t", "scope": ALL_SCOPES, "exp": now() + 600});
    let with = |extra: serde_json::Value| {
        let mut claims = base.clone();
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        sign(&claims)
    };
    assert_rejected(&app, &with(json!({"aud": "snapgate"})), "missing iss").await;
    assert_rejected(
        &app,
        &with(json!({"iss": "https://idp.example"})),
        "missing aud",
    )
    .await;
    assert_rejected(
        &app,
        &with(json!({"iss": "https://evil.example", "aud": "snapgate"})),
        "wrong iss",
    )
    .await;
    assert_rejected(
        &app,
        &with(json!({"iss": "https://idp.example", "aud": "other"})),
        "wrong aud",
    )
    .await;
    let good = with(json!({"iss": "https://idp.example", "aud": "snapgate"}));
    assert_eq!(app.get("/v1/accounts", &good).await.status(), 200);
}

#[tokio::test]
async fn a_missing_scope_is_403_and_scp_arrays_count() {
    let app = spawn_app().await;
    let read_only = token("t", "snapshots:read");
    let resp = app.get("/v1/accounts", &read_only).await;
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    let body = assert_problem(resp, 403, "insufficient_scope").await;
    assert!(body["detail"].as_str().unwrap().contains("accounts:read"));
    // Any valid token may list providers.
    assert_eq!(app.get("/v1/providers", &read_only).await.status(), 200);
    let scp = sign(&json!({"tenant": "t", "scp": ["accounts:read"], "exp": now() + 600}));
    assert_eq!(app.get("/v1/accounts", &scp).await.status(), 200);
}

#[tokio::test]
async fn eddsa_tokens_verify_against_a_configured_public_key_and_hs256_is_then_refused() {
    let app = spawn_app_with(|c| {
        c.auth.hs256_secret = None;
        c.auth.eddsa_public_key_pem = Some(include_str!("keys/ed25519.pub.pem").to_owned());
    })
    .await;
    let key = EncodingKey::from_ed_pem(include_bytes!("keys/ed25519.pem")).unwrap();
    let claims = json!({"tenant": "t", "scope": "accounts:read", "exp": now() + 600});
    let ed =
        jsonwebtoken::encode(&Header::new(jsonwebtoken::Algorithm::EdDSA), &claims, &key).unwrap();
    assert_eq!(app.get("/v1/accounts", &ed).await.status(), 200);
    assert_rejected(&app, &sign(&claims), "HS256 not configured").await;
}

#[tokio::test]
async fn the_token_command_mints_tokens_the_gateway_accepts() {
    let app = spawn_app().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapgate"))
        .args(["token", "--tenant", "acme", "--scope", "accounts:read"])
        .env("SNAPGATE_AUTH__HS256_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted = String::from_utf8(out.stdout).unwrap();
    assert_eq!(app.get("/v1/accounts", minted.trim()).await.status(), 200);
    let resp = app
        .post("/v1/accounts", minted.trim(), &account_body("a", "syminet"))
        .await;
    assert_problem(resp, 403, "insufficient_scope").await;
}

#[tokio::test]
async fn serve_refuses_to_start_without_a_master_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapgate"))
        .arg("serve")
        .env_remove("SNAPGATE_MASTER_KEY")
        .env("SNAPGATE_AUTH__HS256_SECRET", SECRET)
        .env("SNAPGATE_SERVER__LISTEN", "127.0.0.1:0")
        .env("SNAPGATE_STORE__URL", "sqlite::memory:")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SNAPGATE_MASTER_KEY is not set"),
        "{stderr}"
    );
}

/// The test Ed25519 public key as a JWK with `kid`.
fn ed25519_jwk(kid: &str) -> serde_json::Value {
    use base64::Engine;
    let pem = include_str!("keys/ed25519.pub.pem");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&der[der.len() - 32..]);
    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"})
}

fn ed25519_token(kid: &str) -> String {
    ed25519_token_for(kid, "t")
}

fn ed25519_token_for(kid: &str, tenant: &str) -> String {
    let key = EncodingKey::from_ed_pem(include_bytes!("keys/ed25519.pem")).unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    let claims = json!({"tenant": tenant, "scope": "accounts:read", "exp": now() + 600});
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn tokens_naming_a_kid_verify_against_the_jwks_which_is_refetched_once_for_an_unknown_kid() {
    use wiremock::{matchers::path, Mock, MockServer, ResponseTemplate};
    let idp = MockServer::start().await;
    Mock::given(path("/.well-known/jwks.json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"keys": [ed25519_jwk("k1")]})),
        )
        .expect(2)
        .mount(&idp)
        .await;
    let url = format!("{}/.well-known/jwks.json", idp.uri());
    let app = spawn_app_with(|c| {
        c.auth.hs256_secret = None;
        c.auth.jwks_url = Some(url);
        c.auth.jwks_cache_secs = 1;
    })
    .await;
    // Known kid: verified (one fetch), and again from cache.
    assert_eq!(
        app.get("/v1/accounts", &ed25519_token("k1")).await.status(),
        200
    );
    assert_eq!(
        app.get("/v1/accounts", &ed25519_token("k1")).await.status(),
        200
    );
    // Unknown kid once the keys are due: one re-fetch (rotation), still unknown → 401; a second
    // unknown kid right after does not fetch again (rate-limited).
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_rejected(&app, &ed25519_token("k2"), "unknown kid").await;
    assert_rejected(&app, &ed25519_token("k3"), "unknown kid again").await;
    // An HS256 token cannot borrow a JWKS key.
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".to_owned());
    let forged = jsonwebtoken::encode(
        &header,
        &json!({"tenant": "t", "scope": "accounts:read", "exp": now() + 600}),
        &EncodingKey::from_secret(b"anything"),
    )
    .unwrap();
    assert_rejected(&app, &forged, "HS256 with a JWKS kid").await;
}

#[tokio::test]
async fn the_scheme_is_case_insensitive_crit_is_refused_and_tenants_have_a_syntax() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let resp = app
            .client
            .get(format!("{}/v1/accounts", app.url))
            .header("authorization", format!("{scheme} {t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "scheme {scheme}");
    }
    // RFC 7515: a header listing critical extensions the verifier does not know is refused,
    // even when the signature is good.
    let claims = json!({"tenant": "t", "scope": ALL_SCOPES, "exp": now() + 600});
    let hs256 = |header: serde_json::Value| {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let signing_input = format!(
            "{}.{}",
            base64_url(&header.to_string()),
            base64_url(&claims.to_string())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        let mac = mac.finalize().into_bytes();
        format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
        )
    };
    // The hand-made signature is good: without `crit` the token is accepted.
    let plain = hs256(json!({"alg": "HS256", "typ": "JWT"}));
    assert_eq!(app.get("/v1/accounts", &plain).await.status(), 200);
    let with_crit = hs256(json!({"alg": "HS256", "typ": "JWT", "crit": ["exp-ext"], "exp-ext": 1}));
    assert_rejected(&app, &with_crit, "crit").await;
    for tenant in [
        " ",
        "\u{0}",
        "a b",
        "x".repeat(129).as_str(),
        "-lead",
        "a/b",
    ] {
        let bad = sign(&json!({"tenant": tenant, "scope": ALL_SCOPES, "exp": now() + 600}));
        assert_rejected(&app, &bad, "tenant syntax").await;
    }
    for tenant in [
        "acme",
        "org_42",
        "tenant:eu-1",
        "ops@example.com",
        &"x".repeat(128),
    ] {
        let ok = sign(&json!({"tenant": tenant, "scope": ALL_SCOPES, "exp": now() + 600}));
        assert_eq!(app.get("/v1/accounts", &ok).await.status(), 200, "{tenant}");
    }
}

#[tokio::test]
async fn a_failing_jwks_is_asked_once_however_many_forged_kids_arrive() {
    use wiremock::{matchers::path, Mock, MockServer, ResponseTemplate};
    let idp = MockServer::start().await;
    Mock::given(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&idp)
        .await;
    let url = format!("{}/.well-known/jwks.json", idp.uri());
    let app = spawn_app_with(|c| {
        c.auth.jwks_url = Some(url);
        c.auth.jwks_cache_secs = 300;
    })
    .await;
    let started = std::time::Instant::now();
    let forged: Vec<_> = (0..30)
        .map(|i| {
            let app_client = app.client.clone();
            let url = format!("{}/v1/accounts", app.url);
            let token = ed25519_token(&format!("forged-{i}"));
            tokio::spawn(async move { app_client.get(url).bearer_auth(token).send().await })
        })
        .collect();
    for f in forged {
        assert_eq!(f.await.unwrap().unwrap().status(), 401);
    }
    assert_eq!(
        idp.received_requests().await.unwrap().len(),
        1,
        "one fetch for 30 forged kids"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // HS256 tokens (no kid) never touch the JWKS.
    assert_eq!(
        app.get("/v1/accounts", &token("acme", ALL_SCOPES))
            .await
            .status(),
        200
    );
}

/// An identity provider whose key set holds k1 at the first fetch and answers `later` to
/// every fetch after; the server and its JWKS URL.
async fn idp_with_k1_then(later: wiremock::ResponseTemplate) -> (wiremock::MockServer, String) {
    use wiremock::{matchers::path, Mock, MockServer, ResponseTemplate};
    let idp = MockServer::start().await;
    Mock::given(path("/.well-known/jwks.json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"keys": [ed25519_jwk("k1")]})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&idp)
        .await;
    Mock::given(path("/.well-known/jwks.json"))
        .respond_with(later)
        .mount(&idp)
        .await;
    let url = format!("{}/.well-known/jwks.json", idp.uri());
    (idp, url)
}

#[tokio::test]
async fn a_cached_kid_verifies_at_once_while_a_hanging_jwks_is_refreshed() {
    // Every later fetch hangs far longer than any request may wait.
    let later = wiremock::ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(30));
    let (_idp, url) = idp_with_k1_then(later).await;
    let app = spawn_app_with(|c| {
        c.auth.hs256_secret = None;
        c.auth.jwks_url = Some(url);
        c.auth.jwks_cache_secs = 1;
    })
    .await;
    assert_eq!(
        app.get("/v1/accounts", &ed25519_token("k1")).await.status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    // The keys are stale and the refresh hangs: new tokens with the known kid still verify
    // without waiting for it.
    for i in 0..5 {
        let token = ed25519_token_for("k1", &format!("tenant-{i}"));
        let started = std::time::Instant::now();
        assert_eq!(app.get("/v1/accounts", &token).await.status(), 200);
        assert!(
            started.elapsed() < std::time::Duration::from_millis(500),
            "queued behind the JWKS: {:?}",
            started.elapsed()
        );
    }
}

/// A token verified once is remembered, but only while its key is the identity provider's:
/// once a refresh finds the key withdrawn, the same token is refused, though its `exp` is
/// minutes away.
#[tokio::test]
async fn a_remembered_token_is_refused_once_the_jwks_withdraws_its_key() {
    // Rotated: k1 withdrawn, k2 in its place.
    refused_after_rotation(json!({"keys": [ed25519_jwk("k2")]})).await;
}

/// The same when the identity provider keeps the kid but puts another key under it.
#[tokio::test]
async fn a_remembered_token_is_refused_once_its_kid_names_another_key() {
    use base64::Engine;
    let mut other = ed25519_jwk("k1");
    other["x"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode([7u8; 32])
        .into();
    refused_after_rotation(json!({"keys": [other, ed25519_jwk("k2")]})).await;
}

/// k1's token is accepted (and remembered); the keys become `rotated` (k1 no longer the key
/// that signed it, k2 the same key under a new kid); within moments of the refresh the k1
/// token is refused and a k2 token verifies.
async fn refused_after_rotation(rotated: serde_json::Value) {
    let later = wiremock::ResponseTemplate::new(200).set_body_json(rotated);
    let (_idp, url) = idp_with_k1_then(later).await;
    let app = spawn_app_with(|c| {
        c.auth.hs256_secret = None;
        c.auth.jwks_url = Some(url);
        c.auth.jwks_cache_secs = 3;
    })
    .await;
    let old = ed25519_token("k1");
    for _ in 0..3 {
        assert_eq!(app.get("/v1/accounts", &old).await.status(), 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    // The keys are stale: this use starts the refresh (and may still pass, as a verification
    // with the keys in hand would); within moments the withdrawn key's token is refused.
    let _ = app.get("/v1/accounts", &old).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = app.get("/v1/accounts", &old).await.status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "a token of a withdrawn key still accepted 5 s after the refresh"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_rejected(&app, &old, "withdrawn key").await;
    assert_eq!(
        app.get("/v1/accounts", &ed25519_token("k2")).await.status(),
        200,
        "the new key's tokens verify"
    );
}

#[tokio::test]
async fn an_endless_jwks_is_read_only_up_to_its_bound() {
    use std::sync::{atomic::AtomicUsize, atomic::Ordering, Arc};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An identity provider (or whoever answers in its name) streaming a key set without end:
    // up to 64 MB in 64 KB chunks, counting what the gateway takes before it hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                for _ in 0..1024 {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    counter.fetch_add(0x10000, Ordering::Relaxed);
                }
            });
        }
    });
    let app = spawn_app_with(|c| {
        c.auth.hs256_secret = None;
        c.auth.jwks_url = Some(url);
    })
    .await;
    assert_rejected(&app, &ed25519_token("k1"), "a JWKS that never ends").await;
    let taken = sent.load(Ordering::Relaxed);
    eprintln!("the gateway took {taken} bytes of an endless JWKS");
    // The bound is 256 KB; socket buffers on both sides hold a few MB more at most.
    assert!(taken < 16 << 20, "read {taken} bytes of an endless JWKS");
}
