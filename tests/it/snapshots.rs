//! Gateway behaviour around snapshot calls: idempotency, tenants, persistence of operations.

use snapgate::domain::ProviderKind;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

use crate::helpers::*;

async fn hyperstack_app(mock: &MockServer, config: Option<snapgate::Config>) -> (TestApp, String) {
    let uri = mock.uri();
    let app = match config {
        Some(mut c) => {
            c.providers.set(ProviderKind::Hyperstack, "base_url", uri);
            spawn_config(c, tempfile::tempdir().unwrap()).await
        }
        None => {
            spawn_app_with(|c| c.providers.set(ProviderKind::Hyperstack, "base_url", uri)).await
        }
    };
    let t = token("acme", ALL_SCOPES);
    let resp = app
        .post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
        .await;
    assert!(resp.status() == 201 || resp.status() == 409);
    (app, t)
}

async fn post_with_key(app: &TestApp, t: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/snapshots", app.url))
        .bearer_auth(t)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retried_create_with_the_same_idempotency_key_replays_without_a_second_vendor_call() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/core/virtual-machines/2058/snapshots"))
        .respond_with(ResponseTemplate::new(201).set_body_json(hyperstack_created(77)))
        .expect(1)
        .mount(&mock)
        .await;
    let (app, t) = hyperstack_app(&mock, None).await;
    let body = json!({"account": "hs", "source_id": "2058", "name": "n"});
    let first = post_with_key(&app, &t, "key-1", &body).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = post_with_key(&app, &t, "key-1", &body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert!(again.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/v1/operations/op_"));
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    // Same key, other body: 422, still no vendor call.
    let other = json!({"account": "hs", "source_id": "2058", "name": "other"});
    assert_problem(
        post_with_key(&app, &t, "key-1", &other).await,
        422,
        "idempotency_key_reused",
    )
    .await;
    // Keys are per tenant: another tenant's identical key is unrelated (and its account unknown).
    let t2 = token("globex", ALL_SCOPES);
    assert_problem(
        post_with_key(&app, &t2, "key-1", &body).await,
        404,
        "account_not_found",
    )
    .await;
}

#[tokio::test]
async fn a_retry_while_the_first_request_is_in_flight_replays_its_operation() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/core/virtual-machines/2058/snapshots"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(hyperstack_created(78))
                .set_delay(Duration::from_millis(600)),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let (app, t) = hyperstack_app(&mock, None).await;
    let body = json!({"account": "hs", "source_id": "2058", "name": "n"});
    let (first, second) = tokio::join!(post_with_key(&app, &t, "slow", &body), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        post_with_key(&app, &t, "slow", &body).await
    });
    assert_eq!(first.status(), 202);
    // The intent was durable before the vendor call: the retry gets the same operation, and
    // the vendor is called once (`expect(1)`).
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["idempotency-replayed"], "true");
    let first: Value = first.json().await.unwrap();
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["operation"]["id"], second["operation"]["id"]);
    assert_eq!(second["operation"]["state"], "running");
}

#[tokio::test]
async fn a_failed_vendor_call_frees_the_key_for_a_retry() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/core/virtual-machines/2058/snapshots"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/core/virtual-machines/2058/snapshots"))
        .respond_with(ResponseTemplate::new(201).set_body_json(hyperstack_created(79)))
        .mount(&mock)
        .await;
    let (app, t) = hyperstack_app(&mock, None).await;
    let body = json!({"account": "hs", "source_id": "2058", "name": "n"});
    assert_problem(
        post_with_key(&app, &t, "k", &body).await,
        502,
        "upstream_error",
    )
    .await;
    assert_eq!(post_with_key(&app, &t, "k", &body).await.status(), 202);
}

#[tokio::test]
async fn another_tenant_gets_404_for_snapshots_and_operations() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/core/virtual-machines/2058/snapshots"))
        .respond_with(ResponseTemplate::new(201).set_body_json(hyperstack_created(80)))
        .mount(&mock)
        .await;
    let (app, t) = hyperstack_app(&mock, None).await;
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
    let op_id = accepted["operation"]["id"].as_str().unwrap();
    let other = token("globex", ALL_SCOPES);
    assert_problem(
        app.get("/v1/snapshots/hs:80", &other).await,
        404,
        "snapshot_not_found",
    )
    .await;
    assert_problem(
        app.delete("/v1/snapshots/hs:80", &other).await,
        404,
        "snapshot_not_found",
    )
    .await;
    assert_problem(
        app.get(&format!("/v1/operations/{op_id}"), &other).await,
        404,
        "operation_not_found",
    )
    .await;
    let list: Value = app
        .get("/v1/operations", &other)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    let mine: Value = app.get("/v1/operations", &t).await.json().await.unwrap();
    assert_eq!(mine["items"][0]["id"], op_id);
}

