//! Exact syminet requests and response mapping, asserted with a mock vendor (wiremock).

use serde_json::{json, Value};
use snapgate::{
    domain::{Account, ProviderKind, SnapshotStatus, SourceKind},
    providers::{validate_credentials, CallContext, Registry},
    upstream::Upstream,
};
use wiremock::{
    matchers::{any, body_json, header, method, path, query_param},
    Mock, MockServer, ResponseTemplate,
};

use crate::helpers::*;

const TOKEN: &str = "syminet-secret-token-0006";
const SLICE: &str = "3911";

fn fixture(name: &str) -> Value {
    vendor_fixture("syminet", name)
}

/// A mock of one documented Syminet call, with the documented lower-case `bearer`.
fn vendor(verb: &str, url: impl AsRef<str>) -> wiremock::MockBuilder {
    Mock::given(method(verb))
        .and(path(format!("/api/v1{}", url.as_ref())))
        .and(header("authorization", format!("bearer {TOKEN}").as_str()))
}

fn json_reply(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

/// `list.json` split into two pages of one item each.
fn two_pages() -> (Value, Value) {
    let list = fixture("list.json");
    let page = |n: usize| json!({"data": [list["data"][n - 1].clone()], "page": n, "pages": 2, "results": 2});
    (page(1), page(2))
}

/// A `created` timestamp in Syminet's form, `secs` from now.
fn syminet_time(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

async fn setup() -> (MockServer, TestApp, String) {
    let mock = MockServer::start().await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| {
        c.providers
            .set(ProviderKind::Syminet, "base_url", format!("{uri}/api/v1"));
        c.providers
            .set(ProviderKind::Syminet, "restore_settle_secs", 2);
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    let resp = app
        .post("/v1/accounts", &t, &account_body("sy", "syminet"))
        .await;
    assert_eq!(resp.status(), 201);
    (mock, app, t)
}

/// An account for calling the adapter directly (what `list` returns before the gateway merges it).
fn account() -> Account {
    direct_account("sy", ProviderKind::Syminet, Default::default())
}

async fn list_direct(
    mock: &MockServer,
    source: Option<&str>,
) -> Vec<snapgate::domain::VendorSnapshot> {
    let mut config = snapgate::Config::defaults().providers;
    config.set(
        ProviderKind::Syminet,
        "base_url",
        format!("{}/api/v1", mock.uri()),
    );
    let registry = Registry::new(&config, Upstream::new(Default::default())).unwrap();
    let adapter = registry.get(ProviderKind::Syminet);
    let credentials = validate_credentials(
        adapter.info(),
        json!({"token": TOKEN}).as_object().cloned().unwrap(),
    )
    .unwrap();
    let account = account();
    let ctx = CallContext {
        account: &account,
        credentials: &credentials,
    };
    adapter
        .list(
            &ctx,
            &snapgate::providers::ListFilter {
                source_id: source,
                statuses: &[],
            },
        )
        .await
        .and_then(snapgate::providers::Listed::complete)
        .unwrap()
}

#[tokio::test]
async fn get_walks_the_image_pages_with_the_lowercase_bearer_header() {
    let (mock, app, t) = setup().await;
    let (first, second) = two_pages();
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, first))
        .expect(2)
        .mount(&mock)
        .await;
    vendor("GET", "/images")
        .and(query_param("page", "2"))
        .respond_with(json_reply(200, second))
        .expect(1)
        .mount(&mock)
        .await;
    // On page 2: both pages are read.
    let s: Value = app
        .get("/v1/snapshots/sy:15377?include=vendor", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["id"], "sy:15377");
    assert_eq!(s["provider"], "syminet");
    assert_eq!(s["name"], "db1-1741989600");
    assert_eq!(s["status"], "available");
    assert_eq!(s["vendor_status"], Value::Null);
    assert_eq!(s["size_gb"], 2.0);
    assert_eq!(s["created_at"], "2025-03-14T22:00:07.540912Z");
    assert_eq!(s["source"], json!({"kind": "slice", "id": "3920"}));
    assert_eq!(s["region"], "SFO1");
    assert_eq!(s["vendor"], fixture("list.json")["data"][1]);
    // On page 1: the walk stops there.
    let s: Value = app
        .get("/v1/snapshots/sy:15340", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["name"], "web1-before-upgrade");
    assert!(s.get("vendor").is_none());
}

#[tokio::test]
async fn a_snapshot_missing_from_every_page_is_404() {
    let (mock, app, t) = setup().await;
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, fixture("list.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app.get("/v1/snapshots/sy:99999", &t).await;
    assert_problem(resp, 404, "snapshot_not_found").await;
    // Ids are integers: anything else is 404 without a vendor call.
    let resp = app.get("/v1/snapshots/sy:web1", &t).await;
    assert_problem(resp, 404, "snapshot_not_found").await;
}

#[tokio::test]
async fn an_empty_account_reports_page_zero_and_is_read_once() {
    let mock = MockServer::start().await;
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, fixture("list-empty.json")))
        .expect(1)
        .mount(&mock)
        .await;
    assert!(list_direct(&mock, None).await.is_empty());
}

