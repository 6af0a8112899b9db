//! Promises under faults (issue 21): the gateway's store failing at each step of a create — before
//! the vendor call, right after the vendor accepted it, after everything was recorded — never
//! makes a second snapshot at the vendor for one `Idempotency-Key`, never leaves a snapshot the
//! vendor made behind a `failed` operation, and never reports a failure it cannot know.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::simulator::{RunningSimulator, Variants, Vendor};
use snapgate::store::faulty::{FaultPlan, Faulty};

use crate::lifecycle::{settle, spawn_with_store, SimApp};

fn koyeb_creates(sim: &RunningSimulator) -> usize {
    sim.requests(Some(Vendor::Koyeb))
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/snapshots")
        .count()
}

async fn post_with_key(s: &SimApp, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut rb = reqwest::Client::new()
        .post(format!("{}/v1/snapshots", s.app.url))
        .bearer_auth(&s.token)
        .json(body);
    if let Some(key) = key {
        rb = rb.header("idempotency-key", key);
    }
    rb.send().await.unwrap()
}

/// The events logged for one operation, by type.
async fn events_of(s: &SimApp, op_id: &str) -> Vec<String> {
    let page: Value = s
        .app
        .get("/v1/events?page_size=200", &s.token)
        .await
        .json()
        .await
        .unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["operation"]["id"] == op_id)
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_store_failure_at_any_step_of_a_create_makes_one_snapshot_per_key() {
    let plan = Arc::new(FaultPlan::default());
    let wrapped = plan.clone();
    let s = spawn_with_store(
        Duration::from_millis(200),
        Variants::default(),
        |c| {
            c.reconciler.first_check_ms = 200;
            c.reconciler.tick_ms = 100;
        },
        move |store| Faulty::wrap(store, wrapped),
    )
    .await;
    let volume = s.sim.sources(Vendor::Koyeb)[0].clone();
    // (what fails, calls of it let through first): before the vendor call (the intent, the
    // key's 202), right after the vendor accepted (recording its answer), and at the very end
    // (the key's final answer).
    let steps: [(&str, u32); 4] = [
        ("insert_operation", 0),
        ("finish_idempotent", 0),
        ("update_operation", 0),
        ("finish_idempotent", 1),
    ];
    for (with_key, (method, pass)) in [true, false]
        .into_iter()
        .flat_map(|k| steps.map(move |step| (k, step)))
    {
        let name = format!("f-{method}-{pass}-{with_key}");
        let key = with_key.then(|| name.clone());
        let body = json!({"account": "koyeb", "source_id": volume, "name": name});
        s.sim.clear_requests();
        let asked = chrono::Utc::now();
        plan.fail(method, pass, 1);
        let first = post_with_key(&s, key.as_deref(), &body).await;
        let status = first.status().as_u16();
        let first: Value = first.json().await.unwrap();
        assert!(
            status == 202 || status == 503,
            "{name}: a store failure is 503 store_unavailable, not {status}: {first}"
        );
        if status == 503 {
            assert_eq!(first["code"], "store_unavailable", "{name}: {first}");
            assert_eq!(plan.failed(method), 1, "{name}: the fault was met");
        }
        // The caller retries with its key (without one, a caller cannot retry safely: it
        // reads the operations instead).
        let op = if let Some(key) = key.as_deref() {
            let deadline = Instant::now() + Duration::from_secs(10);
            let again = loop {
                let again = post_with_key(&s, Some(key), &body).await;
                if again.status() == 202 {
                    break again;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name}: the retry never got its 202"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let again: Value = again.json().await.unwrap();
            again["operation"].clone()
        } else {
            let ops: Value = s
                .app
                .get("/v1/operations?account=koyeb&page_size=1", &s.token)
                .await
                .json()
                .await
                .unwrap();
            let newest = &ops["items"][0];
            let started: chrono::DateTime<chrono::Utc> =
                newest["created_at"].as_str().unwrap().parse().unwrap();
            if started < asked {
                // No operation was started (the intent could not be stored): nothing made.
                plan.fail(method, 0, 0);
                assert_eq!(koyeb_creates(&s.sim), 0, "{name}");
                continue;
            }
            newest.clone()
        };
        plan.fail(method, 0, 0);
        let creates = koyeb_creates(&s.sim);
        let op = settle(&s.app, &s.token, &op).await;
        if creates == 0 {
            // The fault came before the vendor call: nothing was made, and the operation (if
            // one is shown) does not claim a snapshot.
            assert!(op["snapshot_id"].is_null(), "{name}: {op}");
            assert!(!with_key, "{name}: a retry with the key made no snapshot");
            continue;
        }
        assert_eq!(creates, 1, "{name}: one vendor create per key");
        assert_eq!(op["state"], "succeeded", "{name}: {op}");
        let snapshot = op["snapshot_id"].as_str().expect("names its snapshot");
        let got: Value = s
            .app
            .get(&format!("/v1/snapshots/{snapshot}"), &s.token)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(got["name"], name.as_str(), "{name}: {got}");
        let events = events_of(&s, op["id"].as_str().unwrap()).await;
        assert!(
            !events.iter().any(|e| e == "operation.failed"),
            "{name}: {events:?}"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| *e == "operation.succeeded")
                .count(),
            1,
            "{name}: {events:?}"
        );
    }
}

