//! Koyeb: fixture shapes, bearer auth, limit/offset paging, CREATING → AVAILABLE, DELETING → gone,
//! rename by POST, restore into a new volume.

use reqwest::Method;
use serde_json::{json, Value};
use snapgate::simulator::{RunningSimulator, SimulatorConfig, Vendor, KOYEB_TOKEN};
use std::time::Duration;

use super::{assert_shape, fixture, poll, start, start_with, Api};

const PG_DATA: &str = "8f6e2b4a-3c1d-4e5f-9a7b-0c2d4e6f8a1b";
const SEEDED: &str = "5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e";

fn api(sim: &RunningSimulator) -> Api {
    let auth = format!("Bearer {KOYEB_TOKEN}");
    Api::new(sim, Vendor::Koyeb, &[("authorization", auth.as_str())])
}

async fn create(api: &Api, volume: &str, name: &str) -> Value {
    let body = json!({ "parent_volume_id": volume, "name": name });
    let (status, created) = api.send_json(Method::POST, "/v1/snapshots", &body).await;
    assert_eq!(status, 200, "{created}");
    created
}

#[tokio::test]
async fn koyeb_operations_answer_in_the_fixture_shapes() {
    let sim = start().await;
    let api = api(&sim);
    let (status, list) = api.get("/v1/snapshots?limit=20&offset=0").await;
    assert_eq!(status, 200);
    assert_shape(&list, "koyeb", "list.json");
    let (_, empty) = api.get("/v1/snapshots?limit=20&offset=40").await;
    assert_shape(&empty, "koyeb", "list-empty.json");
    assert_eq!(
        (empty["limit"].clone(), empty["offset"].clone()),
        (json!(20), json!(40))
    );
    let (_, one) = api.get(&format!("/v1/snapshots/{SEEDED}")).await;
    assert_shape(&one, "koyeb", "get.json");

    let created = create(&api, PG_DATA, "pg-data-before-migration-2").await;
    assert_shape(&created, "koyeb", "create.response.json");
    let path = format!("/v1/snapshots/{SEEDED}");
    let (status, renamed) = api
        .send_json(Method::POST, &path, &json!({ "name": "renamed" }))
        .await;
    assert_eq!(status, 200);
    assert_shape(&renamed, "koyeb", "update.response.json");
    assert_eq!(renamed["snapshot"]["name"], "renamed");
    let restore = fixture("koyeb", "restore.request.json");
    let (status, volume) = api.send_json(Method::POST, "/v1/volumes", &restore).await;
    assert_eq!(status, 200, "{volume}");
    assert_shape(&volume, "koyeb", "restore.response.json");
    let (status, deleted) = api.call(Method::DELETE, &path).await;
    assert_eq!(status, 200);
    assert_shape(&deleted, "koyeb", "delete.response.json");
    assert_eq!(deleted["snapshot"]["status"], "SNAPSHOT_STATUS_DELETING");
}