#[tokio::test]
async fn list_all_reads_every_page() {
    let mock = MockServer::start().await;
    let (first, second) = two_pages();
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, first))
        .expect(1)
        .mount(&mock)
        .await;
    vendor("GET", "/images")
        .and(query_param("page", "2"))
        .respond_with(json_reply(200, second))
        .expect(1)
        .mount(&mock)
        .await;
    let all = list_direct(&mock, None).await;
    let ids: Vec<&str> = all.iter().map(|s| s.native_id.as_str()).collect();
    assert_eq!(ids, ["15340", "15377"]);
    assert_eq!(all[0].status, SnapshotStatus::Available);
    assert_eq!(all[0].size_gb, Some(18.0));
}

#[tokio::test]
async fn list_of_one_slice_reads_the_account_list_which_says_what_is_in_progress() {
    let mock = MockServer::start().await;
    let mut list = fixture("list.json");
    let mut taking = list["data"][0].clone();
    taking["id"] = json!(15400);
    taking["name"] = json!("web1-now");
    taking["in_progress"] = json!(true);
    taking["progress"] = json!(40);
    list["data"].as_array_mut().unwrap().push(taking);
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, list))
        .expect(1)
        .mount(&mock)
        .await;
    // The per-slice list has no `in_progress`: it cannot tell a snapshot being taken.
    vendor("GET", format!("/images/snapshots/{SLICE}"))
        .respond_with(json_reply(200, fixture("list-slice.json")))
        .expect(0)
        .mount(&mock)
        .await;
    let items = list_direct(&mock, Some(SLICE)).await;
    let seen: Vec<(&str, SnapshotStatus)> = items
        .iter()
        .map(|s| (s.native_id.as_str(), s.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("15340", SnapshotStatus::Available),
            ("15400", SnapshotStatus::Creating)
        ],
        "only the slice's snapshots, the one being taken as creating"
    );
    let source = items[0].source.as_ref().unwrap();
    assert_eq!(
        (source.kind, source.id.as_str()),
        (SourceKind::Slice, SLICE)
    );
    assert_eq!(items[0].size_gb, Some(18.0));
}

