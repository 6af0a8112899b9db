//! Exact Oktawave requests and response mapping, asserted with a mock vendor (wiremock).

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use snapgate::{
    domain::{Credentials, ProviderKind, VendorSnapshot},
    providers::{CallContext, ProviderError, Registry},
    upstream::Upstream,
};
use wiremock::{
    matchers::{body_json, header, method, path, query_param, query_param_is_missing},
    Mock, MockServer, Request, ResponseTemplate,
};

use crate::helpers::*;

const TOKEN_PATH: &str = "/core/connect/token";
const ACCESS: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsIng1dCI6ImEzck1VZ01Gdjl0UGNsTGE2eUYzekFrZnF1RSJ9.eyJjbGllbnRfaWQiOiJteS1nYXRld2F5Iiwic2NvcGUiOlsib2t0YXdhdmUuYXBpIl19.c2lnbmF0dXJl";

fn fixture(name: &str) -> Value {
    vendor_fixture("oktawave", name)
}

fn reply(status: u16, file: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(fixture(file))
}

fn bearer(access: &str) -> String {
    format!("Bearer {access}")
}

/// HTTP Basic of the account's API client (`okta-client:okta-secret-0003`).
fn basic() -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode("okta-client:okta-secret-0003");
    format!("Basic {pair}")
}

/// Matches a form body with exactly these fields.
fn form(
    expected: &'static [(&'static str, &'static str)],
) -> impl Fn(&Request) -> bool + Send + Sync + 'static {
    move |req: &Request| {
        let got: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        let want: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want_sorted = want;
        want_sorted.sort();
        got_sorted == want_sorted
    }
}

const FORM: &[(&str, &str)] = &[
    ("grant_type", "password"),
    ("username", "ops@example.com"),
    ("password", "okta-password-0004"),
    ("scope", "oktawave.api"),
];

/// The token endpoint, answering the fixture token `times` times in all.
async fn mount_token(mock: &MockServer, times: u64) {
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(header("authorization", basic().as_str()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(form(FORM))
        .respond_with(reply(200, "token.response.json"))
        .expect(times)
        .mount(mock)
        .await;
}

fn configure(config: &mut snapgate::Config, uri: &str) {
    use snapgate::domain::ProviderKind::Oktawave;
    let p = &mut config.providers;
    p.set(Oktawave, "pl1_base_url", format!("{uri}/pl1"));
    p.set(Oktawave, "pl2_base_url", format!("{uri}/pl2"));
    p.set(Oktawave, "token_url", format!("{uri}{TOKEN_PATH}"));
}

async fn setup() -> (MockServer, TestApp, String) {
    let mock = MockServer::start().await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| configure(c, &uri)).await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("ok", "oktawave"))
            .await
            .status(),
        201
    );
    (mock, app, t)
}

