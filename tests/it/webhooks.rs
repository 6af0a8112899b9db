//! Webhooks end to end: a local receiver (wiremock) gets signed deliveries of the events the
//! gateway writes, retried on the schedule, logged, and refused for private targets unless
//! allowed. Signatures are checked here with HMAC written from the Standard Webhooks spec, not
//! with snapgate's signing code (`.ci/clients` also checks them with the `standardwebhooks`
//! Python library).

use std::time::{Duration, Instant};

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use snapgate::simulator::Vendor;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, Request, ResponseTemplate,
};

use crate::{helpers::*, lifecycle::*};

/// Delivers from a fast worker with a short schedule, to loopback receivers.
pub fn delivering(c: &mut snapgate::Config) {
    c.webhooks.enabled = true;
    c.webhooks.tick_ms = 20;
    c.webhooks.allow_private_targets = true;
    c.webhooks.retry_schedule_secs = vec![0, 1, 1];
}

/// A receiver at `/hook` answering 204.
pub async fn receiver() -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mock)
        .await;
    mock
}

/// Creates a webhook to `url`; returns its body (with the secret).
pub async fn create_webhook(app: &TestApp, token: &str, url: &str, types: Value) -> Value {
    let resp = app
        .post(
            "/v1/webhooks",
            token,
            &json!({"url": url, "event_types": types, "description": "test receiver"}),
        )
        .await;
    assert_eq!(resp.status(), 201, "create webhook");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/webhooks/{}", body["id"].as_str().unwrap())
    );
    body
}

/// The requests the receiver got at `/hook`.
pub async fn received(mock: &MockServer) -> Vec<Request> {
    mock.received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/hook")
        .collect()
}

