//! Operations that finish by themselves: the reconciler advances work nobody reads, within a
//! bounded number of vendor calls; long-poll answers when the work changes; a deadline fails
//! work the vendor never finishes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::{domain::ProviderKind, simulator::Vendor};
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

use crate::{helpers::*, lifecycle::*};

fn reconciling(c: &mut snapgate::Config) {
    c.reconciler.enabled = true;
    c.reconciler.tick_ms = 20;
    c.reconciler.first_check_ms = 200;
}

/// Starts a create and returns its operation, never reading it afterwards.
async fn start_create(s: &SimApp, vendor: Vendor) -> Value {
    let source = s.sim.sources(vendor)[0].clone();
    let mut body = json!({"account": vendor.as_str(), "source_id": source, "name": "unattended"});
    if vendor == Vendor::Hostinger {
        body["replace_existing"] = json!(true);
    }
    accepted(s.app.post("/v1/snapshots", &s.token, &body).await, "create").await["operation"]
        .clone()
}

/// The operation as stored (`GET /v1/operations` lists without asking the vendor).
async fn stored(s: &SimApp, id: &str) -> Value {
    let list: Value = s
        .app
        .get("/v1/operations?page_size=200", &s.token)
        .await
        .json()
        .await
        .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("operation {id} is not listed: {list}"))
}