/// Calls the adapter's `list` directly (the gateway has no list route to drive it yet).
async fn list(
    mock: &MockServer,
    source_id: Option<&str>,
) -> Result<Vec<VendorSnapshot>, ProviderError> {
    let mut config = snapgate::Config::defaults();
    configure(&mut config, &mock.uri());
    let registry = Registry::new(
        &config.providers,
        Upstream::new(Default::default()),
    )
    .unwrap();
    let account = direct_account(
        "ok",
        ProviderKind::Oktawave,
        json!({"region": "pl1"}).as_object().unwrap().clone(),
    );
    let credentials = Credentials::new(
        [
            ("client_id", "okta-client"),
            ("client_secret", "okta-secret-0003"),
            ("username", "ops@example.com"),
            ("password", "okta-password-0004"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned().into()))
        .into(),
    );
    let ctx = CallContext {
        account: &account,
        credentials: &credentials,
    };
    registry
        .get(ProviderKind::Oktawave)
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

/// A list page of `ids`, all on instance 130455, with `total` in `Meta`.
fn page(ids: &[u32], total: u32) -> Value {
    let item = &fixture("list.json")["Items"][0];
    let items: Vec<Value> = ids
        .iter()
        .map(|id| {
            let mut it = item.clone();
            it["Id"] = json!(id);
            it
        })
        .collect();
    json!({"Items": items, "Meta": {"Total": total}})
}

#[tokio::test]
async fn get_fetches_a_password_grant_token_once_and_maps_the_snapshot() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots/48211"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .respond_with(reply(200, "get.json"))
        .expect(3)
        .mount(&mock)
        .await;
    let s: Value = app
        .get("/v1/snapshots/ok:48211?include=vendor", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["id"], "ok:48211");
    assert_eq!(s["provider"], "oktawave");
    assert_eq!(s["native_id"], "48211");
    assert_eq!(s["name"], "web-01-before-upgrade");
    assert_eq!(s["description"], "Snapshot before PHP upgrade");
    assert_eq!(s["status"], "available");
    assert_eq!(s["vendor_status"], Value::Null);
    assert_eq!(s["size_gb"], Value::Null);
    assert_eq!(s["created_at"], "2025-03-11T09:15:42.123000Z");
    assert_eq!(s["source"], json!({"kind": "instance", "id": "130455"}));
    assert_eq!(s["region"], "PL1");
    assert_eq!(s["vendor"], fixture("get.json"));
    // The cached token serves the next calls: the token endpoint is hit once.
    for _ in 0..2 {
        let plain: Value = app
            .get("/v1/snapshots/ok:48211", &t)
            .await
            .json()
            .await
            .unwrap();
        assert!(plain.get("vendor").is_none());
    }
}

#[tokio::test]
async fn concurrent_calls_share_one_token_refresh() {
    let (mock, app, t) = setup().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(reply(200, "token.response.json").set_delay(Duration::from_millis(150)))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots/48211"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .respond_with(reply(200, "get.json"))
        .expect(6)
        .mount(&mock)
        .await;
    let calls = (0..6).map(|_| app.get("/v1/snapshots/ok:48211", &t));
    for resp in futures::future::join_all(calls).await {
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
async fn a_401_from_the_api_refreshes_the_token_once_and_retries() {
    let (mock, app, t) = setup().await;
    let mut second = fixture("token.response.json");
    second["access_token"] = json!("second-access-token");
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(form(FORM))
        .respond_with(reply(200, "token.response.json"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(header("authorization", basic().as_str()))
        .and(form(FORM))
        .respond_with(ResponseTemplate::new(200).set_body_json(second))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots/48211"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .respond_with(reply(401, "error.UNVERIFIED.json"))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots/48211"))
        .and(header("authorization", "Bearer second-access-token"))
        .respond_with(reply(200, "get.json"))
        .expect(2)
        .mount(&mock)
        .await;
    let resp = app.get("/v1/snapshots/ok:48211", &t).await;
    assert_eq!(resp.status(), 200);
    // The refreshed token is the cached one now.
    assert_eq!(app.get("/v1/snapshots/ok:48211", &t).await.status(), 200);
}

#[tokio::test]
async fn a_second_401_after_the_refresh_is_an_auth_failure_without_more_retries() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 2).await;
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots/48211"))
        .respond_with(reply(401, "error.UNVERIFIED.json"))
        .expect(2)
        .mount(&mock)
        .await;
    let p = assert_problem(
        app.get("/v1/snapshots/ok:48211", &t).await,
        502,
        "provider_auth_failed",
    )
    .await;
    assert!(!p.to_string().contains("okta-password-0004"));
}

#[tokio::test]
async fn a_refused_token_request_is_an_auth_failure_and_no_api_call_is_made() {
    let (mock, app, t) = setup().await;
    for status in [400, 401] {
        // verify and the get each ask for a token: a refused one is not cached.
        let mock_guard = Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(
                ResponseTemplate::new(status).set_body_json(json!({"error": "invalid_grant"})),
            )
            .expect(2)
            .mount_as_scoped(&mock)
            .await;
        let v: Value = app
            .post("/v1/accounts/ok/verify", &t, &json!({}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "failing", "{status}");
        assert_eq!(v["problem"]["code"], "provider_auth_failed");
        let p = assert_problem(
            app.get("/v1/snapshots/ok:48211", &t).await,
            502,
            "provider_auth_failed",
        )
        .await;
        assert!(!p.to_string().contains("okta-secret-0003"));
        drop(mock_guard);
    }
    let api_calls = mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() != TOKEN_PATH)
        .count();
    assert_eq!(api_calls, 0);
}