/// Waits (at most `within`) until the receiver got `n` requests; returns them.
pub async fn wait_received(mock: &MockServer, n: usize, within: Duration) -> Vec<Request> {
    let started = Instant::now();
    loop {
        let got = received(mock).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            started.elapsed() < within,
            "{} of {n} deliveries arrived within {within:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header<'a>(r: &'a Request, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// Verifies a delivery as the Standard Webhooks spec says, written here from the spec: the
/// key is the base64 after `whsec_`; the signed content is `{id}.{timestamp}.{body}`; any of
/// the space-separated `v1,` signatures may match; the timestamp is within five minutes.
pub fn verify(secret: &str, r: &Request) -> Result<(), String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").ok_or("not a whsec_ secret")?)
        .map_err(|e| e.to_string())?;
    let (id, ts) = (header(r, "webhook-id"), header(r, "webhook-timestamp"));
    let ts_num: i64 = ts.parse().map_err(|_| "timestamp is not a number")?;
    if (chrono::Utc::now().timestamp() - ts_num).abs() > 300 {
        return Err("timestamp too far from now".into());
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let sigs = header(r, "webhook-signature");
    sigs.split(' ')
        .any(|s| s == expected)
        .then_some(())
        .ok_or_else(|| format!("no signature in `{sigs}` matches"))
}

/// The webhook's deliveries (newest first).
pub async fn deliveries(app: &TestApp, token: &str, webhook: &str) -> Vec<Value> {
    let page = json_of(
        app.get(&format!("/v1/webhooks/{webhook}/deliveries"), token)
            .await,
    )
    .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn an_operation_nobody_polls_finishes_and_its_event_arrives_signed() {
    let s = spawn_with_simulator_and(Duration::from_millis(300), |c| {
        delivering(c);
        c.reconciler.enabled = true;
        c.reconciler.tick_ms = 20;
        c.reconciler.first_check_ms = 200;
    })
    .await;
    let mock = receiver().await;
    let hook = create_webhook(
        &s.app,
        &s.token,
        &format!("{}/hook", mock.uri()),
        json!(["operation.succeeded", "snapshot.created"]),
    )
    .await;
    let secret = hook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{hook}");

    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    let body = json!({"account": "koyeb", "source_id": source, "name": "nightly"});
    let resp = s.app.post("/v1/snapshots", &s.token, &body).await;
    assert_eq!(resp.status(), 202);
    let op = json_of(resp).await["operation"].clone();
    // Nobody reads the operation: the reconciler finishes it, the worker tells the receiver.
    let got = wait_received(&mock, 2, Duration::from_secs(15)).await;
    let mut types = Vec::new();
    for r in &got {
        verify(secret, r).unwrap();
        assert_eq!(header(r, "content-type"), "application/json");
        let event: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(header(r, "webhook-id"), event["id"].as_str().unwrap());
        assert_eq!(event["data"]["operation"]["id"], op["id"], "{event}");
        assert_eq!(event["data"]["operation"]["state"], "succeeded", "{event}");
        assert_eq!(event["data"]["actor"], "reconciler", "{event}");
        assert!(event["timestamp"].is_string(), "{event}");
        types.push(event["type"].as_str().unwrap().to_owned());
    }
    types.sort();
    assert_eq!(types, ["operation.succeeded", "snapshot.created"]);
    // A tampered body does not verify.
    let mut forged = got[0].clone();
    forged.body = br#"{"type":"operation.succeeded","data":{}}"#.to_vec();
    assert!(verify(secret, &forged).is_err());
    // The events are the log's: same ids.
    let log = json_of(
        s.app
            .get("/v1/events?type=operation.succeeded", &s.token)
            .await,
    )
    .await;
    let ids: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        got.iter().any(|r| ids.contains(&header(r, "webhook-id"))),
        "{log}"
    );
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_third_attempt_with_the_same_id() {
    let app = spawn_app_with(delivering).await;
    let t = token("acme", ALL_SCOPES);
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&mock)
        .await;
    let hook = create_webhook(&app, &t, &format!("{}/hook", mock.uri()), json!([])).await;
    let id = hook["id"].as_str().unwrap();
    let test = app
        .post(&format!("/v1/webhooks/{id}/test"), &t, &json!({}))
        .await;
    assert_eq!(test.status(), 202);
    let queued = json_of(test).await;
    assert_eq!(queued["event_type"], "webhook.test");

    let got = wait_received(&mock, 3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3);
    let ids: Vec<&str> = got.iter().map(|r| header(r, "webhook-id")).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(ids[0], queued["event_id"].as_str().unwrap());
    for r in &got {
        verify(hook["secret"].as_str().unwrap(), r).unwrap();
    }
    // Retried on the schedule (1 s, give or take a tenth), not at once.
    let log = loop {
        let log = deliveries(&app, &t, id).await;
        if log[0]["state"] == "succeeded" {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(log.len(), 1, "{log:?}");
    let d = &log[0];
    assert_eq!(d["id"], queued["id"]);
    let codes: Vec<u64> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 200], "{d}");
    assert!(d["next_attempt_at"].is_null(), "{d}");
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(d["attempts"][i]["at"].as_str().unwrap()).unwrap()
    };
    let gap = (at(1) - at(0)).num_milliseconds();
    assert!(
        (850..3000).contains(&gap),
        "second attempt {gap} ms after the first"
    );
    assert!(d["attempts"][0]["latency_ms"].is_u64(), "{d}");

    // Redelivery: a new delivery of the same event, same webhook-id.
    let again = app
        .post(
            &format!(
                "/v1/webhooks/{id}/deliveries/{}/redeliver",
                d["id"].as_str().unwrap()
            ),
            &t,
            &json!({}),
        )
        .await;
    assert_eq!(again.status(), 202);
    let again = json_of(again).await;
    assert_ne!(again["id"], d["id"]);
    let got = wait_received(&mock, 4, Duration::from_secs(5)).await;
    assert_eq!(header(&got[3], "webhook-id"), ids[0]);
}

#[tokio::test]
async fn an_endpoint_failing_the_whole_schedule_is_disabled_and_says_why() {
    let app = spawn_app_with(|c| {
        delivering(c);
        c.webhooks.retry_schedule_secs = vec![0, 0];
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&mock)
        .await;
    let hook = create_webhook(&app, &t, &format!("{}/hook", mock.uri()), json!([])).await;
    let id = hook["id"].as_str().unwrap();
    app.post(&format!("/v1/webhooks/{id}/test"), &t, &json!({}))
        .await;
    let started = Instant::now();
    let view = loop {
        let view = json_of(app.get(&format!("/v1/webhooks/{id}"), &t).await).await;
        if view["enabled"] == false {
            break view;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{view}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let reason = view["disabled_reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 503") && reason.contains("2 attempts"),
        "{reason}"
    );
    assert!(view.get("secret").is_none(), "{view}");
    assert_eq!(received(&mock).await.len(), 2);
    let log = deliveries(&app, &t, id).await;
    assert_eq!(log[0]["state"], "failed");
    assert_eq!(log[0]["attempts"].as_array().unwrap().len(), 2);

    // Re-enabled, it receives again.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(1)
        .mount(&mock)
        .await;
    let resumed = app
        .patch(&format!("/v1/webhooks/{id}"), &t, &json!({"enabled": true}))
        .await;
    assert_eq!(resumed.status(), 200);
    let resumed = json_of(resumed).await;
    assert_eq!(resumed["enabled"], true);
    assert!(resumed["disabled_reason"].is_null(), "{resumed}");
    app.post(&format!("/v1/webhooks/{id}/test"), &t, &json!({}))
        .await;
    wait_received(&mock, 3, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn private_targets_are_refused_unless_the_operator_allows_them() {
    let app = spawn_app_with(|c| c.webhooks.allow_private_targets = false).await;
    let t = token("acme", ALL_SCOPES);
    for url in [
        "https://127.0.0.1:9000/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]:8080/hook",
        "https://10.0.0.7/hook",
        "https://192.168.1.1/hook",
        // A DNS name resolving to loopback.
        "https://localhost:9000/hook",
        // Plain HTTP, even to a public address, only when the operator allows it.
        "http://93.184.216.34/hook",
    ] {
        let resp = app.post("/v1/webhooks", &t, &json!({"url": url})).await;
        let problem = assert_problem(resp, 422, "webhook_target_refused").await;
        assert_eq!(problem["field"], "url", "{url}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("allow_private_targets"),
            "{problem}"
        );
    }
    for url in [
        "ftp://example.com/",
        "https://",
        "http://user:pw@example.com/",
    ] {
        let resp = app.post("/v1/webhooks", &t, &json!({"url": url})).await;
        let problem = assert_problem(resp, 422, "invalid_field").await;
        assert_eq!(problem["field"], "url", "{url}");
    }
    let listed = json_of(app.get("/v1/webhooks", &t).await).await;
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn tenants_never_see_or_receive_each_others_webhooks_and_events() {
    let s = spawn_with_simulator_and(Duration::from_millis(50), delivering).await;
    let other = token("globex", ALL_SCOPES);
    let mock = receiver().await;
    let theirs = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&theirs)
        .await;
    let hook = create_webhook(&s.app, &s.token, &format!("{}/hook", mock.uri()), json!([])).await;
    let id = hook["id"].as_str().unwrap();
    create_webhook(&s.app, &other, &format!("{}/hook", theirs.uri()), json!([])).await;

    // Globex cannot read, change, test, rotate or delete Acme's endpoint, nor list it.
    for resp in [
        s.app.get(&format!("/v1/webhooks/{id}"), &other).await,
        s.app
            .patch(
                &format!("/v1/webhooks/{id}"),
                &other,
                &json!({"enabled": false}),
            )
            .await,
        s.app
            .post(&format!("/v1/webhooks/{id}/test"), &other, &json!({}))
            .await,
        s.app
            .post(
                &format!("/v1/webhooks/{id}/rotate-secret"),
                &other,
                &json!({}),
            )
            .await,
        s.app
            .get(&format!("/v1/webhooks/{id}/deliveries"), &other)
            .await,
        s.app.delete(&format!("/v1/webhooks/{id}"), &other).await,
    ] {
        assert_problem(resp, 404, "webhook_not_found").await;
    }
    let listed = json_of(s.app.get("/v1/webhooks", &other).await).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_ne!(listed["items"][0]["id"], hook["id"]);

    // Acme's work is delivered to Acme's receiver only, and logged for Acme only.
    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    let body = json!({"account": "koyeb", "source_id": source, "name": "mine"});
    let op = json_of(s.app.post("/v1/snapshots", &s.token, &body).await).await;
    let op_id = op["operation"]["id"].as_str().unwrap();
    let started = Instant::now();
    while json_of(
        s.app
            .get(&format!("/v1/operations/{op_id}"), &s.token)
            .await,
    )
    .await["state"]
        == "running"
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_received(&mock, 2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(theirs.received_requests().await.unwrap().is_empty());
    let theirs_log = json_of(s.app.get("/v1/events", &other).await).await;
    assert_eq!(theirs_log["items"], json!([]), "{theirs_log}");
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_old_one_during_the_grace_period() {
    let app = spawn_app_with(delivering).await;
    let t = token("acme", ALL_SCOPES);
    let mock = receiver().await;
    let hook = create_webhook(&app, &t, &format!("{}/hook", mock.uri()), json!([])).await;
    let id = hook["id"].as_str().unwrap();
    let old = hook["secret"].as_str().unwrap();
    let rotated = app
        .post(&format!("/v1/webhooks/{id}/rotate-secret"), &t, &json!({}))
        .await;
    assert_eq!(rotated.status(), 200);
    let rotated = json_of(rotated).await;
    let new = rotated["secret"].as_str().unwrap();
    assert_ne!(new, old);
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );
    // The secret is never shown again.
    let view = json_of(app.get(&format!("/v1/webhooks/{id}"), &t).await).await;
    assert!(
        view.get("secret").is_none() && !view.to_string().contains("whsec_"),
        "{view}"
    );
    let listed = json_of(app.get("/v1/webhooks", &t).await).await;
    assert!(!listed.to_string().contains("whsec_"), "{listed}");

    app.post(&format!("/v1/webhooks/{id}/test"), &t, &json!({}))
        .await;
    let got = wait_received(&mock, 1, Duration::from_secs(5)).await;
    let sigs = header(&got[0], "webhook-signature");
    assert_eq!(sigs.split(' ').count(), 2, "{sigs}");
    verify(new, &got[0]).unwrap();
    verify(old, &got[0]).unwrap();
    // Nothing of either secret is stored in clear.
    let db = std::fs::read(app.db_path()).unwrap();
    let wal = std::fs::read(app.db_path().with_extension("db-wal")).unwrap_or_default();
    for secret in [old, new] {
        let needle = secret.as_bytes();
        let key = &needle[6..];
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(key.len()).any(|w| w == key),
                "a secret is stored in clear"
            );
        }
    }
}

#[tokio::test]
async fn webhook_routes_need_the_webhook_scopes() {
    let app = spawn_app().await;
    let read_only = token("acme", "webhooks:read");
    let resp = app
        .post(
            "/v1/webhooks",
            &read_only,
            &json!({"url": "https://example.com/h"}),
        )
        .await;
    assert_problem(resp, 403, "insufficient_scope").await;
    let snapshots_only = token("acme", "snapshots:read snapshots:write");
    let resp = app.get("/v1/webhooks", &snapshots_only).await;
    assert_problem(resp, 403, "insufficient_scope").await;
    assert_eq!(app.get("/v1/webhooks", &read_only).await.status(), 200);
}

#[tokio::test]
async fn a_webhook_is_changed_paged_and_deleted() {
    let app = spawn_app_with(delivering).await;
    let t = token("acme", ALL_SCOPES);
    let mock = receiver().await;
    let hook = create_webhook(
        &app,
        &t,
        &format!("{}/hook", mock.uri()),
        json!(["operation.failed"]),
    )
    .await;
    let id = hook["id"].as_str().unwrap();
    assert_eq!(hook["event_types"], json!(["operation.failed"]));
    let changed = json_of(
        app.patch(
            &format!("/v1/webhooks/{id}"),
            &t,
            &json!({"event_types": [], "description": null}),
        )
        .await,
    )
    .await;
    assert_eq!(changed["event_types"], json!([]));
    assert!(changed["description"].is_null());
    for _ in 0..3 {
        app.post(&format!("/v1/webhooks/{id}/test"), &t, &json!({}))
            .await;
    }
    wait_received(&mock, 3, Duration::from_secs(5)).await;
    let first = json_of(
        app.get(&format!("/v1/webhooks/{id}/deliveries?page_size=2"), &t)
            .await,
    )
    .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_page_token"].as_str().unwrap();
    let rest = json_of(
        app.get(
            &format!("/v1/webhooks/{id}/deliveries?page_size=2&page_token={cursor}"),
            &t,
        )
        .await,
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest["next_page_token"].is_null());
    let bad = app
        .get(&format!("/v1/webhooks/{id}/deliveries?page_token=x"), &t)
        .await;
    assert_problem(bad, 400, "invalid_page_token").await;

    assert_eq!(
        app.delete(&format!("/v1/webhooks/{id}"), &t).await.status(),
        204
    );
    assert_problem(
        app.get(&format!("/v1/webhooks/{id}"), &t).await,
        404,
        "webhook_not_found",
    )
    .await;
    assert_problem(
        app.get("/v1/webhooks/not-an-id", &t).await,
        404,
        "webhook_not_found",
    )
    .await;
}

#[tokio::test]
async fn a_receiver_asking_for_time_with_retry_after_is_given_it() {
    let app = spawn_app_with(delivering).await;
    let t = token("acme", ALL_SCOPES);
    let busy = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .mount(&busy)
        .await;
    let hook = create_webhook(&app, &t, &format!("{}/hook", busy.uri()), json!([])).await;
    let id = hook["id"].as_str().unwrap();
    app.post(&format!("/v1/webhooks/{id}/test"), &t, &json!({}))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let list = deliveries(&app, &t, id).await;
        if let Some(d) = list
            .first()
            .filter(|d| !d["attempts"].as_array().unwrap().is_empty())
        {
            break d.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivery["attempts"][0]["status_code"], 429);
    assert_eq!(delivery["state"], "pending");
    // The schedule says 1 s; the receiver asked for an hour, and gets it (give or take a tenth).
    let next = chrono::DateTime::parse_from_rfc3339(delivery["next_attempt_at"].as_str().unwrap())
        .unwrap();
    let wait = (next.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    assert!((3000..=3961).contains(&wait), "{wait} s: {delivery}");
    assert_eq!(busy.received_requests().await.unwrap().len(), 1);
}
