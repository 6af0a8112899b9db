//! How a list across many accounts costs as the accounts grow (issue 26): `bench/scale.sh`
//! runs it (ignored in the ordinary test run: it creates a thousand accounts per setting).
//! Koyeb accounts on the simulator with a fixed vendor latency; for each fan-out concurrency,
//! the first page of `GET /v1/snapshots` at 1, 10, 100 and 1,000 accounts: median and worst of
//! five, the ratio to one account, CPU per list and the process's peak memory (the process
//! holds the gateway and the simulator both).

use std::time::{Duration, Instant};

use serde_json::json;
use snapgate::simulator::{Fault, Vendor};

use crate::{helpers::*, lifecycle::spawn_with_simulator_and};

const LATENCY_MS: u64 = 50;
const ROUNDS: usize = 5;

fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the name).
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench: run by bench/scale.sh"]
async fn scale_list_across_accounts() {
    let settings: Vec<usize> = std::env::var("SCALE_CONCURRENCY")
        .unwrap_or_else(|_| "8,64,1000".to_owned())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let sizes = [1usize, 10, 100, 1000];
    println!("scale vendor latency {LATENCY_MS} ms, first page (page_size=20) of GET /v1/snapshots?provider=koyeb, {ROUNDS} rounds");
    println!(
        "scale concurrency accounts p50_ms max_ms ratio_to_1 cpu_ms_per_list peak_rss_mb errors"
    );
    for concurrency in settings {
        let s = spawn_with_simulator_and(Duration::from_millis(50), |c| {
            c.listing.max_concurrency = concurrency;
            c.listing.account_timeout_ms = 60_000;
            // Every bench account holds the simulator's one Koyeb token, which the gateway
            // rightly treats as one vendor account (16 calls at once); lifted here to stand
            // for 1,000 accounts with tokens of their own.
            c.upstream.max_concurrency_per_account = 2_000;
        })
        .await;
        let (app, t) = (&s.app, s.token.as_str());
        let credentials: serde_json::Map<String, serde_json::Value> = s
            .sim
            .credentials(Vendor::Koyeb)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        // The simulator's own Koyeb account is the first.
        let mut made = 1;
        let mut one = None;
        for n in sizes {
            s.sim.clear_faults();
            while made < n {
                let body = json!({"id": format!("ky-{made}"), "provider": "koyeb", "credentials": credentials});
                let resp = app.post("/v1/accounts", t, &body).await;
                assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
                made += 1;
            }
            s.sim.set_fault(
                Vendor::Koyeb,
                Fault {
                    latency_ms: Some(LATENCY_MS),
                    ..Fault::default()
                },
            );
            let mut times = Vec::new();
            let mut errors = 0;
            let cpu = cpu_secs();
            for _ in 0..ROUNDS {
                let started = Instant::now();
                let page = json_of(
                    app.get("/v1/snapshots?provider=koyeb&page_size=20", t)
                        .await,
                )
                .await;
                times.push(started.elapsed());
                errors += page["errors"].as_array().map_or(1, Vec::len);
            }
            let cpu_ms = (cpu_secs() - cpu) * 1000.0 / ROUNDS as f64;
            times.sort();
            let p50 = times[ROUNDS / 2].as_secs_f64() * 1000.0;
            let max = times[ROUNDS - 1].as_secs_f64() * 1000.0;
            let base = *one.get_or_insert(p50);
            println!(
                "scale {concurrency} {n} {p50:.0} {max:.0} {:.2} {cpu_ms:.1} {:.0} {errors}",
                p50 / base,
                peak_rss_mb()
            );
        }
        s.sim.clear_faults();
    }
}

/// Median and worst of `times`, in milliseconds.
fn spread(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(times[times.len() / 2]), ms(times[times.len() - 1]))
}

