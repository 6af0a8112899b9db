//! OpenTelemetry traces, from the outside: `snapgate serve` as its own process exporting OTLP/HTTP
//! (JSON) to a collector in this test, a vendor (wiremock) and a webhook receiver. One create
//! made under a caller's `traceparent` gives one trace: the request span (the caller's span its
//! parent), the vendor call and store calls below it, and the vendor sees a `traceparent` naming
//! its call's span. Problems carry the trace id; a delivery sends its own span's `traceparent`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

use crate::helpers::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP collector: keeps every span of every `POST /v1/traces` (JSON) body.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let export: Value = serde_json::from_slice(&body).unwrap_or_default();
                for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                    for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                        for span in scope["spans"].as_array().into_iter().flatten() {
                            let mut span = span.clone();
                            span["service"] = resource["resource"]["attributes"].clone();
                            kept.lock().unwrap().push(span);
                        }
                    }
                }
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

/// A Koyeb vendor that accepts every create.
async fn koyeb_accepting_creates() -> MockServer {
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/snapshots"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(vendor_fixture("koyeb", "create.response.json")),
        )
        .mount(&vendor)
        .await;
    vendor
}

/// A span attribute's value, whatever its OTLP type.
fn attribute(span: &Value, key: &str) -> Value {
    span["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"] == key)
        .map(|a| {
            let v = &a["value"];
            for kind in ["stringValue", "intValue", "boolValue", "doubleValue"] {
                if !v[kind].is_null() {
                    return v[kind].clone();
                }
            }
            Value::Null
        })
        .unwrap_or(Value::Null)
}

/// Waits (at most 15 s) until the collector holds a span `pick` finds.
async fn span_where(spans: &Arc<Mutex<Vec<Value>>>, pick: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = spans.lock().unwrap().iter().find(|s| pick(s)) {
            return found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no such span among {:#?}",
            spans.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_create_under_a_callers_traceparent_is_one_trace_down_to_the_vendor() {
    let (otlp, spans) = collector().await;
    let vendor = koyeb_accepting_creates().await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(
        &dir.path().join("db.sqlite"),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("SNAPGATE_PROVIDERS__KOYEB__BASE_URL", vendor.uri()),
            ("SNAPGATE_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true".into()),
        ],
    );
    let t = token("acme", ALL_SCOPES);
    let http = reqwest::Client::new();
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let send = |rb: reqwest::RequestBuilder| {
        rb.bearer_auth(&t)
            .header("traceparent", &traceparent)
            .send()
    };
    let created = send(
        http.post(format!("{}/v1/accounts", serve.url))
            .json(&account_body("ky", "koyeb")),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let accepted = send(http.post(format!("{}/v1/snapshots", serve.url)).json(
        &json!({"account": "ky", "source_id": "8f6e2b4a-3c1d-4e5f-9a7b-0c2d4e6f8a1b", "name": "traced"}),
    ))
    .await
    .unwrap();
    assert_eq!(accepted.status(), 202);

    // The vendor was told which span called it, in the caller's trace.
    let calls = vendor.received_requests().await.unwrap();
    let sent = calls[0].headers["traceparent"].to_str().unwrap().to_owned();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE, "01"),
        "{sent}"
    );
    assert_ne!(parts[2], CALLER_SPAN);

    // The span tree: request (child of the caller's span) > vendor call, with store calls.
    let request = span_where(&spans, |s| {
        s["traceId"] == TRACE && s["name"] == "POST /v1/snapshots"
    })
    .await;
    assert_eq!(request["parentSpanId"], CALLER_SPAN);
    assert_eq!(request["kind"], 2, "server: {request}");
    assert_eq!(attribute(&request, "route"), "/v1/snapshots");
    assert_eq!(
        attribute(&request, "status").to_string().trim_matches('"'),
        "202"
    );
    let call = span_where(&spans, |s| s["spanId"] == parts[2]).await;
    assert_eq!(call["traceId"], TRACE);
    assert_eq!(call["name"], "koyeb create");
    assert_eq!(call["kind"], 3, "client: {call}");
    assert_eq!(attribute(&call, "provider"), "koyeb");
    assert_eq!(attribute(&call, "operation"), "create");
    assert_eq!(
        attribute(&call, "attempt").to_string().trim_matches('"'),
        "1"
    );
    assert_eq!(
        attribute(&call, "status").to_string().trim_matches('"'),
        "200"
    );
    assert_eq!(attribute(&call, "outcome"), "ok");
    // Every span of the trace hangs from the request span.
    let of_trace = |spans: &Arc<Mutex<Vec<Value>>>| -> Vec<Value> {
        spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s["traceId"] == TRACE)
            .cloned()
            .collect()
    };
    let store = span_where(&spans, |s| {
        s["traceId"] == TRACE && attribute(s, "db.operation") == "insert_operation"
    })
    .await;
    let ancestors = |mut span: Value| {
        let all = of_trace(&spans);
        let mut chain = Vec::new();
        while let Some(parent) = all.iter().find(|s| s["spanId"] == span["parentSpanId"]) {
            chain.push(parent["name"].as_str().unwrap().to_owned());
            span = parent.clone();
        }
        chain
    };
    assert_eq!(
        ancestors(call.clone()).last().unwrap(),
        "POST /v1/snapshots"
    );
    assert_eq!(ancestors(store).last().unwrap(), "POST /v1/snapshots");
    assert!(attribute(&request, "service.name").is_null());
    assert!(request["service"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "snapgate"));

    // A problem names the trace it belongs to.
    let missing = send(http.get(format!("{}/v1/accounts/nope", serve.url)))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(problem["trace_id"], TRACE, "{problem}");

    // A webhook delivery is a span of its own, and the receiver gets its traceparent.
    let hook: Value = send(
        http.post(format!("{}/v1/webhooks", serve.url))
            .json(&json!({"url": format!("{}/hook", receiver.uri())})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let test = send(http.post(format!(
        "{}/v1/webhooks/{}/test",
        serve.url,
        hook["id"].as_str().unwrap()
    )))
    .await
    .unwrap();
    assert_eq!(test.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivered = loop {
        let got = receiver.received_requests().await.unwrap();
        if let Some(r) = got.first() {
            break r.headers["traceparent"].to_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let delivery_span = delivered.split('-').nth(2).unwrap().to_owned();
    let delivery = span_where(&spans, |s| s["spanId"] == delivery_span.as_str()).await;
    assert_eq!(delivery["name"], "webhook delivery");
    assert_eq!(attribute(&delivery, "event_type"), "webhook.test");
    let (_, logs) = serve.stop("TERM");
    assert!(!logs.contains("panicked"), "{logs}");
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_traced_or_propagated() {
    let vendor = koyeb_accepting_creates().await;
    let app = spawn_app_with(|c| {
        c.providers.set(
            snapgate::domain::ProviderKind::Koyeb,
            "base_url",
            vendor.uri(),
        )
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    app.post("/v1/accounts", &t, &account_body("ky", "koyeb"))
        .await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/snapshots", app.url))
        .bearer_auth(&t)
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"account": "ky", "source_id": "8f6e2b4a-3c1d-4e5f-9a7b-0c2d4e6f8a1b", "name": "untraced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let calls = vendor.received_requests().await.unwrap();
    assert!(calls[0].headers.get("traceparent").is_none());
    let missing = app.get("/v1/accounts/nope", &t).await;
    let problem: Value = missing.json().await.unwrap();
    assert!(problem.get("trace_id").is_none(), "{problem}");
}
