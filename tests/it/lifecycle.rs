//! One lifecycle contract, run against every provider through the simulator:
//! create → succeeded → available → rename → restore → delete → gone.
//!
//! What each step expects comes from the provider's declared fields and capabilities, as
//! `GET /v1/providers` shows them, never from its name: a new provider passes by declaring
//! itself truthfully.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::simulator::{self, RunningSimulator, SimulatorConfig, Variants, Vendor};

use crate::helpers::*;

pub struct SimApp {
    pub app: TestApp,
    pub sim: RunningSimulator,
    pub token: String,
}

/// A simulator (fast async progress) and a gateway pointed at it, with one account per vendor
/// named after the vendor.
pub async fn spawn_with_simulator(delay: Duration) -> SimApp {
    spawn_with_simulator_and(delay, |_| {}).await
}

/// As [`spawn_with_simulator`], adjusting the gateway's config after it points at the simulator.
pub async fn spawn_with_simulator_and(
    delay: Duration,
    adjust: impl FnOnce(&mut snapgate::Config),
) -> SimApp {
    spawn_with_variants(delay, Variants::default(), adjust).await
}

/// As [`spawn_with_simulator_and`], the simulator playing `variants`.
pub async fn spawn_with_variants(
    delay: Duration,
    variants: Variants,
    adjust: impl FnOnce(&mut snapgate::Config),
) -> SimApp {
    spawn_with_store(delay, variants, adjust, |store| store).await
}