#[tokio::test]
async fn create_posts_the_snapshot_name_and_the_operation_finds_its_id_in_the_slice_list() {
    let (mock, app, t) = setup().await;
    vendor("POST", format!("/images/snapshots/{SLICE}/create"))
        .and(body_json(fixture("create.request.json")))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&mock)
        .await;
    let body = json!({"account": "sy", "source_id": SLICE, "name": "web1-before-upgrade"});
    let resp = app.post("/v1/snapshots", &t, &body).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    let op = &accepted["operation"];
    assert_eq!(op["kind"], "create");
    assert_eq!(op["state"], "running");
    assert_eq!(op["snapshot_id"], Value::Null, "a 202 carries no id");
    assert_eq!(op["vendor_ref"], json!({"kind": "list", "id": null}));
    assert_eq!(accepted["snapshot"], Value::Null);

    // Not listed yet (only an older snapshot of the same name): still running.
    let old = json!({"backup_full_size": 50, "created": "2024-11-14 06:55:36.925397",
                     "duration": "43s", "id": 14901, "name": "web1-before-upgrade"});
    vendor("GET", format!("/images/snapshots/{SLICE}"))
        .respond_with(json_reply(200, json!({"data": [old.clone()]})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "running");
    assert_eq!(polled["snapshot_id"], Value::Null);

    // Listed on the slice: named, but done only when the account-wide list (the one with
    // `in_progress`) agrees.
    let new = json!({"backup_full_size": 50, "created": syminet_time(-1), "duration": "51s",
                     "id": 15340, "name": "web1-before-upgrade"});
    vendor("GET", format!("/images/snapshots/{SLICE}"))
        .respond_with(json_reply(200, json!({"data": [old, new]})))
        .expect(2)
        .mount(&mock)
        .await;
    let mut image = fixture("list.json")["data"][0].clone();
    image["in_progress"] = json!(true);
    vendor("GET", "/images")
        .respond_with(json_reply(
            200,
            json!({"data": [image.clone()], "page": 1, "pages": 1}),
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "running", "{polled}");
    assert_eq!(polled["snapshot_id"], "sy:15340");

    image["in_progress"] = Value::Null;
    vendor("GET", "/images")
        .respond_with(json_reply(
            200,
            json!({"data": [image], "page": 1, "pages": 1}),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "succeeded");
    assert_eq!(polled["snapshot_id"], "sy:15340");
}

#[tokio::test]
async fn a_create_still_in_progress_keeps_the_operation_running_with_its_id() {
    let (mock, app, t) = setup().await;
    vendor("POST", format!("/images/snapshots/{SLICE}/create"))
        .and(body_json(json!({"snapshot_name": "db-nightly"})))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&mock)
        .await;
    let item = json!({"created": syminet_time(0), "id": 15400, "name": "db-nightly",
                      "in_progress": true, "progress": 40});
    vendor("GET", format!("/images/snapshots/{SLICE}"))
        .respond_with(json_reply(200, json!({"data": [item]})))
        .expect(1)
        .mount(&mock)
        .await;
    let body = json!({"account": "sy", "source_id": SLICE, "name": "db-nightly"});
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
    assert_eq!(polled["state"], "running");
    assert_eq!(polled["snapshot_id"], "sy:15400");
}

#[tokio::test]
async fn create_input_syminet_cannot_take_is_422_without_a_vendor_call() {
    let (mock, app, t) = setup().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&mock)
        .await;
    let long = "n".repeat(256);
    let cases = [
        (
            json!({"account": "sy", "source_id": "web1", "name": "x"}),
            "source_id",
        ),
        (
            json!({"account": "sy", "source_id": SLICE, "name": "x", "description": "notes"}),
            "description",
        ),
        (
            json!({"account": "sy", "source_id": SLICE, "name": long}),
            "name",
        ),
    ];
    for (body, field) in cases {
        let resp = app.post("/v1/snapshots", &t, &body).await;
        let p = assert_problem(resp, 422, "invalid_field").await;
        assert_eq!(p["field"], field);
    }
}

#[tokio::test]
async fn rename_posts_the_new_name_and_finishes_when_the_list_shows_it() {
    let (mock, app, t) = setup().await;
    vendor("POST", "/images/snapshots/15340/rename")
        .and(body_json(fixture("rename.request.json")))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app
        .patch(
            "/v1/snapshots/sy:15340",
            &t,
            &json!({"name": "web1-pre-php83"}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    let op = &accepted["operation"];
    assert_eq!(op["kind"], "rename");
    assert_eq!(op["state"], "running");
    assert_eq!(op["snapshot_id"], "sy:15340");
    assert_eq!(op["vendor_ref"]["kind"], "list");

    let mut renamed = fixture("list.json");
    renamed["data"][0]["name"] = json!("web1-pre-php83");
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, fixture("list.json")))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, renamed))
        .expect(1)
        .mount(&mock)
        .await;
    let location = format!("/v1/operations/{}", op["id"].as_str().unwrap());
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "running", "the old name is still listed");
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "succeeded");

    // Syminet snapshots have no description.
    let resp = app
        .patch("/v1/snapshots/sy:15340", &t, &json!({"description": "x"}))
        .await;
    assert_problem(resp, 501, "unsupported_operation").await;
}

