//! Exact Hyperstack requests and response mapping, asserted with a mock vendor (wiremock).

use serde_json::{json, Value};
use snapgate::domain::ProviderKind;
use wiremock::{
    matchers::{body_json, header, method, path, query_param},
    Mock, MockServer, ResponseTemplate,
};

use crate::helpers::*;

const KEY: &str = "hs-secret-api-key-0001";

fn fixture(name: &str) -> Value {
    vendor_fixture("hyperstack", name)
}

async fn setup() -> (MockServer, TestApp, String) {
    let mock = MockServer::start().await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| {
        c.providers
            .set(ProviderKind::Hyperstack, "base_url", format!("{uri}/v1"))
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    (mock, app, t)
}

#[tokio::test]
async fn get_sends_the_api_key_header_and_maps_a_zone_less_snapshot() {
    let (mock, app, t) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/1402"))
        .and(header("api_key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("get.json")))
        .expect(2)
        .mount(&mock)
        .await;
    let s: Value = app
        .get("/v1/snapshots/hs:1402?include=vendor", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["id"], "hs:1402");
    assert_eq!(s["provider"], "hyperstack");
    assert_eq!(s["status"], "available");
    assert_eq!(s["vendor_status"], "COMPLETE");
    assert_eq!(s["created_at"], "2025-03-11T09:15:42.000000Z");
    assert_eq!(s["size_gb"], 100.0);
    assert_eq!(s["source"], json!({"kind": "vm", "id": "2058"}));
    assert_eq!(s["region"], "CANADA-1");
    assert_eq!(s["vendor"]["labels"], "pre-upgrade,llm");
    // Without include=vendor the raw object stays out.
    let plain: Value = app
        .get("/v1/snapshots/hs:1402", &t)
        .await
        .json()
        .await
        .unwrap();
    assert!(plain.get("vendor").is_none());
}

#[tokio::test]
async fn create_posts_name_and_description_to_the_vm_and_tracks_creating_to_complete() {
    let (mock, app, t) = setup().await;
    Mock::given(method("POST"))
        .and(path("/v1/core/virtual-machines/2058/snapshots"))
        .and(header("api_key", KEY))
        .and(body_json(
            json!({"name": "llm-node-pre-upgrade", "description": "Before CUDA driver upgrade"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("create.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let body = json!({"account": "hs", "source_id": "2058", "name": "llm-node-pre-upgrade", "description": "Before CUDA driver upgrade"});
    let resp = app.post("/v1/snapshots", &t, &body).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    let op = &accepted["operation"];
    assert_eq!(
        location,
        format!("/v1/operations/{}", op["id"].as_str().unwrap())
    );
    assert_eq!(op["kind"], "create");
    assert_eq!(op["state"], "running");
    assert_eq!(op["snapshot_id"], "hs:1402");
    assert_eq!(op["vendor_ref"]["kind"], "snapshot_status");
    assert_eq!(accepted["snapshot"]["status"], "creating");
    assert_eq!(
        accepted["snapshot"]["size_gb"],
        Value::Null,
        "size 0 while creating is unknown"
    );

    // The operation advances from the snapshot's status at the vendor.
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/1402"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("get.json")))
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "succeeded");
    assert!(polled["finished_at"].is_string());
}

#[tokio::test]
async fn verify_makes_one_cheap_list_call_with_page_and_pagesize_and_records_health() {
    let (mock, app, t) = setup().await;
    // verify = the cheapest list call.
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots"))
        .and(query_param("page", "1"))
        .and(query_param("pageSize", "1"))
        .and(header("api_key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("list.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let v: Value = app
        .post("/v1/accounts/hs/verify", &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
    let account: Value = app.get("/v1/accounts/hs", &t).await.json().await.unwrap();
    assert_eq!(account["health"]["status"], "ok");
}

#[tokio::test]
async fn restore_sends_new_vm_name_and_reads_both_documented_reply_shapes() {
    let (mock, app, t) = setup().await;
    for (i, reply) in [
        "restore.response.json",
        "restore.response.docs-variant.json",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("llm-node-restored-{i}");
        Mock::given(method("POST"))
            .and(path("/v1/core/snapshots/1402/restore"))
            .and(header("api_key", KEY))
            .and(body_json(json!({"new_vm_name": name})))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture(reply)))
            .expect(1)
            .mount(&mock)
            .await;
        let resp = app
            .post(
                "/v1/snapshots/hs:1402/restore",
                &t,
                &json!({"new_name": name}),
            )
            .await;
        assert_eq!(resp.status(), 202, "{reply}");
        let accepted: Value = resp.json().await.unwrap();
        assert_eq!(accepted["operation"]["kind"], "restore");
        assert!(
            accepted["operation"]["result"]["vm_id"].is_string(),
            "{reply}: {accepted}"
        );
    }
    // Hyperstack needs a name for the new VM: the caller error never reaches the vendor.
    let p = assert_problem(
        app.post("/v1/snapshots/hs:1402/restore", &t, &json!({}))
            .await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(p["field"], "new_name");
    let long = "x".repeat(51);
    let p = assert_problem(
        app.post(
            "/v1/snapshots/hs:1402/restore",
            &t,
            &json!({"new_name": long}),
        )
        .await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(p["field"], "new_name");
}

#[tokio::test]
async fn delete_image_and_name_availability_hit_their_documented_paths() {
    let (mock, app, t) = setup().await;
    Mock::given(method("DELETE"))
        .and(path("/v1/core/snapshots/1402"))
        .and(header("api_key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("delete.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/core/snapshots/1402/image"))
        .and(body_json(json!({"name": "golden", "labels": ["a"]})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("create-image.response.json")),
        )
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/v1/core/snapshots/name-availability/llm-node-pre-upgrade",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("name-availability.taken.response.json")),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let del: Value = app
        .delete("/v1/snapshots/hs:1402", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(del["operation"]["kind"], "delete");
    assert_eq!(del["operation"]["state"], "succeeded");
    let img: Value = app
        .post(
            "/v1/snapshots/hs:1402/image",
            &t,
            &json!({"name": "golden", "labels": ["a"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(img["operation"]["result"]["image_id"], "880");
    let name: Value = app
        .get("/v1/accounts/hs/snapshot-names/llm-node-pre-upgrade", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        name["available"],
        fixture("name-availability.taken.response.json")["available"]
    );
}

#[tokio::test]
async fn vendor_errors_map_to_gateway_problems_without_leaking_the_key() {
    let (mock, app, t) = setup().await;
    let cases = [
        // No 404 is documented for this page: a 400 for a well-formed id reads as gone.
        ("400", "error.400.json", 404, "snapshot_not_found"),
        ("401", "error.401.json", 502, "provider_auth_failed"),
        ("403", "error.403.json", 502, "provider_permission_denied"),
        ("404", "error.404.json", 404, "snapshot_not_found"),
        ("409", "error.409.json", 409, "conflict"),
        ("500", "error.500.legacy.json", 502, "upstream_error"),
    ];
    for (i, (status, file, want, code)) in cases.iter().enumerate() {
        let id = 5000 + i;
        Mock::given(method("GET"))
            .and(path(format!("/v1/core/snapshots/{id}")))
            .respond_with(
                ResponseTemplate::new(status.parse::<u16>().unwrap()).set_body_json(fixture(file)),
            )
            .mount(&mock)
            .await;
        let resp = app.get(&format!("/v1/snapshots/hs:{id}"), &t).await;
        let p = assert_problem(resp, *want, code).await;
        assert_eq!(p["provider"], "hyperstack", "{file}");
        assert_eq!(p["account"], "hs");
        assert!(!p.to_string().contains(KEY));
    }
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/6001"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{not json"))
        .mount(&mock)
        .await;
    assert_problem(
        app.get("/v1/snapshots/hs:6001", &t).await,
        502,
        "upstream_error",
    )
    .await;
    // A vendor echoing the key back gets it redacted (a refused delete keeps the vendor's words).
    Mock::given(method("DELETE"))
        .and(path("/v1/core/snapshots/6002"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"status": false, "message": format!("bad key {KEY}"), "error_reason": "bad_request"})))
        .mount(&mock)
        .await;
    let p = assert_problem(
        app.delete("/v1/snapshots/hs:6002", &t).await,
        400,
        "upstream_rejected",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("[redacted]"));
    // Non-numeric ids cannot exist at Hyperstack: 404 without a vendor call.
    assert_problem(
        app.get("/v1/snapshots/hs:abc", &t).await,
        404,
        "snapshot_not_found",
    )
    .await;
    // Last: after a 429 the gateway holds calls to this account until Retry-After.
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/6000"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .mount(&mock)
        .await;
    let resp = app.get("/v1/snapshots/hs:6000", &t).await;
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_problem(resp, 429, "provider_rate_limited").await;
}

#[tokio::test]
async fn rename_is_501_naming_the_providers_that_can() {
    let (_mock, app, t) = setup().await;
    let p = assert_problem(
        app.patch("/v1/snapshots/hs:1402", &t, &json!({"name": "x"}))
            .await,
        501,
        "unsupported_operation",
    )
    .await;
    let can: Vec<&str> = snapgate::providers::infos()
        .filter(|i| i.capabilities.rename)
        .map(|i| i.kind.as_str())
        .collect();
    assert_eq!(p["supported_by"], json!(can));
    assert!(can.contains(&"koyeb") && !can.contains(&"hyperstack"));
}

#[tokio::test]
async fn a_long_vendor_message_is_scrubbed_before_it_is_shortened() {
    let (mock, app, t) = setup().await;
    // The key straddles the 500-character cut: no part of it may survive.
    let message = format!("{}{KEY} trailing", "x".repeat(490));
    Mock::given(method("DELETE"))
        .and(path("/v1/core/snapshots/7000"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"status": false, "message": message, "error_reason": "bad_request"}),
        ))
        .mount(&mock)
        .await;
    let p = assert_problem(
        app.delete("/v1/snapshots/hs:7000", &t).await,
        400,
        "upstream_rejected",
    )
    .await;
    let detail = p["detail"].as_str().unwrap();
    assert!(!detail.contains(&KEY[..6]), "{detail}");
    assert!(detail.contains("[redacted]"));
}

#[tokio::test]
async fn list_items_name_their_region_once_a_get_has_named_the_region_id() {
    let (mock, app, t) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots"))
        .and(query_param("page", "1"))
        .and(query_param("pageSize", "100"))
        .and(header("api_key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("list.json")))
        .mount(&mock)
        .await;
    // `count` equals the page's own items: no proof the list ended, so page 2 is read.
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"status": true, "message": "", "snapshots": [], "count": 0, "page": 2, "page_size": 100}),
        ))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/1402"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("get.json")))
        .mount(&mock)
        .await;
    let regions = |page: &Value| -> Vec<Value> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["region"].clone())
            .collect()
    };
    let before: Value = app
        .get("/v1/snapshots?account=hs", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        regions(&before),
        [Value::Null, Value::Null],
        "list items carry only region_id"
    );
    assert_eq!(app.get("/v1/snapshots/hs:1402", &t).await.status(), 200);
    let after: Value = app
        .get("/v1/snapshots?account=hs", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(regions(&after), [json!("CANADA-1"), json!("CANADA-1")]);
}

#[tokio::test]
async fn name_availability_refuses_dot_segments_before_any_vendor_call() {
    // `..` would become a path step at the vendor (`GET /core/snapshots/`), whether sent as
    // `..` or `%2E%2E`: URL parsers treat both as the parent directory.
    let (mock, app, t) = setup().await;
    for name in ["%2E", "%2E%2E", ".%2e"] {
        let (status, body) = raw_request(
            &app,
            &format!(
                "GET /v1/accounts/hs/snapshot-names/{name} HTTP/1.1\r\nhost: x\r\n\
                 authorization: Bearer {t}\r\nconnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status, 422, "{name}: {body}");
        assert!(body.contains("\"field\":\"name\""), "{body}");
    }
    assert!(mock.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_429_without_retry_after_holds_the_account_for_hyperstacks_minute() {
    // Hyperstack documents a one-minute window; a 429 that does not say how long must not
    // be retried a second later (the old default), nor by the next caller.
    let (mock, app, t) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/1402"))
        .respond_with(ResponseTemplate::new(429))
        .expect(1)
        .mount(&mock)
        .await;
    let first = app.get("/v1/snapshots/hs:1402", &t).await;
    assert_eq!(first.headers()["retry-after"], "60");
    assert_problem(first, 429, "provider_rate_limited").await;
    let second = app.get("/v1/snapshots/hs:1402", &t).await;
    let wait: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((55..=60).contains(&wait), "held: {wait}");
    assert_problem(second, 429, "provider_rate_limited").await;
}

#[tokio::test]
async fn a_snapshot_answered_with_400_is_gone_and_its_create_fails_instead_of_running_forever() {
    let (mock, app, t) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots/1402"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"status": false, "message": "Snapshot not found"})),
        )
        .mount(&mock)
        .await;
    assert_problem(
        app.get("/v1/snapshots/hs:1402", &t).await,
        404,
        "snapshot_not_found",
    )
    .await;
    // A create whose snapshot then answers 400 ends as failed when polled.
    Mock::given(method("POST"))
        .and(path("/v1/core/virtual-machines/2058/snapshots"))
        .respond_with(ResponseTemplate::new(201).set_body_json(hyperstack_created(1402)))
        .mount(&mock)
        .await;
    let accepted: Value = app
        .post(
            "/v1/snapshots",
            &t,
            &json!({"account": "hs", "source_id": "2058", "name": "n"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = accepted["operation"]["id"].as_str().unwrap();
    let op: Value = app
        .get(&format!("/v1/operations/{id}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(op["state"], "failed", "{op}");
    assert_eq!(op["error"]["code"], "snapshot_not_found", "{op}");
}

/// A Hyperstack list page of `ids` (VM 2058), saying `page_size` or not.
fn list_page(ids: std::ops::Range<u64>, page_size: Option<u64>) -> Value {
    let snapshots: Vec<Value> = ids
        .map(|id| {
            json!({"id": id, "name": format!("s{id}"), "description": "", "vm_id": 2058, "region_id": 3,
                "status": "SUCCESS", "is_image": false, "size": 10, "labels": [],
                "created_at": "2025-03-11T09:15:42", "updated_at": "2025-03-11T09:15:42"})
        })
        .collect();
    let mut page = json!({"status": true, "message": "ok", "snapshots": snapshots, "count": 45});
    if let Some(size) = page_size {
        page["page_size"] = json!(size);
    }
    page
}

#[tokio::test]
async fn a_list_capped_below_the_asked_page_size_is_walked_to_the_end() {
    // Hyperstack may apply a smaller page size than the 100 asked for; whether or not its
    // reply says so, every page is read (45 snapshots in pages of 20).
    for says_page_size in [Some(20), None] {
        let (mock, app, t) = setup().await;
        for (page, ids) in [(1, 1..21), (2, 21..41), (3, 41..46)] {
            Mock::given(method("GET"))
                .and(path("/v1/core/snapshots"))
                .and(query_param("page", page.to_string()))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(list_page(ids, says_page_size)),
                )
                .expect(1)
                .mount(&mock)
                .await;
        }
        let listed: Value = app
            .get("/v1/snapshots?account=hs&page_size=200", &t)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(listed["errors"], json!([]), "{listed}");
        assert_eq!(
            listed["items"].as_array().unwrap().len(),
            45,
            "page_size in the reply: {says_page_size:?}"
        );
    }
}

/// This vendor's canary account (see `crate::canary`).
pub(crate) fn canary() -> crate::canary::Canary {
    crate::canary::Canary {
        provider: "hyperstack",
        native: "1402",
        credentials: json!({"api_key": "  CANARY-hs\"q\\x  "}),
        settings: json!({}),
        secrets: vec!["  CANARY-hs\"q\\x  "],
        endpoints: crate::canary::base_url(),
        token_exchange: false,
    }
}

#[tokio::test]
async fn sources_walk_the_vm_pages_to_an_empty_one_leaving_deleted_vms_out() {
    let (mock, app, t) = setup().await;
    let vm = |id: i64, name: &str, status: &str| json!({"id": id, "name": name, "status": status});
    let page = |n: &str, items: Value| {
        Mock::given(method("GET"))
            .and(path("/v1/core/virtual-machines"))
            .and(header("api_key", KEY))
            .and(query_param("page", n))
            .and(query_param("pageSize", "100"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "status": true, "message": "Getting virtual machines successful",
                "instances": items, "count": 3, "page": 1, "page_size": 100,
            })))
            .expect(1)
    };
    // A short first page ends nothing (Hyperstack documents no cap and no "more" flag).
    page(
        "1",
        json!([vm(4312, "train-node-1", "ACTIVE"), vm(4313, "old", "DELETED")]),
    )
    .mount(&mock)
    .await;
    page("2", json!([vm(4320, "render", "SHUTOFF")]))
        .mount(&mock)
        .await;
    page("3", json!([])).mount(&mock).await;
    let (status, body) = account_sources(&app, &t, "hs").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        listed_sources(&body),
        [("4312".into(), "vm".into()), ("4320".into(), "vm".into())],
        "{body}"
    );
    assert_eq!(body["data"][0]["name"], "train-node-1");
    assert_eq!(body["data"][1]["status"], "SHUTOFF");
}
