//! Spawns the gateway on 127.0.0.1:0 with a temporary SQLite store and mints tokens.

use std::path::PathBuf;

use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use snapgate::{Application, Config};

pub const SECRET: &str = "test-hs256-secret-that-is-long-enough";
pub const ALL_SCOPES: &str =
    "snapshots:read snapshots:write accounts:read accounts:write webhooks:read webhooks:write \
     policies:read policies:write";

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A config for tests: loopback port 0, a temp SQLite file, a random master key.
pub fn test_config(dir: &tempfile::TempDir) -> Config {
    let mut config = Config::defaults();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.store.url = format!("sqlite://{}", dir.path().join("snapgate.db").display());
    config.master_key = Some(
        base64::engine::general_purpose::STANDARD
            .encode([42u8; 32])
            .into(),
    );
    config.auth.hs256_secret = Some(SECRET.to_owned().into());
    // Vendor calls in a test are the ones it makes; the reconciler tests turn it on.
    config.reconciler.enabled = false;
    // Likewise the webhook worker: the webhook tests turn it on.
    config.webhooks.enabled = false;
    // And the policy runner: the policy tests turn it on.
    config.policies.enabled = false;
    // A test's server stops at once when dropped; the drain test sets its own delay.
    config.server.drain_delay_ms = 0;
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    adjust(&mut config);
    spawn_config(config, dir).await
}

pub async fn spawn_config(config: Config, dir: tempfile::TempDir) -> TestApp {
    spawn_config_wrapping(config, dir, |store| store).await
}

/// As [`spawn_config`], with the store passed through `wrap` (a failing store, say).
pub async fn spawn_config_wrapping(
    config: Config,
    dir: tempfile::TempDir,
    wrap: impl FnOnce(
        std::sync::Arc<dyn snapgate::store::Store>,
    ) -> std::sync::Arc<dyn snapgate::store::Store>,
) -> TestApp {
    let app = Application::build_with_store(config, wrap).await.unwrap();
    let url = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        url,
        client: reqwest::Client::new(),
        dir,
        shutdown: Some(tx),
    }
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Signs arbitrary claims with the test HS256 secret.
pub fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A valid token for `tenant` with space-separated `scopes`.
pub fn token(tenant: &str, scopes: &str) -> String {
    sign(&json!({"sub": "test", "tenant": tenant, "scope": scopes, "exp": now() + 600}))
}

