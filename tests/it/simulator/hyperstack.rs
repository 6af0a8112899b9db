//! Hyperstack: fixture shapes, `api_key` auth, paging/search, CREATING → COMPLETE, restore into a
//! new VM, images deleted with their snapshot.

use reqwest::Method;
use serde_json::json;
use snapgate::simulator::{RunningSimulator, Vendor, HYPERSTACK_API_KEY};

use super::{assert_shape, fixture, poll, start, Api};

fn api(sim: &RunningSimulator) -> Api {
    Api::new(sim, Vendor::Hyperstack, &[("api_key", HYPERSTACK_API_KEY)])
}

async fn create(api: &Api, vm: &str, name: &str) -> (u16, serde_json::Value) {
    let body = json!({ "name": name, "description": "test", "labels": ["a", "b"] });
    let path = format!("/core/virtual-machines/{vm}/snapshots");
    api.send_json(Method::POST, &path, &body).await
}

#[tokio::test]
async fn hyperstack_operations_answer_in_the_fixture_shapes() {
    let sim = start().await;
    let api = api(&sim);
    let (status, list) = api.get("/core/snapshots?page=1&pageSize=20").await;
    assert_eq!(status, 200);
    assert_shape(&list, "hyperstack", "list.json");
    let (status, one) = api.get("/core/snapshots/1402").await;
    assert_eq!(status, 200);
    assert_shape(&one, "hyperstack", "get.json");
    assert_eq!(one["snapshot"]["labels"], "pre-upgrade,llm");

    let (status, created) = create(&api, "2058", "llm-node-again").await;
    assert_eq!(status, 201);
    assert_shape(&created, "hyperstack", "create.response.json");
    let (status, free) = api
        .get("/core/snapshots/name-availability/unused-name")
        .await;
    assert_eq!(status, 200);
    assert_shape(&free, "hyperstack", "name-availability.response.json");
    assert_eq!(free["available"], true);
    let (_, taken) = api
        .get("/core/snapshots/name-availability/llm-node-pre-upgrade")
        .await;
    assert_eq!(
        taken,
        fixture("hyperstack", "name-availability.taken.response.json")
    );

    let image = json!({ "name": "golden", "labels": ["golden"] });
    let (status, img) = api
        .send_json(Method::POST, "/core/snapshots/1417/image", &image)
        .await;
    assert_eq!(status, 200);
    assert_shape(&img, "hyperstack", "create-image.response.json");
    let restore = json!({ "new_vm_name": "llm-node-restored" });
    let (status, vm) = api
        .send_json(Method::POST, "/core/snapshots/1402/restore", &restore)
        .await;
    assert_eq!(status, 200);
    assert_shape(&vm, "hyperstack", "restore.response.json");
    assert_eq!(vm["instance"]["name"], "llm-node-restored");
    let (status, deleted) = api.call(Method::DELETE, "/core/snapshots/1402").await;
    assert_eq!(status, 200);
    assert_shape(&deleted, "hyperstack", "delete.response.json");
}

#[tokio::test]
async fn hyperstack_refuses_missing_or_wrong_api_keys_with_its_401_body() {
    let sim = start().await;
    let wrong = Api::new(&sim, Vendor::Hyperstack, &[("api_key", "nope")]);
    let none = Api::new(&sim, Vendor::Hyperstack, &[]);
    let bearer = Api::new(
        &sim,
        Vendor::Hyperstack,
        &[("authorization", HYPERSTACK_API_KEY)],
    );
    for api in [wrong, none, bearer] {
        let (status, body) = api.get("/core/snapshots").await;
        assert_eq!(status, 401);
        assert_eq!(body, fixture("hyperstack", "error.401.json"));
    }
}

