//! Faults (latency, status, 429, reset, malformed, `times`), the `/_sim` control plane, request
//! recording, in-flight stats, `env_lines` and shutdown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use snapgate::simulator::{Fault, RunningSimulator, SimulatorConfig, Vendor, VendorStats};
use snapgate::simulator::{HYPERSTACK_API_KEY, KOYEB_TOKEN, SYMINET_TOKEN};

use super::{assert_shape, fixture, send, start, start_with, Api};

fn koyeb(sim: &RunningSimulator) -> Api {
    let auth = format!("Bearer {KOYEB_TOKEN}");
    Api::new(sim, Vendor::Koyeb, &[("authorization", auth.as_str())])
}

fn syminet(sim: &RunningSimulator) -> Api {
    let auth = format!("bearer {SYMINET_TOKEN}");
    Api::new(sim, Vendor::Syminet, &[("authorization", auth.as_str())])
}

fn control(sim: &RunningSimulator, method: Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().request(method, format!("http://{}/_sim{path}", sim.addr()))
}

#[tokio::test]
async fn latency_fault_delays_answers() {
    let sim = start().await;
    sim.set_fault(
        Vendor::Syminet,
        Fault {
            latency_ms: Some(300),
            ..Fault::default()
        },
    );
    let started = Instant::now();
    assert_eq!(syminet(&sim).get("/images").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(koyeb(&sim).get("/v1/snapshots").await.0, 200);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "other vendors are not delayed"
    );
}

#[tokio::test]
async fn status_fault_answers_with_the_vendors_own_error_body() {
    let sim = start().await;
    for v in Vendor::ALL {
        sim.set_fault(
            v,
            Fault {
                status: Some(500),
                ..Fault::default()
            },
        );
    }
    let (status, body) = koyeb(&sim).get("/v1/snapshots").await;
    assert_eq!(
        (status, body),
        (
            500,
            json!({ "status": 500, "code": "api_error", "message": "Internal Server Error" })
        )
    );
    let hyperstack = Api::new(&sim, Vendor::Hyperstack, &[("api_key", HYPERSTACK_API_KEY)]);
    assert_eq!(
        hyperstack.get("/core/snapshots").await,
        (500, fixture("hyperstack", "error.500.legacy.json"))
    );
    let hostinger = Api::new(&sim, Vendor::Hostinger, &[]);
    let (status, body) = hostinger.get("/api/vps/v1/virtual-machines").await;
    assert_eq!(status, 500, "faults come before auth");
    assert_shape(&body, "hostinger", "error.500.json");
    let form = [("grant_type", "password")];
    let (status, body) = send(
        reqwest::Client::new()
            .post(sim.oktawave_token_url())
            .form(&form),
    )
    .await;
    assert_eq!(
        (status, body),
        (500, json!({ "Message": "Internal Server Error" })),
        "token endpoint too"
    );
    sim.set_fault(
        Vendor::Syminet,
        Fault {
            status: Some(503),
            ..Fault::default()
        },
    );
    assert_eq!(
        syminet(&sim).get("/images").await,
        (503, json!({ "error": "Service Unavailable" }))
    );
}

#[tokio::test]
async fn rate_limit_fault_answers_429_with_retry_after() {
    let sim = start().await;
    sim.set_fault(
        Vendor::Koyeb,
        Fault {
            rate_limit_retry_after: Some(7),
            ..Fault::default()
        },
    );
    let resp = koyeb(&sim)
        .req(Method::GET, "/v1/snapshots")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "rate_limit_error");
}

#[tokio::test]
async fn reset_fault_breaks_the_connection_and_times_limits_it_to_n_requests() {
    let sim = start().await;
    sim.set_fault(
        Vendor::Syminet,
        Fault {
            reset: true,
            times: Some(2),
            ..Fault::default()
        },
    );
    let api = syminet(&sim);
    for _ in 0..2 {
        let err = api.req(Method::GET, "/images").send().await.unwrap_err();
        assert!(err.is_request() || err.is_connect(), "{err:?}");
    }
    assert_eq!(
        api.get("/images").await.0,
        200,
        "the fault cleared after two requests"
    );
    assert_eq!(sim.requests(Some(Vendor::Syminet)).len(), 3);
}

