//! Exact hostinger requests and response mapping, asserted with a mock vendor (wiremock).

use serde_json::{json, Value};
use snapgate::{
    domain::{Account, ProviderKind},
    providers::{validate_credentials, CallContext, Registry},
    upstream::Upstream,
};
use wiremock::{
    matchers::{header, header_regex, method, path},
    Mock, MockServer, ResponseTemplate,
};

use crate::helpers::*;

const TOKEN: &str = "hostinger-secret-token-0005";
const VM: &str = "1268054";
const OTHER_VM: &str = "1268311";
const API: &str = "/api/vps/v1/virtual-machines";

fn fixture(name: &str) -> Value {
    vendor_fixture("hostinger", name)
}

/// A mock of one documented Hostinger call with every header the vendor requires.
fn vendor(verb: &str, url: impl Into<String>) -> wiremock::MockBuilder {
    Mock::given(method(verb))
        .and(path(url.into()))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header_regex("user-agent", r"^snapgate/\S+"))
        .and(header("content-type", "application/json"))
}

fn json_reply(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

async fn setup() -> (MockServer, TestApp, String) {
    let mock = MockServer::start().await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| c.providers.set(ProviderKind::Hostinger, "base_url", uri)).await;
    let t = token("acme", ALL_SCOPES);
    let resp = app
        .post("/v1/accounts", &t, &account_body("hg", "hostinger"))
        .await;
    assert_eq!(resp.status(), 201);
    (mock, app, t)
}

/// An account for calling the adapter directly (what `list` returns before the gateway merges it).
fn account() -> Account {
    direct_account("hg", ProviderKind::Hostinger, Default::default())
}

fn registry(mock: &MockServer) -> Registry {
    let mut config = snapgate::Config::defaults().providers;
    config.set(ProviderKind::Hostinger, "base_url", mock.uri());
    Registry::new(&config, Upstream::new(Default::default())).unwrap()
}