/// Reads of the event log and long-poll wake-ups at 10k, 100k and 1M stored events (on
/// PostgreSQL with `SCALE_STORE=postgres`, else SQLite): a page after a cursor at the log's
/// start, middle and end, and how long after an operation changed its long-poll answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench: run by bench/scale.sh"]
async fn scale_events_and_long_polls() {
    use snapgate::{
        domain::{Event, EventType},
        store::Sealer,
    };
    let db = match std::env::var("SCALE_STORE").as_deref() {
        Ok("postgres") => Some(
            crate::store_contract::TestDatabase::create("scale events")
                .await
                .expect("SCALE_STORE=postgres needs SNAPGATE_TEST_POSTGRES_URL"),
        ),
        _ => None,
    };
    let kept = std::sync::Arc::new(std::sync::Mutex::new(None));
    let keep = kept.clone();
    let url = db.as_ref().map(|d| d.url.clone());
    let s = crate::lifecycle::spawn_with_store(
        Duration::from_millis(300),
        Default::default(),
        |c| {
            if let Some(url) = url {
                c.store.url = url;
            }
            c.reconciler.enabled = true;
            c.reconciler.first_check_ms = 100;
        },
        move |store| {
            *keep.lock().unwrap() = Some(store.clone());
            store
        },
    )
    .await;
    let store = kept.lock().unwrap().clone().unwrap();
    let (app, t) = (&s.app, s.token.as_str());
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [42u8; 32]);
    let sealer = Sealer::from_base64(Some(&key.into())).unwrap();
    let backend = if db.is_some() { "postgres" } else { "sqlite" };
    println!("scale-events store {backend}: GET /v1/events?after=…&page_size=100 (20 reads) and operation long-poll wake-ups (5)");
    println!("scale-events events position p50_ms max_ms");
    let mut stored = 0usize;
    let mut first_seq = None;
    for target in [10_000usize, 100_000, 1_000_000] {
        while stored < target {
            let batch: Vec<Event> = (0..(target - stored).min(5_000))
                .map(|i| {
                    Event::new(
                        EventType::OperationSucceeded,
                        "bench",
                        json!({"operation": {"id": format!("op_bench_{}", stored + i), "state": "succeeded"}}),
                    )
                })
                .collect();
            store.append_events("acme", &batch).await.unwrap();
            stored += batch.len();
        }
        let first =
            *first_seq.get_or_insert(store.list_events("acme", 0, &[], 1).await.unwrap()[0].0);
        let total = store.list_events("acme", 0, &[], 1).await.unwrap();
        assert!(!total.is_empty());
        for (position, at) in [
            ("start", first),
            ("middle", first + (target as i64) / 2),
            ("end", first + target as i64 - 101),
        ] {
            let cursor = sealer.seal_cursor("acme", at);
            let mut times = Vec::new();
            for _ in 0..20 {
                let started = Instant::now();
                let page = json_of(
                    app.get(&format!("/v1/events?after={cursor}&page_size=100"), t)
                        .await,
                )
                .await;
                times.push(started.elapsed());
                assert_eq!(
                    page["items"].as_array().map(Vec::len),
                    Some(100),
                    "{position}"
                );
            }
            let (p50, max) = spread(times);
            println!("scale-events {target} {position} {p50:.1} {max:.1}");
        }
        let mut wakes = Vec::new();
        for _ in 0..5 {
            let source = s.sim.sources(Vendor::Koyeb)[0].clone();
            let body = json!({"account": "koyeb", "source_id": source, "name": format!("bench-{}", uuid::Uuid::new_v4().simple())});
            let created = json_of(app.post("/v1/snapshots", t, &body).await).await;
            let op = created["operation"]["id"].as_str().unwrap().to_owned();
            let mut state = created["operation"].clone();
            while state["state"] != "succeeded" && state["state"] != "failed" {
                let before = state["updated_at"].clone();
                let answered =
                    json_of(app.get(&format!("/v1/operations/{op}?wait=10"), t).await).await;
                let now = chrono::Utc::now();
                if answered["updated_at"] != before {
                    let changed: chrono::DateTime<chrono::Utc> =
                        answered["updated_at"].as_str().unwrap().parse().unwrap();
                    wakes.push((now - changed).to_std().unwrap_or_default());
                }
                state = answered;
            }
        }
        let (p50, max) = spread(wakes);
        println!("scale-events {target} long-poll-wake {p50:.1} {max:.1}");
    }
}