impl TestApp {
    /// Sends the shutdown signal (SIGTERM's in-process equivalent) without dropping the app.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("snapgate.db")
    }

    /// The Prometheus text `/metrics` serves now.
    pub async fn metrics(&self) -> String {
        let resp = self
            .client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap();
        resp.text().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .patch(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .delete(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

/// Asserts a problem+json response with `status` and `code`; returns the body.
pub async fn assert_problem(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "unexpected status");
    let request_id = resp
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["request_id"], request_id.as_str());
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// Valid credentials and settings for an account of each provider.
pub fn account_body(id: &str, provider: &str) -> Value {
    let (credentials, settings) = match provider {
        "hyperstack" => (json!({"api_key": "hs-secret-api-key-0001"}), json!({})),
        "koyeb" => (
            json!({"token": "koyeb-secret-token-0002"}),
            json!({"organization_id": "org-1"}),
        ),
        "oktawave" => (
            json!({"client_id": "okta-client", "client_secret": "okta-secret-0003",
                   "username": "ops@example.com", "password": "okta-password-0004"}),
            json!({"region": "pl1"}),
        ),
        "hostinger" => (json!({"token": "hostinger-secret-token-0005"}), json!({})),
        "syminet" => (json!({"token": "syminet-secret-token-0006"}), json!({})),
        // Any other provider: its declared fields, each credential a recognizable secret.
        other => declared_fields(other),
    };
    json!({"id": id, "provider": provider, "credentials": credentials, "settings": settings})
}

/// A provider's required credentials (`{provider}-secret-{field}-0000`) and settings (the
/// first allowed value, or a placeholder), from its declaration.
fn declared_fields(provider: &str) -> (Value, Value) {
    let info = snapgate::providers::infos()
        .find(|i| i.kind.as_str() == provider)
        .unwrap_or_else(|| panic!("unknown provider {provider}"));
    let credentials: serde_json::Map<String, Value> = info
        .credential_fields
        .iter()
        .filter(|f| f.required)
        .map(|f| {
            (
                f.name.to_owned(),
                json!(format!("{provider}-secret-{}-0000", f.name)),
            )
        })
        .collect();
    let settings: serde_json::Map<String, Value> = info
        .setting_fields
        .iter()
        .filter(|f| f.required)
        .map(|f| {
            let value = f.allowed.map_or("x", |a| a[0]);
            (f.name.to_owned(), json!(value))
        })
        .collect();
    (Value::Object(credentials), Value::Object(settings))
}

/// Every secret value `account_body` uses.
pub const SECRET_VALUES: [&str; 7] = [
    "hs-secret-api-key-0001",
    "koyeb-secret-token-0002",
    "okta-secret-0003",
    "okta-password-0004",
    "hostinger-secret-token-0005",
    "syminet-secret-token-0006",
    "okta-client",
];

/// Every secret value `account_body` gives any provider: [`SECRET_VALUES`] and the declared
/// ones of every other provider.
pub fn secret_values() -> Vec<String> {
    let mut all: Vec<String> = SECRET_VALUES.iter().map(|s| (*s).to_owned()).collect();
    for provider in providers() {
        let body = account_body("x", provider);
        for value in body["credentials"].as_object().unwrap().values() {
            let value = value.as_str().unwrap().to_owned();
            if value.contains("-secret-") && !all.contains(&value) {
                all.push(value);
            }
        }
    }
    all
}

/// Every provider, as the gateway declares them (a new provider is in every test that walks them).
pub fn providers() -> Vec<&'static str> {
    snapgate::domain::ProviderKind::ALL
        .iter()
        .map(|p| p.as_str())
        .collect()
}

/// A vendor fixture file (`tests/fixtures/vendors/<vendor>/<file>`) as JSON.
pub fn vendor_fixture(vendor: &str, file: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/vendors/{vendor}/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Matches a request that carries no body at all.
pub struct NoBody;

impl wiremock::Match for NoBody {
    fn matches(&self, request: &wiremock::Request) -> bool {
        request.body.is_empty()
    }
}

/// An account of tenant `acme` for calling an adapter directly (without the gateway's store).
pub fn direct_account(
    id: &str,
    provider: snapgate::domain::ProviderKind,
    settings: serde_json::Map<String, Value>,
) -> snapgate::domain::Account {
    let now = chrono::Utc::now();
    snapgate::domain::Account {
        tenant: "acme".to_owned(),
        id: id.parse().unwrap(),
        provider,
        display_name: None,
        settings,
        credential_fields: Vec::new(),
        credential_fingerprint: String::new(),
        credentials_updated_at: now,
        health: snapgate::domain::AccountHealth::default(),
        created_at: now,
        updated_at: now,
    }
}

/// Sends `raw` (a whole HTTP/1.1 request) as written — no client normalises its path or
/// corrects its framing — and returns the status code and the body.
pub async fn raw_request(app: &TestApp, raw: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answered and closed")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `snapgate serve` as its own process (on port 0, a test master key and HS256 [`SECRET`], the
/// SQLite file `db`), with `envs` added; stderr is collected. Killed when dropped.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub url: String,
    logs: Option<std::thread::JoinHandle<String>>,
}

impl ServeProcess {
    pub fn start(db: &std::path::Path, envs: &[(&str, String)]) -> Self {
        use std::io::{BufRead, Read};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_snapgate"))
            .arg("serve")
            .env("SNAPGATE_SERVER__LISTEN", "127.0.0.1:0")
            .env(
                "SNAPGATE_MASTER_KEY",
                "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=",
            )
            .env("SNAPGATE_AUTH__HS256_SECRET", SECRET)
            .env("SNAPGATE_STORE__URL", format!("sqlite://{}", db.display()))
            .env_remove("NO_COLOR")
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = std::thread::spawn(move || {
            let mut all = String::new();
            let _ = std::io::BufReader::new(stderr).read_to_string(&mut all);
            all
        });
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("export SNAPGATE_URL=")
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .to_owned();
        Self {
            child,
            url,
            logs: Some(logs),
        }
    }

    /// Sends `signal` (`TERM`, `KILL`) and waits (at most 10 s) for the process to end; returns
    /// its exit status and everything it logged.
    pub fn stop(mut self, signal: &str) -> (std::process::ExitStatus, String) {
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve did not stop on SIG{signal}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let logs = self
            .logs
            .take()
            .map(|l| l.join().unwrap())
            .unwrap_or_default();
        (status, logs)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `raw` as written and returns the first bytes the server answers (within 5 s), without
/// sending anything more: for requests whose body never comes.
pub async fn first_answer(app: &TestApp, raw: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the server answered without waiting for the body")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Hyperstack's answer to a create: snapshot `id` of VM 2058, `CREATING`.
pub fn hyperstack_created(id: u64) -> Value {
    serde_json::json!({"status": true, "message": "Snapshot creation is scheduled.", "snapshot": {
        "id": id, "name": "n", "description": "", "vm_id": 2058, "region_id": 3, "status": "CREATING",
        "is_image": false, "size": 0, "labels": [], "created_at": "2025-03-11T09:15:42", "updated_at": "2025-03-11T09:15:42"}})
}

/// The JSON body of a response.
pub async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.unwrap()
}

/// `GET /v1/accounts/{account}/sources`: the status and the body.
pub async fn account_sources(app: &TestApp, t: &str, account: &str) -> (u16, Value) {
    let resp = app.get(&format!("/v1/accounts/{account}/sources"), t).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The `(id, kind)` of each source in a source list, in its order.
pub fn listed_sources(body: &Value) -> Vec<(String, String)> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a source list: {body}"))
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