#[tokio::test]
async fn malformed_fault_answers_200_json_that_does_not_parse() {
    let sim = start().await;
    sim.set_fault(
        Vendor::Koyeb,
        Fault {
            malformed: true,
            times: Some(1),
            ..Fault::default()
        },
    );
    let resp = koyeb(&sim)
        .req(Method::GET, "/v1/snapshots")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.json::<Value>().await.is_err());
    assert_eq!(koyeb(&sim).get("/v1/snapshots").await.0, 200);
}

#[tokio::test]
async fn faults_are_switched_at_run_time_through_sim_and_never_touch_sim_itself() {
    let sim = start().await;
    let put =
        control(&sim, Method::PUT, "/faults/koyeb").json(&json!({ "status": 503, "times": 5 }));
    assert_eq!(put.send().await.unwrap().status(), 204);
    assert_eq!(koyeb(&sim).get("/v1/snapshots").await.0, 503);
    let (status, faults) = send(control(&sim, Method::GET, "/faults")).await;
    assert_eq!(
        (status, faults),
        (
            200,
            json!({ "koyeb": { "status": 503, "times": 4, "reset": false, "malformed": false, "fail_async": false } })
        )
    );
    let bad = control(&sim, Method::PUT, "/faults/koyeb").json(&json!({ "statuss": 500 }));
    assert_eq!(bad.send().await.unwrap().status(), 400);
    let unknown = control(&sim, Method::PUT, "/faults/aws").json(&json!({}));
    assert_eq!(unknown.send().await.unwrap().status(), 404);
    assert_eq!(
        control(&sim, Method::DELETE, "/faults/koyeb")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(koyeb(&sim).get("/v1/snapshots").await.0, 200);
    let put = control(&sim, Method::PUT, "/faults/syminet").json(&json!({ "reset": true }));
    assert_eq!(put.send().await.unwrap().status(), 204);
    assert_eq!(
        control(&sim, Method::DELETE, "/faults")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(syminet(&sim).get("/images").await.0, 200);
}

#[tokio::test]
async fn faults_from_the_config_apply_from_the_first_request() {
    let faults = HashMap::from([(
        Vendor::Hostinger,
        Fault {
            status: Some(502),
            times: Some(1),
            ..Fault::default()
        },
    )]);
    let sim = start_with(SimulatorConfig {
        faults,
        ..SimulatorConfig::default()
    })
    .await;
    let api = Api::new(&sim, Vendor::Hostinger, &[("user-agent", "t")]);
    assert_eq!(api.get("/api/vps/v1/data-centers").await.0, 502);
    assert_eq!(api.get("/api/vps/v1/data-centers").await.0, 401);
}

#[tokio::test]
async fn requests_are_recorded_with_the_vendors_own_path_query_headers_and_body() {
    let sim = start().await;
    let hyperstack = Api::new(&sim, Vendor::Hyperstack, &[("api_key", HYPERSTACK_API_KEY)]);
    hyperstack.get("/core/snapshots?page=1&pageSize=5").await;
    let body = json!({ "name": "recorded", "description": "" });
    hyperstack
        .send_json(Method::POST, "/core/virtual-machines/2058/snapshots", &body)
        .await;
    koyeb(&sim).get("/v1/snapshots").await;
    let recorded = sim.requests(Some(Vendor::Hyperstack));
    assert_eq!(recorded.len(), 2);
    assert_eq!(
        (recorded[0].method.as_str(), recorded[0].path.as_str()),
        ("GET", "/core/snapshots")
    );
    assert_eq!(recorded[0].query.as_deref(), Some("page=1&pageSize=5"));
    assert_eq!(recorded[1].path, "/core/virtual-machines/2058/snapshots");
    assert_eq!(recorded[1].headers["api_key"], HYPERSTACK_API_KEY);
    assert_eq!(recorded[1].headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(&recorded[1].body).unwrap(),
        body
    );
    assert_eq!(sim.requests(None).len(), 3);

    let (_, over_http) = send(control(&sim, Method::GET, "/requests?vendor=koyeb")).await;
    assert_eq!(over_http[0]["path"], "/v1/snapshots");
    assert_eq!(over_http[0]["vendor"], "koyeb");
    assert!(over_http[0]["query"].is_null());
    assert_eq!(
        control(&sim, Method::DELETE, "/requests")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert!(sim.requests(None).is_empty());
    sim.clear_requests();
}

#[tokio::test]
async fn stats_count_requests_and_concurrent_in_flight_requests_per_vendor() {
    let sim = start().await;
    sim.set_fault(
        Vendor::Syminet,
        Fault {
            latency_ms: Some(300),
            ..Fault::default()
        },
    );
    let api = syminet(&sim);
    let (a, b, c) = tokio::join!(api.get("/images"), api.get("/images"), api.get("/images"));
    assert_eq!((a.0, b.0, c.0), (200, 200, 200));
    let stats = sim.stats(Vendor::Syminet);
    assert_eq!(
        stats,
        VendorStats {
            requests: 3,
            in_flight: 0,
            max_in_flight: 3
        }
    );
    assert_eq!(sim.stats(Vendor::Koyeb), VendorStats::default());
    let (_, all) = send(control(&sim, Method::GET, "/stats")).await;
    assert_eq!(
        all["syminet"],
        json!({ "requests": 3, "in_flight": 0, "max_in_flight": 3 })
    );
    assert_eq!(all.as_object().unwrap().len(), Vendor::ALL.len());
    assert_eq!(
        control(&sim, Method::DELETE, "/stats")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(sim.stats(Vendor::Syminet), VendorStats::default());
}

#[tokio::test]
async fn env_lines_export_urls_then_credentials_then_the_token_url() {
    let sim = start().await;
    let lines = sim.env_lines();
    let names: Vec<&str> = lines
        .lines()
        .map(|l| l.split('=').next().unwrap())
        .collect();
    // Every vendor's URL, then every vendor's credentials, then the token URL.
    let upper = |v: Vendor| v.as_str().to_uppercase();
    let mut expected: Vec<String> = Vendor::ALL
        .iter()
        .map(|v| format!("export SIMULATOR_{}_URL", upper(*v)))
        .collect();
    for v in Vendor::ALL {
        for (field, _) in v.credentials() {
            expected.push(format!(
                "export SIMULATOR_{}_{}",
                upper(v),
                field.to_uppercase()
            ));
        }
    }
    expected.push("export SIMULATOR_OKTAWAVE_TOKEN_URL".to_owned());
    assert_eq!(names, expected);
    assert!(lines.contains(&format!(
        "SIMULATOR_HYPERSTACK_URL=http://{}/hyperstack/v1\n",
        sim.addr()
    )));
    assert!(lines.contains("SIMULATOR_HYPERSTACK_API_KEY=sim-hyperstack-key\n"));
    let fields: Vec<&str> = sim
        .credentials(Vendor::Oktawave)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        fields,
        ["client_id", "client_secret", "username", "password"]
    );
    for v in Vendor::ALL {
        assert!(sim.sources(v).len() >= 3, "{v}");
        assert_eq!(v.as_str().parse::<Vendor>().unwrap(), v);
    }
}

#[tokio::test]
async fn unknown_paths_under_a_vendor_prefix_get_that_vendors_auth_check_and_404_body() {
    let sim = start().await;
    assert_eq!(
        koyeb(&sim).get("/v1/nothing").await,
        (
            404,
            json!({ "status": 404, "code": "unknown_resource", "message": "Not Found" })
        )
    );
    let anonymous = Api::new(&sim, Vendor::Koyeb, &[]);
    assert_eq!(anonymous.get("/v1/nothing").await.0, 401);
    let (status, body) = syminet(&sim).get("/nothing").await;
    assert_eq!((status, body), (404, json!({ "error": "not found" })));
    let recorded = sim.requests(Some(Vendor::Koyeb));
    assert_eq!(
        recorded.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/v1/nothing", "/v1/nothing"]
    );
    let outside = reqwest::get(format!("http://{}/elsewhere", sim.addr()))
        .await
        .unwrap();
    assert_eq!(outside.status(), 404);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = start().await;
    let url = format!("{}/images", sim.base_url(Vendor::Syminet));
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 401);
    sim.shutdown().await;
    assert!(reqwest::get(&url).await.is_err());
}
