//! Exact DigitalOcean requests and response mapping, asserted with a mock vendor (wiremock),
//! from the documented bodies (`tests/fixtures/vendors/digitalocean`,
//! `docs/vendors/digitalocean.md`).

use serde_json::{json, Value};
use snapgate::domain::ProviderKind;
use wiremock::{
    matchers::{body_json, header, method, path, query_param},
    Mock, MockServer, ResponseTemplate,
};

use crate::helpers::*;

const TOKEN: &str = "digitalocean-secret-token-0008";
const VOLUME: &str = "7724db7c-e098-11e5-b522-000f53304e51";

fn fixture(name: &str) -> Value {
    vendor_fixture("digitalocean", name)
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
            .set(ProviderKind::Digitalocean, "base_url", format!("{uri}/v2"));
        c.upstream.max_retries = 0;
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    let body = json!({"id": "do", "provider": "digitalocean", "credentials": {"token": TOKEN}});
    let created = app.post("/v1/accounts", &t, &body).await;
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    mock.reset().await;
    (mock, app, t)
}

#[tokio::test]
async fn list_reads_both_kinds_through_every_page_named_by_their_source() {
    let (mock, app, t) = setup().await;
    vendor("GET", "/v2/snapshots")
        .and(query_param("page", "1"))
        .and(query_param("per_page", "200"))
        .respond_with(reply(200, fixture("snapshots.list.json")))
        .mount(&mock)
        .await;
    // The fixture says five in all and names a next page: the walk reads on.
    vendor("GET", "/v2/snapshots")
        .and(query_param("page", "2"))
        .respond_with(reply(200, json!({"snapshots": [], "links": {}, "meta": {"total": 5}})))
        .expect(1)
        .mount(&mock)
        .await;
    let page: Value = app
        .get("/v1/snapshots?account=do", &t)
        .await
        .json()
        .await
        .unwrap();
    let sources: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["source"])
        .collect();
    assert_eq!(
        sources,
        [
            &json!({"kind": "volume", "id": VOLUME}),
            &json!({"kind": "vm", "id": "3164444"}),
        ],
        "{page}"
    );
}