/// As [`spawn_with_variants`], the gateway's store passed through `wrap`.
pub async fn spawn_with_store(
    delay: Duration,
    variants: Variants,
    adjust: impl FnOnce(&mut snapgate::Config),
    wrap: impl FnOnce(
        std::sync::Arc<dyn snapgate::store::Store>,
    ) -> std::sync::Arc<dyn snapgate::store::Store>,
) -> SimApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = simulator::start(
        listener,
        SimulatorConfig {
            async_delay: delay,
            variants,
            ..SimulatorConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    snapgate::demo::point_at_simulator(&mut config, &sim);
    adjust(&mut config);
    let app = spawn_config_wrapping(config, dir, wrap).await;
    let token = token("acme", ALL_SCOPES);
    add_simulator_accounts(&app, &sim, &token).await;
    SimApp { app, sim, token }
}

/// Gives the caller of `token` one account per vendor of `sim`, named after the vendor.
pub async fn add_simulator_accounts(app: &TestApp, sim: &RunningSimulator, token: &str) {
    for vendor in Vendor::ALL {
        let credentials: serde_json::Map<String, Value> = sim
            .credentials(vendor)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        // A setting with a fixed set of values (a region) gets the first of them.
        let provider = declared(app, token, vendor).await;
        let settings: serde_json::Map<String, Value> = provider["setting_fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| Some((f["name"].as_str()?.to_owned(), f["allowed"][0].clone())))
            .filter(|(_, v)| !v.is_null())
            .collect();
        let body = json!({"id": vendor.as_str(), "provider": vendor.as_str(), "credentials": credentials, "settings": settings});
        assert_eq!(app.post("/v1/accounts", token, &body).await.status(), 201);
    }
}

/// Polls an operation until it is terminal; returns it.
pub async fn settle(app: &TestApp, t: &str, op: &Value) -> Value {
    let id = op["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let op: Value = app
            .get(&format!("/v1/operations/{id}"), t)
            .await
            .json()
            .await
            .unwrap();
        if op["state"] == "succeeded" || op["state"] == "failed" {
            return op;
        }
        assert!(Instant::now() < deadline, "operation never finished: {op}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn accepted(resp: reqwest::Response, what: &str) -> Value {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 202, "{what}: {body}");
    body
}

/// The provider as `GET /v1/providers` declares it.
pub async fn declared(app: &TestApp, t: &str, vendor: Vendor) -> Value {
    let providers: Value = app.get("/v1/providers", t).await.json().await.unwrap();
    providers["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == vendor.as_str())
        .unwrap_or_else(|| panic!("{vendor:?} is not among the providers: {providers}"))
        .clone()
}

/// The providers that declare a capability.
async fn supporting(app: &TestApp, t: &str, capability: &str) -> Value {
    let providers: Value = app.get("/v1/providers", t).await.json().await.unwrap();
    providers["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["capabilities"][capability] == true)
        .map(|p| p["name"].clone())
        .collect()
}

pub async fn lifecycle(s: &SimApp, vendor: Vendor) {
    let (app, t) = (&s.app, s.token.as_str());
    let account = vendor.as_str();
    let source = s.sim.sources(vendor)[0].clone();
    let name = format!("contract-{account}");
    let provider = declared(app, t, vendor).await;
    let can = |capability: &str| provider["capabilities"][capability] == true;

    // Create (a description only where the provider keeps one; replacing an existing
    // snapshot where the provider keeps one per source).
    let mut body = json!({"account": account, "source_id": source, "name": name});
    if can("describe") {
        body["description"] = json!("contract run");
    }
    if can("create_replaces_existing") {
        body["replace_existing"] = json!(true);
    }
    let created = accepted(app.post("/v1/snapshots", t, &body).await, "create").await;
    let op = settle(app, t, &created["operation"]).await;
    assert_eq!(op["state"], "succeeded", "{vendor:?} create: {op}");
    let id = op["snapshot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{vendor:?}: create resolved no snapshot id: {op}"))
        .to_owned();
    assert!(id.starts_with(&format!("{account}:")));

    // Get shows it available.
    let snap: Value = app
        .get(&format!("/v1/snapshots/{id}"), t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(snap["status"], "available", "{vendor:?}: {snap}");
    assert_eq!(snap["source"]["id"], source.as_str(), "{vendor:?}: {snap}");

    // Rename where supported; 501 elsewhere.
    let renamed = format!("{name}-renamed");
    let resp = app
        .patch(&format!("/v1/snapshots/{id}"), t, &json!({"name": renamed}))
        .await;
    if can("rename") {
        let op = settle(app, t, &accepted(resp, "rename").await["operation"]).await;
        assert_eq!(op["state"], "succeeded", "{vendor:?} rename: {op}");
        let snap: Value = app
            .get(&format!("/v1/snapshots/{id}"), t)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(snap["name"], renamed.as_str(), "{vendor:?}: {snap}");
    } else {
        assert_problem(resp, 501, "unsupported_operation").await;
    }

    // Restore (to a named new resource where the provider makes one).
    let to_new_resource = can("restore_to_new_resource");
    let restore = if to_new_resource {
        json!({"new_name": format!("restored-{account}")})
    } else {
        json!({})
    };
    let restored = accepted(
        app.post(&format!("/v1/snapshots/{id}/restore"), t, &restore)
            .await,
        "restore",
    )
    .await;
    let op = settle(app, t, &restored["operation"]).await;
    assert_eq!(op["state"], "succeeded", "{vendor:?} restore: {op}");
    if to_new_resource {
        // The result names the new resource: `vm_id`, `volume_id`, … after the source kind.
        let field = format!("{}_id", provider["source_kind"].as_str().unwrap());
        assert!(
            op["result"][&field].is_string(),
            "{vendor:?}: {field}: {op}"
        );
    }

    // Image where declared; elsewhere 501 naming who can.
    let resp = app
        .post(
            &format!("/v1/snapshots/{id}/image"),
            t,
            &json!({"name": format!("img-{account}")}),
        )
        .await;
    if can("create_image") {
        accepted(resp, "image").await;
    } else {
        let p = assert_problem(resp, 501, "unsupported_operation").await;
        assert_eq!(p["supported_by"], supporting(app, t, "create_image").await);
    }

    // Delete; then the snapshot is gone (404) or reported deleted.
    let deleted = accepted(
        app.delete(&format!("/v1/snapshots/{id}"), t).await,
        "delete",
    )
    .await;
    let op = settle(app, t, &deleted["operation"]).await;
    assert_eq!(op["state"], "succeeded", "{vendor:?} delete: {op}");
    let resp = app.get(&format!("/v1/snapshots/{id}"), t).await;
    if resp.status() == 200 {
        let snap: Value = resp.json().await.unwrap();
        assert_eq!(snap["status"], "deleted", "{vendor:?}: {snap}");
    } else {
        assert_problem(resp, 404, "snapshot_not_found").await;
    }
}

#[tokio::test]
async fn every_provider_passes_the_snapshot_lifecycle_contract() {
    let s = spawn_with_simulator(Duration::from_millis(300)).await;
    let runs = Vendor::ALL.map(|v| lifecycle(&s, v));
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn hostinger_create_is_409_when_the_vm_already_has_a_snapshot() {
    let s = spawn_with_simulator(Duration::from_millis(300)).await;
    let vm = s.sim.sources(Vendor::Hostinger)[0].clone();
    let body =
        json!({"account": "hostinger", "source_id": vm, "name": "x", "replace_existing": true});
    let op = settle(
        &s.app,
        &s.token,
        &accepted(s.app.post("/v1/snapshots", &s.token, &body).await, "create").await["operation"],
    )
    .await;
    assert_eq!(op["state"], "succeeded");
    s.sim.clear_requests();
    let body = json!({"account": "hostinger", "source_id": vm, "name": "x"});
    let p = assert_problem(
        s.app.post("/v1/snapshots", &s.token, &body).await,
        409,
        "snapshot_exists",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("replace_existing"));
    assert!(
        s.sim
            .requests(Some(Vendor::Hostinger))
            .iter()
            .all(|r| r.method != "POST"),
        "nothing was overwritten"
    );
}