#[tokio::test]
async fn delete_uses_the_trailing_delete_path_and_finishes_when_unlisted() {
    let (mock, app, t) = setup().await;
    vendor("DELETE", "/images/snapshots/15340/delete")
        .and(NoBody)
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app.delete("/v1/snapshots/sy:15340", &t).await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    let op = &accepted["operation"];
    assert_eq!(op["kind"], "delete");
    assert_eq!(op["state"], "running");
    assert_eq!(op["snapshot_id"], "sy:15340");

    let mut gone = fixture("list.json");
    gone["data"] = json!([gone["data"][1].clone()]);
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, fixture("list.json")))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, gone))
        .expect(1)
        .mount(&mock)
        .await;
    let location = format!("/v1/operations/{}", op["id"].as_str().unwrap());
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "running", "still listed");
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "succeeded");
}

#[tokio::test]
async fn restore_onto_a_target_slice_posts_both_ids_without_a_body() {
    let (mock, app, t) = setup().await;
    // The snapshot is read first: it must exist, and its size sets the assumed duration.
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, fixture("list.json")))
        .expect(1)
        .mount(&mock)
        .await;
    vendor("POST", "/images/snapshots/15340/restore/4000")
        .and(NoBody)
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app
        .post(
            "/v1/snapshots/sy:15340/restore",
            &t,
            &json!({"target_id": "4000"}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    let op = &accepted["operation"];
    assert_eq!(op["kind"], "restore");
    assert_eq!(op["state"], "running");
    assert_eq!(op["result"], json!({"slice_id": "4000"}));
    assert_eq!(op["vendor_ref"], json!({"kind": "list", "id": null}));
    // Completion is not observable: the operation says it is assumed, why, and after how long.
    assert_eq!(op["completion"], "assumed");
    let note = op["completion_note"].as_str().unwrap();
    // 18 GB at the panel's 2 GB per minute: 540 s, not the 2 s least time.
    assert!(
        note.contains("cannot tell")
            && note.contains("reported done 540 s")
            && note.contains("18 GB at an assumed 2 GB per minute, at least 2 s")
            && note.contains("restore_settle_secs"),
        "{note}"
    );

    let location = format!("/v1/operations/{}", op["id"].as_str().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(
        polled["state"], "running",
        "an 18 GB slice is not written in 2 s"
    );
    assert_eq!(polled["completion"], "assumed");
}

#[tokio::test]
async fn restore_without_a_target_goes_back_onto_the_snapshots_own_slice() {
    let (mock, app, t) = setup().await;
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, fixture("list.json")))
        .expect(1)
        .mount(&mock)
        .await;
    vendor("POST", format!("/images/snapshots/15340/restore/{SLICE}"))
        .and(NoBody)
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app
        .post("/v1/snapshots/sy:15340/restore", &t, &json!({}))
        .await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["operation"]["result"], json!({"slice_id": SLICE}));
    // Input Syminet cannot take never reaches it.
    for (body, field) in [
        (json!({"new_name": "copy"}), "new_name"),
        (json!({"target_id": "web2"}), "target_id"),
    ] {
        let resp = app.post("/v1/snapshots/sy:15340/restore", &t, &body).await;
        let p = assert_problem(resp, 422, "invalid_field").await;
        assert_eq!(p["field"], field);
    }
}

#[tokio::test]
async fn verify_reads_the_first_image_page() {
    let (mock, app, t) = setup().await;
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, fixture("list-empty.json")))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(401, json!({"error": "invalid token"})))
        .expect(1)
        .mount(&mock)
        .await;
    let v: Value = app
        .post("/v1/accounts/sy/verify", &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
    let v: Value = app
        .post("/v1/accounts/sy/verify", &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "failing");
    assert_eq!(v["problem"]["code"], "provider_auth_failed");
}