#[tokio::test]
async fn a_droplet_snapshot_is_an_action_then_found_in_the_droplets_list() {
    let (mock, app, t) = setup().await;
    vendor("POST", "/v2/droplets/3164444/actions")
        .and(body_json(json!({"type": "snapshot", "name": "nightly"})))
        .respond_with(reply(201, fixture("droplet.action.snapshot.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let accepted: Value = app
        .post(
            "/v1/snapshots",
            &t,
            &json!({"account": "do", "source_id": "3164444", "name": "nightly"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["operation"]["state"], "running", "{accepted}");
    assert_eq!(accepted["operation"]["snapshot_id"], Value::Null);
    let started = fixture("droplet.action.snapshot.response.json")["action"]["started_at"].clone();
    vendor("GET", "/v2/actions/36804636")
        .respond_with(reply(200, fixture("action.completed.json")))
        .mount(&mock)
        .await;
    vendor("GET", "/v2/droplets/3164444/snapshots")
        .respond_with(reply(200, json!({"snapshots": [
            {"id": 6372000, "name": "nightly", "type": "snapshot", "created_at": "2019-01-01T00:00:00Z"},
            {"id": 6372321, "name": "nightly", "type": "snapshot", "created_at": started},
        ]})))
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
    // Not last year's snapshot of the same name: the one taken since the action began.
    assert_eq!(done["snapshot_id"], "do:6372321");
}

#[tokio::test]
async fn a_volume_snapshot_is_made_at_once() {
    let (mock, app, t) = setup().await;
    vendor("POST", &format!("/v2/volumes/{VOLUME}/snapshots"))
        .and(body_json(json!({"name": "big-data"})))
        .respond_with(reply(201, fixture("volume.snapshot.create.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let accepted: Value = app
        .post(
            "/v1/snapshots",
            &t,
            &json!({"account": "do", "source_id": VOLUME, "name": "big-data"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["operation"]["state"], "succeeded", "{accepted}");
    assert_eq!(accepted["snapshot"]["source"]["kind"], "volume");
}

#[tokio::test]
async fn rename_is_for_droplet_snapshots_and_delete_answers_204() {
    let (mock, app, t) = setup().await;
    vendor("GET", "/v2/snapshots/6372321")
        .respond_with(reply(200, fixture("snapshot.get.droplet.json")))
        .mount(&mock)
        .await;
    vendor("PUT", "/v2/images/6372321")
        .and(body_json(json!({"name": "renamed"})))
        .respond_with(reply(200, fixture("image.update.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let resp = app
        .patch("/v1/snapshots/do:6372321", &t, &json!({"name": "renamed"}))
        .await;
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    let volume_snapshot = fixture("snapshot.get.volume.json");
    let id = volume_snapshot["snapshot"]["id"].as_str().unwrap().to_owned();
    vendor("GET", &format!("/v2/snapshots/{id}"))
        .respond_with(reply(200, volume_snapshot))
        .mount(&mock)
        .await;
    let refused = app
        .patch(&format!("/v1/snapshots/do:{id}"), &t, &json!({"name": "x"}))
        .await;
    assert_problem(refused, 422, "invalid_field").await;
    vendor("DELETE", "/v2/snapshots/6372321")
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&mock)
        .await;
    let accepted: Value = app
        .delete("/v1/snapshots/do:6372321", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["operation"]["state"], "succeeded", "{accepted}");
}

#[tokio::test]
async fn restore_rebuilds_only_when_asked_and_errors_keep_the_vendors_words() {
    let (mock, app, t) = setup().await;
    vendor("GET", "/v2/snapshots/6372321")
        .respond_with(reply(200, fixture("snapshot.get.droplet.json")))
        .mount(&mock)
        .await;
    vendor("POST", "/v2/droplets/3164444/actions")
        .and(body_json(json!({"type": "rebuild", "image": 6372321})))
        .respond_with(reply(201, fixture("droplet.action.rebuild.response.json")))
        .expect(1)
        .mount(&mock)
        .await;
    let refused = app
        .post("/v1/snapshots/do:6372321/restore", &t, &json!({}))
        .await;
    assert_problem(refused, 422, "invalid_field").await;
    let accepted: Value = app
        .post(
            "/v1/snapshots/do:6372321/restore",
            &t,
            &json!({"in_place": true}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["operation"]["result"]["vm_id"], "3164444", "{accepted}");
    vendor("GET", "/v2/snapshots/404404")
        .respond_with(reply(404, fixture("error.404.json")))
        .mount(&mock)
        .await;
    let missing = app.get("/v1/snapshots/do:404404", &t).await;
    assert_problem(missing, 404, "snapshot_not_found").await;
}

/// This vendor's canary account (see `crate::canary`).
pub(crate) fn canary() -> crate::canary::Canary {
    crate::canary::Canary {
        provider: "digitalocean",
        native: "6372321",
        credentials: json!({"token": "  bearer CANARY-do\"q\\x  "}),
        settings: json!({}),
        secrets: vec!["  bearer CANARY-do\"q\\x  "],
        endpoints: crate::canary::base_url(),
        token_exchange: false,
    }
}

#[tokio::test]
async fn sources_are_droplets_gpu_droplets_and_volumes_each_walked_to_its_last_page() {
    let (mock, app, t) = setup().await;
    let droplet = |id: i64, status: &str| json!({"id": id, "name": format!("d-{id}"), "status": status});
    let walk = |url: &'static str, gpus: bool, body: Value| {
        let m = vendor("GET", url)
            .and(query_param("page", "1"))
            .and(query_param("per_page", "200"));
        let m = if gpus {
            m.and(query_param("type", "gpus"))
        } else {
            m.and(wiremock::matchers::query_param_is_missing("type"))
        };
        m.respond_with(reply(200, body)).expect(1)
    };
    walk(
        "/v2/droplets",
        false,
        json!({"droplets": [droplet(3164444, "active"), droplet(3164449, "archive")],
               "links": {"pages": {}}, "meta": {"total": 2}}),
    )
    .mount(&mock)
    .await;
    walk(
        "/v2/droplets",
        true,
        json!({"droplets": [droplet(3164460, "active")], "links": {}, "meta": {"total": 1}}),
    )
    .mount(&mock)
    .await;
    walk(
        "/v2/volumes",
        false,
        json!({"volumes": [{"id": VOLUME, "name": "example", "size_gigabytes": 10}],
               "links": {}, "meta": {"total": 1}}),
    )
    .mount(&mock)
    .await;
    let (status, body) = account_sources(&app, &t, "do").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        listed_sources(&body),
        [
            ("3164444".into(), "vm".into()),
            ("3164460".into(), "vm".into()),
            (VOLUME.into(), "volume".into())
        ],
        "the archived droplet is left out: {body}"
    );
}
