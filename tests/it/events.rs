//! The event log: what finished, what it did, who caused it, per tenant.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::simulator::Vendor;

use crate::{helpers::*, lifecycle::*};

async fn events(s: &SimApp, token: &str, query: &str) -> Value {
    let resp = s.app.get(&format!("/v1/events{query}"), token).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn types(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn finished_work_is_logged_once_with_its_actor_and_only_for_its_tenant() {
    let s = spawn_with_simulator_and(Duration::from_millis(300), |c| {
        c.reconciler.enabled = true;
        c.reconciler.tick_ms = 20;
        c.reconciler.first_check_ms = 100;
    })
    .await;
    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    let body = json!({"account": "koyeb", "source_id": source, "name": "logged"});
    let created = accepted(s.app.post("/v1/snapshots", &s.token, &body).await, "create").await;
    let op_id = created["operation"]["id"].as_str().unwrap().to_owned();

    // Nobody reads the operation: the reconciler finishes it, and the log says so.
    let started = Instant::now();
    let page = loop {
        let page = events(&s, &s.token, "").await;
        if types(&page).len() >= 2 {
            break page;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no events: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        types(&page),
        ["operation.succeeded", "snapshot.created"],
        "{page}"
    );
    let first = &page["items"][0];
    assert_eq!(first["actor"], "reconciler");
    assert_eq!(first["data"]["operation"]["id"], op_id.as_str());
    assert_eq!(first["data"]["operation"]["state"], "succeeded");
    assert!(first["id"].as_str().unwrap().starts_with("evt_"));
    let snapshot_id = page["items"][1]["data"]["snapshot_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Read on from the cursor: nothing new yet; the cursor stays put.
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let next = events(&s, &s.token, &format!("?after={cursor}")).await;
    assert_eq!(next["items"], json!([]));
    assert_eq!(next["next_cursor"], cursor.as_str());

    // A delete the caller follows: logged with the caller's `sub` as the actor.
    let deleted = accepted(
        s.app
            .delete(&format!("/v1/snapshots/{snapshot_id}"), &s.token)
            .await,
        "delete",
    )
    .await;
    settle(&s.app, &s.token, &deleted["operation"]).await;
    let page = events(
        &s,
        &s.token,
        &format!("?after={cursor}&type=snapshot.deleted"),
    )
    .await;
    assert_eq!(types(&page), ["snapshot.deleted"], "{page}");
    let actor = page["items"][0]["actor"].as_str().unwrap();
    assert!(actor == "test" || actor == "reconciler", "{actor}");
    // Reading the finished operation again logs nothing more.
    s.app
        .get(&format!("/v1/operations/{op_id}"), &s.token)
        .await;
    let all = events(&s, &s.token, "").await;
    assert_eq!(
        types(&all),
        [
            "operation.succeeded",
            "snapshot.created",
            "operation.succeeded",
            "snapshot.deleted"
        ],
        "{all}"
    );

    // Another tenant sees none of it, and cannot use this tenant's cursor; a cursor is opaque
    // (it says nothing of how many events other tenants had); bad queries are 400s.
    let other = token("globex", ALL_SCOPES);
    assert_eq!(events(&s, &other, "").await["items"], json!([]));
    let mine = all["next_cursor"].as_str().unwrap();
    assert!(mine.parse::<u64>().is_err(), "{mine}");
    let resp = s.app.get(&format!("/v1/events?after={mine}"), &other).await;
    let p = assert_problem(resp, 400, "invalid_query").await;
    assert_eq!(p["field"], "after");
    for (query, field) in [
        ("?type=snapshot.exploded", "type"),
        ("?type=", "type"),
        ("?type=operation.failed,,snapshot.created", "type"),
        ("?after=-3", "after"),
        ("?after=%2B3", "after"),
        // Positions are one sequence across tenants: a bare number is never a cursor.
        ("?after=3", "after"),
        ("?page_size=0", "page_size"),
    ] {
        let resp = s.app.get(&format!("/v1/events{query}"), &s.token).await;
        let p = assert_problem(resp, 400, "invalid_query").await;
        assert_eq!(p["field"], field, "{query}");
    }
}
