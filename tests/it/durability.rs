//! An `Idempotency-Key` holds across a gateway deadline and a `kill -9` in the middle of a
//! vendor create: the retry replays the operation recorded before the call, the simulated vendor
//! receives exactly one create, and the operation is settled from what the vendor lists.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::simulator::{Fault, RunningSimulator, Vendor};

use crate::{
    helpers::*,
    lifecycle::{settle, spawn_with_simulator_and},
};

/// Koyeb creates (`POST /v1/snapshots`) the simulated vendor received.
fn koyeb_creates(sim: &RunningSimulator) -> usize {
    sim.requests(Some(Vendor::Koyeb))
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/snapshots")
        .count()
}

async fn post_with_key(
    url: &str,
    t: &str,
    key: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(format!("{url}/v1/snapshots"))
        .bearer_auth(t)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
}

#[tokio::test]
async fn a_create_cut_by_the_deadline_is_replayed_and_settled_from_the_vendor() {
    let s = spawn_with_simulator_and(Duration::from_millis(200), |c| {
        c.server.request_timeout_ms = 1_000;
    })
    .await;
    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    let body = json!({"account": "koyeb", "source_id": source, "name": "dl-1"});
    // The vendor takes 2 s to answer the create; the gateway gives up after 1 s.
    s.sim.set_fault(
        Vendor::Koyeb,
        Fault {
            latency_ms: Some(2_000),
            times: Some(1),
            ..Fault::default()
        },
    );
    let first = post_with_key(&s.app.url, &s.token, "dl-1", &body)
        .await
        .unwrap();
    assert_problem(first, 504, "deadline_exceeded").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let again = post_with_key(&s.app.url, &s.token, "dl-1", &body)
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    let op = settle(&s.app, &s.token, &again["operation"]).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    let snapshot = op["snapshot_id"]
        .as_str()
        .expect("the snapshot was found by name");
    let got: Value = s
        .app
        .get(&format!("/v1/snapshots/{snapshot}"), &s.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "dl-1");
    assert_eq!(koyeb_creates(&s.sim), 1, "one vendor create");
}

/// `snapgate serve`, pointed at the test's simulator and database.
fn serve(sim: &RunningSimulator, db: &std::path::Path) -> ServeProcess {
    ServeProcess::start(
        db,
        &[
            ("SNAPGATE_SERVER__REQUEST_TIMEOUT_MS", "10000".to_owned()),
            (
                "SNAPGATE_PROVIDERS__KOYEB__BASE_URL",
                sim.base_url(Vendor::Koyeb),
            ),
        ],
    )
}

#[tokio::test]
async fn a_create_cut_by_kill_9_is_replayed_after_restart_and_settled_from_the_vendor() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = snapgate::simulator::start(
        listener,
        snapgate::simulator::SimulatorConfig {
            async_delay: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("snapgate.db");
    let t = token("acme", ALL_SCOPES);
    let gateway = serve(&sim, &db);
    let credentials: serde_json::Map<String, Value> = sim
        .credentials(Vendor::Koyeb)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    let created = reqwest::Client::new()
        .post(format!("{}/v1/accounts", gateway.url))
        .bearer_auth(&t)
        .json(&json!({"id": "koyeb", "provider": "koyeb", "credentials": credentials}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let body =
        json!({"account": "koyeb", "source_id": sim.sources(Vendor::Koyeb)[0], "name": "k9-1"});
    sim.set_fault(
        Vendor::Koyeb,
        Fault {
            latency_ms: Some(2_000),
            times: Some(1),
            ..Fault::default()
        },
    );
    let started = Instant::now();
    let url = gateway.url.clone();
    let (t2, b2) = (t.clone(), body.clone());
    let in_flight = tokio::spawn(async move { post_with_key(&url, &t2, "k9-1", &b2).await });
    // Mid-call: the create has reached the vendor, which has not answered.
    tokio::time::sleep(Duration::from_millis(700)).await;
    gateway.stop("KILL");
    assert!(
        in_flight.await.unwrap().is_err(),
        "the first caller lost its connection"
    );

    let restarted = serve(&sim, &db);
    tokio::time::sleep(Duration::from_millis(2_500).saturating_sub(started.elapsed())).await;
    let again = post_with_key(&restarted.url, &t, "k9-1", &body)
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    let id = again["operation"]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let op = loop {
        let op: Value = reqwest::Client::new()
            .get(format!("{}/v1/operations/{id}", restarted.url))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if op["state"] != "running" && op["state"] != "pending" {
            break op;
        }
        assert!(Instant::now() < deadline, "never settled: {op}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(op["state"], "succeeded", "{op}");
    assert!(
        op["snapshot_id"].as_str().unwrap().starts_with("koyeb:"),
        "{op}"
    );
    assert_eq!(koyeb_creates(&sim), 1, "one vendor create across the crash");
}