#[tokio::test]
async fn operations_survive_a_restart() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/core/virtual-machines/2058/snapshots"))
        .respond_with(ResponseTemplate::new(201).set_body_json(hyperstack_created(81)))
        .mount(&mock)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    let (app, t) = hyperstack_app(&mock, Some(config.clone())).await;
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
    let op_id = accepted["operation"]["id"].as_str().unwrap().to_owned();
    drop(app);
    // The vendor now says the snapshot is done; the restarted gateway advances the stored op.
    Mock::given(method("GET"))
        .and(path("/core/snapshots/81"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": true, "message": "", "snapshot": {
            "id": 81, "name": "n", "description": "", "vm_id": 2058, "region_id": 3, "region": "CANADA-1", "status": "COMPLETE",
            "is_image": false, "size": 10, "labels": "", "created_at": "2025-03-11T09:15:42", "updated_at": "2025-03-11T09:15:42"}})))
        .mount(&mock)
        .await;
    let (app, t) = hyperstack_app(&mock, Some(config)).await;
    let op: Value = app
        .get(&format!("/v1/operations/{op_id}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(op["kind"], "create");
    assert_eq!(op["state"], "succeeded");
    assert_eq!(op["snapshot_id"], "hs:81");
}

#[tokio::test]
async fn bad_snapshot_ids_and_bodies_are_caller_errors() {
    let mock = MockServer::start().await;
    let (app, t) = hyperstack_app(&mock, None).await;
    assert_problem(
        app.get("/v1/snapshots/no-colon", &t).await,
        400,
        "invalid_path",
    )
    .await;
    assert_problem(
        app.get("/v1/snapshots/hs:a%2Fb", &t).await,
        400,
        "invalid_path",
    )
    .await;
    let p = assert_problem(
        app.post(
            "/v1/snapshots",
            &t,
            &json!({"account": "hs", "source_id": "2058", "name": ""}),
        )
        .await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(p["field"], "name");
    // A rename with `null` says nothing: refused, naming the member (the schema says string).
    let resp = app
        .client
        .patch(format!("{}/v1/snapshots/hs:77", app.url))
        .bearer_auth(&t)
        .json(&json!({"name": null, "description": "d"}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 422, "invalid_body").await;
    assert_eq!(p["field"], "name");
    assert_problem(
        app.post(
            "/v1/snapshots",
            &t,
            &json!({"account": "nope", "source_id": "1", "name": "n"}),
        )
        .await,
        404,
        "account_not_found",
    )
    .await;
    let p = assert_problem(
        app.post(
            "/v1/snapshots",
            &t,
            &json!({"account": "hs", "source_id": "vm-x", "name": "n"}),
        )
        .await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(p["field"], "source_id");
    let read_only = token("acme", "snapshots:read");
    assert_problem(
        app.post(
            "/v1/snapshots",
            &read_only,
            &json!({"account": "hs", "source_id": "1", "name": "n"}),
        )
        .await,
        403,
        "insufficient_scope",
    )
    .await;
    // Nothing reached the vendor.
    assert!(mock.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn rotated_or_deleted_credentials_take_effect_on_the_next_vendor_call() {
    let mock = MockServer::start().await;
    let body = json!({"status": true, "message": "", "snapshot": {
        "id": 90, "name": "n", "description": "", "vm_id": 1, "region_id": 3, "status": "COMPLETE",
        "is_image": false, "size": 1, "labels": "", "created_at": "2025-03-11T09:15:42", "updated_at": "2025-03-11T09:15:42"}});
    for key in ["hs-secret-api-key-0001", "rotated-key"] {
        Mock::given(method("GET"))
            .and(path("/core/snapshots/90"))
            .and(wiremock::matchers::header("api_key", key))
            .respond_with(ResponseTemplate::new(200).set_body_json(body.clone()))
            .expect(1)
            .mount(&mock)
            .await;
    }
    let (app, t) = hyperstack_app(&mock, None).await;
    assert_eq!(app.get("/v1/snapshots/hs:90", &t).await.status(), 200);
    let rotate = json!({"credentials": {"api_key": "rotated-key"}});
    assert_eq!(
        app.patch("/v1/accounts/hs", &t, &rotate).await.status(),
        200
    );
    assert_eq!(app.get("/v1/snapshots/hs:90", &t).await.status(), 200);
    assert_eq!(app.delete("/v1/accounts/hs", &t).await.status(), 204);
    assert_problem(
        app.get("/v1/snapshots/hs:90", &t).await,
        404,
        "snapshot_not_found",
    )
    .await;
}

#[tokio::test]
async fn an_uncertain_vendor_failure_replays_its_operation_so_a_retry_does_not_repeat_it() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/core/virtual-machines/2058/snapshots"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"message": "Internal Server Error"})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let (app, t) = hyperstack_app(&mock, None).await;
    let body = json!({"account": "hs", "source_id": "2058", "name": "n"});
    assert_problem(
        post_with_key(&app, &t, "maybe-done", &body).await,
        502,
        "upstream_error",
    )
    .await;
    // The vendor may have made the snapshot: the retry replays the operation the intent
    // recorded (settled later from what the vendor lists), it does not call again.
    let again = post_with_key(&app, &t, "maybe-done", &body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["operation"]["state"], "running");
    assert_eq!(again["operation"]["kind"], "create");
}

#[tokio::test]
async fn a_request_cut_by_the_deadline_is_replayed_never_sent_twice() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/core/virtual-machines/2058/snapshots"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(hyperstack_created(82))
                .set_delay(Duration::from_millis(1_500)),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    // The gateway deadline (300 ms) drops the first request mid-call; the key's lease is 600 ms.
    config.server.request_timeout_ms = 300;
    let (app, t) = hyperstack_app(&mock, Some(config)).await;
    let body = json!({"account": "hs", "source_id": "2058", "name": "n"});
    assert_problem(
        post_with_key(&app, &t, "k", &body).await,
        504,
        "deadline_exceeded",
    )
    .await;
    let mut ids = Vec::new();
    for wait in [0, 700] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let resp = post_with_key(&app, &t, "k", &body).await;
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.headers()["idempotency-replayed"], "true");
        let accepted: Value = resp.json().await.unwrap();
        ids.push(accepted["operation"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1], "one operation, whatever the lease");
    // `expect(1)` on the vendor's create: checked when the mock server drops.
}

#[tokio::test]
async fn an_operation_whose_account_was_deleted_fails_instead_of_polling_a_newcomer() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/core/virtual-machines/2058/snapshots"))
        .respond_with(ResponseTemplate::new(201).set_body_json(hyperstack_created(84)))
        .mount(&mock)
        .await;
    let (app, t) = hyperstack_app(&mock, None).await;
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
    let op_path = format!(
        "/v1/operations/{}",
        accepted["operation"]["id"].as_str().unwrap()
    );
    assert_eq!(app.delete("/v1/accounts/hs", &t).await.status(), 204);
    // Same id, another provider: it must not be asked about the old work.
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("hs", "syminet"))
            .await
            .status(),
        201
    );
    let op: Value = app.get(&op_path, &t).await.json().await.unwrap();
    assert_eq!(op["state"], "failed");
    assert_eq!(op["error"]["code"], "account_not_found");
    assert!(op["finished_at"].is_string());
}

