//! Canary secrets over all five vendors: a vendor that echoes everything it received (headers,
//! body, in plain, JSON-escaped, URL-encoded and base64 forms, and inside a nested JSON message)
//! never gets a secret into a response, a list's `errors`, an account's health or the database.

use base64::Engine;
use serde_json::{json, Value};
use wiremock::{
    matchers::any, matchers::path, Mock, MockServer, Request, Respond, ResponseTemplate,
};

use crate::helpers::*;

/// Answers 400 with everything the request carried, in every form, in every field a vendor's
/// error reader looks at.
struct Echo(u16);

impl Respond for Echo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        // Every header's value: whatever header a vendor's credential travels in.
        let mut sent: Vec<String> = request
            .headers
            .values()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        sent.push(String::from_utf8_lossy(&request.body).into_owned());
        if let Some((_, rest)) = header("authorization").split_once(' ') {
            sent.push(rest.to_owned());
            if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) {
                sent.push(String::from_utf8_lossy(&decoded).into_owned());
            }
        }
        let mut echo = String::from("invalid credential:");
        for s in sent.iter().filter(|s| !s.is_empty()) {
            let json = serde_json::to_string(s).unwrap();
            let url: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
            let b64 = base64::engine::general_purpose::STANDARD.encode(s);
            echo += &format!(" [{s}] [{}] [{url}] [{b64}]", &json[1..json.len() - 1]);
        }
        if self.0 == 200 {
            // A success whose data is the echo where numbers, objects and lists belong: a
            // decoder's message would quote it, and a reader would take it for a name.
            let fields = [
                "id",
                "Id",
                "data",
                "name",
                "Name",
                "snapshot",
                "snapshots",
                "items",
                "Items",
                "status",
                "Status",
                "message",
                "error",
                "results",
                "count",
            ];
            let body: serde_json::Map<String, Value> = fields
                .iter()
                .map(|f| ((*f).to_owned(), Value::String(echo.clone())))
                .collect();
            return ResponseTemplate::new(200).set_body_json(body);
        }
        ResponseTemplate::new(self.0).set_body_json(json!({
            // A nested object: readers pass it on as JSON text, quotes and backslashes escaped.
            "message": {"detail": echo},
            "error": echo,
            "Message": echo,
            "status": false,
        }))
    }
}

/// The canary core every secret carries, and what must never come back.
const CANARY: &str = "CANARY";

fn leaks(text: &str, secrets: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    if text.contains(CANARY) {
        found.push(format!("{CANARY} in plain"));
    }
    for s in secrets {
        let trimmed = s.trim();
        for form in [
            base64::engine::general_purpose::STANDARD.encode(trimmed),
            base64::engine::general_purpose::STANDARD.encode(s),
        ] {
            if text.contains(&form) {
                found.push(format!("base64 of {s:?}"));
            }
        }
    }
    found
}

async fn check_vendor(
    provider: &str,
    snapshot: &str,
    body: Value,
    secrets: &[&str],
    okta_token_ok: bool,
    vendor_status: u16,
) {
    let mock = MockServer::start().await;
    if okta_token_ok {
        // The token request succeeds, with an access token that is itself a secret.
        Mock::given(path("/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "access_token": DERIVED_TOKEN,
                "expires_in": 3600,
                "token_type": "Bearer",
            })))
            .with_priority(1)
            .mount(&mock)
            .await;
    }
    Mock::given(any())
        .respond_with(Echo(vendor_status))
        .mount(&mock)
        .await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| {
        for canary in canaries() {
            for (setting, path) in canary.endpoints {
                let kind = canary.provider.parse().unwrap();
                c.providers.set(kind, setting, format!("{uri}{path}"));
            }
        }
        // No retries: one echo per call is enough.
        c.upstream.max_retries = 0;
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    let created = app.post("/v1/accounts", &t, &body).await;
    assert_eq!(
        created.status(),
        201,
        "{provider}: {}",
        created.text().await.unwrap()
    );
    let mut seen = String::new();
    let get = app.get(&format!("/v1/snapshots/{snapshot}"), &t).await;
    let status = get.status();
    let text = get.text().await.unwrap();
    let vendor_ok = vendor_status == 200;
    // A success may decode (the echo where a name belongs); what matters is what it shows.
    assert!(
        vendor_ok || status.is_client_error() || status.is_server_error(),
        "{provider}: {status} {text}"
    );
    seen += &text;
    seen += &app.get("/v1/snapshots", &t).await.text().await.unwrap();
    let verify = app
        .client
        .post(format!("{}/v1/accounts/canary/verify", app.url))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    seen += &verify.text().await.unwrap();
    seen += &app
        .get("/v1/accounts/canary", &t)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !mock.received_requests().await.unwrap().is_empty(),
        "{provider}: the vendor was called"
    );
    // The vendor's words came back (scrubbed), or none did (a refused token is reported by
    // its status alone).
    assert!(
        vendor_ok || seen.contains("[redacted]") || seen.contains("provider_auth_failed"),
        "{provider}: the echo came back scrubbed: {seen}"
    );
    let found = leaks(&seen, secrets);
    assert!(
        found.is_empty(),
        "{provider} responses leak {found:?}: {seen}"
    );
    let mut stored = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(bytes) = std::fs::read(format!("{}{suffix}", app.db_path().display())) {
            stored.extend(bytes);
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    let found = leaks(&stored, secrets);
    assert!(found.is_empty(), "{provider} database holds {found:?}");
}

