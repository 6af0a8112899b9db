//! The soak (issue 21), behind a flag: two `snapgate serve` replicas on one PostgreSQL, creates
//! with `Idempotency-Key`s from several callers, an event follower and a webhook receiver,
//! while faults land on a schedule — the database cut off (a relay between the replicas and
//! PostgreSQL), every database backend killed, a replica killed with `-9` and restarted. It
//! reports vendor creates per key, events seen per event written and deliveries per event, and
//! fails unless each is exactly what was promised.
//!
//! Run: `bench/soak.sh` (or `SNAPGATE_TEST_POSTGRES_URL=… cargo test --test it soak -- --ignored
//! --nocapture`). Bounded: about 40 s of load, then at most 90 s for everything to settle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::simulator::{self, SimulatorConfig, Vendor};
use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

use crate::faults::Relay;
use crate::helpers::*;
use crate::store_contract::TestDatabase;

const CALLERS: usize = 6;
const LOAD_FOR: Duration = Duration::from_secs(40);

/// The replicas' current URLs (a restarted replica listens on a new port).
type Urls = Arc<RwLock<Vec<String>>>;

fn serve(db_url: &str, sim: &simulator::RunningSimulator) -> ServeProcess {
    ServeProcess::start(
        std::path::Path::new("unused.db"),
        &[
            ("SNAPGATE_STORE__URL", db_url.to_owned()),
            ("SNAPGATE_STORE__MAX_CONNECTIONS", "6".to_owned()),
            (
                "SNAPGATE_PROVIDERS__KOYEB__BASE_URL",
                sim.base_url(Vendor::Koyeb),
            ),
            ("SNAPGATE_RECONCILER__ENABLED", "true".to_owned()),
            ("SNAPGATE_RECONCILER__TICK_MS", "100".to_owned()),
            ("SNAPGATE_RECONCILER__FIRST_CHECK_MS", "300".to_owned()),
            ("SNAPGATE_RECONCILER__MAX_INTERVAL_SECS", "2".to_owned()),
            ("SNAPGATE_WEBHOOKS__ENABLED", "true".to_owned()),
            (
                "SNAPGATE_WEBHOOKS__ALLOW_PRIVATE_TARGETS",
                "true".to_owned(),
            ),
            ("SNAPGATE_WEBHOOKS__TICK_MS", "100".to_owned()),
            (
                "SNAPGATE_WEBHOOKS__RETRY_SCHEDULE_SECS",
                "0,1,1,2,2,5,5".to_owned(),
            ),
            ("SNAPGATE_SERVER__REQUEST_TIMEOUT_MS", "10000".to_owned()),
        ],
    )
}

