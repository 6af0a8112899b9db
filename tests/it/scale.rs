//! How the event log, the reconciler and webhook delivery cost as the work grows (issue 26):
//! `bench/scale.sh` runs these (ignored in the ordinary test run: each stores thousands to a
//! million records). The list across accounts is measured by `bench/fanout.sh`, with a release
//! build and the simulator in a process of its own.

use std::time::{Duration, Instant};

use serde_json::json;
use snapgate::simulator::Vendor;

use crate::helpers::*;

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
