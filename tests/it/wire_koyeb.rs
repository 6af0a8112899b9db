//! Exact Koyeb requests and response mapping, asserted with a mock vendor (wiremock).

use serde_json::{json, Value};
use snapgate::{
    domain::{Credentials, ProviderKind, SnapshotStatus},
    providers::{CallContext, Registry},
    upstream::Upstream,
};
use wiremock::{
    matchers::{body_json, header, method, path, query_param, query_param_is_missing},
    Mock, MockServer, ResponseTemplate,
};

use crate::helpers::*;

const TOKEN: &str = "koyeb-secret-token-0002";
const BEARER: &str = "Bearer koyeb-secret-token-0002";
const SNAP: &str = "5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e";
const VOLUME: &str = "8f6e2b4a-3c1d-4e5f-9a7b-0c2d4e6f8a1b";

fn fixture(name: &str) -> Value {
    vendor_fixture("koyeb", name)
}

fn reply(status: u16, file: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(fixture(file))
}

/// The snapshot fixture with another status.
fn with_status(file: &str, status: &str) -> Value {
    let mut v = fixture(file);
    v["snapshot"]["status"] = json!(status);
    v
}

async fn setup() -> (MockServer, TestApp, String) {
    let mock = MockServer::start().await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| c.providers.set(ProviderKind::Koyeb, "base_url", uri)).await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("ky", "koyeb"))
            .await
            .status(),
        201
    );
    (mock, app, t)
}

/// Calls the adapter's `list` directly (the gateway has no list route to drive it yet).
async fn list(
    mock: &MockServer,
    organization_id: Option<&str>,
    source_id: Option<&str>,
) -> Result<Vec<snapgate::domain::VendorSnapshot>, snapgate::providers::ProviderError> {
    let mut config = snapgate::Config::defaults();
    config
        .providers
        .set(ProviderKind::Koyeb, "base_url", mock.uri());
    let registry = Registry::new(
        &config.providers,
        Upstream::new(Default::default()),
    )
    .unwrap();
    let mut settings = serde_json::Map::new();
    if let Some(org) = organization_id {
        settings.insert("organization_id".to_owned(), json!(org));
    }
    let account = direct_account("ky", ProviderKind::Koyeb, settings);
    let credentials = Credentials::new([("token".to_owned(), TOKEN.to_owned().into())].into());
    let ctx = CallContext {
        account: &account,
        credentials: &credentials,
    };
    registry
        .get(ProviderKind::Koyeb)
        .list(
            &ctx,
            &snapgate::providers::ListFilter {
                source_id,
                statuses: &[],
            },
        )
        .await
        .and_then(snapgate::providers::Listed::complete)
}