#[tokio::test]
async fn koyeb_refuses_missing_or_wrong_tokens_with_its_401_body() {
    let sim = start().await;
    let wrong = Api::new(&sim, Vendor::Koyeb, &[("authorization", "Bearer nope")]);
    let bare = Api::new(&sim, Vendor::Koyeb, &[("authorization", KOYEB_TOKEN)]);
    let none = Api::new(&sim, Vendor::Koyeb, &[]);
    for api in [wrong, bare, none] {
        let (status, body) = api.get("/v1/snapshots").await;
        assert_eq!(status, 401);
        assert_eq!(body, fixture("koyeb", "error.401.json"));
    }
    let (status, body) = api(&sim)
        .get("/v1/snapshots/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(status, 404);
    assert_eq!(body, fixture("koyeb", "error.404.json"));
}

#[tokio::test]
async fn koyeb_snapshot_becomes_available_and_a_deleted_one_disappears() {
    let sim = start().await;
    let api = api(&sim);
    let created = create(&api, PG_DATA, "fresh").await;
    assert_eq!(created["snapshot"]["status"], "SNAPSHOT_STATUS_CREATING");
    assert_eq!(created["snapshot"]["size"], 10);
    let path = format!(
        "/v1/snapshots/{}",
        created["snapshot"]["id"].as_str().unwrap()
    );
    poll(&api, &path, |v| {
        v["snapshot"]["status"] == "SNAPSHOT_STATUS_AVAILABLE"
    })
    .await;
    let (_, deleting) = api.call(Method::DELETE, &path).await;
    assert_eq!(deleting["snapshot"]["status"], "SNAPSHOT_STATUS_DELETING");
    tokio::time::sleep(super::DELAY).await;
    let (status, _) = api.get(&path).await;
    assert_eq!(status, 404);
    let (_, list) = api.get("/v1/snapshots?limit=100").await;
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn koyeb_pages_with_limit_and_offset_and_reports_has_next() {
    // A long delay keeps the new snapshots CREATING while the status filter is checked.
    let sim = start_with(SimulatorConfig {
        async_delay: Duration::from_secs(30),
        ..SimulatorConfig::default()
    })
    .await;
    let api = api(&sim);
    for name in ["p1", "p2", "p3"] {
        create(&api, PG_DATA, name).await;
    }
    let (_, first) = api.get("/v1/snapshots?limit=2&offset=0").await;
    assert_eq!(first["snapshots"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_next"], true);
    assert_eq!(first["snapshots"][0]["name"], "p3", "newest first");
    let (_, last) = api.get("/v1/snapshots?limit=2&offset=4").await;
    assert_eq!(last["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(last["has_next"], false);
    let (_, default) = api.get("/v1/snapshots").await;
    assert_eq!(default["limit"], 10);
    let (status, too_many) = api.get("/v1/snapshots?limit=101").await;
    assert_eq!(status, 400);
    assert_shape(&too_many, "koyeb", "error.400.json");
    let query =
        "/v1/snapshots?statuses=SNAPSHOT_STATUS_AVAILABLE&statuses=SNAPSHOT_STATUS_DELETING";
    let (_, settled) = api.get(query).await;
    assert_eq!(settled["snapshots"].as_array().unwrap().len(), 2);
    let (_, by_region) = api.get("/v1/snapshots?region=was").await;
    assert_eq!(by_region["snapshots"][0]["name"], "uploads-weekly");
}

#[tokio::test]
async fn koyeb_restore_creates_a_new_listed_volume_from_an_available_snapshot() {
    let sim = start().await;
    let api = api(&sim);
    let (_, before) = api.get("/v1/volumes").await;
    assert_eq!(before["volumes"].as_array().unwrap().len(), 3);
    let ids: Vec<&str> = before["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert!(sim
        .sources(Vendor::Koyeb)
        .iter()
        .all(|s| ids.contains(&s.as_str())));

    let body = json!({ "name": "restored", "snapshot_id": SEEDED, "max_size": 50 });
    let (status, refused) = api.send_json(Method::POST, "/v1/volumes", &body).await;
    assert_eq!(
        (status, refused["fields"][0]["field"].clone()),
        (400, json!("max_size"))
    );
    let fresh = create(&api, PG_DATA, "not-yet").await;
    let early = json!({ "name": "early", "snapshot_id": fresh["snapshot"]["id"] });
    assert_eq!(
        api.send_json(Method::POST, "/v1/volumes", &early).await.0,
        400
    );

    let body = json!({ "name": "restored", "snapshot_id": SEEDED });
    let (_, made) = api.send_json(Method::POST, "/v1/volumes", &body).await;
    assert_eq!(made["volume"]["snapshot_id"], SEEDED);
    assert_eq!(made["volume"]["max_size"], 10);
    assert_eq!(made["volume"]["region"], "fra");
    let (_, after) = api.get("/v1/volumes").await;
    assert_eq!(after["volumes"].as_array().unwrap().len(), 4);
}