#[tokio::test]
async fn get_reads_the_vms_snapshot_with_bearer_user_agent_and_json_headers() {
    let (mock, app, t) = setup().await;
    vendor("GET", format!("{API}/{VM}/snapshot"))
        .respond_with(json_reply(200, fixture("get.json")))
        .expect(2)
        .mount(&mock)
        .await;
    let s: Value = app
        .get(&format!("/v1/snapshots/hg:{VM}?include=vendor"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["id"], format!("hg:{VM}"));
    assert_eq!(s["native_id"], VM, "the VM id is the snapshot's id");
    assert_eq!(s["provider"], "hostinger");
    assert_eq!(s["name"], Value::Null, "Hostinger snapshots have no name");
    assert_eq!(s["description"], Value::Null);
    assert_eq!(s["status"], "available");
    assert_eq!(s["vendor_status"], Value::Null);
    assert_eq!(s["size_gb"], Value::Null);
    assert_eq!(s["created_at"], "2025-03-11T09:15:42.000000Z");
    assert_eq!(s["expires_at"], "2025-03-31T09:15:42.000000Z");
    assert_eq!(s["source"], json!({"kind": "vm", "id": VM}));
    assert_eq!(s["vendor"], fixture("get.json"));
    let plain: Value = app
        .get(&format!("/v1/snapshots/hg:{VM}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert!(plain.get("vendor").is_none());
}

#[tokio::test]
async fn a_vm_without_a_snapshot_is_404_whether_the_vendor_answers_404_or_an_empty_200() {
    let (mock, app, t) = setup().await;
    let replies = [
        json_reply(404, fixture("error.404.UNVERIFIED.json")),
        ResponseTemplate::new(200),
        ResponseTemplate::new(200).set_body_string("null"),
        json_reply(200, json!({})),
        json_reply(200, json!([])),
    ];
    for (i, reply) in replies.into_iter().enumerate() {
        let vm = 7000 + i;
        vendor("GET", format!("{API}/{vm}/snapshot"))
            .respond_with(reply)
            .expect(1)
            .mount(&mock)
            .await;
        let resp = app.get(&format!("/v1/snapshots/hg:{vm}"), &t).await;
        assert_problem(resp, 404, "snapshot_not_found").await;
    }
    // A VM id that is not an integer cannot exist: 404 without a vendor call.
    let resp = app.get("/v1/snapshots/hg:web-1", &t).await;
    assert_problem(resp, 404, "snapshot_not_found").await;
}

#[tokio::test]
async fn create_posts_no_body_and_follows_the_action_to_success() {
    let (mock, app, t) = setup().await;
    // No snapshot yet: the pre-check finds none.
    vendor("GET", format!("{API}/{VM}/snapshot"))
        .respond_with(json_reply(404, fixture("error.404.UNVERIFIED.json")))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    vendor("POST", format!("{API}/{VM}/snapshot"))
        .and(NoBody)
        .respond_with(json_reply(200, fixture("create.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let body = json!({"account": "hg", "source_id": VM, "name": "pre-upgrade"});
    let resp = app.post("/v1/snapshots", &t, &body).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    let op = &accepted["operation"];
    assert_eq!(op["kind"], "create");
    assert_eq!(op["state"], "running");
    assert_eq!(op["snapshot_id"], format!("hg:{VM}"));
    assert_eq!(op["vendor_ref"], json!({"kind": "action", "id": "8123712"}));
    assert_eq!(accepted["snapshot"], Value::Null);

    // The action is polled on its VM: `sent` keeps it running, `success` finishes it.
    let action = format!("{API}/{VM}/actions/8123712");
    vendor("GET", action.as_str())
        .respond_with(json_reply(200, fixture("action.sent.json")))
        .up_to_n_times(2)
        .expect(2)
        .mount(&mock)
        .await;
    vendor("GET", action.as_str())
        .respond_with(json_reply(200, fixture("action.success.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "running");

    // While the action runs, the snapshot shows as creating (the gateway's overlay).
    vendor("GET", format!("{API}/{VM}/snapshot"))
        .respond_with(json_reply(200, fixture("get.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let s: Value = app
        .get(&format!("/v1/snapshots/hg:{VM}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["status"], "creating");
    assert_eq!(s["vendor_status"], "action:8123712:create");

    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "succeeded");
    assert_eq!(polled["snapshot_id"], format!("hg:{VM}"));
    assert!(polled["finished_at"].is_string());
}

#[tokio::test]
async fn create_on_a_vm_that_has_a_snapshot_is_409_and_never_posts() {
    let (mock, app, t) = setup().await;
    vendor("GET", format!("{API}/{VM}/snapshot"))
        .respond_with(json_reply(200, fixture("get.json")))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(json_reply(200, fixture("create.response.json")))
        .expect(0)
        .mount(&mock)
        .await;
    let body = json!({"account": "hg", "source_id": VM, "name": "pre-upgrade"});
    let p = assert_problem(
        app.post("/v1/snapshots", &t, &body).await,
        409,
        "snapshot_exists",
    )
    .await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "VM {VM} already has a snapshot (created 2025-03-11T09:15:42Z)"
        )),
        "{detail}"
    );
    assert!(detail.contains("replace_existing: true"), "{detail}");
    assert_eq!(p["provider"], "hostinger");
}

#[tokio::test]
async fn create_with_replace_existing_posts_without_checking_first() {
    let (mock, app, t) = setup().await;
    Mock::given(method("GET"))
        .respond_with(json_reply(200, fixture("get.json")))
        .expect(0)
        .mount(&mock)
        .await;
    vendor("POST", format!("{API}/{VM}/snapshot"))
        .and(NoBody)
        .respond_with(json_reply(200, fixture("create.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let body = json!({"account": "hg", "source_id": VM, "name": "again", "replace_existing": true});
    let resp = app.post("/v1/snapshots", &t, &body).await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["operation"]["state"], "running");
    assert_eq!(accepted["operation"]["snapshot_id"], format!("hg:{VM}"));
}

#[tokio::test]
async fn create_input_that_hostinger_cannot_take_is_422_without_a_vendor_call() {
    let (mock, app, t) = setup().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&mock)
        .await;
    let cases = [
        (
            json!({"account": "hg", "source_id": "web-1", "name": "x"}),
            "source_id",
        ),
        (
            json!({"account": "hg", "source_id": VM, "name": "x", "description": "notes"}),
            "description",
        ),
    ];
    for (body, field) in cases {
        let resp = app.post("/v1/snapshots", &t, &body).await;
        let p = assert_problem(resp, 422, "invalid_field").await;
        assert_eq!(p["field"], field);
    }
}

#[tokio::test]
async fn delete_sends_delete_on_the_vm_and_a_failed_action_fails_the_operation() {
    let (mock, app, t) = setup().await;
    vendor("DELETE", format!("{API}/{VM}/snapshot"))
        .and(NoBody)
        .respond_with(json_reply(200, fixture("delete.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app.delete(&format!("/v1/snapshots/hg:{VM}"), &t).await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    let op = &accepted["operation"];
    assert_eq!(op["kind"], "delete");
    assert_eq!(op["state"], "running");
    assert_eq!(op["vendor_ref"], json!({"kind": "action", "id": "8124050"}));
    let mut error = fixture("action.error.json");
    error["id"] = json!(8124050);
    vendor("GET", format!("{API}/{VM}/actions/8124050"))
        .respond_with(json_reply(200, error))
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app
        .get(
            &format!("/v1/operations/{}", op["id"].as_str().unwrap()),
            &t,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(polled["state"], "failed");
    assert_eq!(polled["error"]["code"], "upstream_error");
    assert_eq!(polled["error"]["detail"], "Hostinger action 8124050 failed");
}

#[tokio::test]
async fn restore_posts_no_body_in_place_and_refuses_a_target_or_new_name() {
    let (mock, app, t) = setup().await;
    vendor("POST", format!("{API}/{VM}/snapshot/restore"))
        .and(NoBody)
        .respond_with(json_reply(200, fixture("restore.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let restore = format!("/v1/snapshots/hg:{VM}/restore");
    let resp = app.post(&restore, &t, &json!({})).await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["operation"]["kind"], "restore");
    assert_eq!(accepted["operation"]["state"], "running");
    assert_eq!(
        accepted["operation"]["vendor_ref"],
        json!({"kind": "action", "id": "8124311"})
    );
    for (body, field) in [
        (json!({"target_id": OTHER_VM}), "target_id"),
        (json!({"new_name": "copy"}), "new_name"),
    ] {
        let p = assert_problem(app.post(&restore, &t, &body).await, 422, "invalid_field").await;
        assert_eq!(p["field"], field);
    }
}

#[tokio::test]
async fn rename_is_501_because_hostinger_snapshots_have_no_name() {
    let (_mock, app, t) = setup().await;
    let resp = app
        .patch(&format!("/v1/snapshots/hg:{VM}"), &t, &json!({"name": "x"}))
        .await;
    assert_problem(resp, 501, "unsupported_operation").await;
}

#[tokio::test]
async fn verify_lists_the_vms_and_a_refused_token_reads_as_failing() {
    let (mock, app, t) = setup().await;
    vendor("GET", API)
        .respond_with(json_reply(200, fixture("vm-list.json")))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    vendor("GET", API)
        .respond_with(json_reply(401, fixture("error.401.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let v: Value = app
        .post("/v1/accounts/hg/verify", &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
    let v: Value = app
        .post("/v1/accounts/hg/verify", &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "failing");
    assert_eq!(v["problem"]["code"], "provider_auth_failed");
    assert_eq!(v["problem"]["upstream_status"], 401);
}

#[tokio::test]
async fn vendor_errors_map_to_gateway_problems_without_leaking_the_token() {
    let (mock, app, t) = setup().await;
    let cases = [
        (401, fixture("error.401.json"), 502, "provider_auth_failed"),
        (
            403,
            fixture("error.401.json"),
            502,
            "provider_permission_denied",
        ),
        (500, fixture("error.500.json"), 502, "upstream_error"),
    ];
    for (i, (status, body, want, code)) in cases.into_iter().enumerate() {
        let vm = 8000 + i;
        vendor("GET", format!("{API}/{vm}/snapshot"))
            .respond_with(json_reply(status, body))
            .mount(&mock)
            .await;
        let resp = app.get(&format!("/v1/snapshots/hg:{vm}"), &t).await;
        let p = assert_problem(resp, want, code).await;
        assert_eq!(p["account"], "hg");
        assert!(!p.to_string().contains(TOKEN));
    }
    vendor("GET", format!("{API}/8101/snapshot"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{not json"))
        .mount(&mock)
        .await;
    let resp = app.get("/v1/snapshots/hg:8101", &t).await;
    assert_problem(resp, 502, "upstream_error").await;
    // A locked VM: 422 with the vendor's message.
    vendor("POST", format!("{API}/8102/snapshot/restore"))
        .respond_with(json_reply(422, fixture("error.422.json")))
        .mount(&mock)
        .await;
    let resp = app
        .post("/v1/snapshots/hg:8102/restore", &t, &json!({}))
        .await;
    let p = assert_problem(resp, 400, "upstream_rejected").await;
    // Every reason the vendor gave, and its request id for Hostinger's support.
    assert_eq!(
        p["detail"],
        "The virtual machine is locked. (and 1 more error): virtual_machine: The virtual \
         machine is locked., Another action is in progress. \
         [correlation_id 5f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d]"
    );
    assert_eq!(p["upstream_status"], 422);
    // Last: after a 429 the gateway holds calls to this account until Retry-After.
    vendor("GET", format!("{API}/8100/snapshot"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "9"))
        .mount(&mock)
        .await;
    let resp = app.get("/v1/snapshots/hg:8100", &t).await;
    assert_eq!(resp.headers()["retry-after"], "9");
    assert_problem(resp, 429, "provider_rate_limited").await;
}

#[tokio::test]
async fn list_fans_out_over_the_vms_and_skips_those_without_a_snapshot() {
    let mock = MockServer::start().await;
    vendor("GET", API)
        .respond_with(json_reply(200, fixture("vm-list.json")))
        .expect(2)
        .mount(&mock)
        .await;
    vendor("GET", format!("{API}/{VM}/snapshot"))
        .respond_with(json_reply(200, fixture("get.json")))
        .expect(2)
        .mount(&mock)
        .await;
    vendor("GET", format!("{API}/{OTHER_VM}/snapshot"))
        .respond_with(json_reply(404, fixture("error.404.UNVERIFIED.json")))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    vendor("GET", format!("{API}/{OTHER_VM}/snapshot"))
        .respond_with(json_reply(200, fixture("get.other-vm.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let registry = registry(&mock);
    let adapter = registry.get(ProviderKind::Hostinger);
    let account = account();
    let info = adapter.info();
    let credentials =
        validate_credentials(info, json!({"token": TOKEN}).as_object().cloned().unwrap()).unwrap();
    let ctx = CallContext {
        account: &account,
        credentials: &credentials,
    };
    let first = adapter
        .list(
            &ctx,
            &snapgate::providers::ListFilter {
                source_id: None,
                statuses: &[],
            },
        )
        .await
        .and_then(snapgate::providers::Listed::complete)
        .unwrap();
    assert_eq!(first.len(), 1, "the second VM has no snapshot (404)");
    assert_eq!(first[0].native_id, VM);
    let second = adapter
        .list(
            &ctx,
            &snapgate::providers::ListFilter {
                source_id: None,
                statuses: &[],
            },
        )
        .await
        .and_then(snapgate::providers::Listed::complete)
        .unwrap();
    let ids: Vec<&str> = second.iter().map(|s| s.native_id.as_str()).collect();
    assert_eq!(ids, [VM, OTHER_VM], "VM order is kept");
    assert_eq!(
        second[1].created_at.unwrap().to_rfc3339(),
        "2025-03-14T22:00:03+00:00"
    );
}

#[tokio::test]
async fn list_of_one_source_reads_only_that_vm() {
    let mock = MockServer::start().await;
    vendor("GET", API)
        .respond_with(json_reply(200, fixture("vm-list.json")))
        .expect(0)
        .mount(&mock)
        .await;
    vendor("GET", format!("{API}/{OTHER_VM}/snapshot"))
        .respond_with(json_reply(200, fixture("get.other-vm.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let registry = registry(&mock);
    let adapter = registry.get(ProviderKind::Hostinger);
    let account = account();
    let credentials = validate_credentials(
        adapter.info(),
        json!({"token": TOKEN}).as_object().cloned().unwrap(),
    )
    .unwrap();
    let ctx = CallContext {
        account: &account,
        credentials: &credentials,
    };
    let only = adapter
        .list(
            &ctx,
            &snapgate::providers::ListFilter {
                source_id: Some(OTHER_VM),
                statuses: &[],
            },
        )
        .await
        .and_then(snapgate::providers::Listed::complete)
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].native_id, OTHER_VM);
    assert_eq!(only[0].source.as_ref().unwrap().id, OTHER_VM);
    assert!(adapter
        .list(
            &ctx,
            &snapgate::providers::ListFilter {
                source_id: Some("not-a-vm"),
                statuses: &[]
            }
        )
        .await
        .and_then(snapgate::providers::Listed::complete)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_gateway_list_fans_out_over_the_vms_newest_first() {
    let (mock, app, t) = setup().await;
    vendor("GET", API)
        .respond_with(json_reply(200, fixture("vm-list.json")))
        .expect(1)
        .mount(&mock)
        .await;
    vendor("GET", format!("{API}/{VM}/snapshot"))
        .respond_with(json_reply(200, fixture("get.json")))
        .expect(2)
        .mount(&mock)
        .await;
    vendor("GET", format!("{API}/{OTHER_VM}/snapshot"))
        .respond_with(json_reply(200, fixture("get.other-vm.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let page: Value = app
        .get("/v1/snapshots?account=hg", &t)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [format!("hg:{OTHER_VM}"), format!("hg:{VM}")]);
    assert_eq!(page["errors"], json!([]));
    // A source filter reads only that VM's snapshot.
    let page: Value = app
        .get(&format!("/v1/snapshots?account=hg&source_id={VM}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["source"], json!({"kind": "vm", "id": VM}));
}

/// This vendor's canary account (see `crate::canary`).
pub(crate) fn canary() -> crate::canary::Canary {
    crate::canary::Canary {
        provider: "hostinger",
        native: "1268311",
        credentials: json!({"token": "CANARY-hst\"x\\y"}),
        settings: json!({}),
        secrets: vec!["CANARY-hst\"x\\y"],
        endpoints: crate::canary::base_url(),
        token_exchange: false,
    }
}

#[tokio::test]
async fn sources_are_the_documented_vm_list_without_vms_being_destroyed() {
    let (mock, app, t) = setup().await;
    let mut vms = fixture("vm-list.json");
    let listed = vms.as_array().unwrap().len();
    let mut gone = vms[0].clone();
    gone["id"] = json!(999);
    gone["state"] = json!("destroying");
    vms.as_array_mut().unwrap().push(gone);
    vendor("GET", API)
        .respond_with(json_reply(200, vms.clone()))
        .expect(1)
        .mount(&mock)
        .await;
    let (status, body) = account_sources(&app, &t, "hg").await;
    assert_eq!(status, 200, "{body}");
    let sources = listed_sources(&body);
    assert_eq!(sources.len(), listed, "{body}");
    assert_eq!(sources[0].0, vms[0]["id"].to_string());
    assert_eq!(body["data"][0]["name"], vms[0]["hostname"]);
    assert!(sources.iter().all(|(id, kind)| id != "999" && kind == "vm"));
}
