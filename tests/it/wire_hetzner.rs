//! Exact Hetzner Cloud requests and response mapping, asserted with a mock vendor (wiremock),
//! from the documented bodies (`tests/fixtures/vendors/hetzner`, `docs/vendors/hetzner.md`).

use serde_json::{json, Value};
use snapgate::domain::ProviderKind;
use wiremock::{
    matchers::{body_json, header, method, path, query_param},
    Mock, MockServer, ResponseTemplate,
};

use crate::helpers::*;

const TOKEN: &str = "hetzner-secret-token-0007";

fn fixture(name: &str) -> Value {
    vendor_fixture("hetzner", name)
}

/// A mock of one documented call, authenticated as the account's token.
fn vendor(verb: &str, url: &str) -> wiremock::MockBuilder {
    Mock::given(method(verb))
        .and(path(url))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
}

fn reply(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

async fn setup() -> (MockServer, TestApp, String) {
    let mock = MockServer::start().await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| {
        c.providers
            .set(ProviderKind::Hetzner, "base_url", format!("{uri}/v1"));
        c.upstream.max_retries = 0;
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    let body = json!({"id": "hz", "provider": "hetzner", "credentials": {"token": TOKEN}});
    let created = app.post("/v1/accounts", &t, &body).await;
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    mock.reset().await;
    (mock, app, t)
}

/// The documented image, under `{"image": …}`.
async fn image_is(mock: &MockServer, times: u64) {
    vendor("GET", "/v1/images/4711")
        .respond_with(reply(200, fixture("image.get.json")))
        .expect(times)
        .mount(mock)
        .await;
}

#[tokio::test]
async fn list_reads_every_snapshot_page_and_filters_a_server_by_created_from() {
    let (mock, app, t) = setup().await;
    vendor("GET", "/v1/images")
        .and(query_param("type", "snapshot"))
        .and(query_param("page", "1"))
        .and(query_param("per_page", "50"))
        .respond_with(reply(200, fixture("images.list.json")))
        .expect(2)
        .mount(&mock)
        .await;
    let page: Value = app
        .get("/v1/snapshots?account=hz", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["errors"], json!([]), "{page}");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{page}");
    let mine = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "hz:4711")
        .unwrap();
    assert_eq!(mine["name"], "my image", "the description is the name");
    assert_eq!(mine["source"], json!({"kind": "vm", "id": "42"}));
    // `bound_to` finds backups only: a server's snapshots are filtered on `created_from`.
    let one: Value = app
        .get("/v1/snapshots?account=hz&source_id=42", &t)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = one["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["hz:4711"]);
}

#[tokio::test]
async fn create_posts_the_name_as_description_and_follows_the_action() {
    let (mock, app, t) = setup().await;
    vendor("POST", "/v1/servers/42/actions/create_image")
        .and(body_json(json!({"description": "nightly", "type": "snapshot"})))
        .respond_with(reply(201, fixture("create_image.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let accepted: Value = app
        .post(
            "/v1/snapshots",
            &t,
            &json!({"account": "hz", "source_id": "42", "name": "nightly"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["operation"]["state"], "running", "{accepted}");
    assert_eq!(accepted["operation"]["snapshot_id"], "hz:4711");
    assert_eq!(accepted["snapshot"]["status"], "creating");
    assert_eq!(
        accepted["operation"]["vendor_ref"],
        json!({"kind": "action", "id": "13"})
    );
    vendor("GET", "/v1/actions/13")
        .respond_with(reply(200, fixture("action.success.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let op = accepted["operation"]["id"].as_str().unwrap();
    let done: Value = app
        .get(&format!("/v1/operations/{op}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["state"], "succeeded", "{done}");
    // A description beside the name cannot be kept: refused before any call.
    let refused = app
        .post(
            "/v1/snapshots",
            &t,
            &json!({"account": "hz", "source_id": "42", "name": "n", "description": "d"}),
        )
        .await;
    assert_problem(refused, 422, "invalid_field").await;
}

#[tokio::test]
async fn a_failed_action_fails_the_operation_with_the_vendors_words() {
    let (mock, app, t) = setup().await;
    vendor("POST", "/v1/servers/42/actions/create_image")
        .respond_with(reply(201, fixture("create_image.response.json")))
        .mount(&mock)
        .await;
    vendor("GET", "/v1/actions/13")
        .respond_with(reply(200, fixture("action.error.json")))
        .mount(&mock)
        .await;
    let accepted: Value = app
        .post(
            "/v1/snapshots",
            &t,
            &json!({"account": "hz", "source_id": "42", "name": "n"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let op = accepted["operation"]["id"].as_str().unwrap();
    let done: Value = app
        .get(&format!("/v1/operations/{op}"), &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["state"], "failed", "{done}");
    let detail = done["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("action 13 failed"), "{detail}");
}

#[tokio::test]
async fn rename_puts_the_description_of_a_snapshot_image() {
    let (mock, app, t) = setup().await;
    image_is(&mock, 1).await;
    vendor("PUT", "/v1/images/4711")
        .and(body_json(json!({"description": "renamed"})))
        .respond_with(reply(200, fixture("image.update.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app
        .patch(
            "/v1/snapshots/hz:4711",
            &t,
            &json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["operation"]["state"], "succeeded", "{accepted}");
}

#[tokio::test]
async fn delete_is_synchronous_and_a_protected_image_is_a_conflict() {
    let (mock, app, t) = setup().await;
    image_is(&mock, 2).await;
    vendor("DELETE", "/v1/images/4711")
        .respond_with(ResponseTemplate::new(204))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    let accepted: Value = app
        .delete("/v1/snapshots/hz:4711", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["operation"]["state"], "succeeded", "{accepted}");
    vendor("DELETE", "/v1/images/4711")
        .respond_with(reply(423, fixture("error.protected.json")))
        .mount(&mock)
        .await;
    let refused = app.delete("/v1/snapshots/hz:4711", &t).await;
    let body = assert_problem(refused, 409, "conflict").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("protected"), "{detail}");
}

#[tokio::test]
async fn restore_makes_a_new_server_like_the_source_unless_asked_in_place() {
    let (mock, app, t) = setup().await;
    image_is(&mock, 3).await;
    let server = fixture("server.create.response.json")["server"].clone();
    vendor("GET", "/v1/servers/42")
        .respond_with(reply(200, json!({"server": server})))
        .expect(1)
        .mount(&mock)
        .await;
    vendor("POST", "/v1/servers")
        .and(body_json(json!({
            "name": "web-restored",
            "server_type": server["server_type"]["name"],
            "image": 4711,
            "location": server["location"]["name"],
            "start_after_create": true,
        })))
        .respond_with(reply(201, fixture("server.create.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app
        .post(
            "/v1/snapshots/hz:4711/restore",
            &t,
            &json!({"new_name": "web-restored"}),
        )
        .await;
    let text = resp.text().await.unwrap();
    assert!(!text.contains("root_password"), "{text}");
    let accepted: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(accepted["operation"]["state"], "running", "{accepted}");
    assert_eq!(
        accepted["operation"]["result"]["vm_name"],
        "web-restored"
    );
    // No name, no new server: said so before any write.
    let refused = app
        .post("/v1/snapshots/hz:4711/restore", &t, &json!({}))
        .await;
    assert_problem(refused, 422, "invalid_field").await;
    vendor("POST", "/v1/servers/42/actions/rebuild")
        .and(body_json(json!({"image": 4711})))
        .respond_with(reply(201, fixture("rebuild.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app
        .post(
            "/v1/snapshots/hz:4711/restore",
            &t,
            &json!({"in_place": true}),
        )
        .await;
    let text = resp.text().await.unwrap();
    let accepted: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(accepted["operation"]["kind"], "restore", "{text}");
    assert_eq!(accepted["operation"]["result"]["vm_id"], "42");
}

#[tokio::test]
async fn a_reply_saying_the_limit_is_spent_holds_the_account_before_any_429() {
    let (mock, app, t) = setup().await;
    let reset = chrono::Utc::now().timestamp() + 3600;
    vendor("GET", "/v1/images/4711")
        .respond_with(
            reply(200, fixture("image.get.json"))
                .insert_header("ratelimit-limit", "3600")
                .insert_header("ratelimit-remaining", "0")
                .insert_header("ratelimit-reset", reset.to_string().as_str()),
        )
        .expect(1)
        .mount(&mock)
        .await;
    assert_eq!(app.get("/v1/snapshots/hz:4711", &t).await.status(), 200);
    // The next call is held here (one request comes back a second later), not sent.
    let held = app.get("/v1/snapshots/hz:4711", &t).await;
    assert_eq!(held.headers()["retry-after"], "1");
    assert_problem(held, 429, "provider_rate_limited").await;
}

/// This vendor's canary account (see `crate::canary`).
pub(crate) fn canary() -> crate::canary::Canary {
    crate::canary::Canary {
        provider: "hetzner",
        native: "4711",
        credentials: json!({"token": "  Bearer CANARY-hz\"q\\x  "}),
        settings: json!({}),
        secrets: vec!["  Bearer CANARY-hz\"q\\x  "],
        endpoints: crate::canary::base_url(),
        token_exchange: false,
    }
}

#[tokio::test]
async fn sources_follow_next_page_through_the_servers_leaving_deleting_ones_out() {
    let (mock, app, t) = setup().await;
    let server = |id: i64, status: &str| json!({"id": id, "name": format!("srv-{id}"), "status": status});
    let pagination = |page: i64, next: Option<i64>| {
        json!({"pagination": {"page": page, "per_page": 50, "previous_page": null,
               "next_page": next, "last_page": 2, "total_entries": 3}})
    };
    vendor("GET", "/v1/servers")
        .and(query_param("page", "1"))
        .and(query_param("per_page", "50"))
        .respond_with(reply(
            200,
            json!({"servers": [server(42, "running"), server(43, "deleting")], "meta": pagination(1, Some(2))}),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    vendor("GET", "/v1/servers")
        .and(query_param("page", "2"))
        .and(query_param("per_page", "50"))
        .respond_with(reply(
            200,
            json!({"servers": [server(44, "off")], "meta": pagination(2, None)}),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    let (status, body) = account_sources(&app, &t, "hz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        listed_sources(&body),
        [("42".into(), "vm".into()), ("44".into(), "vm".into())],
        "{body}"
    );
    assert_eq!(body["data"][1]["status"], "off");
}