/// Issue 21 item 6: during a store outage, a snapshot read that needs no store (its account
/// already opened) keeps working; everything else fails fast with `503 store_unavailable` and
/// `Retry-After`, and readiness says so; when the store is back, so is everything.
#[tokio::test]
async fn a_store_outage_keeps_cached_reads_and_fails_the_rest_fast() {
    let plan = Arc::new(FaultPlan::default());
    let wrapped = plan.clone();
    let s = spawn_with_store(
        Duration::from_millis(50),
        Variants::default(),
        |_| {},
        move |store| Faulty::wrap(store, wrapped),
    )
    .await;
    let volume = s.sim.sources(Vendor::Koyeb)[0].clone();
    let page: Value = s
        .app
        .get("/v1/snapshots?account=koyeb", &s.token)
        .await
        .json()
        .await
        .unwrap();
    let snapshot = page["items"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/snapshots/{snapshot}");
    assert_eq!(s.app.get(&path, &s.token).await.status(), 200);

    plan.set_down(true);
    let started = Instant::now();
    let read = s.app.get(&path, &s.token).await;
    assert_eq!(read.status(), 200, "{}", read.text().await.unwrap());
    let body = json!({"account": "koyeb", "source_id": volume, "name": "during-outage"});
    let resp = post_with_key(&s, Some("outage-1"), &body).await;
    assert_eq!(resp.headers()["retry-after"], "1");
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["code"], "store_unavailable", "{p}");
    assert_eq!(s.app.get("/readyz", &s.token).await.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "failing fast, not after {:?}",
        started.elapsed()
    );
    assert_eq!(koyeb_creates(&s.sim), 0, "nothing reached the vendor");

    plan.set_down(false);
    let resp = post_with_key(&s, Some("outage-1"), &body).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(s.app.get("/readyz", &s.token).await.status(), 200);
}

/// A TCP relay between the gateway and PostgreSQL that can be cut: every connection through
/// it is dropped and new ones refused, as when the database host goes away.
pub(crate) struct Relay {
    pub(crate) addr: std::net::SocketAddr,
    target: std::net::SocketAddr,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    acceptor: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    pub(crate) async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut relay = Self {
            addr,
            target,
            tasks: Arc::default(),
            acceptor: None,
        };
        relay.accept(listener);
        relay
    }

    fn accept(&mut self, listener: tokio::net::TcpListener) {
        let (tasks, target) = (self.tasks.clone(), self.target);
        self.acceptor = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(task);
            }
        }));
    }

    /// A relay to the PostgreSQL server of `db_url`, and that URL through the relay.
    pub(crate) async fn to_database(db_url: &str) -> (Self, String) {
        let url = url::Url::parse(db_url).unwrap();
        let target = tokio::net::lookup_host((
            url.host_str().unwrap().to_owned(),
            url.port().unwrap_or(5432),
        ))
        .await
        .unwrap()
        .find(std::net::SocketAddr::is_ipv4)
        .unwrap();
        let relay = Self::start(target).await;
        let mut through = url;
        through.set_port(Some(relay.addr.port())).unwrap();
        (relay, through.to_string())
    }

    /// Drops every connection and refuses new ones.
    pub(crate) fn cut(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Accepts again on the same address.
    pub(crate) async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.accept(listener);
    }
}

