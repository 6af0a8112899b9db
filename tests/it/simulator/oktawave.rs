//! Oktawave: password-grant tokens (expiry, scopes), fixture shapes, tickets 134 → 135 → 136
//! (137 under a `fail_async` fault), pageSize/pageNumber paging.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use snapgate::simulator::{
    Fault, RunningSimulator, SimulatorConfig, Vendor, OKTAWAVE_CLIENT_ID, OKTAWAVE_CLIENT_SECRET,
    OKTAWAVE_PASSWORD, OKTAWAVE_USERNAME,
};

use super::{assert_shape, fixture, send, start, start_with, Api};

async fn grant(sim: &RunningSimulator, secret: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let rb = reqwest::Client::new()
        .post(sim.oktawave_token_url())
        .basic_auth(OKTAWAVE_CLIENT_ID, Some(secret))
        .form(form);
    send(rb).await
}

async fn token_with_scope(sim: &RunningSimulator, scope: &str) -> String {
    let form = [
        ("grant_type", "password"),
        ("username", OKTAWAVE_USERNAME),
        ("password", OKTAWAVE_PASSWORD),
        ("scope", scope),
    ];
    let (status, body) = grant(sim, OKTAWAVE_CLIENT_SECRET, &form).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn api(sim: &RunningSimulator) -> Api {
    let bearer = format!("Bearer {}", token_with_scope(sim, "oktawave.api").await);
    Api::new(sim, Vendor::Oktawave, &[("authorization", bearer.as_str())])
}

/// Polls a ticket to its end, returning it and every `Status.Id` seen on the way.
async fn finish(api: &Api, ticket: &Value) -> (Value, BTreeSet<i64>) {
    let path = format!("/tickets/{}", ticket["Id"]);
    let mut seen = BTreeSet::from([ticket["Status"]["Id"].as_i64().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, t) = api.get(&path).await;
        seen.insert(t["Status"]["Id"].as_i64().unwrap());
        if !t["EndDate"].is_null() {
            return (t, seen);
        }
        assert!(Instant::now() < deadline, "ticket never ended: {t}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn oktawave_token_endpoint_grants_password_tokens_and_rejects_bad_requests() {
    let sim = start().await;
    let good = [
        ("grant_type", "password"),
        ("username", OKTAWAVE_USERNAME),
        ("password", OKTAWAVE_PASSWORD),
        ("scope", "oktawave.api"),
    ];
    let (status, token) = grant(&sim, OKTAWAVE_CLIENT_SECRET, &good).await;
    assert_eq!(status, 200);
    assert_shape(&token, "oktawave", "token.response.json");
    assert_eq!(
        (token["expires_in"].clone(), token["token_type"].clone()),
        (json!(3600), json!("Bearer"))
    );
    assert_eq!(
        grant(&sim, "wrong", &good).await.1,
        json!({ "error": "invalid_client" })
    );
    let mut bad_password = good;
    bad_password[2] = ("password", "wrong");
    assert_eq!(
        grant(&sim, OKTAWAVE_CLIENT_SECRET, &bad_password).await.1["error"],
        "invalid_grant"
    );
    let mut client_credentials = good;
    client_credentials[0] = ("grant_type", "client_credentials");
    let (status, body) = grant(&sim, OKTAWAVE_CLIENT_SECRET, &client_credentials).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("unsupported_grant_type"))
    );
    let mut no_scope = good;
    no_scope[3] = ("scope", "");
    assert_eq!(
        grant(&sim, OKTAWAVE_CLIENT_SECRET, &no_scope).await.1["error"],
        "invalid_scope"
    );
}

#[tokio::test]
async fn oktawave_operations_answer_in_the_fixture_shapes() {
    let sim = start().await;
    let api = api(&sim).await;
    let (status, list) = api
        .get("/snapshots?pageSize=50&pageNumber=1&orderBy=CreationDate")
        .await;
    assert_eq!(status, 200);
    assert_shape(&list, "oktawave", "list.json");
    assert_shape(
        &api.get("/instances/130455/snapshots").await.1,
        "oktawave",
        "list-instance.json",
    );
    assert_shape(
        &api.get("/snapshots?instanceId=130502").await.1,
        "oktawave",
        "list-empty.json",
    );
    assert_shape(&api.get("/snapshots/48211").await.1, "oktawave", "get.json");

    let body = fixture("oktawave", "create.request.json");
    let (_, ticket) = api
        .send_json(Method::POST, "/instances/130455/snapshots", &body)
        .await;
    assert_shape(&ticket, "oktawave", "create.response.json");
    let (_, polled) = api.get(&format!("/tickets/{}", ticket["Id"])).await;
    assert_shape(&polled, "oktawave", "ticket.running.json");
    let update = fixture("oktawave", "update.request.json");
    let (status, updated) = api
        .send_json(Method::PUT, "/snapshots/48211", &update)
        .await;
    assert_eq!(status, 200);
    assert_shape(&updated, "oktawave", "update.response.json");
    assert_eq!(updated["Name"], "web-01-pre-php83");
    let (_, restore) = api
        .call(Method::POST, "/snapshots/48211/restore_ticket")
        .await;
    assert_shape(&restore, "oktawave", "restore.response.json");
    let (_, delete) = api.call(Method::DELETE, "/snapshots/48244").await;
    assert_shape(&delete, "oktawave", "delete.response.json");
    let bulk = fixture("oktawave", "delete-bulk.request.json");
    let (_, bulk) = api.send_json(Method::DELETE, "/snapshots/ids", &bulk).await;
    assert_shape(&bulk, "oktawave", "delete-bulk.response.json");
    let (done, _) = finish(&api, &ticket).await;
    assert_shape(&done, "oktawave", "ticket.succeeded.json");
}

#[tokio::test]
async fn oktawave_refuses_missing_unknown_expired_and_read_only_tokens() {
    let sim = start_with(SimulatorConfig {
        token_ttl: Duration::from_millis(300),
        ..SimulatorConfig::default()
    })
    .await;
    let denied = fixture("oktawave", "error.UNVERIFIED.json");
    let none = Api::new(&sim, Vendor::Oktawave, &[]);
    assert_eq!(none.get("/snapshots").await, (401, denied.clone()));
    let unknown = Api::new(
        &sim,
        Vendor::Oktawave,
        &[("authorization", "Bearer made-up")],
    );
    assert_eq!(unknown.get("/snapshots").await, (401, denied.clone()));
    let api = api(&sim).await;
    assert_eq!(api.get("/snapshots").await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(api.get("/snapshots").await, (401, denied), "expired");

    let read_only = format!(
        "Bearer {}",
        token_with_scope(&sim, "oktawave.api.readonly").await
    );
    let reader = Api::new(
        &sim,
        Vendor::Oktawave,
        &[("authorization", read_only.as_str())],
    );
    assert_eq!(reader.get("/snapshots/48211").await.0, 200);
    assert_eq!(reader.call(Method::DELETE, "/snapshots/48211").await.0, 403);
}

#[tokio::test]
async fn oktawave_tickets_go_new_running_succeeded_and_apply_their_operation() {
    let sim = start().await;
    let api = api(&sim).await;
    let body = json!({ "Name": "worker-snap", "Description": "first" });
    let (_, ticket) = api
        .send_json(Method::POST, "/instances/130502/snapshots", &body)
        .await;
    assert_eq!(
        (ticket["Status"]["Id"].clone(), ticket["EndDate"].clone()),
        (json!(134), Value::Null)
    );
    assert_eq!(ticket["ObjectId"], 130502);
    let (_, before) = api.get("/instances/130502/snapshots").await;
    assert_eq!(
        before["Meta"]["Total"], 0,
        "a snapshot appears only when its ticket succeeds"
    );
    let (done, seen) = finish(&api, &ticket).await;
    assert_eq!(done["Status"]["Id"], 136);
    assert_eq!(done["Progress"], 100);
    assert!(seen.contains(&135), "{seen:?}");
    let (_, after) = api.get("/instances/130502/snapshots").await;
    let snap = &after["Items"][0];
    assert_eq!(
        (snap["Name"].clone(), snap["IsCurrent"].clone()),
        (json!("worker-snap"), json!(true))
    );

    let (_, restore) = api
        .call(Method::POST, "/snapshots/48211/restore_ticket")
        .await;
    finish(&api, &restore).await;
    assert_eq!(api.get("/snapshots/48211").await.1["IsCurrent"], true);
    let (_, delete) = api.call(Method::DELETE, "/snapshots/48211").await;
    assert_eq!(
        api.get("/snapshots/48211").await.0,
        200,
        "still there while the ticket runs"
    );
    finish(&api, &delete).await;
    let (status, gone) = api.get("/snapshots/48211").await;
    assert_eq!(status, 404);
    assert_shape(&gone, "oktawave", "error.UNVERIFIED.json");
}

#[tokio::test]
async fn oktawave_fail_async_fault_ends_the_next_ticket_with_137_and_no_effect() {
    let sim = start().await;
    let api = api(&sim).await;
    sim.set_fault(
        Vendor::Oktawave,
        Fault {
            fail_async: true,
            times: Some(1),
            ..Fault::default()
        },
    );
    assert_eq!(
        api.get("/snapshots").await.0,
        200,
        "reads do not use up the fault"
    );
    let body = json!({ "Name": "doomed" });
    let (_, doomed) = api
        .send_json(Method::POST, "/instances/130502/snapshots", &body)
        .await;
    let (_, fine) = api
        .send_json(
            Method::POST,
            "/instances/130502/snapshots",
            &json!({ "Name": "fine" }),
        )
        .await;
    let (doomed, _) = finish(&api, &doomed).await;
    assert_eq!(doomed["Status"]["Id"], 137);
    assert_eq!(finish(&api, &fine).await.0["Status"]["Id"], 136);
    let (_, list) = api.get("/instances/130502/snapshots").await;
    let names: Vec<&Value> = list["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["Name"])
        .collect();
    assert_eq!(names, [&json!("fine")]);
}

#[tokio::test]
async fn oktawave_pages_with_page_size_and_page_number_and_counts_meta_total() {
    let sim = start().await;
    let api = api(&sim).await;
    let (_, page) = api.get("/snapshots?pageSize=2&pageNumber=2").await;
    assert_eq!(page["Meta"]["Total"], 3);
    assert_eq!(page["Items"].as_array().unwrap().len(), 1);
    let (_, named) = api.get("/snapshots?orderBy=Name&pageSize=1").await;
    assert_eq!(named["Items"][0]["Name"], "db-01-nightly");
    let (_, found) = api.get("/snapshots?query=weekly").await;
    assert_eq!(found["Meta"]["Total"], 1);
    assert_eq!(api.get("/snapshots?pageSize=0").await.0, 400);
    let (_, instances) = api.get("/instances").await;
    let ids: Vec<String> = instances["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Id"].to_string())
        .collect();
    assert_eq!(ids, sim.sources(Vendor::Oktawave));
}