#[tokio::test]
async fn an_operation_nobody_reads_finishes_with_a_few_vendor_checks() {
    let s = spawn_with_simulator_and(Duration::from_millis(500), reconciling).await;
    let mut ops = Vec::new();
    for vendor in Vendor::ALL {
        let op = start_create(&s, vendor).await;
        assert_eq!(op["state"], "running", "{vendor:?}: {op}");
        assert!(op["next_check_at"].is_string(), "{op}");
        ops.push((vendor, op["id"].as_str().unwrap().to_owned()));
    }
    let started = Instant::now();
    for (vendor, id) in &ops {
        let op = loop {
            let op = stored(&s, id).await;
            if op["state"] != "running" {
                break op;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{vendor:?}: nobody read it and it never finished: {op}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(op["state"], "succeeded", "{vendor:?}: {op}");
        assert!(op["next_check_at"].is_null(), "{vendor:?}: {op}");
    }
    // Bounded load: with checks at 0.2, 0.6, 1.4, 3.0 s after the start and the vendor done
    // after 0.5 s (Syminet confirms through its account-wide list, so a check may read twice),
    // each operation cost a handful of vendor reads.
    for (vendor, _) in &ops {
        let reads = s
            .sim
            .requests(Some(*vendor))
            .iter()
            .filter(|r| r.method == "GET")
            .count();
        eprintln!("{vendor:?}: {reads} vendor reads until done");
        assert!(reads <= 8, "{vendor:?} was read {reads} times");
    }
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_the_operation_changes() {
    let s = spawn_with_simulator_and(Duration::from_millis(800), reconciling).await;
    let op = start_create(&s, Vendor::Koyeb).await;
    let id = op["id"].as_str().unwrap();
    let asked = Instant::now();
    let resp = s
        .app
        .get(&format!("/v1/operations/{id}?wait=20s"), &s.token)
        .await;
    let answered = chrono::Utc::now();
    assert_eq!(resp.status(), 200);
    let op: Value = resp.json().await.unwrap();
    assert_ne!(op["state"], "running", "{op}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    let changed = chrono::DateTime::parse_from_rfc3339(op["updated_at"].as_str().unwrap()).unwrap();
    let lag = answered - changed.with_timezone(&chrono::Utc);
    eprintln!(
        "long-poll answered {} ms after the change",
        lag.num_milliseconds()
    );
    assert!(
        lag.num_milliseconds() < 200,
        "answered {lag} after the change"
    );

    // A finished operation answers at once; a bad wait is a 400 naming the field.
    let again = Instant::now();
    let resp = s
        .app
        .get(&format!("/v1/operations/{id}?wait=20s"), &s.token)
        .await;
    assert_eq!(resp.status(), 200);
    assert!(again.elapsed() < Duration::from_millis(500));
    for bad in [
        "soon", "-1", "1h", "%2B5s", "%205s", "", "61", "61s", "60001ms",
    ] {
        let resp = s
            .app
            .get(&format!("/v1/operations/{id}?wait={bad}"), &s.token)
            .await;
        let p = assert_problem(resp, 400, "invalid_query").await;
        assert_eq!(p["field"], "wait");
    }
}

#[tokio::test]
async fn a_long_poll_on_unchanging_work_answers_when_the_wait_ends() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/core/virtual-machines/2058/snapshots"))
        .respond_with(ResponseTemplate::new(200).set_body_json(hyperstack_created(5)))
        .mount(&mock)
        .await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| {
        c.providers
            .set(ProviderKind::Hyperstack, "base_url", format!("{uri}/v1"));
        c.reconciler.enabled = false;
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    app.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
        .await;
    let body = json!({"account": "hs", "source_id": "2058", "name": "n"});
    let op = accepted(app.post("/v1/snapshots", &t, &body).await, "create").await;
    let id = op["operation"]["id"].as_str().unwrap();
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/5"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": true,
            "snapshot": hyperstack_created(5)["snapshot"].clone()
        })))
        .mount(&mock)
        .await;
    let asked = Instant::now();
    let op: Value = app
        .get(&format!("/v1/operations/{id}?wait=700ms"), &t)
        .await
        .json()
        .await
        .unwrap();
    let waited = asked.elapsed();
    assert_eq!(op["state"], "running", "{op}");
    assert!(
        waited >= Duration::from_millis(650) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn work_the_vendor_never_finishes_fails_at_its_deadline() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/core/virtual-machines/2058/snapshots"))
        .respond_with(ResponseTemplate::new(200).set_body_json(hyperstack_created(6)))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/6"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": true,
            "snapshot": hyperstack_created(6)["snapshot"].clone()
        })))
        .mount(&mock)
        .await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| {
        c.providers
            .set(ProviderKind::Hyperstack, "base_url", format!("{uri}/v1"));
        reconciling(c);
        c.reconciler.deadline_secs = 1;
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    app.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
        .await;
    let body = json!({"account": "hs", "source_id": "2058", "name": "n"});
    let op = accepted(app.post("/v1/snapshots", &t, &body).await, "create").await;
    let id = op["operation"]["id"].as_str().unwrap();
    let op: Value = app
        .get(&format!("/v1/operations/{id}?wait=5s"), &t)
        .await
        .json()
        .await
        .unwrap();
    let op = if op["state"] == "running" {
        app.get(&format!("/v1/operations/{id}?wait=5s"), &t)
            .await
            .json()
            .await
            .unwrap()
    } else {
        op
    };
    assert_eq!(op["state"], "failed", "{op}");
    assert_eq!(op["error"]["code"], "operation_deadline_exceeded", "{op}");
    assert_eq!(op["error"]["status"], 504, "{op}");
}

