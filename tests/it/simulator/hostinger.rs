//! Hostinger: fixture shapes, bearer auth and the User-Agent rule, one snapshot per VM that a
//! create overwrites, actions created → sent → success (error under `fail_async`), VM locking.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use snapgate::simulator::{Fault, RunningSimulator, Vendor, HOSTINGER_TOKEN};

use super::{assert_shape, start, Api};

const VM: &str = "/api/vps/v1/virtual-machines";

fn api(sim: &RunningSimulator) -> Api {
    let auth = format!("Bearer {HOSTINGER_TOKEN}");
    let headers = [
        ("authorization", auth.as_str()),
        ("user-agent", "snapgate-tests/1"),
    ];
    Api::new(sim, Vendor::Hostinger, &headers)
}

/// Polls an action to a terminal state, returning it and every state seen on the way.
async fn finish(api: &Api, vm: &str, action: &Value) -> (Value, BTreeSet<String>) {
    let path = format!("{VM}/{vm}/actions/{}", action["id"]);
    let mut seen = BTreeSet::from([action["state"].as_str().unwrap().to_owned()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, a) = api.get(&path).await;
        let state = a["state"].as_str().unwrap().to_owned();
        seen.insert(state.clone());
        if state == "success" || state == "error" {
            return (a, seen);
        }
        assert!(Instant::now() < deadline, "action never ended: {a}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn hostinger_operations_answer_in_the_fixture_shapes() {
    let sim = start().await;
    let api = api(&sim);
    let (status, vms) = api.get(VM).await;
    assert_eq!(status, 200);
    assert_shape(&vms, "hostinger", "vm-list.json");
    let ids: Vec<String> = vms
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].to_string())
        .collect();
    assert_eq!(ids, sim.sources(Vendor::Hostinger));
    assert_shape(
        &api.get("/api/vps/v1/data-centers").await.1,
        "hostinger",
        "data-centers.json",
    );
    let (status, snap) = api.get(&format!("{VM}/1268054/snapshot")).await;
    assert_eq!(status, 200);
    assert_shape(&snap, "hostinger", "get.json");
    let (status, none) = api.get(&format!("{VM}/1268502/snapshot")).await;
    assert_eq!(status, 404);
    assert_shape(&none, "hostinger", "error.404.UNVERIFIED.json");
    assert_eq!(none["message"], "Snapshot not found");

    let (status, create) = api
        .call(Method::POST, &format!("{VM}/1268502/snapshot"))
        .await;
    assert_eq!(status, 200);
    assert_shape(&create, "hostinger", "create.response.json");
    assert_eq!(
        (create["name"].clone(), create["state"].clone()),
        (json!("snapshot_create"), json!("created"))
    );
    let (_, polled) = api
        .get(&format!("{VM}/1268502/actions/{}", create["id"]))
        .await;
    assert_shape(&polled, "hostinger", "action.sent.json");
    let (_, restore) = api
        .call(Method::POST, &format!("{VM}/1268054/snapshot/restore"))
        .await;
    assert_shape(&restore, "hostinger", "restore.response.json");
    let (_, delete) = api
        .call(Method::DELETE, &format!("{VM}/1268311/snapshot"))
        .await;
    assert_shape(&delete, "hostinger", "delete.response.json");
    let (_, actions) = api.get(&format!("{VM}/1268054/actions?page=1")).await;
    assert_shape(&actions, "hostinger", "actions-list.json");
    assert_eq!(actions["meta"]["total"], 2);
    let (done, _) = finish(&api, "1268502", &create).await;
    assert_shape(&done, "hostinger", "action.success.json");
}

#[tokio::test]
async fn hostinger_refuses_bad_tokens_with_its_401_body_and_requests_without_user_agent() {
    let sim = start().await;
    let wrong = Api::new(
        &sim,
        Vendor::Hostinger,
        &[("authorization", "Bearer nope"), ("user-agent", "t")],
    );
    let (status, body) = wrong.get(VM).await;
    assert_eq!(status, 401);
    assert_shape(&body, "hostinger", "error.401.json");
    assert_eq!(body["message"], "Unauthenticated");
    let auth = format!("Bearer {HOSTINGER_TOKEN}");
    let anonymous = Api::new(&sim, Vendor::Hostinger, &[("authorization", auth.as_str())]);
    let resp = anonymous.req(Method::GET, VM).send().await.unwrap();
    assert_eq!(
        resp.status(),
        403,
        "Cloudflare rejects requests without a User-Agent"
    );
    assert_eq!(resp.text().await.unwrap(), "error code: 1010");
}

#[tokio::test]
async fn hostinger_create_overwrites_the_vms_only_snapshot_once_its_action_succeeds() {
    let sim = start().await;
    let api = api(&sim);
    let path = format!("{VM}/1268054/snapshot");
    let (_, old) = api.get(&path).await;
    let (_, action) = api.call(Method::POST, &path).await;
    let (_, vms) = api.get(VM).await;
    assert_eq!(vms[0]["actions_lock"], "locked");
    let (status, busy) = api.call(Method::POST, &path).await;
    assert_eq!(status, 422);
    assert_shape(&busy, "hostinger", "error.422.json");
    assert_eq!(
        api.get(&path).await.1,
        old,
        "the old snapshot stays until the action succeeds"
    );
    let (done, seen) = finish(&api, "1268054", &action).await;
    assert_eq!(done["state"], "success");
    assert!(seen.contains("sent"), "{seen:?}");
    let (_, new) = api.get(&path).await;
    assert_ne!(new["id"], old["id"]);
    assert_eq!(api.get(VM).await.1[0]["actions_lock"], "unlocked");

    let (_, delete) = api.call(Method::DELETE, &path).await;
    finish(&api, "1268054", &delete).await;
    assert_eq!(api.get(&path).await.0, 404);
    assert_eq!(
        api.call(Method::POST, &format!("{path}/restore")).await.0,
        404
    );
}

#[tokio::test]
async fn hostinger_fail_async_fault_ends_the_action_in_error_without_effect() {
    let sim = start().await;
    let api = api(&sim);
    let path = format!("{VM}/1268311/snapshot");
    let (_, old) = api.get(&path).await;
    sim.set_fault(
        Vendor::Hostinger,
        Fault {
            fail_async: true,
            ..Fault::default()
        },
    );
    let (_, action) = api.call(Method::POST, &path).await;
    let (done, _) = finish(&api, "1268311", &action).await;
    assert_eq!(done["state"], "error");
    assert_shape(&done, "hostinger", "action.error.json");
    assert_eq!(api.get(&path).await.1, old);
    sim.clear_faults();
    let (status, missing) = api.get(&format!("{VM}/1268311/actions/1")).await;
    assert_eq!(
        (status, missing["message"].clone()),
        (404, json!("Action not found"))
    );
    assert_eq!(api.get(&format!("{VM}/999/snapshot")).await.0, 404);
}