#[tokio::test]
async fn vendor_error_bodies_map_to_gateway_problems_without_leaking_the_token() {
    let (mock, app, t) = setup().await;
    let cases = [
        (400, fixture("error.json"), 400, "upstream_rejected"),
        (
            401,
            json!({"error": "unauthorized"}),
            502,
            "provider_auth_failed",
        ),
        (
            403,
            json!({"error": "forbidden"}),
            502,
            "provider_permission_denied",
        ),
        (
            404,
            fixture("error.404.UNVERIFIED.json"),
            404,
            "snapshot_not_found",
        ),
        (409, json!({"error": "busy"}), 409, "conflict"),
        (500, json!({"error": "boom"}), 502, "upstream_error"),
    ];
    for (i, (status, body, want, code)) in cases.into_iter().enumerate() {
        let id = 20000 + i;
        vendor("DELETE", format!("/images/snapshots/{id}/delete"))
            .respond_with(json_reply(status, body))
            .expect(1)
            .mount(&mock)
            .await;
        let resp = app.delete(&format!("/v1/snapshots/sy:{id}"), &t).await;
        let p = assert_problem(resp, want, code).await;
        assert_eq!(p["provider"], "syminet");
        assert!(!p.to_string().contains(TOKEN));
        if status == 400 {
            assert_eq!(p["detail"], "missing snapshot name");
        }
    }
    vendor("GET", "/images")
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .mount(&mock)
        .await;
    let resp = app.get("/v1/snapshots/sy:15340", &t).await;
    assert_problem(resp, 502, "upstream_error").await;
    // Last: after a 429 the gateway holds calls to this account until Retry-After.
    vendor("DELETE", "/images/snapshots/20100/delete")
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "4"))
        .mount(&mock)
        .await;
    let resp = app.delete("/v1/snapshots/sy:20100", &t).await;
    assert_eq!(resp.headers()["retry-after"], "4");
    assert_problem(resp, 429, "provider_rate_limited").await;
}

#[tokio::test]
async fn the_gateway_list_walks_every_page_and_pushes_the_slice_filter_down() {
    let (mock, app, t) = setup().await;
    let (first, second) = two_pages();
    // Both lists walk every page: the slice filter is applied to `/images` items, the only
    // ones that say whether a snapshot is still being taken.
    vendor("GET", "/images")
        .and(query_param("page", "1"))
        .respond_with(json_reply(200, first))
        .expect(2)
        .mount(&mock)
        .await;
    vendor("GET", "/images")
        .and(query_param("page", "2"))
        .respond_with(json_reply(200, second))
        .expect(2)
        .mount(&mock)
        .await;
    vendor("GET", format!("/images/snapshots/{SLICE}"))
        .respond_with(json_reply(200, fixture("list-slice.json")))
        .expect(0)
        .mount(&mock)
        .await;
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let page: Value = app
        .get("/v1/snapshots?account=sy", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&page), ["sy:15377", "sy:15340"]);
    assert_eq!(page["errors"], json!([]));
    let page: Value = app
        .get(&format!("/v1/snapshots?account=sy&source_id={SLICE}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&page), ["sy:15340"]);
    assert_eq!(
        page["items"][0]["source"],
        json!({"kind": "slice", "id": SLICE})
    );
}

/// This vendor's canary account (see `crate::canary`).
pub(crate) fn canary() -> crate::canary::Canary {
    crate::canary::Canary {
        provider: "syminet",
        native: "15377",
        credentials: json!({"token": "  bearer CANARY-sym\\y  "}),
        settings: json!({}),
        secrets: vec!["  bearer CANARY-sym\\y  "],
        endpoints: crate::canary::base_url(),
        token_exchange: false,
    }
}

#[tokio::test]
async fn sources_are_501_since_the_docs_show_no_slice_item_and_a_policy_over_all_is_refused() {
    let (mock, app, t) = setup().await;
    mock.reset().await;
    let (status, body) = account_sources(&app, &t, "sy").await;
    assert_eq!(status, 501, "{body}");
    assert_eq!(body["code"], "unsupported_operation", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("source listing"),
        "{body}"
    );
    let policy = json!({"account": "sy", "all_sources": true, "schedule": {"interval_secs": 3600}});
    let resp = app.post("/v1/policies", &t, &policy).await;
    assert_eq!(resp.status(), 501, "{}", resp.text().await.unwrap());
    assert!(
        mock.received_requests().await.unwrap().is_empty(),
        "nothing is asked of the vendor"
    );
}
