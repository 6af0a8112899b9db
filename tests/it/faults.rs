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
        .get("/v1/events?limit=200", &s.token)
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
                .get("/v1/operations?account=koyeb&limit=1", &s.token)
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