/// PATCH is a mutation like the others: under an `Idempotency-Key` a retry replays the first
/// answer without a second vendor call, and the same key with another body is refused.
#[tokio::test]
async fn a_retried_rename_with_the_same_idempotency_key_replays_without_a_second_vendor_call() {
    use snapgate::simulator::Vendor;
    let s = crate::lifecycle::spawn_with_simulator(Duration::from_millis(50)).await;
    let page: Value = s
        .app
        .get("/v1/snapshots?account=koyeb", &s.token)
        .await
        .json()
        .await
        .unwrap();
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let patch = |key: &'static str, body: Value| {
        let (app, token, id) = (&s.app, s.token.clone(), id.clone());
        async move {
            app.client
                .patch(format!("{}/v1/snapshots/{id}", app.url))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    s.sim.clear_requests();
    let first = patch("rename-1", json!({"name": "renamed"})).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["operation"]["kind"], "rename");
    let again = patch("rename-1", json!({"name": "renamed"})).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_problem(
        patch("rename-1", json!({"name": "other"})).await,
        422,
        "idempotency_key_reused",
    )
    .await;
    let writes: Vec<_> = s
        .sim
        .requests(Some(Vendor::Koyeb))
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert_eq!(writes.len(), 1, "one vendor call: {writes:?}");
}

/// A destructive in-place restore is asked for by name, and refused where the provider can only
/// restore to a new resource — before anything reaches the vendor.
#[tokio::test]
async fn in_place_restores_are_refused_where_the_provider_makes_a_new_resource() {
    let s = crate::lifecycle::spawn_with_simulator(Duration::from_millis(50)).await;
    let providers: Value = s
        .app
        .get("/v1/providers", &s.token)
        .await
        .json()
        .await
        .unwrap();
    for p in providers["items"].as_array().unwrap() {
        if p["capabilities"]["restore_in_place"] == true {
            continue;
        }
        let account = p["name"].as_str().unwrap();
        let page: Value = s
            .app
            .get(&format!("/v1/snapshots?account={account}"), &s.token)
            .await
            .json()
            .await
            .unwrap();
        let id = page["items"][0]["id"].as_str().unwrap();
        s.sim.clear_requests();
        let refused = s
            .app
            .post(
                &format!("/v1/snapshots/{id}/restore"),
                &s.token,
                &json!({"in_place": true}),
            )
            .await;
        let body = assert_problem(refused, 422, "invalid_field").await;
        assert_eq!(body["field"], "in_place", "{account}: {body}");
        let calls = s.sim.requests(None);
        assert!(
            calls.iter().all(|r| r.method == "GET"),
            "{account}: {calls:?}"
        );
    }
}