/// Issue 21 item 6 on a real PostgreSQL outage (the database host gone): a snapshot read whose
/// account is already opened keeps answering, without waiting on the pool; other requests fail
/// within the short acquire timeout with `503` and `Retry-After`; after the database returns,
/// everything works again.
#[tokio::test]
async fn a_postgresql_outage_keeps_cached_reads_and_fails_the_rest_fast() {
    let Some(db) = crate::store_contract::TestDatabase::create("outage").await else {
        return;
    };
    let (mut relay, through) = Relay::to_database(&db.url).await;
    let s = spawn_with_store(
        Duration::from_millis(50),
        Variants::default(),
        move |c| c.store.url = through,
        |store| store,
    )
    .await;
    let page: Value = s
        .app
        .get("/v1/snapshots?account=koyeb", &s.token)
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/v1/snapshots/{}", page["items"][0]["id"].as_str().unwrap());
    // The account is opened once its creation has been heard back from the database (its
    // notification can land after the first reads, and a change heard after an opening makes
    // that opening stale): only then is it "already opened" as this test means.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.app.get(&path, &s.token).await.status(), 200);

    relay.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let started = Instant::now();
        let read = s.app.get(&path, &s.token).await;
        assert_eq!(read.status(), 200, "{}", read.text().await.unwrap());
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    // Still answering after the notification listener has noticed the outage and tried to
    // listen again (every 500 ms): losing it drops nothing while the database is away.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let read = s.app.get(&path, &s.token).await;
    assert_eq!(read.status(), 200, "{}", read.text().await.unwrap());
    let started = Instant::now();
    let volume = s.sim.sources(Vendor::Koyeb)[0].clone();
    let body = json!({"account": "koyeb", "source_id": volume, "name": "pg-outage"});
    let resp = post_with_key(&s, Some("pg-outage"), &body).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "failed after {:?}",
        started.elapsed()
    );
    assert_eq!(koyeb_creates(&s.sim), 0);

    relay.restore().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = post_with_key(&s, Some("pg-outage"), &body).await;
        if resp.status() == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {}",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(s);
    relay.cut();
    db.drop_database().await;
}

/// Reads `GET /v1/operations/{id}` until it is finished (at most `within`).
async fn finished(s: &SimApp, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let op: Value = s
            .app
            .get(&format!("/v1/operations/{id}?wait=1"), &s.token)
            .await
            .json()
            .await
            .unwrap();
        if op["state"] == "succeeded" || op["state"] == "failed" {
            return op;
        }
        assert!(Instant::now() < deadline, "{op}");
    }
}

#[tokio::test]
async fn a_panic_in_a_reconciler_check_or_a_delivery_leaves_both_workers_running() {
    let plan = Arc::new(FaultPlan::default());
    let wrapped = plan.clone();
    let s = spawn_with_store(
        Duration::from_millis(300),
        Variants::default(),
        |c| {
            c.reconciler.enabled = true;
            c.webhooks.enabled = true;
            c.reconciler.first_check_ms = 100;
            c.reconciler.tick_ms = 50;
            c.reconciler.claim_lease_secs = 1;
            c.webhooks.lease_ms = 1_000;
            c.webhooks.retry_schedule_secs = vec![0, 1, 1];
            c.webhooks.allow_private_targets = true;
        },
        move |store| Faulty::wrap(store, wrapped),
    )
    .await;
    // The reconciler's next two steps that schedule a check panic mid-work.
    plan.panic_on("schedule_check", 2);
    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    let mut ops = Vec::new();
    for name in ["p1", "p2", "p3"] {
        let accepted: Value = post_with_key(
            &s,
            None,
            &json!({"account": "koyeb", "source_id": source, "name": name}),
        )
        .await
        .json()
        .await
        .unwrap();
        ops.push(accepted["operation"]["id"].as_str().unwrap().to_owned());
    }
    // Nobody reads them until they are done: the reconciler finished them, panics and all.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for id in &ops {
        let page: Value = s
            .app
            .get("/v1/operations?page_size=200", &s.token)
            .await
            .json()
            .await
            .unwrap();
        let op = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == id.as_str())
            .cloned()
            .unwrap();
        // As stored (listing does not refresh): the reconciler's work, not a read's.
        assert_eq!(op["state"], "succeeded", "{op}");
        let _ = finished(&s, id, Duration::from_secs(1)).await;
    }

    // The delivery worker: the first attempt's record panics; the delivery is made again once
    // its lease lapses, and later deliveries go out too.
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let hook: Value = s
        .app
        .post(
            "/v1/webhooks",
            &s.token,
            &json!({"url": format!("{}/hook", receiver.uri())}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = hook["id"].as_str().unwrap();
    plan.panic_on("finish_delivery", 1);
    for _ in 0..2 {
        s.app
            .post(&format!("/v1/webhooks/{id}/test"), &s.token, &json!({}))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page: Value = s
            .app
            .get(&format!("/v1/webhooks/{id}/deliveries"), &s.token)
            .await
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        if items.len() == 2 && items.iter().all(|d| d["state"] == "succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = s.app.metrics().await;
    for worker in ["reconciler", "webhooks"] {
        assert!(
            metrics.contains(&format!(
                "snapgate_worker_panics_total{{worker=\"{worker}\"}}"
            )),
            "{worker}: {metrics}"
        );
    }
}