#[tokio::test]
async fn hyperstack_snapshot_is_creating_with_size_zero_then_complete() {
    let sim = start().await;
    let api = api(&sim);
    let (_, created) = create(&api, "2101", "trainer-now").await;
    let snap = &created["snapshot"];
    assert_eq!(snap["status"], "CREATING");
    assert_eq!(snap["size"], 0);
    assert_eq!(snap["labels"], json!(["a", "b"]));
    let path = format!("/core/snapshots/{}", snap["id"]);
    let (_, again) = create(&api, "2101", "trainer-twice").await;
    assert_eq!(
        again["error_reason"], "bad_request",
        "one snapshot at a time per VM"
    );
    let (status, _) = api.call(Method::DELETE, &path).await;
    assert_eq!(status, 409, "a creating snapshot cannot be deleted");
    let done = poll(&api, &path, |v| v["snapshot"]["status"] == "COMPLETE").await;
    assert_eq!(done["snapshot"]["size"], 100);
    let (created, updated) = (
        &done["snapshot"]["created_at"],
        &done["snapshot"]["updated_at"],
    );
    assert!(updated.as_str() >= created.as_str());
    assert!(!done["snapshot"]["created_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
}

#[tokio::test]
async fn hyperstack_pages_with_page_and_page_size_and_searches_by_name_or_id() {
    let sim = start().await;
    let api = api(&sim);
    for (vm, name) in [("2058", "x-one"), ("2101", "x-two"), ("2144", "x-three")] {
        assert_eq!(create(&api, vm, name).await.0, 201);
    }
    let (_, page) = api.get("/core/snapshots?page=2&pageSize=2").await;
    assert_eq!(
        (
            page["page"].clone(),
            page["page_size"].clone(),
            page["count"].clone()
        ),
        (json!(2), json!(2), json!(5))
    );
    assert_eq!(page["snapshots"].as_array().unwrap().len(), 2);
    let (_, last) = api.get("/core/snapshots?page=3&pageSize=2").await;
    assert_eq!(last["snapshots"].as_array().unwrap().len(), 1);
    let (_, found) = api.get("/core/snapshots?search=x-t").await;
    assert_eq!(found["count"], 2);
    let (_, by_id) = api.get("/core/snapshots?search=1417").await;
    assert_eq!(by_id["snapshots"][0]["name"], "trainer-weekly");
    let (status, _) = api.get("/core/snapshots?pageSize=abc").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn hyperstack_delete_also_deletes_images_made_from_the_snapshot() {
    let sim = start().await;
    let api = api(&sim);
    let (_, img) = api
        .send_json(
            Method::POST,
            "/core/snapshots/1417/image",
            &json!({ "name": "img" }),
        )
        .await;
    let (_, listed) = api.get("/core/snapshots/1417").await;
    assert_eq!(listed["snapshot"]["is_image"], true);
    let (_, deleted) = api.call(Method::DELETE, "/core/snapshots/1417").await;
    let message = deleted["message"].as_str().unwrap();
    assert!(message.contains(&img["id"].to_string()), "{message}");
    let (status, gone) = api.get("/core/snapshots/1417").await;
    assert_eq!(status, 404);
    assert_shape(&gone, "hyperstack", "error.404.json");
}

#[tokio::test]
async fn hyperstack_restore_needs_a_new_unique_vm_name_and_makes_a_new_vm() {
    let sim = start().await;
    let api = api(&sim);
    let (status, body) = api
        .send_json(Method::POST, "/core/snapshots/1402/restore", &json!({}))
        .await;
    assert_eq!(
        (status, body["error_reason"].clone()),
        (400, json!("bad_request"))
    );
    let taken = json!({ "new_vm_name": "trainer" });
    assert_eq!(
        api.send_json(Method::POST, "/core/snapshots/1402/restore", &taken)
            .await
            .0,
        400
    );
    let fresh = json!({ "new_vm_name": "fresh-vm", "contract_id": 77 });
    let (_, vm) = api
        .send_json(Method::POST, "/core/snapshots/1402/restore", &fresh)
        .await;
    assert_eq!(vm["instance"]["status"], "CREATING");
    assert_eq!(vm["instance"]["image"]["name"], "llm-node-pre-upgrade");
    let new_vm = vm["instance"]["id"].to_string();
    assert_eq!(
        create(&api, &new_vm, "too-early").await.0,
        400,
        "VM still building"
    );
    tokio::time::sleep(super::DELAY).await;
    assert_eq!(create(&api, &new_vm, "on-restored-vm").await.0, 201);
}
