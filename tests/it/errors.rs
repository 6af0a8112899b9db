//! Bad input always gets a problem+json answer, never a 500.

use std::time::Duration;

use serde_json::json;
use snapgate::domain::ProviderKind;

use crate::helpers::*;

#[tokio::test]
async fn bad_bodies_get_400_413_415_and_422_problems() {
    let app = spawn_app_with(|c| c.server.body_limit_bytes = 1024).await;
    let t = token("acme", ALL_SCOPES);
    let url = format!("{}/v1/accounts", app.url);
    let send = |body: String, content_type: &'static str| {
        app.client
            .post(&url)
            .bearer_auth(&t)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let p = assert_problem(
        send("{\"id\": ".into(), "application/json").await.unwrap(),
        400,
        "malformed_json",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("not valid JSON"));
    assert_problem(
        send("{}".into(), "text/plain").await.unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    let big = json!({"id": "a", "provider": "koyeb", "credentials": {"token": "x".repeat(4096)}})
        .to_string();
    assert_problem(
        send(big, "application/json").await.unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    let p = assert_problem(
        send(
            json!({"id": 5, "provider": "koyeb", "credentials": {}}).to_string(),
            "application/json",
        )
        .await
        .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    assert_eq!(p["field"], "id");
    // No content type at all.
    let resp = app
        .client
        .post(&url)
        .bearer_auth(&t)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn unknown_routes_methods_and_bad_path_ids_are_problems() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    assert_problem(app.get("/v2/nothing", &t).await, 404, "route_not_found").await;
    let resp = app
        .client
        .put(format!("{}/v1/accounts", app.url))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 405, "method_not_allowed").await;
    assert_problem(
        app.get("/v1/accounts/NOT_A_SLUG", &t).await,
        400,
        "invalid_path",
    )
    .await;
    assert_problem(
        app.get("/v1/accounts?provider=aws", &t).await,
        400,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_accepted_or_generated() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(generated.len() >= 16);
    let resp = app
        .client
        .get(format!("{}/v1/accounts", app.url))
        .header("x-request-id", "caller-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "caller-chosen-42");
    let body = assert_problem(resp, 401, "invalid_token").await;
    assert_eq!(body["request_id"], "caller-chosen-42");
}

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let resp = app
            .client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.json::<serde_json::Value>().await.unwrap()["status"],
            "ok"
        );
    }
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_format_without_a_token() {
    let app = spawn_app().await;
    let _ = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    let resp = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let body = resp.text().await.unwrap();
    // By method, route template (never the caller's path) and status.
    assert!(
        body.contains(
            "snapgate_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"
        ),
        "{body}"
    );
    assert!(
        body.contains(
            "snapgate_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",status=\"200\","
        ),
        "{body}"
    );
    let t = token("acme", ALL_SCOPES);
    let _ = app.get("/v1/snapshots/nope:1", &t).await;
    let _ = app.get("/no/such/route", &t).await;
    let body = app.metrics().await;
    assert!(
        body.contains("route=\"/v1/snapshots/{snapshot}\""),
        "{body}"
    );
    assert!(body.contains("route=\"other\""), "{body}");
    assert!(!body.contains("nope:1") && !body.contains("/no/such/route"));
    assert!(body.contains("snapgate_build_info{version=\""), "{body}");
    // Every family has its help and type (what `promtool check metrics` asks; .ci/clients
    // runs promtool itself on the demo's metrics).
    for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap();
        assert!(
            body.contains(&format!("# HELP {family} ")),
            "{family} has no HELP"
        );
    }
}

#[tokio::test]
async fn a_body_declared_over_the_limit_is_refused_before_it_is_sent() {
    let app = spawn_app_with(|c| c.server.body_limit_bytes = 1024).await;
    // Only the head is sent: a server that waited for the 10 MB body would never answer.
    let answer = first_answer(
        &app,
        "POST /v1/accounts HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: 10000000\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("\"code\":\"payload_too_large\""),
        "{answer}"
    );
}