/// Issue 21: checks are pipelined, so one slow vendor holds one slot of the reconciler, not
/// every other tenant's operation behind a round that waits for it.
#[tokio::test]
async fn a_slow_vendor_check_does_not_hold_the_other_operations() {
    let s = spawn_with_simulator_and(Duration::from_millis(300), |c| {
        reconciling(c);
        c.reconciler.max_concurrent_checks = 2;
    })
    .await;
    let slow = start_create(&s, Vendor::Hyperstack).await;
    // From now on every Hyperstack call takes 6 s: its checks are slow.
    s.sim.set_fault(
        Vendor::Hyperstack,
        snapgate::simulator::Fault {
            latency_ms: Some(6_000),
            ..Default::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let fast = start_create(&s, Vendor::Koyeb).await;
    let id = fast["id"].as_str().unwrap();
    let op = loop {
        let op = stored(&s, id).await;
        if op["state"] != "running" {
            break op;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the fast operation waited for the slow one: {op}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(op["state"], "succeeded", "{op}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "finished after {:?}, behind a 6 s check of another vendor",
        started.elapsed()
    );
    assert_eq!(
        stored(&s, slow["id"].as_str().unwrap()).await["state"],
        "running"
    );
    s.sim.clear_faults();
}

/// Issue 21: a replica that dies holding claims frees them within the configured lease
/// (default well under 10 s), and a live one renews its claims while its check runs.
#[tokio::test]
async fn claims_last_the_configured_lease_and_are_renewed_while_held() {
    assert!(snapgate::service::ReconcilerConfig::default().claim_lease_secs <= 10);
    let dir = tempfile::tempdir().unwrap();
    let store = snapgate::store::SqliteStore::open(&dir.path().join("s.db").display().to_string())
        .await
        .unwrap();
    use snapgate::store::Store;
    let now = chrono::Utc::now();
    let op = {
        let mut op: snapgate::domain::Operation = serde_json::from_value(json!({
            "id": "op_1", "kind": "create", "state": "running", "account": "a",
            "provider": "koyeb", "snapshot_id": null, "result": null,
            "vendor_ref": {"kind": "none", "id": null},
            "created_at": now.to_rfc3339(), "updated_at": now.to_rfc3339(),
            "finished_at": null, "error": null, "completion": "observed",
            "completion_note": null, "next_check_at": now.to_rfc3339()
        }))
        .unwrap();
        op.next_check_at = Some(now);
        op
    };
    store.insert_operation("acme", &op, &[]).await.unwrap();
    let lease = chrono::TimeDelta::seconds(2);
    let first = store.claim_due(now, now + lease, 10, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    // Held: nobody else gets it; renewed, it stays held past the first lease.
    assert!(store
        .claim_due(now, now + lease, 10, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .renew_claim("acme", "op_1", now + lease * 3)
        .await
        .unwrap());
    let later = now + lease + chrono::TimeDelta::milliseconds(500);
    assert!(store
        .claim_due(later, later + lease, 10, 10)
        .await
        .unwrap()
        .is_empty());
    // The holder dies (no more renewals): the claim lapses and another process takes it.
    let after = now + lease * 3 + chrono::TimeDelta::milliseconds(100);
    assert_eq!(
        store
            .claim_due(after, after + lease, 10, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Issue 24: on shutdown the process drains: readiness answers `503 draining` at once, a
/// long-poll in flight is answered with the operation as it stands (not an empty reply), and
/// only after `server.drain_delay_ms` does the listener close.
#[tokio::test]
async fn on_shutdown_readiness_drains_first_and_long_polls_get_their_operation() {
    let mut s = spawn_with_simulator_and(Duration::from_secs(60), |c| {
        c.server.drain_delay_ms = 1_500;
    })
    .await;
    let op = start_create(&s, Vendor::Koyeb).await;
    let id = op["id"].as_str().unwrap().to_owned();
    let poll = {
        let url = format!("{}/v1/operations/{id}?wait=30s", s.app.url);
        let (client, t) = (s.app.client.clone(), s.token.clone());
        tokio::spawn(async move { client.get(url).bearer_auth(t).send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished());
    s.app.begin_shutdown();
    let started = Instant::now();
    let answered = poll.await.unwrap().expect("the long-poll got an answer");
    assert_eq!(answered.status(), 200);
    let op: Value = answered.json().await.unwrap();
    assert_eq!(op["id"], id.as_str());
    assert_eq!(op["state"], "running");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the long-poll waited {:?} into the shutdown",
        started.elapsed()
    );
    // Still serving, but not ready: a load balancer takes it out of rotation.
    let ready = s
        .app
        .client
        .get(format!("{}/readyz", s.app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.headers()["retry-after"], "1");
    assert_problem(ready, 503, "draining").await;
    assert_eq!(
        s.app.get("/v1/accounts", &s.token).await.status(),
        200,
        "requests are still served while draining"
    );
    // After the delay the listener closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s
        .app
        .client
        .get(format!("{}/healthz", s.app.url))
        .send()
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "the listener never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(1_400));
}
