//! Syminet: fixture shapes, bearer auth, 202 fire-and-forget operations, `in_progress` settling,
//! delayed rename/delete, page/pages/results paging with page 0 when empty.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use snapgate::simulator::{RunningSimulator, SimulatorConfig, Vendor, SYMINET_TOKEN};

use super::{assert_shape, fixture, poll, start, start_with, Api};

fn api(sim: &RunningSimulator) -> Api {
    let auth = format!("bearer {SYMINET_TOKEN}");
    Api::new(sim, Vendor::Syminet, &[("authorization", auth.as_str())])
}

/// Sends and asserts the documented `202` with no body.
async fn accepted(api: &Api, method: Method, path: &str, body: Option<Value>) {
    let mut rb = api.req(method, path);
    if let Some(body) = body {
        rb = rb.json(&body);
    }
    let resp = rb.send().await.unwrap();
    assert_eq!(resp.status(), 202, "{path}");
    assert_eq!(resp.text().await.unwrap(), "", "{path}");
}

fn item(list: &Value, id: i64) -> Option<&Value> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
}

#[tokio::test]
async fn syminet_operations_answer_in_the_fixture_shapes() {
    let sim = start().await;
    let api = api(&sim);
    let (status, list) = api.get("/images?page=1").await;
    assert_eq!(status, 200);
    assert_shape(&list, "syminet", "list.json");
    assert_eq!(
        (
            list["page"].clone(),
            list["pages"].clone(),
            list["results"].clone()
        ),
        (json!(1), json!(1), json!(2))
    );
    assert_shape(
        &api.get("/images/snapshots/3911").await.1,
        "syminet",
        "list-slice.json",
    );
    assert_eq!(
        api.get("/images?query=nothing-like-this").await.1,
        fixture("syminet", "list-empty.json")
    );

    let create = fixture("syminet", "create.request.json");
    accepted(
        &api,
        Method::POST,
        "/images/snapshots/3934/create",
        Some(create),
    )
    .await;
    let rename = fixture("syminet", "rename.request.json");
    accepted(
        &api,
        Method::POST,
        "/images/snapshots/15340/rename",
        Some(rename),
    )
    .await;
    accepted(
        &api,
        Method::POST,
        "/images/snapshots/15340/restore/3920",
        None,
    )
    .await;
    accepted(&api, Method::DELETE, "/images/snapshots/15377/delete", None).await;
}

#[tokio::test]
async fn syminet_refuses_bad_tokens_and_reports_errors_as_error_objects() {
    let sim = start().await;
    let wrong = Api::new(&sim, Vendor::Syminet, &[("authorization", "bearer nope")]);
    let (status, body) = wrong.get("/images").await;
    assert_eq!(status, 401);
    assert_shape(&body, "syminet", "error.json");
    let api = api(&sim);
    let path = "/images/snapshots/3911/create";
    assert_eq!(
        api.send_json(Method::POST, path, &json!({})).await,
        (400, fixture("syminet", "error.json"))
    );
    let (status, body) = api
        .send_json(
            Method::POST,
            "/images/snapshots/1/rename",
            &json!({ "snapshot_name": "x" }),
        )
        .await;
    assert_eq!(
        (status, body),
        (404, fixture("syminet", "error.404.UNVERIFIED.json"))
    );
    assert_eq!(
        api.call(Method::POST, "/images/snapshots/15340/restore/1")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn syminet_new_snapshot_is_listed_in_progress_then_settles() {
    let sim = start().await;
    let api = api(&sim);
    accepted(
        &api,
        Method::POST,
        "/images/snapshots/3934/create",
        Some(json!({ "snapshot_name": "cache-now" })),
    )
    .await;
    let (_, list) = api.get("/images").await;
    let fresh = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cache-now")
        .unwrap()
        .clone();
    assert_eq!(fresh["in_progress"], true);
    assert!(fresh["progress"].is_number());
    let (status, busy) = api
        .send_json(
            Method::POST,
            "/images/snapshots/3934/create",
            &json!({ "snapshot_name": "again" }),
        )
        .await;
    assert_eq!((status, busy["error"].is_string()), (409, true));
    let (_, slice) = api.get("/images/snapshots/3934").await;
    assert_eq!(
        slice["data"],
        json!([]),
        "the per-slice list shows finished snapshots only"
    );
    let id = fresh["id"].as_i64().unwrap();
    let settled = poll(&api, "/images", |l| {
        item(l, id).is_some_and(|s| s["in_progress"].is_null())
    })
    .await;
    let done = item(&settled, id).unwrap();
    assert!(done["progress"].is_null());
    assert!(done["snapshot_size"].as_i64().unwrap() > 0);
    let created = done["created"].as_str().unwrap();
    assert_eq!(
        (created.len(), &created[10..11], &created[19..20]),
        (26, " ", "."),
        "{created}"
    );
    assert_eq!(
        api.get("/images/snapshots/3934").await.1["data"][0]["id"],
        id
    );
}

#[tokio::test]
async fn syminet_rename_and_delete_take_effect_after_the_async_delay() {
    let sim = start().await;
    let api = api(&sim);
    accepted(
        &api,
        Method::POST,
        "/images/snapshots/15340/rename",
        Some(json!({ "snapshot_name": "renamed" })),
    )
    .await;
    accepted(&api, Method::DELETE, "/images/snapshots/15377/delete", None).await;
    let (_, soon) = api.get("/images").await;
    assert_eq!(item(&soon, 15340).unwrap()["name"], "web1-before-upgrade");
    assert!(item(&soon, 15377).is_some(), "still listed while deleting");
    let later = poll(&api, "/images", |l| item(l, 15377).is_none()).await;
    assert_eq!(item(&later, 15340).unwrap()["name"], "renamed");
    assert_eq!(later["results"], 1);
}

#[tokio::test]
async fn syminet_pages_ten_at_a_time_and_reports_page_zero_when_empty() {
    let sim = start_with(SimulatorConfig {
        async_delay: Duration::ZERO,
        seed: false,
        ..SimulatorConfig::default()
    })
    .await;
    let api = api(&sim);
    assert_eq!(
        api.get("/images").await.1,
        fixture("syminet", "list-empty.json")
    );
    for n in 0..11 {
        let body = json!({ "snapshot_name": format!("snap-{n:02}") });
        accepted(
            &api,
            Method::POST,
            "/images/snapshots/3911/create",
            Some(body),
        )
        .await;
    }
    let (_, first) = api.get("/images?page=1").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 10);
    assert_eq!(
        (first["pages"].clone(), first["results"].clone()),
        (json!(2), json!(11))
    );
    let (_, second) = api.get("/images?page=2").await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["page"], 2);
    let (_, filtered) = api.get("/images?query=SNAP-1").await;
    assert_eq!(filtered["results"], 1);
}