#[tokio::test]
async fn verify_lists_one_snapshot_with_pagesize_and_pagenumber() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots"))
        .and(query_param("pageSize", "1"))
        .and(query_param("pageNumber", "1"))
        .and(query_param_is_missing("instanceId"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .respond_with(reply(200, "list.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let v: Value = app
        .post("/v1/accounts/ok/verify", &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
}

#[tokio::test]
async fn the_pl2_region_is_called_at_its_own_base_url() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    let mut body = account_body("krk", "oktawave");
    body["settings"]["region"] = json!("pl2");
    assert_eq!(app.post("/v1/accounts", &t, &body).await.status(), 201);
    Mock::given(method("GET"))
        .and(path("/pl2/snapshots/48211"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .respond_with(reply(200, "get.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let s: Value = app
        .get("/v1/snapshots/krk:48211", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["region"], "PL2");
}

#[tokio::test]
async fn create_posts_pascal_case_name_and_description_and_finds_the_new_snapshot_when_the_ticket_succeeds(
) {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    Mock::given(method("POST"))
        .and(path("/pl1/instances/130455/snapshots"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(fixture("create.request.json")))
        .respond_with(reply(200, "create.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let body = json!({"account": "ok", "source_id": "130455", "name": "web-01-before-upgrade", "description": "Snapshot before PHP upgrade"});
    let resp = app.post("/v1/snapshots", &t, &body).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    let op = &accepted["operation"];
    assert_eq!(op["kind"], "create");
    assert_eq!(op["state"], "running");
    assert_eq!(
        op["snapshot_id"],
        Value::Null,
        "the ticket does not name the snapshot"
    );
    assert_eq!(op["vendor_ref"], json!({"kind": "ticket", "id": "9123451"}));
    assert_eq!(accepted["snapshot"], Value::Null);

    Mock::given(method("GET"))
        .and(path("/pl1/tickets/9123451"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .respond_with(reply(200, "ticket.running.json"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "running");

    // Two snapshots carry the name: the one taken since the request is the new snapshot.
    let mut listed = fixture("list-instance.json");
    let mut older = listed["Items"][0].clone();
    listed["Items"][0]["CreationDate"] = json!(chrono::Utc::now().to_rfc3339());
    older["Id"] = json!(47000);
    older["CreationDate"] = json!("2024-01-01T10:00:00+01:00");
    listed["Items"].as_array_mut().unwrap().push(older);
    Mock::given(method("GET"))
        .and(path("/pl1/tickets/9123451"))
        .respond_with(reply(200, "ticket.succeeded.json"))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/pl1/instances/130455/snapshots"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(listed))
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "succeeded");
    assert_eq!(polled["snapshot_id"], "ok:48211");
    // Finished operations are not polled again.
    let again: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(again["state"], "succeeded");
}

#[tokio::test]
async fn create_without_a_description_sends_only_the_name() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    Mock::given(method("POST"))
        .and(path("/pl1/instances/130455/snapshots"))
        .and(body_json(json!({"Name": "web-01-weekly"})))
        .respond_with(reply(200, "create.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let body = json!({"account": "ok", "source_id": "130455", "name": "web-01-weekly"});
    assert_eq!(app.post("/v1/snapshots", &t, &body).await.status(), 202);
}

#[tokio::test]
async fn a_create_ticket_that_ends_without_the_named_snapshot_fails() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    Mock::given(method("POST"))
        .and(path("/pl1/instances/130455/snapshots"))
        .respond_with(reply(200, "create.response.json"))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/pl1/tickets/9123451"))
        .respond_with(reply(200, "ticket.succeeded.json"))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/pl1/instances/130455/snapshots"))
        .respond_with(reply(200, "list-empty.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let body = json!({"account": "ok", "source_id": "130455", "name": "never-made"});
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
    assert_eq!(polled["error"]["code"], "upstream_error");
}

#[tokio::test]
async fn create_checks_name_description_and_instance_id_before_calling_oktawave() {
    let (mock, app, t) = setup().await;
    let long = "x".repeat(501);
    let cases = [
        (
            json!({"account": "ok", "source_id": "130455", "name": "a/b"}),
            422,
            "name",
        ),
        (
            json!({"account": "ok", "source_id": "130455", "name": "50% done"}),
            422,
            "name",
        ),
        (
            json!({"account": "ok", "source_id": "130455", "name": "a<b>"}),
            422,
            "name",
        ),
        (
            json!({"account": "ok", "source_id": "130455", "name": "a|b\\c"}),
            422,
            "name",
        ),
        (
            json!({"account": "ok", "source_id": "130455", "name": long}),
            422,
            "name",
        ),
        (
            json!({"account": "ok", "source_id": "130455", "name": "n", "description": "before/after"}),
            422,
            "description",
        ),
        (
            json!({"account": "ok", "source_id": "web-01", "name": "n"}),
            422,
            "source_id",
        ),
        (
            json!({"account": "ok", "source_id": "9999999999", "name": "n"}),
            422,
            "source_id",
        ),
        (
            json!({"account": "ok", "source_id": "130455", "name": "n", "replace_existing": true}),
            422,
            "replace_existing",
        ),
    ];
    for (body, status, field) in cases {
        let p = assert_problem(
            app.post("/v1/snapshots", &t, &body).await,
            status,
            "invalid_field",
        )
        .await;
        assert_eq!(p["field"], field, "{body}");
    }
    assert!(
        mock.received_requests().await.unwrap().is_empty(),
        "no token, no API call"
    );
}

#[tokio::test]
async fn update_with_name_and_description_puts_both_and_finishes_at_once() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    Mock::given(method("PUT"))
        .and(path("/pl1/snapshots/48211"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .and(body_json(fixture("update.request.json")))
        .respond_with(reply(200, "update.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let body =
        json!({"name": "web-01-pre-php83", "description": "Snapshot before PHP 8.3 upgrade"});
    let resp = app.patch("/v1/snapshots/ok:48211", &t, &body).await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["operation"]["kind"], "rename");
    assert_eq!(accepted["operation"]["state"], "succeeded");
    assert_eq!(accepted["snapshot"]["name"], "web-01-pre-php83");
    assert_eq!(
        accepted["snapshot"]["description"],
        "Snapshot before PHP 8.3 upgrade"
    );
}

#[tokio::test]
async fn update_of_one_field_reads_the_snapshot_to_keep_the_other() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots/48211"))
        .respond_with(reply(200, "get.json"))
        .expect(2)
        .mount(&mock)
        .await;
    Mock::given(method("PUT"))
        .and(path("/pl1/snapshots/48211"))
        .and(body_json(
            json!({"Name": "renamed", "Description": "Snapshot before PHP upgrade"}),
        ))
        .respond_with(reply(200, "update.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("PUT"))
        .and(path("/pl1/snapshots/48211"))
        .and(body_json(
            json!({"Name": "web-01-before-upgrade", "Description": "new words"}),
        ))
        .respond_with(reply(200, "update.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    assert_eq!(
        app.patch("/v1/snapshots/ok:48211", &t, &json!({"name": "renamed"}))
            .await
            .status(),
        202
    );
    assert_eq!(
        app.patch(
            "/v1/snapshots/ok:48211",
            &t,
            &json!({"description": "new words"})
        )
        .await
        .status(),
        202
    );
    let p = assert_problem(
        app.patch("/v1/snapshots/ok:48211", &t, &json!({"name": "a/b"}))
            .await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(p["field"], "name");
    let p = assert_problem(
        app.patch("/v1/snapshots/ok:48211", &t, &json!({"description": "a/b"}))
            .await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(p["field"], "description");
}

#[tokio::test]
async fn delete_answers_a_ticket_and_the_snapshot_reads_deleting_until_the_ticket_fails() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    Mock::given(method("DELETE"))
        .and(path("/pl1/snapshots/48211"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .respond_with(reply(200, "delete.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app.delete("/v1/snapshots/ok:48211", &t).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["operation"]["kind"], "delete");
    assert_eq!(accepted["operation"]["state"], "running");
    assert_eq!(accepted["operation"]["snapshot_id"], "ok:48211");
    assert_eq!(
        accepted["operation"]["vendor_ref"],
        json!({"kind": "ticket", "id": "9123520"})
    );

    // While the ticket runs, the snapshot (which has no status of its own) reads deleting.
    Mock::given(method("GET"))
        .and(path("/pl1/tickets/9123520"))
        .respond_with(reply(200, "ticket.running.json"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots/48211"))
        .respond_with(reply(200, "get.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let s: Value = app
        .get("/v1/snapshots/ok:48211", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["status"], "deleting");
    assert!(
        s["vendor_status"]
            .as_str()
            .unwrap()
            .starts_with("ticket:9123520"),
        "{s}"
    );

    Mock::given(method("GET"))
        .and(path("/pl1/tickets/9123520"))
        .respond_with(reply(200, "ticket.error.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "failed");
    assert_eq!(polled["error"]["code"], "upstream_error");
    assert!(
        polled["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("Oktawave ticket 9123520 failed"),
        "{polled}"
    );
}

#[tokio::test]
async fn restore_posts_no_body_to_the_restore_ticket_and_succeeds_with_the_ticket() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    Mock::given(method("POST"))
        .and(path("/pl1/snapshots/48211/restore_ticket"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .and(|req: &Request| req.body.is_empty())
        .respond_with(reply(200, "restore.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app
        .post("/v1/snapshots/ok:48211/restore", &t, &json!({}))
        .await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["operation"]["kind"], "restore");
    assert_eq!(accepted["operation"]["state"], "running");
    assert_eq!(
        accepted["operation"]["vendor_ref"],
        json!({"kind": "ticket", "id": "9123601"})
    );

    let mut done = fixture("ticket.succeeded.json");
    done["Id"] = json!(9123601);
    Mock::given(method("GET"))
        .and(path("/pl1/tickets/9123601"))
        .respond_with(ResponseTemplate::new(200).set_body_json(done))
        .expect(1)
        .mount(&mock)
        .await;
    let polled: Value = app.get(&location, &t).await.json().await.unwrap();
    assert_eq!(polled["state"], "succeeded");

    // In place only: a target or a new name is refused before any call.
    for (body, field) in [
        (json!({"target_id": "130456"}), "target_id"),
        (json!({"new_name": "copy"}), "new_name"),
    ] {
        let p = assert_problem(
            app.post("/v1/snapshots/ok:48211/restore", &t, &body).await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(p["field"], field);
    }
}

/// Mounts a paged Oktawave list whose pages are numbered from `base` (0 or 1); a request
/// without `pageNumber` gets the first page. `pages` are the ids of each page; `total` is
/// `Meta.Total`.
async fn mount_pages(
    mock: &MockServer,
    instance: Option<&str>,
    base: usize,
    pages: &[&[u32]],
    total: u32,
) {
    let with_instance = |m: wiremock::MockBuilder| match instance {
        Some(i) => m.and(query_param("instanceId", i)),
        None => m.and(query_param_is_missing("instanceId")),
    };
    with_instance(
        Mock::given(method("GET"))
            .and(path("/pl1/snapshots"))
            .and(query_param("pageSize", "100"))
            .and(query_param_is_missing("pageNumber")),
    )
    .and(header("authorization", bearer(ACCESS).as_str()))
    .respond_with(ResponseTemplate::new(200).set_body_json(page(pages[0], total)))
    .mount(mock)
    .await;
    for (k, ids) in pages.iter().enumerate() {
        with_instance(
            Mock::given(method("GET"))
                .and(path("/pl1/snapshots"))
                .and(query_param("pageSize", "100"))
                .and(query_param("pageNumber", (base + k).to_string())),
        )
        .respond_with(ResponseTemplate::new(200).set_body_json(page(ids, total)))
        .mount(mock)
        .await;
    }
}

#[tokio::test]
async fn list_reads_every_page_whether_page_numbers_start_at_0_or_1() {
    for base in [0, 1] {
        let mock = MockServer::start().await;
        mount_token(&mock, 1).await;
        mount_pages(&mock, None, base, &[&[1, 2], &[3]], 3).await;
        let all = list(&mock, None).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|s| s.native_id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3"], "numbering from {base}");
        assert!(all.iter().all(|s| s.region.as_deref() == Some("PL1")));
    }
}

#[tokio::test]
async fn list_of_one_instance_sends_instance_id_and_an_empty_list_stops_at_once() {
    let mock = MockServer::start().await;
    // Each `list` here builds a fresh adapter (fresh token cache); the invalid id asks for none.
    mount_token(&mock, 2).await;
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots"))
        .and(query_param("instanceId", "130455"))
        .and(query_param("pageSize", "100"))
        .and(query_param_is_missing("pageNumber"))
        .respond_with(reply(200, "list.json"))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots"))
        .and(query_param("instanceId", "7"))
        .respond_with(reply(200, "list-empty.json"))
        .expect(1)
        .mount(&mock)
        .await;
    let mine = list(&mock, Some("130455")).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[1].name.as_deref(), Some("web-01-weekly"));
    assert_eq!(mine[1].description, None, "an empty description is none");
    assert!(list(&mock, Some("7")).await.unwrap().is_empty());
    // An instance id Oktawave cannot have lists nothing, without a call.
    assert!(list(&mock, Some("web-01")).await.unwrap().is_empty());
}

#[tokio::test]
async fn vendor_errors_map_to_gateway_problems_without_leaking_credentials() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    let cases = [
        (400, 400, "upstream_rejected"),
        (403, 502, "provider_permission_denied"),
        (404, 404, "snapshot_not_found"),
        (409, 409, "conflict"),
        (422, 400, "upstream_rejected"),
        (500, 502, "upstream_error"),
    ];
    for (i, (status, want, code)) in cases.iter().enumerate() {
        let id = 5000 + i;
        Mock::given(method("GET"))
            .and(path(format!("/pl1/snapshots/{id}")))
            .respond_with(reply(*status, "error.UNVERIFIED.json"))
            // Upstream retries a GET after a 5xx (its policy, not this adapter's).
            .expect(if *status >= 500 { 1..=3 } else { 1..=1 })
            .mount(&mock)
            .await;
        let p = assert_problem(
            app.get(&format!("/v1/snapshots/ok:{id}"), &t).await,
            *want,
            code,
        )
        .await;
        assert_eq!(p["provider"], "oktawave");
        assert_eq!(p["account"], "ok");
        for secret in ["okta-secret-0003", "okta-password-0004", ACCESS] {
            assert!(!p.to_string().contains(secret));
        }
        if *want == 400 {
            assert!(
                p["detail"]
                    .as_str()
                    .unwrap()
                    .contains("Authorization has been denied"),
                "{p}"
            );
        }
    }
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots/6001"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<Snapshot/>"))
        .mount(&mock)
        .await;
    assert_problem(
        app.get("/v1/snapshots/ok:6001", &t).await,
        502,
        "upstream_error",
    )
    .await;
    // Snapshot ids are int32: anything else is 404 without a vendor call.
    let before = mock.received_requests().await.unwrap().len();
    assert_problem(
        app.get("/v1/snapshots/ok:abc", &t).await,
        404,
        "snapshot_not_found",
    )
    .await;
    assert_problem(
        app.delete("/v1/snapshots/ok:4294967296", &t).await,
        404,
        "snapshot_not_found",
    )
    .await;
    assert_eq!(mock.received_requests().await.unwrap().len(), before);
    // Last: after a 429 the gateway holds calls to this account until Retry-After.
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots/6000"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "5"))
        .mount(&mock)
        .await;
    let resp = app.get("/v1/snapshots/ok:6000", &t).await;
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_problem(resp, 429, "provider_rate_limited").await;
}

#[tokio::test]
async fn the_gateway_list_of_an_instance_sends_instance_id_and_walks_to_meta_total() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    mount_pages(&mock, Some("130455"), 1, &[&[1, 2], &[3]], 3).await;
    let listed: Value = app
        .get("/v1/snapshots?account=ok&source_id=130455", &t)
        .await
        .json()
        .await
        .unwrap();
    let mut ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["ok:1", "ok:2", "ok:3"], "{listed}");
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "available" && s["region"] == "PL1"));
    assert_eq!(listed["errors"], json!([]));
}

/// Issue 22 item 8: RFC 6749 §2.3.1 — the client id and secret are each form-urlencoded
/// before HTTP Basic, so a secret with `:`, `+`, space or `%` reaches the identity server as
/// the OAuth libraries send it.
#[tokio::test]
async fn the_client_credentials_are_form_urlencoded_before_http_basic() {
    let mock = MockServer::start().await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| configure(c, &uri)).await;
    let t = token("acme", ALL_SCOPES);
    let body = json!({"id": "ok", "provider": "oktawave", "settings": {"region": "pl1"},
        "credentials": {"client_id": "team a:ops", "client_secret": "s+cr%t é",
                        "username": "ops@example.com", "password": "okta-password-0004"}});
    assert_eq!(app.post("/v1/accounts", &t, &body).await.status(), 201);
    let pair = base64::engine::general_purpose::STANDARD.encode("team+a%3Aops:s%2Bcr%25t+%C3%A9");
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(header("authorization", format!("Basic {pair}").as_str()))
        .and(form(FORM))
        .respond_with(reply(200, "token.response.json"))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/pl1/snapshots/48211"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .respond_with(reply(200, "get.json"))
        .expect(1)
        .mount(&mock)
        .await;
    assert_eq!(app.get("/v1/snapshots/ok:48211", &t).await.status(), 200);
}

/// This vendor's canary account (see `crate::canary`).
pub(crate) fn canary() -> crate::canary::Canary {
    crate::canary::Canary {
        provider: "oktawave",
        native: "48244",
        credentials: json!({"client_id": "CANARY-client-id", "client_secret": "CANARY-client\"secret",
            "username": "CANARY-user@example.com", "password": "CANARY pass\\w&rd"}),
        settings: json!({"region": "pl1"}),
        secrets: vec![
            "CANARY-client-id",
            "CANARY-client\"secret",
            "CANARY-user@example.com",
            "CANARY pass\\w&rd",
            "CANARY-client-id:CANARY-client\"secret",
        ],
        endpoints: vec![("pl1_base_url", ""), ("token_url", "/token")],
        token_exchange: true,
    }
}

#[tokio::test]
async fn sources_list_the_regions_instances_until_meta_total_agrees_leaving_deleted_out() {
    let (mock, app, t) = setup().await;
    mount_token(&mock, 1).await;
    let instance = |id: i64, status: i64| {
        json!({"Id": id, "Name": format!("web-{id}"), "Status": {"Id": status, "Label": "Powered on"}})
    };
    // The first page names no number; the next counts from 1 (as the snapshot list does).
    Mock::given(method("GET"))
        .and(path("/pl1/instances"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .and(query_param("pageSize", "100"))
        .and(query_param_is_missing("pageNumber"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"Items": [instance(130455, 86), instance(130460, 126)], "Meta": {"Total": 3}}),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/pl1/instances"))
        .and(header("authorization", bearer(ACCESS).as_str()))
        .and(query_param("pageSize", "100"))
        .and(query_param("pageNumber", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"Items": [instance(130470, 87)], "Meta": {"Total": 3}}),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    let (status, body) = account_sources(&app, &t, "ok").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        listed_sources(&body),
        [
            ("130455".into(), "instance".into()),
            ("130470".into(), "instance".into())
        ],
        "{body}"
    );
    assert_eq!(body["data"][0]["name"], "web-130455");
}