/// One account per vendor whose secrets all carry [`CANARY`], with spaces, quotes,
/// backslashes and prefixes that adapters trim or strip before sending. Each vendor's test
/// module declares its own (`pub(crate) fn canary()`).
pub(crate) struct Canary {
    pub provider: &'static str,
    /// A snapshot id of the vendor's own shape.
    pub native: &'static str,
    pub credentials: Value,
    pub settings: Value,
    /// What must not come back, in forms [`leaks`] looks for beyond the plain canary.
    pub secrets: Vec<&'static str>,
    /// The provider settings that point the gateway at the echoing vendor (setting, path).
    pub endpoints: Vec<(&'static str, &'static str)>,
    /// A vendor whose adapter obtains a token at `/token` first: the token the echo hands out
    /// is then checked too, in the forms it is sent (see [`DERIVED_TOKEN`]).
    pub token_exchange: bool,
}

/// Where most vendors are reached: their `base_url`.
pub(crate) fn base_url() -> Vec<(&'static str, &'static str)> {
    vec![("base_url", "")]
}

/// The access token a token exchange is answered with: itself a secret.
const DERIVED_TOKEN: &str = "CANARY-derived-access-token-1";

/// Every vendor's canary, each declared in its own test module (see `vendor_tests!`).
pub(crate) fn canaries() -> Vec<Canary> {
    crate::vendor_canaries()
}

#[test]
fn every_provider_has_a_canary_and_a_simulated_vendor() {
    let mut with_canary: Vec<&str> = canaries().iter().map(|c| c.provider).collect();
    with_canary.sort_unstable();
    let mut declared = providers();
    declared.sort_unstable();
    assert_eq!(
        with_canary, declared,
        "a provider without a canary leaks unseen"
    );
    let mut simulated: Vec<&str> = snapgate::simulator::Vendor::ALL
        .iter()
        .map(|v| v.as_str())
        .collect();
    simulated.sort_unstable();
    assert_eq!(simulated, declared, "every provider is simulated");
}

impl Canary {
    fn account(&self, id: &str) -> Value {
        json!({"id": id, "provider": self.provider, "credentials": self.credentials, "settings": self.settings})
    }
}

#[tokio::test]
async fn no_form_of_a_secret_comes_back_from_any_vendor() {
    // Every status whose answer carries the vendor's words: rejection, conflict, invalid,
    // server error; and a success whose body is the echo where data belongs.
    for status in [200, 400, 409, 422, 500] {
        for c in canaries() {
            let snapshot = format!("canary:{}", c.native);
            check_vendor(
                c.provider,
                &snapshot,
                c.account("canary"),
                &c.secrets,
                false,
                status,
            )
            .await;
            if c.token_exchange {
                // The token request succeeds; the API call carries the access token it gave.
                let derived = [DERIVED_TOKEN, &format!("Bearer {DERIVED_TOKEN}")];
                check_vendor(
                    &format!("{} (API refused)", c.provider),
                    &snapshot,
                    c.account("canary"),
                    &derived,
                    true,
                    status,
                )
                .await;
            }
        }
    }
}

#[tokio::test]
async fn no_secret_reaches_a_log_line_or_a_metric() {
    let mock = MockServer::start().await;
    Mock::given(any())
        .respond_with(Echo(500))
        .mount(&mock)
        .await;
    let uri = mock.uri();
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![("RUST_LOG".to_owned(), "debug".to_owned())];
    for c in canaries() {
        for (setting, path) in c.endpoints {
            let name = format!(
                "SNAPGATE_PROVIDERS__{}__{}",
                c.provider.to_ascii_uppercase(),
                setting.to_ascii_uppercase()
            );
            env.push((name, format!("{uri}{path}")));
        }
    }
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let serve = ServeProcess::start(&dir.path().join("db.sqlite"), &env);
    let url = serve.url.clone();
    let client = reqwest::Client::new();
    let t = token("acme", ALL_SCOPES);
    let mut seen = String::new();
    for c in canaries() {
        let (provider, native) = (c.provider, c.native);
        let created = client
            .post(format!("{url}/v1/accounts"))
            .bearer_auth(&t)
            .json(&c.account(provider))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "{provider}");
        for path in [
            format!("/v1/snapshots/{provider}:{native}"),
            format!("/v1/snapshots?account={provider}"),
        ] {
            seen += &client
                .get(format!("{url}{path}"))
                .bearer_auth(&t)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
        }
        seen += &client
            .post(format!("{url}/v1/accounts/{provider}/verify"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    let metrics = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("snapgate_upstream_requests_total"),
        "{metrics}"
    );
    let (_, logs) = serve.stop("TERM");
    assert!(
        logs.contains("upstream call failed"),
        "vendor failures were logged: {logs}"
    );
    assert!(!seen.contains(CANARY), "responses: {seen}");
    assert!(!metrics.contains(CANARY), "metrics: {metrics}");
    assert!(!logs.contains(CANARY), "logs: {logs}");
}
