//! Vendor misbehaviour, through the simulator's fault injection: timeouts, resets, 5xx bursts,
//! rate limits, garbage, refused connections, concurrency and token refreshes.

use snapgate::domain::ProviderKind;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::simulator::{Fault, Vendor};

use crate::{
    helpers::*,
    lifecycle::{spawn_with_simulator_and, SimApp},
};

async fn sim_app(adjust: impl FnOnce(&mut snapgate::Config)) -> SimApp {
    spawn_with_simulator_and(Duration::from_millis(200), adjust).await
}

/// The gateway path of a snapshot the simulator seeded for `vendor`.
async fn seeded_snapshot(s: &SimApp, vendor: Vendor) -> String {
    let page: Value = s
        .app
        .get(
            &format!("/v1/snapshots?account={}&page_size=1", vendor.as_str()),
            &s.token,
        )
        .await
        .json()
        .await
        .unwrap();
    format!("/v1/snapshots/{}", page["items"][0]["id"].as_str().unwrap())
}

fn requests(s: &SimApp, vendor: Vendor, method: &str) -> usize {
    s.sim
        .requests(Some(vendor))
        .iter()
        .filter(|r| r.method == method)
        .count()
}

#[tokio::test]
async fn a_slow_vendor_becomes_504_within_the_deadline() {
    // The per-provider override wins over the (long) global timeout.
    let s = sim_app(|c| {
        c.upstream.request_timeout_ms = 20_000;
        c.upstream
            .provider_timeout_ms
            .insert(snapgate::domain::ProviderKind::Hyperstack, 300);
    })
    .await;
    let path = seeded_snapshot(&s, Vendor::Hyperstack).await;
    s.sim.set_fault(
        Vendor::Hyperstack,
        Fault {
            latency_ms: Some(3_000),
            ..Fault::default()
        },
    );
    let started = Instant::now();
    let resp = s.app.get(&path, &s.token).await;
    let p = assert_problem(resp, 504, "upstream_timeout").await;
    assert_eq!(p["retryable"], true);
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_reset_get_is_retried_and_succeeds_but_a_reset_post_is_not_retried() {
    let s = sim_app(|_| {}).await;
    let path = seeded_snapshot(&s, Vendor::Koyeb).await;
    s.sim.clear_requests();
    s.sim.set_fault(
        Vendor::Koyeb,
        Fault {
            reset: true,
            times: Some(1),
            ..Fault::default()
        },
    );
    let resp = s.app.get(&path, &s.token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        requests(&s, Vendor::Koyeb, "GET"),
        2,
        "one reset, one retry"
    );

    s.sim.clear_requests();
    s.sim.set_fault(
        Vendor::Koyeb,
        Fault {
            reset: true,
            times: Some(1),
            ..Fault::default()
        },
    );
    let volume = s.sim.sources(Vendor::Koyeb)[1].clone();
    let body = json!({"account": "koyeb", "source_id": volume, "name": "once"});
    assert_problem(
        s.app.post("/v1/snapshots", &s.token, &body).await,
        502,
        "upstream_error",
    )
    .await;
    assert_eq!(
        requests(&s, Vendor::Koyeb, "POST"),
        1,
        "a create is never retried blindly"
    );
}

#[tokio::test]
async fn a_500_burst_opens_the_breaker_which_recovers_after_the_cooldown() {
    let s = sim_app(|c| {
        c.upstream.breaker_failures = 3;
        c.upstream.breaker_cooldown_ms = 400;
    })
    .await;
    let path = seeded_snapshot(&s, Vendor::Syminet).await;
    s.sim.clear_requests();
    s.sim.set_fault(
        Vendor::Syminet,
        Fault {
            status: Some(500),
            ..Fault::default()
        },
    );
    let mut codes = Vec::new();
    for _ in 0..20 {
        let resp = s.app.get(&path, &s.token).await;
        let body: Value = resp.json().await.unwrap();
        codes.push(body["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(codes[0], "upstream_error");
    assert_eq!(
        codes[19], "provider_unavailable",
        "the breaker opened: {codes:?}"
    );
    let upstream = requests(&s, Vendor::Syminet, "GET");
    assert!(
        upstream <= 6,
        "20 caller calls cost {upstream} vendor calls"
    );

    // Open: fast 503 with Retry-After.
    let resp = s.app.get(&path, &s.token).await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_problem(resp, 503, "provider_unavailable").await;

    // The vendor recovers; after the cool-down one probe closes the breaker.
    s.sim.clear_faults();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.app.get(&path, &s.token).await.status(), 200);
    assert_eq!(s.app.get(&path, &s.token).await.status(), 200);
}

#[tokio::test]
async fn retries_stay_within_the_budget_under_a_long_500_burst() {
    let s = sim_app(|c| c.upstream.breaker_failures = 10_000).await;
    let path = seeded_snapshot(&s, Vendor::Hyperstack).await;
    s.sim.clear_requests();
    s.sim.set_fault(
        Vendor::Hyperstack,
        Fault {
            status: Some(503),
            ..Fault::default()
        },
    );
    for _ in 0..50 {
        assert_problem(s.app.get(&path, &s.token).await, 502, "upstream_error").await;
    }
    let upstream = requests(&s, Vendor::Hyperstack, "GET");
    assert!(
        upstream <= 62,
        "50 caller calls cost {upstream} vendor calls (budget ~1.2x)"
    );
    assert!(upstream > 50, "some retries were made");
}

#[tokio::test]
async fn a_429_is_surfaced_with_retry_after_and_the_vendor_is_not_called_before_it() {
    let s = sim_app(|_| {}).await;
    let path = seeded_snapshot(&s, Vendor::Hostinger).await;
    s.sim.clear_requests();
    s.sim.set_fault(
        Vendor::Hostinger,
        Fault {
            rate_limit_retry_after: Some(1),
            times: Some(1),
            ..Fault::default()
        },
    );
    let resp = s.app.get(&path, &s.token).await;
    assert_eq!(resp.headers()["retry-after"], "1");
    let p = assert_problem(resp, 429, "provider_rate_limited").await;
    assert_eq!(p["retryable"], true);
    let resp = s.app.get(&path, &s.token).await;
    assert_problem(resp, 429, "provider_rate_limited").await;
    assert_eq!(
        requests(&s, Vendor::Hostinger, "GET"),
        1,
        "held until Retry-After, no retry"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(s.app.get(&path, &s.token).await.status(), 200);
}

#[tokio::test]
async fn malformed_json_is_502_and_never_a_500() {
    let s = sim_app(|_| {}).await;
    for vendor in Vendor::ALL {
        let path = seeded_snapshot(&s, vendor).await;
        s.sim.set_fault(
            vendor,
            Fault {
                malformed: true,
                times: Some(1),
                ..Fault::default()
            },
        );
        let p = assert_problem(s.app.get(&path, &s.token).await, 502, "upstream_error").await;
        assert_eq!(p["provider"], vendor.as_str());
    }
}

#[tokio::test]
async fn a_refused_connection_is_502_fast() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(|c| {
        c.providers.set(
            ProviderKind::Hyperstack,
            "base_url",
            format!("http://127.0.0.1:{port}"),
        )
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    let started = Instant::now();
    let p = assert_problem(
        app.get("/v1/snapshots/hs:1", &t).await,
        502,
        "upstream_error",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("connect"), "{p}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn concurrent_callers_never_exceed_the_per_account_vendor_cap() {
    let s = sim_app(|c| c.upstream.max_concurrency_per_account = 3).await;
    let path = seeded_snapshot(&s, Vendor::Koyeb).await;
    s.sim.set_fault(
        Vendor::Koyeb,
        Fault {
            latency_ms: Some(100),
            ..Fault::default()
        },
    );
    let before = s.sim.stats(Vendor::Koyeb).requests;
    let calls = (0..15).map(|_| s.app.get(&path, &s.token));
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.status() == 200));
    let stats = s.sim.stats(Vendor::Koyeb);
    assert_eq!(stats.requests - before, 15);
    assert!(
        stats.max_in_flight <= 3,
        "max in flight at the vendor: {}",
        stats.max_in_flight
    );
}

/// `n` more Koyeb accounts (`ky-0`…) holding the simulator's token.
async fn koyeb_accounts(s: &SimApp, n: usize) {
    let credentials: serde_json::Map<String, Value> = s
        .sim
        .credentials(Vendor::Koyeb)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    for i in 0..n {
        let body =
            json!({"id": format!("ky-{i}"), "provider": "koyeb", "credentials": credentials});
        assert_eq!(
            s.app.post("/v1/accounts", &s.token, &body).await.status(),
            201
        );
    }
}

/// A list reads all its accounts at once, so its latency is the slowest account's, not the
/// sum of batches: 300 accounts with a 2 s vendor are 300 calls in flight together (the old
/// default of 256 at a time made it two rounds). The latency leaves room for connecting 300
/// times on a busy machine before the first call answers.
#[tokio::test]
async fn a_list_reads_its_accounts_at_once() {
    // The accounts share the simulator's one token, which the gateway rightly treats as one
    // vendor account: its cap is lifted to stand for 300 accounts with tokens of their own.
    let s = sim_app(|c| c.upstream.max_concurrency_per_account = 1_000).await;
    koyeb_accounts(&s, 299).await;
    s.sim.set_fault(
        Vendor::Koyeb,
        Fault {
            latency_ms: Some(2_000),
            ..Fault::default()
        },
    );
    let page: Value = s
        .app
        .get("/v1/snapshots?provider=koyeb&page_size=100", &s.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["errors"], json!([]), "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    assert!(page["next_page_token"].is_string());
    let stats = s.sim.stats(Vendor::Koyeb);
    assert_eq!(stats.max_in_flight, 300, "accounts read at once");
}

/// Lists in flight together share the process's slots (`listing.max_total_concurrency`): three
/// lists of ten accounts never have more than four vendor calls out at once, and each still
/// returns every account's snapshots, none reported failed for having waited.
#[tokio::test]
async fn lists_in_flight_together_share_the_process_wide_cap() {
    let s = sim_app(|c| {
        c.upstream.max_concurrency_per_account = 100;
        c.listing.max_total_concurrency = 4;
        c.listing.account_timeout_ms = 1_000;
    })
    .await;
    koyeb_accounts(&s, 9).await;
    s.sim.set_fault(
        Vendor::Koyeb,
        Fault {
            latency_ms: Some(150),
            ..Fault::default()
        },
    );
    let lists = (0..3).map(|_| {
        s.app
            .get("/v1/snapshots?provider=koyeb&page_size=100", &s.token)
    });
    for response in futures::future::join_all(lists).await {
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        assert_eq!(page["errors"], json!([]), "{page}");
        assert_eq!(page["items"].as_array().unwrap().len(), 20, "{page}");
    }
    let stats = s.sim.stats(Vendor::Koyeb);
    assert_eq!(
        stats.max_in_flight, 4,
        "vendor calls at once across the three lists"
    );
}

#[tokio::test]
async fn twenty_concurrent_oktawave_calls_share_one_token_request() {
    let s = sim_app(|_| {}).await;
    // The listing above would fetch a token: find a snapshot id without the gateway instead.
    s.sim.clear_requests();
    let native = {
        let page: Value = s
            .app
            .get("/v1/snapshots?account=oktawave", &s.token)
            .await
            .json()
            .await
            .unwrap();
        page["items"][0]["native_id"].as_str().unwrap().to_owned()
    };
    let token_calls = |s: &SimApp| {
        s.sim
            .requests(Some(Vendor::Oktawave))
            .iter()
            .filter(|r| r.path.contains("token"))
            .count()
    };
    assert_eq!(token_calls(&s), 1);
    // A fresh gateway (empty token cache) against the same simulator.
    let app = spawn_app_with(|c| snapgate::demo::point_at_simulator(c, &s.sim)).await;
    let creds: serde_json::Map<String, Value> = s
        .sim
        .credentials(Vendor::Oktawave)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    let body = json!({"id": "ok", "provider": "oktawave", "credentials": creds, "settings": {"region": "pl1"}});
    assert_eq!(
        app.post("/v1/accounts", &s.token, &body).await.status(),
        201
    );
    s.sim.clear_requests();
    let path = format!("/v1/snapshots/ok:{native}");
    let results = futures::future::join_all((0..20).map(|_| app.get(&path, &s.token))).await;
    assert!(results.iter().all(|r| r.status() == 200));
    assert_eq!(token_calls(&s), 1, "one refresh for 20 concurrent calls");
}

#[tokio::test]
async fn the_callers_request_id_reaches_the_vendor_and_credentials_stay_out_of_problems() {
    let s = sim_app(|_| {}).await;
    let path = seeded_snapshot(&s, Vendor::Syminet).await;
    s.sim.clear_requests();
    let resp = s
        .app
        .client
        .get(format!("{}{path}", s.app.url))
        .bearer_auth(&s.token)
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let recorded = s.sim.requests(Some(Vendor::Syminet));
    assert!(recorded
        .iter()
        .all(|r| r.headers.get("x-request-id").map(String::as_str) == Some("trace-me-123")));
    s.sim.set_fault(
        Vendor::Syminet,
        Fault {
            status: Some(401),
            times: Some(1),
            ..Fault::default()
        },
    );
    let p = assert_problem(
        s.app.get(&path, &s.token).await,
        502,
        "provider_auth_failed",
    )
    .await;
    assert!(!p.to_string().contains(snapgate::simulator::SYMINET_TOKEN));
}

#[tokio::test]
async fn a_probe_abandoned_by_its_caller_lets_the_next_call_probe() {
    let s = sim_app(|c| {
        c.upstream.breaker_failures = 2;
        c.upstream.breaker_cooldown_ms = 300;
        c.server.request_timeout_ms = 500;
    })
    .await;
    let path = seeded_snapshot(&s, Vendor::Koyeb).await;
    s.sim.set_fault(
        Vendor::Koyeb,
        Fault {
            status: Some(500),
            ..Fault::default()
        },
    );
    for _ in 0..2 {
        assert_problem(s.app.get(&path, &s.token).await, 502, "upstream_error").await;
    }
    assert_problem(
        s.app.get(&path, &s.token).await,
        503,
        "provider_unavailable",
    )
    .await;
    // After the cool-down the probe hangs and its caller's deadline drops it.
    s.sim.set_fault(
        Vendor::Koyeb,
        Fault {
            latency_ms: Some(3_000),
            ..Fault::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_problem(s.app.get(&path, &s.token).await, 504, "deadline_exceeded").await;
    // The vendor is fine again: the next call probes (and closes the breaker), no stuck 503.
    s.sim.clear_faults();
    assert_eq!(s.app.get(&path, &s.token).await.status(), 200);
}

#[tokio::test]
async fn one_tenants_slow_vendor_does_not_hold_up_another_tenant() {
    use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(1_500)))
        .mount(&mock)
        .await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| {
        c.server.max_in_flight = 16;
        c.server.max_in_flight_per_tenant = 8;
        c.providers.set(ProviderKind::Hyperstack, "base_url", uri);
        c.upstream.max_concurrency_per_account = 64;
    })
    .await;
    let a = token("tenant-a", ALL_SCOPES);
    let b = token("tenant-b", ALL_SCOPES);
    assert_eq!(
        app.post("/v1/accounts", &a, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    // Tenant B's p99 on a store-only route, alone and then while A floods its slow vendor with
    // more requests than the whole gateway handles.
    let p99_of_b = || async {
        let mut times = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            assert_eq!(app.get("/v1/accounts", &b).await.status(), 200);
            times.push(started.elapsed());
        }
        times.sort();
        times[times.len() * 99 / 100]
    };
    let alone = p99_of_b().await;
    let flood: Vec<_> = (0..24)
        .map(|i| {
            let client = app.client.clone();
            let url = format!("{}/v1/snapshots/hs:{}", app.url, 100 + i);
            let a = a.clone();
            tokio::spawn(async move { client.get(url).bearer_auth(a).send().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let beside_a = p99_of_b().await;
    eprintln!("tenant B p99: alone {alone:?}, beside tenant A's flood {beside_a:?}");
    assert!(
        beside_a < alone + Duration::from_millis(50),
        "tenant B waited behind tenant A: p99 {beside_a:?} (alone {alone:?})"
    );
    for f in flood {
        f.abort();
    }
}

#[tokio::test]
async fn connections_over_the_cap_get_a_503_problem_and_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|c| c.server.max_connections = 2).await;
    let addr = app.url.trim_start_matches("http://").to_owned();
    // Two idle keep-alive connections fill the cap.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // Over the cap, a probe is still answered (an orchestrator must not restart a gateway
    // whose callers hold every connection), and the API is refused with a 503 problem.
    let exchange = |request: &'static str| {
        let addr = addr.clone();
        async move {
            let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
            third.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer))
                .await
                .expect("answered and closed promptly")
                .unwrap();
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let request = match probe {
            "/healthz" => "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
            "/readyz" => "GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n",
            _ => "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n",
        };
        let answer = exchange(request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{probe}: {answer}");
    }
    let answer = exchange("GET /v1/providers HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("\"code\":\"too_many_connections\""),
        "{answer}"
    );
    assert!(answer.contains("retry-after: 1"), "{answer}");
    // Once one closes, a new connection is served.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = raw_request(
        &app,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn vendor_calls_speak_tls_and_refuse_a_certificate_no_authority_signed() {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };
    // A vendor on https://localhost with a self-signed certificate.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (hellos, completed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (h, c) = (hellos.clone(), completed.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, h, c) = (acceptor.clone(), h.clone(), c.clone());
            tokio::spawn(async move {
                h.fetch_add(1, Ordering::SeqCst);
                if acceptor.accept(stream).await.is_ok() {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    let app = spawn_app_with(|c| {
        c.providers.set(
            ProviderKind::Hyperstack,
            "base_url",
            format!("https://localhost:{port}/v1"),
        );
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    let resp = app.get("/v1/snapshots/hs:1402", &t).await;
    let problem = assert_problem(resp, 502, "upstream_error").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{problem}"
    );
    // The gateway opened TLS (the vendor saw its handshakes) and refused the certificate: no
    // handshake completed, so no request (and no credential) was sent.
    assert!(hellos.load(Ordering::SeqCst) >= 1);
    assert_eq!(completed.load(Ordering::SeqCst), 0);
}

/// One request answered on a kept-alive connection to `addr`, which stays open.
async fn held_connection(addr: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    s
}

/// `snapgate_connections_open` of each of the first `threads` serving threads, read on a
/// connection of its own (counted too).
async fn open_per_thread(addr: &str, threads: usize) -> Vec<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    (0..threads)
        .map(|w| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("snapgate_connections_open{{worker=\"{w}\"}} "))
                })
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no gauge for worker {w} in:\n{text}"))
        })
        .collect()
}

/// New connections go to the serving thread with the fewest open, so a client's keep-alive
/// pool is spread over every thread instead of landing on whichever woke first: ten
/// connections held open on two threads are five and five, and closing three of one thread's
/// makes the next three go there.
#[tokio::test]
async fn connections_are_spread_over_the_serving_threads() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(
        &dir.path().join("db.sqlite"),
        &[("SNAPGATE_SERVER__WORKERS", "2".to_owned())],
    );
    let addr = serve.url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(held_connection(&addr).await);
    }
    let [a, b] = open_per_thread(&addr, 2).await[..] else {
        unreachable!()
    };
    assert_eq!(a + b, 11.0, "ten held and the one asking");
    assert!((a - b).abs() <= 1.0, "threads hold {a} and {b}");
    // Connections alternate between the threads: closing every other one empties one thread
    // of five, and the next five all go to it.
    let mut kept = Vec::new();
    for (i, s) in held.into_iter().enumerate() {
        if i % 2 == 0 {
            kept.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        kept.push(held_connection(&addr).await);
    }
    let [a, b] = open_per_thread(&addr, 2).await[..] else {
        unreachable!()
    };
    assert_eq!(a + b, 11.0);
    assert!((a - b).abs() <= 1.0, "threads hold {a} and {b}");
    drop(kept);
    let _ = serve.stop("TERM");
}

/// `server.workers = 1` (one shared runtime) serves through the same acceptor: held
/// connections are counted on its one serving loop, and a `TERM` still drains and exits 0.
#[tokio::test]
async fn one_serving_loop_serves_counts_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(
        &dir.path().join("db.sqlite"),
        &[("SNAPGATE_SERVER__WORKERS", "1".to_owned())],
    );
    let addr = serve.url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(held_connection(&addr).await);
    }
    assert_eq!(open_per_thread(&addr, 1).await, vec![4.0]);
    drop(held);
    let (status, _) = serve.stop("TERM");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn past_the_open_files_limit_accept_backs_off_and_recovers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(&dir.path().join("db.sqlite"), &[]);
    // Lower the running process's limit under what its connections will need.
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &serve.child.id().to_string(), "--nofile=48:48"])
        .status()
        .unwrap();
    assert!(limited.success());
    let addr = serve.url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        {
            held.push(s);
        }
    }
    // Accept fails with EMFILE for the rest for 2.5 s.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    drop(held);
    // Descriptors come back: within the longest backoff (1 s), health is answered again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answered = async {
            let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).await.ok()?;
            String::from_utf8_lossy(&answer)
                .starts_with("HTTP/1.1 200")
                .then_some(())
        };
        if tokio::time::timeout(Duration::from_secs(2), answered)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered from EMFILE");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, logs) = serve.stop("TERM");
    let warnings = logs.matches("accept failed").count();
    eprintln!("{warnings} accept warnings over ~2.5 s of EMFILE");
    assert!(warnings >= 1, "the failure was logged: {logs}");
    assert!(
        warnings <= 6,
        "accept failures logged {warnings} times, not once a second"
    );
}
