//! Two gateways on one PostgreSQL database (`SNAPGATE_TEST_POSTGRES_URL`), a mock vendor
//! behind both: what one replica changes, the other uses within a second; one key, one create.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::domain::ProviderKind;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, Request, ResponseTemplate,
};

use crate::{helpers::*, store_contract::TestDatabase};

/// Two replicas started together on a fresh database, both calling the mock as Hyperstack.
async fn replicas(db: &TestDatabase, mock: &MockServer) -> (TestApp, TestApp) {
    let spawn = || {
        let (url, uri) = (db.url.clone(), mock.uri());
        spawn_app_with(move |c| {
            c.store.url = url;
            c.store.max_connections = 4;
            c.providers
                .set(ProviderKind::Hyperstack, "base_url", format!("{uri}/v1"));
        })
    };
    // Both start at once on the empty database: migrations take turns.
    tokio::join!(spawn(), spawn())
}

/// The `api_key` of the vendor calls received so far.
async fn keys_sent(mock: &MockServer) -> Vec<String> {
    mock.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r: &Request| r.headers.get("api_key")?.to_str().ok().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn what_one_replica_changes_in_an_account_the_other_uses_within_a_second() {
    let Some(db) = TestDatabase::create("replicated accounts").await else {
        return;
    };
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/core/snapshots"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": true, "snapshots": [], "count": 0})),
        )
        .mount(&mock)
        .await;
    let (a, b) = replicas(&db, &mock).await;
    let t = token("acme", ALL_SCOPES);
    let mut body = account_body("hs", "hyperstack");
    body["credentials"]["api_key"] = json!("key-one");
    assert_eq!(a.post("/v1/accounts", &t, &body).await.status(), 201);

    // Created on A, used on B (which now caches it).
    let verified: Value = b
        .post("/v1/accounts/hs/verify", &t, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["status"], "ok", "{verified}");
    assert_eq!(
        keys_sent(&mock).await.last().map(String::as_str),
        Some("key-one")
    );

    // New credentials through A are what B sends within a second.
    let patch = json!({"credentials": {"api_key": "key-two"}});
    assert_eq!(a.patch("/v1/accounts/hs", &t, &patch).await.status(), 200);
    let changed = Instant::now();
    loop {
        b.post("/v1/accounts/hs/verify", &t, &json!({})).await;
        if keys_sent(&mock).await.last().map(String::as_str) == Some("key-two") {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "B still sends the old credentials after {:?}",
            changed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "replica B sent the new credentials {:?} after the PATCH on A",
        changed.elapsed()
    );

    // Deleted on A: 404 on B within a second, its cached opening notwithstanding.
    assert_eq!(a.delete("/v1/accounts/hs", &t).await.status(), 204);
    let deleted = Instant::now();
    loop {
        let resp = b.post("/v1/accounts/hs/verify", &t, &json!({})).await;
        if resp.status() == 404 {
            assert_problem(resp, 404, "account_not_found").await;
            break;
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(1),
            "B still uses the deleted account"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((a, b));
    db.drop_database().await;
}

#[tokio::test]
async fn one_key_sent_to_both_replicas_at_once_makes_one_vendor_create() {
    let Some(db) = TestDatabase::create("replicated idempotency").await else {
        return;
    };
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/core/virtual-machines/2058/snapshots"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(hyperstack_created(77))
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let (a, b) = replicas(&db, &mock).await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        a.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    let body = json!({"account": "hs", "source_id": "2058", "name": "nightly"});
    let send = |app: &TestApp| {
        let (url, t, body) = (app.url.clone(), t.clone(), body.clone());
        async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/snapshots"))
                .bearer_auth(t)
                .header("idempotency-key", "nightly-2026-12-01")
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let (on_a, on_b) = tokio::join!(send(&a), send(&b));
    let statuses = [on_a.status().as_u16(), on_b.status().as_u16()];
    // One ran; the other replayed its answer or was told the key is in flight.
    assert!(
        statuses.contains(&202) && statuses.iter().all(|s| [202, 409].contains(s)),
        "{statuses:?}"
    );
    let first: Value = if on_a.status() == 202 { on_a } else { on_b }
        .json()
        .await
        .unwrap();
    // A retry on either replica replays the same operation.
    for app in [&a, &b] {
        let again = send(app).await;
        assert_eq!(again.status(), 202);
        assert_eq!(again.headers()["idempotency-replayed"], "true");
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["operation"]["id"], first["operation"]["id"]);
    }
    drop((a, b));
    mock.verify().await;
    db.drop_database().await;
}