/// The reconciler with 100, 1,000 and 10,000 unfinished operations: store calls per second
/// while none is due (the claim's cost must not grow with them), then, with 200 of them due,
/// store calls and vendor calls per operation checked and how long the 200 took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench: run by bench/scale.sh"]
async fn scale_reconciler() {
    use snapgate::store::faulty::{FaultPlan, Faulty};
    let plan = std::sync::Arc::new(FaultPlan::default());
    let kept = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (keep, wrap_plan) = (kept.clone(), plan.clone());
    // Creates stay `creating` at the simulated vendor for an hour: every check finds them
    // unfinished.
    let s = crate::lifecycle::spawn_with_store(
        Duration::from_secs(3600),
        Default::default(),
        |c| {
            c.reconciler.enabled = true;
            c.reconciler.first_check_ms = 3_600_000;
            c.reconciler.max_checks_per_tenant = 16;
        },
        move |store| {
            // The bench reads and writes the store beneath: only the gateway's calls count.
            *keep.lock().unwrap() = Some(store.clone());
            Faulty::wrap(store, wrap_plan)
        },
    )
    .await;
    let store = kept.lock().unwrap().clone().unwrap();
    let (app, t) = (&s.app, s.token.as_str());
    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    let body = json!({"account": "koyeb", "source_id": source, "name": "bench-template"});
    let created = json_of(app.post("/v1/snapshots", t, &body).await).await;
    let template = store
        .get_operation("acme", created["operation"]["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    println!(
        "scale-reconciler tick {} ms; 200 operations made due at each size",
        500
    );
    println!("scale-reconciler open idle_store_calls_per_s calls_by_method | due: store_calls_per_op vendor_calls_per_op seconds_for_200");
    let later = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let mut open = 1usize;
    let mut ids = Vec::new();
    for target in [201usize, 1_000, 10_000] {
        while open < target {
            let mut op = template.clone();
            op.id = format!("op_{}", uuid::Uuid::now_v7().simple());
            op.next_check_at = Some(later);
            store.insert_operation("acme", &op, &[]).await.unwrap();
            ids.push(op.id);
            open += 1;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        plan.take_counts();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle = plan.take_counts();
        let per_s = idle.values().sum::<u64>() as f64 / 5.0;
        let mut methods: Vec<String> = idle.iter().map(|(m, n)| format!("{m}={n}")).collect();
        methods.sort();

        // One claim with nothing due, timed on the store itself.
        let mut claims = Vec::new();
        for _ in 0..20 {
            let at = chrono::Utc::now();
            let started = Instant::now();
            let got = store
                .claim_due(at, at + chrono::TimeDelta::seconds(6), 16, 16)
                .await
                .unwrap();
            claims.push(started.elapsed());
            assert!(got.is_empty());
        }
        let (claim_ms, _) = spread(claims);
        methods.push(format!("claim_p50_ms={claim_ms:.2}"));

        let due: Vec<&String> = ids.iter().rev().take(200).collect();
        assert_eq!(due.len(), 200.min(open - 1));
        let now = chrono::Utc::now();
        for id in &due {
            store.schedule_check("acme", id, now, 0).await.unwrap();
        }
        plan.take_counts();
        s.sim.clear_requests();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(120);
        loop {
            let mut checked = 0;
            for id in &due {
                let op = store.get_operation("acme", id).await.unwrap().unwrap();
                checked += usize::from(op.checks > 0);
            }
            if checked == due.len() {
                break;
            }
            assert!(Instant::now() < deadline, "{checked} of 200 checked");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = started.elapsed().as_secs_f64();
        let counts = plan.take_counts();
        // The bench's own progress reads are get_operation calls: left out.
        let worked: u64 = counts
            .iter()
            .filter(|(m, _)| **m != "get_operation")
            .map(|(_, n)| n)
            .sum::<u64>()
            + counts
                .get("get_operation")
                .copied()
                .unwrap_or(0)
                .saturating_sub(0);
        let vendor = s.sim.requests(Some(Vendor::Koyeb)).len();
        println!(
            "scale-reconciler {target} {per_s:.1} [{}] | {:.2} {:.2} {took:.2}",
            methods.join(" "),
            worked as f64 / due.len() as f64,
            vendor as f64 / due.len() as f64
        );
    }
}

/// 1,000 webhook endpoints (20 tenants of 50, the per-tenant cap) receiving one event each:
/// how long until every delivery arrived, and the store calls per delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench: run by bench/scale.sh"]
async fn scale_webhooks() {
    use snapgate::{
        domain::{Event, EventType},
        store::faulty::{FaultPlan, Faulty},
    };
    use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};
    let plan = std::sync::Arc::new(FaultPlan::default());
    let kept = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (keep, wrap_plan) = (kept.clone(), plan.clone());
    let s = crate::lifecycle::spawn_with_store(
        Duration::from_millis(50),
        Default::default(),
        crate::webhooks::delivering,
        move |store| {
            *keep.lock().unwrap() = Some(store.clone());
            Faulty::wrap(store, wrap_plan)
        },
    )
    .await;
    let store = kept.lock().unwrap().clone().unwrap();
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let (tenants, per_tenant) = (20, 50);
    for tenant in 0..tenants {
        let t = token(&format!("bench-{tenant}"), ALL_SCOPES);
        for i in 0..per_tenant {
            let url = format!("{}/hook/{tenant}/{i}", receiver.uri());
            crate::webhooks::create_webhook(&s.app, &t, &url, json!(["operation.succeeded"])).await;
        }
    }
    let endpoints = tenants * per_tenant;
    plan.take_counts();
    let started = Instant::now();
    for tenant in 0..tenants {
        let event = Event::new(
            EventType::OperationSucceeded,
            "bench",
            json!({"operation": {"id": format!("op_bench_{tenant}"), "state": "succeeded"}}),
        );
        store
            .append_events(&format!("bench-{tenant}"), &[event])
            .await
            .unwrap();
    }
    let deadline = started + Duration::from_secs(120);
    let mut first = None;
    loop {
        let got = receiver.received_requests().await.unwrap_or_default().len();
        if got > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if got >= endpoints {
            break;
        }
        assert!(Instant::now() < deadline, "{got} of {endpoints} delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls: u64 = plan.take_counts().values().sum();
    let got = receiver.received_requests().await.unwrap_or_default().len();
    println!("scale-webhooks endpoints deliveries first_ms all_ms per_s store_calls_per_delivery");
    println!(
        "scale-webhooks {endpoints} {got} {:.0} {:.0} {:.0} {:.2}",
        first.unwrap_or_default().as_secs_f64() * 1000.0,
        took.as_secs_f64() * 1000.0,
        endpoints as f64 / took.as_secs_f64(),
        calls as f64 / endpoints as f64
    );
    assert_eq!(got, endpoints, "each endpoint exactly once");
}