/// The operation id of a `202`, or `None` for any other answer (or none).
async fn post(
    client: &reqwest::Client,
    url: &str,
    t: &str,
    key: &str,
    body: &Value,
) -> Option<String> {
    let r = client
        .post(format!("{url}/v1/snapshots"))
        .bearer_auth(t)
        .header("idempotency-key", key)
        .json(body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .ok()?;
    if r.status() != 202 {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    body["operation"]["id"].as_str().map(str::to_owned)
}

async fn get_json(client: &reqwest::Client, url: &str, t: &str) -> Option<Value> {
    let r = client
        .get(url)
        .bearer_auth(t)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

/// Every event in the log, from the start, as (id, type).
async fn whole_log(client: &reqwest::Client, urls: &Urls, t: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let url = urls.read().unwrap()[0].clone();
        let Some(page) = get_json(
            client,
            &format!("{url}/v1/events?after={cursor}&page_size=200"),
            t,
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let items = page["items"].as_array().unwrap();
        for e in items {
            out.push((
                e["id"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            ));
        }
        cursor = page["next_cursor"].as_str().unwrap().to_owned();
        if items.is_empty() {
            return out;
        }
    }
}

// Several workers: the relay keeps relaying while the test blocks reading a starting
// replica's first line.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
#[ignore = "the soak: minutes of load and faults; run with bench/soak.sh"]
async fn soak_two_replicas_under_load_and_faults_keep_every_promise() {
    let Some(db) = TestDatabase::create("soak").await else {
        panic!("the soak needs SNAPGATE_TEST_POSTGRES_URL");
    };
    let sim = simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimulatorConfig {
            async_delay: Duration::from_millis(300),
            ..SimulatorConfig::default()
        },
    )
    .await
    .unwrap();
    // The replicas reach PostgreSQL through a relay the soak can cut.
    let (mut relay, through) = Relay::to_database(&db.url).await;

    let a = serve(&through, &sim);
    let b = serve(&through, &sim);
    let urls: Urls = Arc::new(RwLock::new(vec![a.url.clone(), b.url.clone()]));
    let t = token("acme", ALL_SCOPES);
    let client = reqwest::Client::new();
    let credentials: serde_json::Map<String, Value> = sim
        .credentials(Vendor::Koyeb)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    let resp = client
        .post(format!("{}/v1/accounts", a.url))
        .bearer_auth(&t)
        .json(&json!({"id": "koyeb", "provider": "koyeb", "credentials": credentials}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let types = [
        "operation.succeeded",
        "operation.failed",
        "snapshot.created",
    ];
    let resp = client
        .post(format!("{}/v1/webhooks", a.url))
        .bearer_auth(&t)
        .json(&json!({"url": format!("{}/hook", receiver.uri()), "event_types": types}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // The event follower: tails the log by cursor, counting what it sees.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = {
        let (client, urls, t, seen, stop) = (
            client.clone(),
            urls.clone(),
            t.clone(),
            seen.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut cursor = "0".to_owned();
            let mut quiet = 0;
            loop {
                let url = urls.read().unwrap()[0].clone();
                if let Some(page) = get_json(
                    &client,
                    &format!("{url}/v1/events?after={cursor}&page_size=200"),
                    &t,
                )
                .await
                {
                    let items = page["items"].as_array().unwrap();
                    quiet = if items.is_empty() { quiet + 1 } else { 0 };
                    seen.lock()
                        .unwrap()
                        .extend(items.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
                    cursor = page["next_cursor"].as_str().unwrap().to_owned();
                }
                if stop.load(std::sync::atomic::Ordering::Relaxed) && quiet >= 20 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // The callers: each create under a key of its own, retried with that key until answered.
    let volume = sim.sources(Vendor::Koyeb)[0].clone();
    let started = Instant::now();
    let accepted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let (client, urls, t, accepted, volume) = (
                client.clone(),
                urls.clone(),
                t.clone(),
                accepted.clone(),
                volume.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0;
                while started.elapsed() < LOAD_FOR {
                    let key = format!("soak-{c}-{i}");
                    let body = json!({"account": "koyeb", "source_id": volume, "name": key});
                    let given_up = Instant::now() + Duration::from_secs(60);
                    let mut attempt = c + i;
                    loop {
                        let url = {
                            let urls = urls.read().unwrap();
                            urls[attempt % urls.len()].clone()
                        };
                        if let Some(op) = post(&client, &url, &t, &key, &body).await {
                            accepted.lock().unwrap().push((key.clone(), op));
                            break;
                        }
                        assert!(Instant::now() < given_up, "{key} never answered 202");
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    i += 1;
                }
            })
        })
        .collect();

    // The faults, on a schedule.
    let mut faults = Vec::new();
    tokio::time::sleep(Duration::from_secs(8)).await;
    relay.cut();
    faults.push(format!("{:?}: database cut off for 3 s", started.elapsed()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    relay.restore().await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    faults.push(format!(
        "{:?}: {} database backends killed",
        started.elapsed(),
        killed.len()
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (status, _) = b.stop("KILL");
    assert!(!status.success());
    faults.push(format!("{:?}: replica B killed -9", started.elapsed()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b = serve(&through, &sim);
    urls.write().unwrap()[1] = b.url.clone();
    faults.push(format!("{:?}: replica B restarted", started.elapsed()));
    for c in callers {
        c.await.unwrap();
    }

    // Everything settles: every accepted create finishes.
    let accepted = accepted.lock().unwrap().clone();
    let keys: Vec<String> = accepted.iter().map(|(k, _)| k.clone()).collect();
    let settle_by = Instant::now() + Duration::from_secs(90);
    let mut ops: HashMap<String, Value> = HashMap::new();
    while ops.len() < accepted.len() {
        for (_, id) in &accepted {
            if ops.contains_key(id) {
                continue;
            }
            let url = urls.read().unwrap()[0].clone();
            if let Some(op) = get_json(&client, &format!("{url}/v1/operations/{id}"), &t).await {
                if op["state"] != "running" {
                    ops.insert(id.clone(), op);
                }
            }
        }
        assert!(
            Instant::now() < settle_by,
            "{} operations never finished",
            accepted.len() - ops.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let ops: Vec<Value> = ops.into_values().collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    // Vendor creates per key: each key's snapshot name, at the vendor, exactly once.
    let mut creates: BTreeMap<String, usize> = BTreeMap::new();
    for r in sim.requests(Some(Vendor::Koyeb)) {
        if r.method == "POST" && r.path == "/v1/snapshots" {
            let body: Value = serde_json::from_str(&r.body).unwrap_or_default();
            if let Some(name) = body["name"].as_str() {
                *creates.entry(name.to_owned()).or_default() += 1;
            }
        }
    }
    let doubled: Vec<_> = creates.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<_> = keys.iter().filter(|k| !creates.contains_key(*k)).collect();
    let states: HashMap<String, usize> = ops.iter().fold(HashMap::new(), |mut m, o| {
        *m.entry(o["state"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
        m
    });

    // Events: the follower saw each event of the log exactly once.
    follower.await.unwrap();
    let log = whole_log(&client, &urls, &t).await;
    let written: BTreeSet<String> = log.iter().map(|(id, _)| id.clone()).collect();
    let seen = seen.lock().unwrap().clone();
    let seen_once: BTreeSet<String> = seen.iter().cloned().collect();
    let missed = written.difference(&seen_once).count();
    let seen_twice = seen.len() - seen_once.len();

    // Deliveries: every event of the subscribed types reached the receiver (at least once).
    let wanted: BTreeSet<String> = log
        .iter()
        .filter(|(_, ty)| types.contains(&ty.as_str()))
        .map(|(id, _)| id.clone())
        .collect();
    let deliver_by = Instant::now() + Duration::from_secs(60);
    let (delivered, attempts) = loop {
        let got = receiver.received_requests().await.unwrap_or_default();
        let ids: Vec<String> = got
            .iter()
            .filter_map(|r| Some(r.headers.get("webhook-id")?.to_str().ok()?.to_owned()))
            .collect();
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        if wanted.is_subset(&unique) || Instant::now() > deliver_by {
            break (unique, ids.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let undelivered = wanted.difference(&delivered).count();

    eprintln!("soak faults: {faults:#?}");
    eprintln!(
        "soak: {} keys accepted; vendor creates per key: {} once, {} more than once, {} never; \
         operations {states:?}",
        keys.len(),
        creates.values().filter(|n| **n == 1).count(),
        doubled.len(),
        missing.len()
    );
    eprintln!(
        "soak: {} events written; the follower saw {} of them ({missed} missed, {seen_twice} \
         seen twice)",
        written.len(),
        seen_once.len()
    );
    eprintln!(
        "soak: {} events to deliver; {} delivered ({undelivered} never), {attempts} deliveries \
         received ({:.3} per event)",
        wanted.len(),
        delivered.intersection(&wanted).count(),
        attempts as f64 / wanted.len().max(1) as f64
    );
    assert!(
        doubled.is_empty(),
        "keys made more than one snapshot: {doubled:?}"
    );
    assert!(
        missing.is_empty(),
        "accepted keys made no snapshot: {missing:?}"
    );
    assert_eq!(missed, 0, "the follower missed events");
    assert_eq!(seen_twice, 0, "the follower saw events twice");
    assert_eq!(undelivered, 0, "events never delivered");
    drop((a, b));
    relay.cut();
    admin.close().await;
    db.drop_database().await;
}

/// Operations of the account still unfinished, as stored (listing does not ask the vendor).
async fn unfinished(app: &TestApp, t: &str) -> usize {
    let page: Value = app
        .get("/v1/operations?unfinished=true&page_size=200", t)
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().map_or(0, Vec::len)
}

/// How long `replicas` reconciling processes take to finish `n` operations nobody reads, each
/// check costing a vendor round trip of 150 ms.
async fn drain(n: usize, replicas: usize) -> Duration {
    let db = TestDatabase::create("drain")
        .await
        .expect("SNAPGATE_TEST_POSTGRES_URL");
    let sim = simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimulatorConfig {
            async_delay: Duration::from_millis(20),
            ..SimulatorConfig::default()
        },
    )
    .await
    .unwrap();
    let spawn = |reconcile: bool| {
        let (url, sim_url) = (db.url.clone(), sim.base_url(Vendor::Koyeb));
        spawn_app_with(move |c| {
            c.store.url = url;
            c.store.max_connections = 4;
            c.providers
                .set(snapgate::domain::ProviderKind::Koyeb, "base_url", sim_url);
            c.reconciler.enabled = reconcile;
            c.reconciler.tick_ms = 20;
            c.reconciler.first_check_ms = 50;
            c.reconciler.max_interval_secs = 1;
            c.reconciler.max_concurrent_checks = 2;
        })
    };
    // The work is started by a process that does not reconcile.
    let starter = spawn(false).await;
    let t = token("acme", ALL_SCOPES);
    let credentials: serde_json::Map<String, Value> = sim
        .credentials(Vendor::Koyeb)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    let body = json!({"id": "koyeb", "provider": "koyeb", "credentials": credentials});
    assert_eq!(starter.post("/v1/accounts", &t, &body).await.status(), 201);
    let volume = sim.sources(Vendor::Koyeb)[0].clone();
    for i in 0..n {
        let body = json!({"account": "koyeb", "source_id": volume, "name": format!("d-{i}")});
        assert_eq!(starter.post("/v1/snapshots", &t, &body).await.status(), 202);
    }
    assert_eq!(unfinished(&starter, &t).await, n);
    sim.set_fault(
        Vendor::Koyeb,
        snapgate::simulator::Fault {
            latency_ms: Some(150),
            ..Default::default()
        },
    );
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..replicas {
        workers.push(spawn(true).await);
    }
    while unfinished(&starter, &t).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    drop((workers, starter));
    db.drop_database().await;
    took
}

/// Issue 21: the reconciler's drain rate grows with replicas (claims with `SKIP LOCKED`,
/// pipelined checks): 120 operations, one replica, then two.
#[tokio::test]
#[ignore = "part of the soak; run with bench/soak.sh"]
async fn soak_reconciler_drain_rate_doubles_with_a_second_replica() {
    let n = 120;
    let one = drain(n, 1).await;
    let two = drain(n, 2).await;
    let ratio = one.as_secs_f64() / two.as_secs_f64();
    eprintln!(
        "soak: reconciler drained {n} operations in {one:?} with one replica, {two:?} with two: \
         {:.1} vs {:.1} operations/s ({ratio:.2}x)",
        n as f64 / one.as_secs_f64(),
        n as f64 / two.as_secs_f64()
    );
    assert!(
        ratio >= 1.6,
        "two replicas drain {ratio:.2}x as fast as one"
    );
}
