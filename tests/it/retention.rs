//! Bounded growth: finished records past their retention are pruned in batches, work in
//! progress never is, a follower whose cursor fell below the pruned log is told so (`410`),
//! and under a steady load the log stays flat instead of growing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::simulator::Vendor;

use crate::{
    helpers::*,
    lifecycle::{accepted, settle, spawn_with_simulator_and},
};

/// Everything finished is kept one second, pruned two records per table per batch.
fn short_retention(c: &mut snapgate::Config) {
    c.retention.events_secs = 1;
    c.retention.deliveries_secs = 1;
    c.retention.operations_secs = 1;
    c.retention.idempotency_keys_secs = 1;
    c.retention.batch = 2;
    c.retention.interval_ms = 100;
    c.webhooks.allow_private_targets = true;
}

async fn event_ids(app: &TestApp, t: &str) -> Vec<String> {
    let page = json_of(app.get("/v1/events?page_size=200", t).await).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn create(app: &TestApp, t: &str, source: &str, name: &str, key: Option<&str>) -> Value {
    let body = json!({"account": "koyeb", "source_id": source, "name": name});
    let mut req = app
        .client
        .post(format!("{}/v1/snapshots", app.url))
        .bearer_auth(t)
        .json(&body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    accepted(req.send().await.unwrap(), "create").await
}

#[tokio::test]
async fn finished_records_are_pruned_work_in_progress_is_kept_and_old_cursors_are_told() {
    let s = spawn_with_simulator_and(Duration::from_millis(20), short_retention).await;
    let (app, t) = (&s.app, s.token.as_str());
    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    // A webhook nobody delivers (the worker is off): its deliveries stay pending.
    let hook = json_of(
        app.post(
            "/v1/webhooks",
            t,
            &json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await,
    )
    .await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    // A finished create under a key, and its events.
    let first = create(app, t, &source, "kept-a-second", Some("k-retention")).await;
    let done = settle(app, t, &first["operation"]).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let cursor = json_of(app.get("/v1/events?page_size=1", t).await).await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_events = event_ids(app, t).await;
    assert!(!old_events.is_empty());
    let pending_before = json_of(
        app.get(
            &format!("/v1/webhooks/{hook_id}/deliveries?page_size=200"),
            t,
        )
        .await,
    )
    .await["items"]
        .as_array()
        .unwrap()
        .len();
    assert!(pending_before > 0);
    // Unfinished work, never read (the reconciler is off): it stays running in the store.
    let running = create(app, t, &source, "still-running", None).await;
    let running_id = running["operation"]["id"].as_str().unwrap().to_owned();

    // Within a few passes everything finished and older than a second is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = event_ids(app, t).await;
        if old_events.iter().all(|e| !now.contains(e)) {
            break;
        }
        assert!(Instant::now() < deadline, "events never pruned: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished = done["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .get(&format!("/v1/operations/{finished}"), t)
        .await
        .status()
        != 404
    {
        assert!(
            Instant::now() < deadline,
            "the finished operation was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The unfinished operation and the pending deliveries are kept.
    let kept = app.get(&format!("/v1/operations/{running_id}"), t).await;
    assert_eq!(kept.status(), 200);
    let pending_after = json_of(
        app.get(
            &format!("/v1/webhooks/{hook_id}/deliveries?page_size=200"),
            t,
        )
        .await,
    )
    .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["state"] == "pending")
        .count();
    assert!(
        pending_after >= pending_before,
        "a pending delivery was pruned"
    );
    // The key's answer expired with it: the same key now starts new work (documented).
    let again = create(app, t, &source, "another-request", Some("k-retention")).await;
    assert_ne!(again["operation"]["id"], first["operation"]["id"]);
    // A follower whose cursor is below what was pruned is told, not given a short log.
    let expired = app.get(&format!("/v1/events?after={cursor}"), t).await;
    let problem = assert_problem(expired, 410, "cursor_expired").await;
    assert_eq!(problem["field"], "after");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("snapgate_pruned_records_total{table=\"events\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn under_a_steady_load_the_event_log_stays_flat() {
    let s = spawn_with_simulator_and(Duration::from_millis(10), |c| {
        short_retention(c);
        c.retention.batch = 50;
    })
    .await;
    let (app, t) = (&s.app, s.token.as_str());
    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    let mut sizes = Vec::new();
    for round in 0..6 {
        for i in 0..5 {
            let op = create(app, t, &source, &format!("soak-{round}-{i}"), None).await;
            settle(app, t, &op["operation"]).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sizes.push(event_ids(app, t).await.len());
    }
    // Each round writes about fifteen events; kept a second, the log holds about one round's
    // worth, not six rounds'.
    let (first, last) = (sizes[0], *sizes.last().unwrap());
    assert!(last <= first.max(15) + 10, "the log grew: {sizes:?}");
    assert!(sizes.iter().all(|n| *n < 45), "{sizes:?}");
}
