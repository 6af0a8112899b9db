//! Two gateways on one PostgreSQL database (`SNAPGATE_TEST_POSTGRES_URL`), a mock vendor
//! behind both: what one replica changes, the other uses within a second; one key, one create.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::domain::ProviderKind;
use wiremock::{
    matchers::{method, path, query_param},
    Mock, MockServer, Request, ResponseTemplate,
};

use crate::{helpers::*, store_contract::TestDatabase};

/// Two replicas started together on a fresh database, both calling the mock as Hyperstack.
async fn replicas(db: &TestDatabase, mock: &MockServer) -> (TestApp, TestApp) {
    let spawn = || {
        let (url, uri) = (db.url.clone(), mock.uri());
        spawn_app_with(move |c| {
            c.store.url = url;
            c.store.max_connections = 4;
            c.providers
                .set(ProviderKind::Hyperstack, "base_url", format!("{uri}/v1"));
        })
    };
    // Both start at once on the empty database: migrations take turns.
    tokio::join!(spawn(), spawn())
}

/// The `api_key` of the vendor calls received so far.
async fn keys_sent(mock: &MockServer) -> Vec<String> {
    mock.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r: &Request| r.headers.get("api_key")?.to_str().ok().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn what_one_replica_changes_in_an_account_the_other_uses_within_a_second() {
    let Some(db) = TestDatabase::create("replicated accounts").await else {
        return;
    };
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": true, "snapshots": [], "count": 0})),
        )
        .mount(&mock)
        .await;
    let (a, b) = replicas(&db, &mock).await;
    let t = token("acme", ALL_SCOPES);
    let mut body = account_body("hs", "hyperstack");
    body["credentials"]["api_key"] = json!("key-one");
    assert_eq!(a.post("/v1/accounts", &t, &body).await.status(), 201);

    // Created on A, used on B (which now caches it).
    let verified: Value = b
        .post("/v1/accounts/hs/verify", &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["status"], "ok", "{verified}");
    assert_eq!(
        keys_sent(&mock).await.last().map(String::as_str),
        Some("key-one")
    );

    // New credentials through A are what B sends within a second.
    let patch = json!({"credentials": {"api_key": "key-two"}});
    assert_eq!(a.patch("/v1/accounts/hs", &t, &patch).await.status(), 200);
    let changed = Instant::now();
    loop {
        b.post("/v1/accounts/hs/verify", &t, &json!({})).await;
        if keys_sent(&mock).await.last().map(String::as_str) == Some("key-two") {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "B still sends the old credentials after {:?}",
            changed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "replica B sent the new credentials {:?} after the PATCH on A",
        changed.elapsed()
    );

    // Deleted on A: 404 on B within a second, its cached opening notwithstanding.
    assert_eq!(a.delete("/v1/accounts/hs", &t).await.status(), 204);
    let deleted = Instant::now();
    loop {
        let resp = b.post("/v1/accounts/hs/verify", &t, &json!({})).await;
        if resp.status() == 404 {
            assert_problem(resp, 404, "account_not_found").await;
            break;
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(1),
            "B still uses the deleted account"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((a, b));
    db.drop_database().await;
}

#[tokio::test]
async fn one_key_sent_to_both_replicas_at_once_makes_one_vendor_create() {
    let Some(db) = TestDatabase::create("replicated idempotency").await else {
        return;
    };
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/core/virtual-machines/2058/snapshots"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(hyperstack_created(77))
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let (a, b) = replicas(&db, &mock).await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        a.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    let body = json!({"account": "hs", "source_id": "2058", "name": "nightly"});
    let send = |app: &TestApp| {
        let (url, t, body) = (app.url.clone(), t.clone(), body.clone());
        async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/snapshots"))
                .bearer_auth(t)
                .header("idempotency-key", "nightly-2026-12-01")
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let (on_a, on_b) = tokio::join!(send(&a), send(&b));
    let statuses = [on_a.status().as_u16(), on_b.status().as_u16()];
    // One ran; the other replayed its answer or was told the key is in flight.
    assert!(
        statuses.contains(&202) && statuses.iter().all(|s| [202, 409].contains(s)),
        "{statuses:?}"
    );
    let first: Value = if on_a.status() == 202 { on_a } else { on_b }
        .json()
        .await
        .unwrap();
    // A retry on either replica replays the same operation.
    for app in [&a, &b] {
        let again = send(app).await;
        assert_eq!(again.status(), 202);
        assert_eq!(again.headers()["idempotency-replayed"], "true");
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["operation"]["id"], first["operation"]["id"]);
    }
    drop((a, b));
    mock.verify().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_replica_killed_mid_create_loses_nothing_and_the_other_finishes_it() {
    let Some(db) = TestDatabase::create("a replica killed").await else {
        return;
    };
    let mock = MockServer::start().await;
    // The vendor takes its time: replica A is killed while the create is with it.
    Mock::given(method("POST"))
        .and(path("/v1/core/virtual-machines/2058/snapshots"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(hyperstack_created(77))
                .set_delay(Duration::from_millis(1500)),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let made = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": true, "count": 1, "page": 1, "page_size": 100,
            "snapshots": [{"id": 77, "name": "nightly", "description": "", "vm_id": 2058,
                "region_id": 3, "status": "COMPLETE", "is_image": false, "size": 10,
                "labels": [], "created_at": made, "updated_at": made}]})))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": true, "count": 0, "page": 2, "page_size": 100, "snapshots": []})))
        .mount(&mock)
        .await;
    let a = ServeProcess::start(
        std::path::Path::new("unused.db"),
        &[
            ("SNAPGATE_STORE__URL", db.url.clone()),
            (
                "SNAPGATE_PROVIDERS__HYPERSTACK__BASE_URL",
                format!("{}/v1", mock.uri()),
            ),
        ],
    );
    let (b, _) = replicas(&db, &mock).await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        b.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    let body = json!({"account": "hs", "source_id": "2058", "name": "nightly"});
    let post = |url: String| {
        let (t, body) = (t.clone(), body.clone());
        async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/snapshots"))
                .bearer_auth(t)
                .header("idempotency-key", "killed-mid-call")
                .json(&body)
                .send()
                .await
        }
    };
    let on_a = tokio::spawn(post(a.url.clone()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _) = a.stop("KILL");
    assert!(!status.success());
    assert!(
        on_a.await.unwrap().is_err(),
        "A answered before it was killed"
    );

    // The retry on B replays what A recorded before calling the vendor: no second create.
    let again = post(b.url.clone()).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    let id = again["operation"]["id"].as_str().unwrap().to_owned();
    // B settles A's operation from what the vendor shows.
    let started = Instant::now();
    let op = loop {
        let op: Value = b
            .get(&format!("/v1/operations/{id}"), &t)
            .await
            .json()
            .await
            .unwrap();
        if op["state"] != "running" {
            break op;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never settled: {op}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(op["state"], "succeeded", "{op}");
    assert_eq!(op["snapshot_id"], "hs:77");
    drop(b);
    mock.verify().await;
    db.drop_database().await;
}

/// Transactions the database has committed so far (PostgreSQL's own statistics).
async fn commits(db: &TestDatabase) -> i64 {
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    // Statistics are flushed when a backend goes idle: give them a moment.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let row: (i64,) = sqlx::query_as(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    row.0
}

#[tokio::test]
async fn the_hot_path_makes_no_database_round_trip() {
    let Some(db) = TestDatabase::create("hot path").await else {
        return;
    };
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/1402"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(vendor_fixture("hyperstack", "get.json")),
        )
        .mount(&mock)
        .await;
    let (a, _) = replicas(&db, &mock).await;
    let t = token("acme", ALL_SCOPES);
    a.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
        .await;
    // Warm: the account is opened and cached.
    assert_eq!(a.get("/v1/snapshots/hs:1402", &t).await.status(), 200);
    let before = commits(&db).await;
    let started = Instant::now();
    let gets = 300;
    for _ in 0..gets {
        assert_eq!(a.get("/v1/snapshots/hs:1402", &t).await.status(), 200);
    }
    let during = commits(&db).await - before;
    // The replicas' background work (coherence checks, key announcements) commits on its
    // own clock: measured over the same time with no request.
    let took = started.elapsed();
    let idle_from = commits(&db).await;
    tokio::time::sleep(took).await;
    let idle = commits(&db).await - idle_from;
    eprintln!(
        "{gets} snapshot gets committed {during} transactions in {took:?}; idle for as long: {idle}"
    );
    // A round trip per request would commit at least one transaction per get (300); the
    // replicas' own work commits more while they are busy (seen: 20 to 70 above idle).
    assert!(
        during.saturating_sub(idle) < gets / 3,
        "{during} transactions for {gets} gets ({idle} idle)"
    );
    drop(a);
    db.drop_database().await;
}

/// A replica on the test database delivering webhooks (and, when `reconcile`, reconciling),
/// calling the mock as Hyperstack.
async fn delivering_replica(
    db: &TestDatabase,
    mock: &MockServer,
    adjust: impl FnOnce(&mut snapgate::Config),
) -> TestApp {
    let (url, uri) = (db.url.clone(), mock.uri());
    spawn_app_with(move |c| {
        c.store.url = url;
        c.store.max_connections = 4;
        c.providers
            .set(ProviderKind::Hyperstack, "base_url", format!("{uri}/v1"));
        crate::webhooks::delivering(c);
        adjust(c);
    })
    .await
}

/// Counts of each `webhook-id` the receiver got.
async fn ids_received(receiver: &MockServer) -> std::collections::HashMap<String, usize> {
    let mut seen = std::collections::HashMap::new();
    for r in crate::webhooks::received(receiver).await {
        let id = r.headers["webhook-id"].to_str().unwrap().to_owned();
        *seen.entry(id).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn two_replicas_deliver_each_attempt_once() {
    let Some(db) = TestDatabase::create("replicated webhook deliveries").await else {
        return;
    };
    let vendor = MockServer::start().await;
    let receiver = crate::webhooks::receiver().await;
    let (a, b) = tokio::join!(
        delivering_replica(&db, &vendor, |_| {}),
        delivering_replica(&db, &vendor, |_| {})
    );
    let t = token("acme", ALL_SCOPES);
    let hook =
        crate::webhooks::create_webhook(&a, &t, &format!("{}/hook", receiver.uri()), json!([]))
            .await;
    let id = hook["id"].as_str().unwrap();
    // Thirty events queued through both replicas; both workers claim from one outbox.
    const EVENTS: usize = 30;
    for i in 0..EVENTS {
        let app = if i % 2 == 0 { &a } else { &b };
        let resp = app
            .post(&format!("/v1/webhooks/{id}/test"), &t, &json!({}))
            .await;
        assert_eq!(resp.status(), 202);
    }
    crate::webhooks::wait_received(&receiver, EVENTS, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = ids_received(&receiver).await;
    assert_eq!(seen.len(), EVENTS, "distinct events delivered");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let log = crate::webhooks::deliveries(&b, &t, id).await;
    assert_eq!(log.len(), EVENTS);
    for d in &log {
        assert_eq!(d["state"], "succeeded", "{d}");
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
    }
    drop((a, b));
    db.drop_database().await;
}

#[tokio::test]
async fn a_delivery_queued_on_one_replica_wakes_the_others_worker_at_once() {
    let Some(db) = TestDatabase::create("delivery wake-ups across replicas").await else {
        return;
    };
    let vendor = MockServer::start().await;
    let receiver = crate::webhooks::receiver().await;
    // A queues and never delivers; B delivers, but would look on its own only once a minute:
    // only the store's signal (PostgreSQL's notification of the queued delivery) wakes it.
    let (a, b) = tokio::join!(
        delivering_replica(&db, &vendor, |c| c.webhooks.enabled = false),
        delivering_replica(&db, &vendor, |c| c.webhooks.tick_ms = 60_000)
    );
    let t = token("acme", ALL_SCOPES);
    let hook =
        crate::webhooks::create_webhook(&a, &t, &format!("{}/hook", receiver.uri()), json!([]))
            .await;
    let id = hook["id"].as_str().unwrap();
    // B's first look (at its start) is over before anything is queued.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 1..=3 {
        let queued = Instant::now();
        let resp = a
            .post(&format!("/v1/webhooks/{id}/test"), &t, &json!({}))
            .await;
        assert_eq!(resp.status(), 202);
        crate::webhooks::wait_received(&receiver, round, Duration::from_secs(5)).await;
        let took = queued.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "delivery {round} took {took:?}: B waited for its tick, not the signal"
        );
    }
    drop((a, b));
    db.drop_database().await;
}

#[tokio::test]
async fn a_replica_killed_mid_delivery_loses_no_event() {
    let Some(db) = TestDatabase::create("webhook delivery across a crash").await else {
        return;
    };
    let vendor = MockServer::start().await;
    // The first attempt hangs (the replica making it dies meanwhile); later ones succeed.
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let short_lease = |c: &mut snapgate::Config| {
        c.webhooks.lease_ms = 1_500;
        c.webhooks.timeout_ms = 1_000;
    };
    let a = delivering_replica(&db, &vendor, short_lease).await;
    let t = token("acme", ALL_SCOPES);
    let hook =
        crate::webhooks::create_webhook(&a, &t, &format!("{}/hook", receiver.uri()), json!([]))
            .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let queued: Value = a
        .post(&format!("/v1/webhooks/{id}/test"), &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    // A is in the middle of the attempt: the receiver holds it.
    crate::webhooks::wait_received(&receiver, 1, Duration::from_secs(5)).await;
    let b = delivering_replica(&db, &vendor, short_lease).await;
    drop(a);
    let killed = Instant::now();
    // B makes the attempt once A's claim lapses, with the same webhook-id.
    let got = crate::webhooks::wait_received(&receiver, 2, Duration::from_secs(10)).await;
    eprintln!("replica B delivered {:?} after A died", killed.elapsed());
    let id_of = |r: &Request| r.headers["webhook-id"].to_str().unwrap().to_owned();
    assert_eq!(id_of(&got[0]), id_of(&got[1]));
    assert_eq!(id_of(&got[1]), queued["event_id"].as_str().unwrap());
    let started = Instant::now();
    let log = loop {
        let log = crate::webhooks::deliveries(&b, &t, &id).await;
        if log[0]["state"] == "succeeded" {
            break log;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The dead replica recorded nothing; B's attempt is the one logged.
    assert_eq!(
        log[0]["attempts"].as_array().unwrap().len(),
        1,
        "{:?}",
        log[0]
    );
    drop(b);
    db.drop_database().await;
}

#[tokio::test]
async fn two_reconciling_replicas_check_each_operation_alone() {
    let Some(db) = TestDatabase::create("replicated reconciler").await else {
        return;
    };
    let vendor = MockServer::start().await;
    // Hyperstack: the create is accepted as `CREATING`; each read says so until the fourth.
    Mock::given(method("POST"))
        .and(path("/v1/core/virtual-machines/2058/snapshots"))
        .respond_with(ResponseTemplate::new(200).set_body_json(hyperstack_created(77)))
        .mount(&vendor)
        .await;
    let snapshot = |status: &str| {
        let mut body = hyperstack_created(77);
        body["snapshot"]["status"] = json!(status);
        body
    };
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/77"))
        .respond_with(ResponseTemplate::new(200).set_body_json(snapshot("CREATING")))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&vendor)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/77"))
        .respond_with(ResponseTemplate::new(200).set_body_json(snapshot("SUCCESS")))
        .with_priority(2)
        .mount(&vendor)
        .await;
    let reconciling = |c: &mut snapgate::Config| {
        c.reconciler.enabled = true;
        c.reconciler.tick_ms = 10;
        c.reconciler.first_check_ms = 100;
        c.reconciler.max_interval_secs = 1;
    };
    let (a, b) = tokio::join!(
        delivering_replica(&db, &vendor, reconciling),
        delivering_replica(&db, &vendor, reconciling)
    );
    let t = token("acme", ALL_SCOPES);
    let receiver = crate::webhooks::receiver().await;
    let hook = crate::webhooks::create_webhook(
        &b,
        &t,
        &format!("{}/hook", receiver.uri()),
        json!(["operation.succeeded"]),
    )
    .await;
    let secret = hook["secret"].as_str().unwrap();
    assert_eq!(
        a.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    let created = a
        .post(
            "/v1/snapshots",
            &t,
            &json!({"account": "hs", "source_id": "2058", "name": "nightly"}),
        )
        .await;
    assert_eq!(created.status(), 202);
    // Nobody reads it; both replicas reconcile; the receiver is told once.
    let got = crate::webhooks::wait_received(&receiver, 1, Duration::from_secs(15)).await;
    crate::webhooks::verify(secret, &got[0]).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(crate::webhooks::received(&receiver).await.len(), 1);
    // Four reads (three CREATING, one SUCCESS), not four per replica: a check is made by one
    // replica at a time, and a finished operation is never checked again.
    let reads = vendor
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method == wiremock::http::Method::GET)
        .count();
    eprintln!("two replicas made {reads} vendor reads to finish one operation");
    assert_eq!(reads, 4);
    drop((a, b));
    db.drop_database().await;
}

/// Issue 21 item 4: a master-key rollout nobody notices. Replica A restarts with a new key
/// (the old one as previous) while replica B still has only the old key: A seals new
/// credentials under the old key until B holds the new one too, so B opens everything A
/// writes; a process that cannot open a stored record is not ready; `keys rotate` refuses to
/// re-seal under a key a live replica lacks.
#[tokio::test]
async fn a_master_key_rollout_is_safe_while_replicas_restart_one_by_one() {
    let Some(db) = TestDatabase::create("key rollout").await else {
        return;
    };
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/1402"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": true, "snapshot":
                {"id": 1402, "name": "n", "description": "", "vm_id": 1, "region_id": 1,
                 "status": "COMPLETE", "is_image": false, "size": 1, "labels": "",
                 "created_at": "2025-01-01T00:00:00", "updated_at": "2025-01-01T00:00:00"}})),
        )
        .mount(&mock)
        .await;
    use base64::Engine;
    let key = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let (old, new) = (key(1), key(2));
    let spawn = |active: String, previous: Option<String>| {
        let (url, uri) = (db.url.clone(), mock.uri());
        spawn_app_with(move |c| {
            c.store.url = url;
            c.store.max_connections = 4;
            c.master_key = Some(active.into());
            c.previous_master_keys = previous.map(Into::into);
            c.providers
                .set(ProviderKind::Hyperstack, "base_url", format!("{uri}/v1"));
        })
    };
    let b = spawn(old.clone(), None).await;
    // A restarts first, with the new key; B still has only the old one.
    let a = spawn(new.clone(), Some(old.clone())).await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        a.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    // B opens what A sealed: A sealed it under the key both hold.
    let resp = b.get("/v1/snapshots/hs:1402", &t).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(b.get("/readyz", &t).await.status(), 200);

    // `keys rotate` under the new key now would leave B unable to open anything: refused.
    let rotate = std::process::Command::new(env!("CARGO_BIN_EXE_snapgate"))
        .args(["keys", "rotate"])
        .env("SNAPGATE_STORE__URL", &db.url)
        .env("SNAPGATE_MASTER_KEY", &new)
        .env("SNAPGATE_PREVIOUS_MASTER_KEYS", &old)
        .output()
        .unwrap();
    assert!(!rotate.status.success());
    let said = String::from_utf8_lossy(&rotate.stderr);
    assert!(said.contains("do not hold key"), "{said}");

    // B restarts with the new key too; once both announced it, A seals under it.
    drop(b);
    let b = spawn(new.clone(), Some(old.clone())).await;
    // The stopped B withdrew its announcement; A hears the new B at its next announcement.
    tokio::time::sleep(snapgate::service::KEY_ANNOUNCE_EVERY + Duration::from_secs(1)).await;
    let body = json!({"id": "hs2", "provider": "hyperstack", "credentials": {"api_key": "k2"}});
    assert_eq!(a.post("/v1/accounts", &t, &body).await.status(), 201);
    assert_eq!(b.get("/v1/snapshots/hs2:1402", &t).await.status(), 200);

    // A process holding only the old key is not ready now: the new account is sealed under a
    // key it lacks.
    let stale = spawn(old.clone(), None).await;
    let resp = stale.get("/readyz", &t).await;
    let p = assert_problem(resp, 503, "master_key_missing").await;
    assert!(p["detail"].as_str().unwrap().contains("k-"), "{p}");
    drop((a, b, stale));
    db.drop_database().await;
}

/// Issue 21 item 4: a replica that cannot open an endpoint's secret (it lacks the key) makes no
/// attempt — nothing is sent unsigned and nothing is counted against the retry schedule — and a
/// replica holding the key delivers it.
#[tokio::test]
async fn a_delivery_a_replica_cannot_sign_is_no_attempt() {
    let Some(db) = TestDatabase::create("unsigned delivery").await else {
        return;
    };
    let mock = MockServer::start().await;
    let receiver = crate::webhooks::receiver().await;
    use base64::Engine;
    let other_key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    // The endpoint is made (and its secret sealed) by a replica that does not deliver.
    let maker = delivering_replica(&db, &mock, |c| c.webhooks.enabled = false).await;
    let t = token("acme", ALL_SCOPES);
    let hook =
        crate::webhooks::create_webhook(&maker, &t, &format!("{}/hook", receiver.uri()), json!([]))
            .await;
    let id = hook["id"].as_str().unwrap();
    // Another record is sealed under a second key (a process refuses to start when its keys
    // open none of the stored records: this one opens that record, not the endpoint's secret).
    {
        use snapgate::{domain::Credentials, store::Sealer};
        let store = snapgate::store::connect(&db.url, 2).await.unwrap();
        let account: snapgate::domain::AccountId = "sealed-elsewhere".parse().unwrap();
        let creds = Credentials::new(std::collections::BTreeMap::from([(
            "token".to_owned(),
            secrecy::SecretString::from("tok-elsewhere".to_owned()),
        )]));
        store
            .insert_account(snapgate::store::NewAccount {
                tenant: "acme".to_owned(),
                credentials: Sealer::from_bytes(&[9u8; 32]).seal_account("acme", &account, &creds),
                id: account,
                provider: ProviderKind::Koyeb,
                display_name: None,
                settings: serde_json::Map::new(),
                now: chrono::Utc::now(),
            })
            .await
            .unwrap();
    }
    // The only delivering replica holds that other key alone.
    let stranger = delivering_replica(&db, &mock, move |c| {
        c.master_key = Some(other_key.into());
    })
    .await;
    let resp = maker
        .post(&format!("/v1/webhooks/{id}/test"), &t, &json!({}))
        .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(ids_received(&receiver).await.is_empty(), "sent unsigned");
    let log = crate::webhooks::deliveries(&maker, &t, id).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        log[0]["attempts"],
        json!([]),
        "no attempt recorded: {}",
        log[0]
    );
    // A replica that holds the key delivers it.
    drop(stranger);
    let keeper = delivering_replica(&db, &mock, |_| {}).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids_received(&receiver).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "never delivered by the replica holding the key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((maker, keeper));
    db.drop_database().await;
}