#[tokio::test]
async fn an_operations_page_size_outside_1_to_200_is_a_400_naming_it() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    for bad in ["0", "201", "4294967296", "-1"] {
        let p = assert_problem(
            app.get(&format!("/v1/operations?page_size={bad}"), &t)
                .await,
            400,
            "invalid_query",
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("page_size"), "{p}");
    }
    let resp = app.get("/v1/operations?page_size=200", &t).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn trailing_data_after_a_json_body_is_refused() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    for tail in ["}}garbage", " {}", "x"] {
        let body = format!(
            "{}{tail}",
            json!({"id": "k", "provider": "koyeb", "credentials": {"token": "t"}})
        );
        let resp = app
            .client
            .post(format!("{}/v1/accounts", app.url))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let p = assert_problem(resp, 400, "malformed_json").await;
        assert!(p["detail"].as_str().unwrap().contains("trailing"), "{p}");
    }
    // Trailing white space is still JSON.
    let resp = app
        .client
        .post(format!("{}/v1/accounts", app.url))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(format!(
            "{} \n",
            json!({"id": "k", "provider": "koyeb", "credentials": {"token": "t"}})
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let app =
        spawn_app_with(|c| c.auth.metrics_token = Some("scrape-me-0001".to_owned().into())).await;
    let get = |auth: Option<&'static str>| {
        let mut req = app.client.get(format!("{}/metrics", app.url));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    assert_problem(get(None).await.unwrap(), 401, "invalid_token").await;
    assert_problem(
        get(Some("Bearer wrong-token-0001")).await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    let ok = get(Some("bearer scrape-me-0001")).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("snapgate_"));
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_while_every_api_slot_is_taken() {
    use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(3)))
        .mount(&mock)
        .await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| {
        c.server.max_in_flight = 1;
        c.providers.set(ProviderKind::Hyperstack, "base_url", uri);
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    // The one API slot waits on a 3 s vendor.
    let slow = {
        let client = app.client.clone();
        let url = format!("{}/v1/snapshots/hs:1", app.url);
        let t = t.clone();
        tokio::spawn(async move { client.get(url).bearer_auth(t).send().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let started = std::time::Instant::now();
        let resp = app
            .client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            started.elapsed() < std::time::Duration::from_millis(1000),
            "{path} queued behind the API: {:?}",
            started.elapsed()
        );
    }
    let _ = slow.await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408_not_a_gateway_timeout() {
    let app = spawn_app_with(|c| c.server.request_timeout_ms = 500).await;
    let t = token("acme", ALL_SCOPES);
    // 100 bytes declared, 10 sent, then nothing: the caller is the slow one.
    let answer = first_answer(
        &app,
        &format!(
            "POST /v1/accounts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {t}\r\n\
             content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"id\": \"a\""
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused_even_when_serde_could_fill_it() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    // serde fills a struct from an array of its fields: `[null, null]` would be a restore
    // with neither target nor name. The document says object, so does the gateway.
    for (path, body) in [
        ("/v1/snapshots/hs:1402/restore", "[null, null]"),
        ("/v1/snapshots/hs:1402/image", "[\"golden\", []]"),
        ("/v1/snapshots", "[\"hs\", \"2058\", \"n\", null, false]"),
    ] {
        let resp = app
            .client
            .post(format!("{}{path}", app.url))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let p = assert_problem(resp, 422, "invalid_body").await;
        assert_eq!(
            p["detail"], "the request body must be a JSON object",
            "{path}"
        );
    }
}

/// The value of an unlabelled gauge in a scrape.
fn gauge(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn the_backlog_and_open_breakers_are_gauges() {
    use crate::lifecycle::spawn_with_simulator_and;
    use snapgate::simulator::{Fault, Vendor};
    // Nothing finishes by itself here: the reconciler is off and the vendor is slow.
    let s = spawn_with_simulator_and(Duration::from_secs(60), |c| {
        c.reconciler.enabled = false;
        c.upstream.breaker_failures = 2;
        c.upstream.max_retries = 0;
        c.upstream.breaker_cooldown_ms = 60_000;
    })
    .await;
    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    for name in ["g1", "g2"] {
        let resp = s
            .app
            .post(
                "/v1/snapshots",
                &s.token,
                &json!({"account": "koyeb", "source_id": source, "name": name}),
            )
            .await;
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    }
    // Other tests in this process scrape their own stores into the same gauges: read until a
    // scrape shows this store's count (each scrape sets it from the store, then renders).
    let mut seen = Vec::new();
    for _ in 0..20 {
        let body = s.app.metrics().await;
        let unfinished = gauge(&body, "snapgate_operations_unfinished");
        seen.push(unfinished);
        if unfinished == Some(2.0) {
            assert!(gauge(&body, "snapgate_webhook_deliveries_pending").is_some());
            break;
        }
    }
    assert_eq!(seen.last().copied().flatten(), Some(2.0), "{seen:?}");

    // Two failed calls open this account's breaker: the gauge counts it while it is open.
    s.sim.set_fault(
        Vendor::Syminet,
        Fault {
            status: Some(503),
            ..Fault::default()
        },
    );
    for _ in 0..3 {
        let _ = s.app.get("/v1/snapshots?account=syminet", &s.token).await;
    }
    let open = gauge(&s.app.metrics().await, "snapgate_upstream_breakers_open").unwrap();
    assert!(open >= 1.0, "{open}");
}