#[tokio::test]
async fn get_sends_the_bearer_token_and_maps_an_available_volume_snapshot() {
    let (mock, app, t) = setup().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .and(header("authorization", BEARER))
        .respond_with(reply(200, "get.json"))
        .expect(2)
        .mount(&mock)
        .await;
    let s: Value = app
        .get(&format!("/v1/snapshots/ky:{SNAP}?include=vendor"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["id"], format!("ky:{SNAP}"));
    assert_eq!(s["provider"], "koyeb");
    assert_eq!(s["native_id"], SNAP);
    assert_eq!(s["name"], "pg-data-before-migration");
    assert_eq!(s["description"], Value::Null);
    assert_eq!(s["status"], "available");
    assert_eq!(s["vendor_status"], "SNAPSHOT_STATUS_AVAILABLE");
    assert_eq!(s["size_gb"], 10.0);
    assert_eq!(s["created_at"], "2025-03-11T09:15:42.221274Z");
    assert_eq!(s["source"], json!({"kind": "volume", "id": VOLUME}));
    assert_eq!(s["region"], "fra");
    assert_eq!(s["vendor"], fixture("get.json")["snapshot"]);
    let plain: Value = app
        .get(&format!("/v1/snapshots/ky:{SNAP}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert!(plain.get("vendor").is_none());
}

#[tokio::test]
async fn get_reports_a_deleted_snapshot_as_deleted_whatever_form_deleted_at_takes() {
    let (mock, app, t) = setup().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .respond_with(reply(200, "get.deleted.json"))
        .mount(&mock)
        .await;
    let s: Value = app
        .get(&format!("/v1/snapshots/ky:{SNAP}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (s["status"].as_str(), s["vendor_status"].as_str()),
        (Some("deleted"), Some("SNAPSHOT_STATUS_DELETED"))
    );

    // absent, null and the zero time all mean "not deleted".
    let ids = [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000003",
    ];
    for (id, deleted_at) in
        ids.iter()
            .zip([None, Some(Value::Null), Some(json!("0001-01-01T00:00:00Z"))])
    {
        let mut body = fixture("get.json");
        body["snapshot"]["id"] = json!(id);
        if let Some(d) = deleted_at {
            body["snapshot"]["deleted_at"] = d;
        }
        Mock::given(method("GET"))
            .and(path(format!("/v1/snapshots/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&mock)
            .await;
        let s: Value = app
            .get(&format!("/v1/snapshots/ky:{id}"), &t)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(s["status"], "available", "{id}");
    }
    // Migrating to cold storage: the data is there (available, the vendor value kept); an
    // unknown enum value stays visible as unknown.
    for (id, status, want) in [
        (
            "00000000-0000-4000-8000-000000000004",
            "SNAPSHOT_STATUS_MIGRATING",
            "available",
        ),
        (
            "00000000-0000-4000-8000-000000000005",
            "SNAPSHOT_STATUS_INVALID",
            "unknown",
        ),
        (
            "00000000-0000-4000-8000-000000000006",
            "SNAPSHOT_STATUS_FROZEN",
            "unknown",
        ),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/v1/snapshots/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(with_status("get.json", status)))
            .mount(&mock)
            .await;
        let s: Value = app
            .get(&format!("/v1/snapshots/ky:{id}"), &t)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (s["status"].as_str(), s["vendor_status"].as_str()),
            (Some(want), Some(status))
        );
    }
}

#[tokio::test]
async fn create_posts_parent_volume_id_and_name_and_tracks_creating_to_available() {
    let (mock, app, t) = setup().await;
    Mock::given(method("POST"))
        .and(path("/v1/snapshots"))
        .and(header("authorization", BEARER))
        .and(header("content-type", "application/json"))
        .and(body_json(fixture("create.request.json")))
        .respond_with(reply(200, "create.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let body = json!({"account": "ky", "source_id": VOLUME, "name": "pg-data-before-migration"});
    let resp = app.post("/v1/snapshots", &t, &body).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    let op = &accepted["operation"];
    assert_eq!(op["kind"], "create");
    assert_eq!(op["state"], "running");
    assert_eq!(op["snapshot_id"], format!("ky:{SNAP}"));
    assert_eq!(
        op["vendor_ref"],
        json!({"kind": "snapshot_status", "id": null})
    );
    assert_eq!(accepted["snapshot"]["status"], "creating");
    assert_eq!(
        accepted["snapshot"]["vendor_status"],
        "SNAPSHOT_STATUS_CREATING"
    );

    // Still creating, then available: the operation follows the snapshot's status.
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .and(header("authorization", BEARER))
        .respond_with(reply(200, "create.response.json"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "running");
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .respond_with(reply(200, "get.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "succeeded");
    assert!(polled["finished_at"].is_string());
}

#[tokio::test]
async fn create_checks_the_volume_id_name_and_description_before_calling_koyeb() {
    let (mock, app, t) = setup().await;
    let cases = [
        (
            json!({"account": "ky", "source_id": "vol-1", "name": "n"}),
            "source_id",
        ),
        (
            json!({"account": "ky", "source_id": VOLUME, "name": "n", "description": "Koyeb has none"}),
            "description",
        ),
        (
            json!({"account": "ky", "source_id": VOLUME, "name": "n", "replace_existing": true}),
            "replace_existing",
        ),
    ];
    for (body, field) in cases {
        let p = assert_problem(
            app.post("/v1/snapshots", &t, &body).await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(p["field"], field);
    }
    assert!(mock.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_create_whose_snapshot_disappears_fails_and_one_deleted_meanwhile_fails_too() {
    let (mock, app, t) = setup().await;
    let other = "11111111-2222-4333-8444-555555555555";
    let mut created = fixture("create.response.json");
    created["snapshot"]["id"] = json!(other);
    Mock::given(method("POST"))
        .and(path("/v1/snapshots"))
        .respond_with(ResponseTemplate::new(200).set_body_json(created))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/snapshots"))
        .respond_with(reply(200, "create.response.json"))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{other}")))
        .respond_with(reply(404, "error.404.json"))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .respond_with(reply(200, "get.deleted.json"))
        .mount(&mock)
        .await;
    for code in ["snapshot_not_found", "upstream_error"] {
        let body =
            json!({"account": "ky", "source_id": VOLUME, "name": "pg-data-before-migration"});
        let accepted: Value = app
            .post("/v1/snapshots", &t, &body)
            .await
            .json()
            .await
            .unwrap();
        let id = accepted["operation"]["id"].as_str().unwrap();
        let polled: Value = app
            .get(&format!("/v1/operations/{id}"), &t)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(polled["state"], "failed");
        assert_eq!(polled["error"]["code"], code, "{polled}");
    }
}

#[tokio::test]
async fn rename_posts_only_the_new_name_and_finishes_at_once() {
    let (mock, app, t) = setup().await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .and(header("authorization", BEARER))
        .and(body_json(fixture("update.request.json")))
        .respond_with(reply(200, "update.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app
        .patch(
            &format!("/v1/snapshots/ky:{SNAP}"),
            &t,
            &json!({"name": "pg-data-pre-v2-migration"}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["operation"]["kind"], "rename");
    assert_eq!(accepted["operation"]["state"], "succeeded");
    assert_eq!(accepted["operation"]["snapshot_id"], format!("ky:{SNAP}"));
    assert_eq!(accepted["snapshot"]["name"], "pg-data-pre-v2-migration");
    // Koyeb snapshots have no description.
    let p = assert_problem(
        app.patch(
            &format!("/v1/snapshots/ky:{SNAP}"),
            &t,
            &json!({"name": "x", "description": "y"}),
        )
        .await,
        501,
        "unsupported_operation",
    )
    .await;
    assert!(p["supported_by"]
        .as_array()
        .unwrap()
        .contains(&json!("oktawave")));
}

#[tokio::test]
async fn delete_is_running_until_the_snapshot_reads_deleted() {
    let (mock, app, t) = setup().await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .and(header("authorization", BEARER))
        .respond_with(reply(200, "delete.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app.delete(&format!("/v1/snapshots/ky:{SNAP}"), &t).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["operation"]["kind"], "delete");
    assert_eq!(accepted["operation"]["state"], "running");
    assert_eq!(
        accepted["operation"]["vendor_ref"]["kind"],
        "snapshot_status"
    );
    assert_eq!(accepted["operation"]["snapshot_id"], format!("ky:{SNAP}"));

    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .respond_with(reply(200, "delete.response.json"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "running");
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .respond_with(reply(200, "get.deleted.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "succeeded");
}

#[tokio::test]
async fn delete_succeeds_when_the_snapshot_is_gone_or_already_reads_deleted() {
    let (mock, app, t) = setup().await;
    let gone = "11111111-2222-4333-8444-555555555555";
    let mut deleting = fixture("delete.response.json");
    deleting["snapshot"]["id"] = json!(gone);
    Mock::given(method("DELETE"))
        .and(path(format!("/v1/snapshots/{gone}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(deleting))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{gone}")))
        .respond_with(reply(404, "error.404.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let accepted: Value = app
        .delete(&format!("/v1/snapshots/ky:{gone}"), &t)
        .await
        .json()
        .await
        .unwrap();
    let id = accepted["operation"]["id"].as_str().unwrap();
    let polled: Value = app
        .get(&format!("/v1/operations/{id}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(polled["state"], "succeeded");

    Mock::given(method("DELETE"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .respond_with(reply(200, "get.deleted.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let accepted: Value = app
        .delete(&format!("/v1/snapshots/ky:{SNAP}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["operation"]["state"], "succeeded");
    assert_eq!(accepted["snapshot"]["status"], "deleted");
}

#[tokio::test]
async fn restore_creates_a_volume_from_the_snapshot_in_its_region() {
    let (mock, app, t) = setup().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .and(header("authorization", BEARER))
        .respond_with(reply(200, "get.json"))
        .expect(2)
        .mount(&mock)
        .await;
    let mut expected = fixture("restore.request.json");
    expected["read_only"] = json!(false);
    Mock::given(method("POST"))
        .and(path("/v1/volumes"))
        .and(header("authorization", BEARER))
        .and(body_json(&expected))
        .respond_with(reply(200, "restore.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app
        .post(
            &format!("/v1/snapshots/ky:{SNAP}/restore"),
            &t,
            &json!({"new_name": "pg-data-restored"}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    let op = &accepted["operation"];
    assert_eq!(op["kind"], "restore");
    assert_eq!(
        op["result"],
        json!({"volume_id": "4d5e6f70-8192-43a4-b5c6-d7e8f9a0b1c2", "volume_name": "pg-data-restored"})
    );
    // Running until the new volume is usable, read from the volume API.
    assert_eq!(op["state"], "running");
    assert_eq!(op["completion"], "observed");
    assert_eq!(
        op["vendor_ref"],
        json!({"kind": "resource", "id": "4d5e6f70-8192-43a4-b5c6-d7e8f9a0b1c2"})
    );
    Mock::given(method("GET"))
        .and(path("/v1/volumes/4d5e6f70-8192-43a4-b5c6-d7e8f9a0b1c2"))
        .and(header("authorization", BEARER))
        .respond_with(reply(200, "restore.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let location = format!("/v1/operations/{}", op["id"].as_str().unwrap());
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(
        polled["state"], "succeeded",
        "the volume is DETACHED: {polled}"
    );

    // Without new_name the volume is named after the snapshot.
    expected["name"] = json!("pg-data-before-migration-restore");
    let mut made = fixture("restore.response.json");
    made["volume"]["name"] = json!("pg-data-before-migration-restore");
    Mock::given(method("POST"))
        .and(path("/v1/volumes"))
        .and(body_json(&expected))
        .respond_with(ResponseTemplate::new(200).set_body_json(made))
        .expect(1)
        .mount(&mock)
        .await;
    let accepted: Value = app
        .post(&format!("/v1/snapshots/ky:{SNAP}/restore"), &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        accepted["operation"]["result"]["volume_name"],
        "pg-data-before-migration-restore"
    );

    // Koyeb always makes a new volume: a target is refused before any call.
    let p = assert_problem(
        app.post(
            &format!("/v1/snapshots/ky:{SNAP}/restore"),
            &t,
            &json!({"target_id": VOLUME}),
        )
        .await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(p["field"], "target_id");
}

#[tokio::test]
async fn restore_of_a_deleted_snapshot_is_404_without_making_a_volume() {
    let (mock, app, t) = setup().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{SNAP}")))
        .respond_with(reply(200, "get.deleted.json"))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/volumes"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&mock)
        .await;
    let resp = app
        .post(&format!("/v1/snapshots/ky:{SNAP}/restore"), &t, &json!({}))
        .await;
    assert_problem(resp, 404, "snapshot_not_found").await;
}

#[tokio::test]
async fn verify_lists_one_snapshot_of_the_organization_and_records_health() {
    let (mock, app, t) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1/snapshots"))
        .and(query_param("limit", "1"))
        .and(query_param("organization_id", "org-1"))
        .and(query_param_is_missing("offset"))
        .and(header("authorization", BEARER))
        .respond_with(reply(200, "list.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let v: Value = app
        .post("/v1/accounts/ky/verify", &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
    let account: Value = app.get("/v1/accounts/ky", &t).await.json().await.unwrap();
    assert_eq!(account["health"]["status"], "ok");
}

#[tokio::test]
async fn verify_with_a_refused_token_records_a_failing_account() {
    let (mock, app, t) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1/snapshots"))
        .respond_with(reply(401, "error.401.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let v: Value = app
        .post("/v1/accounts/ky/verify", &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "failing");
    assert_eq!(v["problem"]["code"], "provider_auth_failed");
}

#[tokio::test]
async fn list_walks_offset_pages_of_100_with_the_organization_until_has_next_is_false() {
    let mock = MockServer::start().await;
    let mut first = fixture("list.json");
    first["has_next"] = json!(true);
    let mut second = fixture("list.json");
    second["snapshots"] = json!([fixture("list.json")["snapshots"][1].clone()]);
    second["snapshots"][0]["id"] = json!("b0000000-0000-4000-8000-000000000003");
    for (offset, body) in [("0", first), ("2", second)] {
        Mock::given(method("GET"))
            .and(path("/v1/snapshots"))
            .and(query_param("limit", "100"))
            .and(query_param("offset", offset))
            .and(query_param("organization_id", "org-1"))
            .and(header("authorization", BEARER))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&mock)
            .await;
    }
    let all = list(&mock, Some("org-1"), None).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|s| s.native_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            SNAP,
            "a7c9e1f3-2b4d-4c6e-8f0a-1c3e5a7b9d2f",
            "b0000000-0000-4000-8000-000000000003"
        ]
    );
    assert_eq!(all[1].status, SnapshotStatus::Creating);
    assert_eq!(all[1].region.as_deref(), Some("was"));
}

#[tokio::test]
async fn list_filters_by_volume_client_side_and_stops_on_an_empty_page() {
    let mock = MockServer::start().await;
    let mut first = fixture("list.json");
    first["has_next"] = json!(true);
    let mut empty = fixture("list-empty.json");
    // A page that is empty ends the walk even if has_next claims otherwise.
    empty["has_next"] = json!(true);
    for (offset, body) in [("0", first), ("2", empty)] {
        Mock::given(method("GET"))
            .and(path("/v1/snapshots"))
            .and(query_param("limit", "100"))
            .and(query_param("offset", offset))
            .and(query_param_is_missing("organization_id"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&mock)
            .await;
    }
    let mine = list(&mock, None, Some(VOLUME)).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].native_id, SNAP);
    assert_eq!(mine[0].source.as_ref().unwrap().id, VOLUME);
}

/// Issue 22 item 1: a reply without `has_next` is no evidence the list ended; Koyeb's CLI
/// pages until an empty page, and so does the gateway (a short page alone ends nothing).
#[tokio::test]
async fn a_reply_without_has_next_is_paged_until_an_empty_page() {
    let mock = MockServer::start().await;
    let mut first = fixture("list.json");
    first.as_object_mut().unwrap().remove("has_next");
    let mut second = fixture("list.json");
    second.as_object_mut().unwrap().remove("has_next");
    second["snapshots"] = json!([fixture("list.json")["snapshots"][1].clone()]);
    second["snapshots"][0]["id"] = json!("b0000000-0000-4000-8000-000000000003");
    let mut empty = fixture("list-empty.json");
    empty.as_object_mut().unwrap().remove("has_next");
    for (offset, body) in [("0", first), ("2", second), ("3", empty)] {
        Mock::given(method("GET"))
            .and(path("/v1/snapshots"))
            .and(query_param("limit", "100"))
            .and(query_param("offset", offset))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&mock)
            .await;
    }
    let all = list(&mock, None, None).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
}

#[tokio::test]
async fn an_empty_account_lists_nothing_after_one_call() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/snapshots"))
        .respond_with(reply(200, "list-empty.json"))
        .expect(1)
        .mount(&mock)
        .await;
    assert!(list(&mock, None, None).await.unwrap().is_empty());
}

#[tokio::test]
async fn vendor_errors_map_to_gateway_problems_without_leaking_the_token() {
    let (mock, app, t) = setup().await;
    let cases = [
        (400, "error.400.json", 400, "upstream_rejected"),
        (401, "error.401.json", 502, "provider_auth_failed"),
        (403, "error.403.json", 502, "provider_permission_denied"),
        (404, "error.404.json", 404, "snapshot_not_found"),
        (
            404,
            "error.default.rpc-status.json",
            404,
            "snapshot_not_found",
        ),
        (409, "error.400.json", 409, "conflict"),
        (500, "error.500.json", 502, "upstream_error"),
        (503, "error.default.rpc-status.json", 502, "upstream_error"),
    ];
    for (i, (status, file, want, code)) in cases.iter().enumerate() {
        let id = format!("e0000000-0000-4000-8000-00000000000{i}");
        Mock::given(method("GET"))
            .and(path(format!("/v1/snapshots/{id}")))
            .respond_with(reply(*status, file))
            // Upstream retries a GET after a 5xx (its policy, not this adapter's).
            .expect(if *status >= 500 { 1..=3 } else { 1..=1 })
            .mount(&mock)
            .await;
        let p = assert_problem(
            app.get(&format!("/v1/snapshots/ky:{id}"), &t).await,
            *want,
            code,
        )
        .await;
        assert_eq!(p["provider"], "koyeb", "{file}");
        assert_eq!(p["account"], "ky");
        assert!(!p.to_string().contains(TOKEN));
        if *status == 400 {
            // The field-level reason of ErrorWithFields reaches the caller.
            assert!(
                p["detail"]
                    .as_str()
                    .unwrap()
                    .contains("parent_volume_id cannot be blank"),
                "{p}"
            );
        }
    }
    Mock::given(method("GET"))
        .and(path("/v1/snapshots/f0000000-0000-4000-8000-000000000001"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{not json"))
        .mount(&mock)
        .await;
    assert_problem(
        app.get("/v1/snapshots/ky:f0000000-0000-4000-8000-000000000001", &t)
            .await,
        502,
        "upstream_error",
    )
    .await;
    // Koyeb ids are UUIDs: anything else is 404 without a vendor call.
    let before = mock.received_requests().await.unwrap().len();
    assert_problem(
        app.get("/v1/snapshots/ky:5e0f3c2a", &t).await,
        404,
        "snapshot_not_found",
    )
    .await;
    assert_problem(
        app.delete("/v1/snapshots/ky:not-a-uuid", &t).await,
        404,
        "snapshot_not_found",
    )
    .await;
    assert_eq!(mock.received_requests().await.unwrap().len(), before);
    // Last: after a 429 the gateway holds calls to this account until Retry-After.
    Mock::given(method("GET"))
        .and(path("/v1/snapshots/f0000000-0000-4000-8000-000000000000"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "9")
                .set_body_json(
                    json!({"status": 429, "code": "rate_limit_error", "message": "slow down"}),
                ),
        )
        .mount(&mock)
        .await;
    let resp = app
        .get("/v1/snapshots/ky:f0000000-0000-4000-8000-000000000000", &t)
        .await;
    assert_eq!(resp.headers()["retry-after"], "9");
    assert_problem(resp, 429, "provider_rate_limited").await;
}

#[tokio::test]
async fn the_gateway_list_walks_every_koyeb_page_and_reports_a_refused_token_beside_the_items() {
    let (mock, app, t) = setup().await;
    let mut first = fixture("list.json");
    first["has_next"] = json!(true);
    let mut second = fixture("list.json");
    second["snapshots"] = json!([fixture("list.json")["snapshots"][0].clone()]);
    second["snapshots"][0]["id"] = json!("b0000000-0000-4000-8000-000000000003");
    second["snapshots"][0]["created_at"] = json!("2025-03-20T00:00:00Z");
    for (offset, body) in [("0", first), ("2", second)] {
        Mock::given(method("GET"))
            .and(path("/v1/snapshots"))
            .and(query_param("limit", "100"))
            .and(query_param("offset", offset))
            .and(query_param("organization_id", "org-1"))
            .and(header("authorization", BEARER))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&mock)
            .await;
    }
    let page: Value = app
        .get(&format!("/v1/snapshots?account=ky&source_id={VOLUME}"), &t)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["native_id"].as_str().unwrap())
        .collect();
    // Newest first; the other volume's snapshot is filtered out.
    assert_eq!(
        ids,
        ["b0000000-0000-4000-8000-000000000003", SNAP],
        "{page}"
    );
    assert_eq!(page["errors"], json!([]));

    // A second account whose token Koyeb refuses shows up in `errors`, not as a failed list.
    let mut body = account_body("ky-bad", "koyeb");
    body["credentials"]["token"] = json!("revoked-token");
    body["settings"] = json!({});
    assert_eq!(app.post("/v1/accounts", &t, &body).await.status(), 201);
    Mock::given(method("GET"))
        .and(path("/v1/snapshots"))
        .and(header("authorization", "Bearer revoked-token"))
        .respond_with(reply(401, "error.401.json"))
        .mount(&mock)
        .await;
    let page: Value = app
        .get("/v1/snapshots?account=ky-bad", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"], json!([]));
    assert_eq!(page["errors"][0]["code"], "provider_auth_failed", "{page}");
}

#[tokio::test]
async fn an_available_only_list_is_pushed_down_as_statuses_and_other_statuses_are_not() {
    let (mock, app, t) = setup().await;
    // A snapshot moving to cold storage is still an available snapshot.
    let mut listed = fixture("list.json");
    listed["snapshots"][0]["status"] = json!("SNAPSHOT_STATUS_MIGRATING");
    let migrating_id = listed["snapshots"][0]["id"].as_str().unwrap().to_owned();
    Mock::given(method("GET"))
        .and(path("/v1/snapshots"))
        .and(query_param("statuses", "SNAPSHOT_STATUS_AVAILABLE"))
        .and(query_param("statuses", "SNAPSHOT_STATUS_MIGRATING"))
        .and(header("authorization", BEARER))
        .respond_with(ResponseTemplate::new(200).set_body_json(listed))
        .expect(1)
        .mount(&mock)
        .await;
    let page: Value = app
        .get("/v1/snapshots?account=ky&status=available", &t)
        .await
        .json()
        .await
        .unwrap();
    assert!(page["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "available"));
    let migrating = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["native_id"] == migrating_id.as_str())
        .expect("the migrating snapshot is listed as available");
    assert_eq!(migrating["vendor_status"], "SNAPSHOT_STATUS_MIGRATING");
    // `creating` may come from the gateway's own pending operations: never pushed down.
    let requests_before = mock.received_requests().await.unwrap().len();
    Mock::given(method("GET"))
        .and(path("/v1/snapshots"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("list.json")))
        .mount(&mock)
        .await;
    let resp = app
        .get("/v1/snapshots?account=ky&status=creating", &t)
        .await;
    assert_eq!(resp.status(), 200);
    let requests = mock.received_requests().await.unwrap();
    assert!(requests[requests_before..].iter().all(|r| !r
        .url
        .query()
        .unwrap_or("")
        .contains("statuses")));
}

#[tokio::test]
async fn a_create_is_done_at_available_not_while_its_snapshot_migrates() {
    let (mock, app, t) = setup().await;
    let id = "00000000-0000-4000-8000-0000000000a1";
    let mut created = fixture("create.response.json");
    created["snapshot"]["id"] = json!(id);
    created["snapshot"]["status"] = json!("SNAPSHOT_STATUS_MIGRATING");
    Mock::given(method("POST"))
        .and(path("/v1/snapshots"))
        .respond_with(ResponseTemplate::new(200).set_body_json(created))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{id}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(with_status("get.json", "SNAPSHOT_STATUS_MIGRATING")),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/snapshots/{id}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(with_status("get.json", "SNAPSHOT_STATUS_AVAILABLE")),
        )
        .mount(&mock)
        .await;
    let source = fixture("create.request.json")["parent_volume_id"].clone();
    let accepted: Value = app
        .post(
            "/v1/snapshots",
            &t,
            &json!({"account": "ky", "source_id": source, "name": "n"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["operation"]["state"], "running", "{accepted}");
    let op_id = accepted["operation"]["id"].as_str().unwrap();
    let path = format!("/v1/operations/{op_id}");
    let first: Value = app.get(&path, &t).await.json().await.unwrap();
    assert_eq!(first["state"], "running", "still migrating: {first}");
    let second: Value = app.get(&path, &t).await.json().await.unwrap();
    assert_eq!(second["state"], "succeeded", "{second}");
}

/// This vendor's canary account (see `crate::canary`).
pub(crate) fn canary() -> crate::canary::Canary {
    crate::canary::Canary {
        provider: "koyeb",
        native: "a7c9e1f3-2b4d-4c6e-8f0a-1c3e5a7b9d2f",
        credentials: json!({"token": "Bearer CANARY-ky\"q\\x"}),
        settings: json!({}),
        secrets: vec!["Bearer CANARY-ky\"q\\x"],
        endpoints: crate::canary::base_url(),
        token_exchange: false,
    }
}

#[tokio::test]
async fn sources_page_the_volumes_by_offset_until_has_next_agrees_with_a_short_page() {
    let (mock, app, t) = setup().await;
    let volume = |id: &str, status: &str| {
        json!({"id": id, "name": format!("vol-{}", &id[..4]), "region": "fra",
               "status": format!("PERSISTENT_VOLUME_STATUS_{status}")})
    };
    let full: Vec<Value> = (0..100)
        .map(|i| volume(&format!("{i:04}e2b4a-3c1d-4e5f-9a7b-0c2d4e6f8a1b"), "ATTACHED"))
        .collect();
    Mock::given(method("GET"))
        .and(path("/v1/volumes"))
        .and(header("authorization", BEARER))
        .and(query_param("limit", "100"))
        .and(query_param("offset", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"volumes": full, "limit": 100, "offset": 0, "has_next": true}),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/volumes"))
        .and(header("authorization", BEARER))
        .and(query_param("limit", "100"))
        .and(query_param("offset", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "volumes": [volume(VOLUME, "DETACHED"), volume("9f6e2b4a-3c1d-4e5f-9a7b-0c2d4e6f8a1b", "DELETED")],
            "limit": 100, "offset": 100, "has_next": false,
        })))
        .expect(1)
        .mount(&mock)
        .await;
    let (status, body) = account_sources(&app, &t, "ky").await;
    assert_eq!(status, 200, "{body}");
    let listed = listed_sources(&body);
    assert_eq!(listed.len(), 101, "the deleted volume is left out: {body}");
    assert_eq!(listed[100], (VOLUME.to_owned(), "volume".to_owned()));
    assert!(listed.iter().all(|(_, kind)| kind == "volume"));
}
