//! A hostile tenant's attacks, each bounded, each asserting what another tenant would see:
//! waiting that holds no work slot, secrets a vendor echoes in a 2xx, address ranges, scopes
//! that follow whoever made a webhook, bounded reads.

use std::time::{Duration, Instant};

use serde_json::json;
use snapgate::simulator::Vendor;

use crate::{helpers::*, lifecycle::*};

/// Tenant B's p99 on a store-only route over `n` calls.
async fn p99_of(app: &TestApp, t: &str, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        assert_eq!(app.get("/v1/accounts", t).await.status(), 200);
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() * 99 / 100]
}

#[tokio::test]
async fn long_polls_hold_no_work_slot_and_have_their_own_caps() {
    // Eight work slots for the whole gateway; a tenant may hold 12 long-polls, the gateway 12.
    let s = spawn_with_simulator_and(Duration::from_secs(60), |c| {
        c.server.max_in_flight = 8;
        c.server.max_in_flight_per_tenant = 64;
        c.server.max_waiters = 12;
        c.server.max_waiters_per_tenant = 12;
    })
    .await;
    let body =
        json!({"account": "koyeb", "source_id": s.sim.sources(Vendor::Koyeb)[0], "name": "held"});
    let op = accepted(s.app.post("/v1/snapshots", &s.token, &body).await, "create").await;
    let id = op["operation"]["id"].as_str().unwrap().to_owned();
    let b = token("tenant-b", ALL_SCOPES);
    let alone = p99_of(&s.app, &b, 40).await;

    // Tenant A holds 12 long-polls: more than every work slot of the gateway.
    let polls: Vec<_> = (0..12)
        .map(|_| {
            let client = s.app.client.clone();
            let url = format!("{}/v1/operations/{id}?wait=20s", s.app.url);
            let t = s.token.clone();
            tokio::spawn(async move { client.get(url).bearer_auth(t).send().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        polls.iter().all(|p| !p.is_finished()),
        "the long-polls answered early"
    );

    let beside = p99_of(&s.app, &b, 40).await;
    eprintln!("tenant B p99: alone {alone:?}, beside 12 long-polls {beside:?}");
    assert!(
        beside < alone + Duration::from_millis(100),
        "tenant B waited behind tenant A's long-polls: p99 {beside:?} (alone {alone:?})"
    );
    // Tenant A's own work still runs; its thirteenth long-poll is refused at once.
    assert_eq!(s.app.get("/v1/accounts", &s.token).await.status(), 200);
    let started = Instant::now();
    let resp = s
        .app
        .get(&format!("/v1/operations/{id}?wait=20s"), &s.token)
        .await;
    assert_eq!(
        resp.headers()["retry-after"],
        "1",
        "a refused long-poll says when to ask again"
    );
    let p = assert_problem(resp, 429, "too_many_waiters").await;
    assert!(p["detail"].as_str().unwrap().contains("this tenant"), "{p}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The gateway's waiters are all taken too: tenant B's long-poll is refused, naming it.
    let p = assert_problem(
        s.app.get("/v1/operations/op_missing?wait=5s", &b).await,
        429,
        "too_many_waiters",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("the gateway"), "{p}");
    // A read without `wait` is work, not waiting: answered.
    assert_eq!(
        s.app
            .get(&format!("/v1/operations/{id}"), &s.token)
            .await
            .status(),
        200
    );
    for p in &polls {
        p.abort();
    }
    // Slots come back when the long-polls end: tenant B's long-poll reaches its handler.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = s.app.get("/v1/operations/op_missing?wait=1s", &b).await;
        if resp.status() == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "waiter slots never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn special_purpose_addresses_are_refused_in_every_form_and_names_reveal_nothing() {
    let app = spawn_app_with(|c| c.webhooks.allow_private_targets = false).await;
    let t = token("acme", ALL_SCOPES);
    for url in [
        "https://[::7f00:1]/hook",
        "https://[64:ff9b::a00:5]/hook",
        "https://[64:ff9b::7f00:1]/hook",
        "https://[fec0::1]/hook",
        "https://[2002:c0a8:101::1]/hook",
        "https://198.18.0.1/hook",
        "https://198.19.3.4/hook",
        "https://192.0.0.170/hook",
        "https://168.63.129.16/hook",
        "https://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "https://[2001:db8::5]/hook",
    ] {
        let resp = app.post("/v1/webhooks", &t, &json!({"url": url})).await;
        let problem = assert_problem(resp, 422, "webhook_target_refused").await;
        assert_eq!(problem["field"], "url", "{url}: {problem}");
    }
    // A name that resolves inward and one that does not resolve get the same answer, naming
    // neither the address nor its kind: no tenant can map internal names through it.
    let mut details = Vec::new();
    for (url, host) in [
        ("https://localhost:9000/hook", "localhost"),
        ("https://no-such-host.invalid/hook", "no-such-host.invalid"),
    ] {
        let resp = app.post("/v1/webhooks", &t, &json!({"url": url})).await;
        let problem = assert_problem(resp, 422, "webhook_target_refused").await;
        let detail = problem["detail"].as_str().unwrap().to_owned();
        for inside in ["127.0.0.1", "::1", "loopback", "a private"] {
            assert!(!detail.contains(inside), "{url}: {detail}");
        }
        details.push(detail.replace(host, "HOST"));
    }
    assert_eq!(details[0], details[1]);
    let listed: serde_json::Value = app.get("/v1/webhooks", &t).await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn names_with_path_separators_or_control_characters_never_reach_a_vendor() {
    use wiremock::{matchers::any, Mock, MockServer, ResponseTemplate};
    let mock = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&mock)
        .await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| {
        c.providers
            .set(snapgate::domain::ProviderKind::Hyperstack, "base_url", uri);
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    assert_eq!(
        app.post("/v1/accounts", &t, &account_body("hs", "hyperstack"))
            .await
            .status(),
        201
    );
    let before = mock.received_requests().await.unwrap().len();
    for name in [
        "a/b",
        "a\\b",
        "a\u{0}b",
        "nightly\n",
        "..\\..\\x",
        "\u{1b}[31m",
    ] {
        let p = assert_problem(
            app.post(
                "/v1/snapshots",
                &t,
                &json!({"account": "hs", "source_id": "1402", "name": name}),
            )
            .await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(p["field"], "name", "{name:?}: {p}");
        let p = assert_problem(
            app.patch("/v1/snapshots/hs:1402", &t, &json!({"name": name}))
                .await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(p["field"], "name", "{name:?}: {p}");
    }
    for encoded in ["a%2Fb", "a%5Cb", "a%00b", "%2E%2E%2F"] {
        let resp = app
            .get(&format!("/v1/accounts/hs/snapshot-names/{encoded}"), &t)
            .await;
        let p = assert_problem(resp, 422, "invalid_field").await;
        assert_eq!(p["field"], "name", "{encoded}: {p}");
    }
    assert_eq!(
        mock.received_requests().await.unwrap().len(),
        before,
        "a refused name reached the vendor"
    );
    // An ordinary name with spaces, dots and non-ASCII letters is still a name.
    let resp = app
        .get(
            "/v1/accounts/hs/snapshot-names/nightly%20v1.2%20%C3%A9t%C3%A9",
            &t,
        )
        .await;
    assert_ne!(resp.status(), 422);
}

#[tokio::test]
async fn a_webhook_delivers_only_what_whoever_points_it_may_read() {
    let app = spawn_app_with(|c| c.webhooks.allow_private_targets = true).await;
    let url = "http://127.0.0.1:9/hook";
    // `webhooks:write` alone may read no event: it cannot make an endpoint that receives them.
    let hooks_only = token("acme", "webhooks:read webhooks:write");
    let resp = app
        .post("/v1/webhooks", &hooks_only, &json!({"url": url}))
        .await;
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"snapshots:read\""
    );
    assert_problem(resp, 403, "insufficient_scope").await;
    let resp = app
        .post(
            "/v1/webhooks",
            &hooks_only,
            &json!({"url": url, "event_types": ["operation.succeeded"]}),
        )
        .await;
    let p = assert_problem(resp, 403, "insufficient_scope").await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("operation.succeeded"),
        "{p}"
    );

    // With `accounts:read`, "everything" is everything it may read: account health, listed.
    let health_reader = token("acme", "webhooks:read webhooks:write accounts:read");
    let resp = app
        .post("/v1/webhooks", &health_reader, &json!({"url": url}))
        .await;
    assert_eq!(resp.status(), 201);
    let made: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(made["event_types"], json!(["account.health_changed"]));
    let resp = app
        .patch(
            &format!("/v1/webhooks/{}", made["id"].as_str().unwrap()),
            &health_reader,
            &json!({"event_types": ["snapshot.created"]}),
        )
        .await;
    assert_problem(resp, 403, "insufficient_scope").await;

    // An endpoint delivering everything cannot be pointed elsewhere, or turned back on, by a
    // caller who could not read all of it.
    let everything = token("acme", ALL_SCOPES);
    let resp = app
        .post("/v1/webhooks", &everything, &json!({"url": url}))
        .await;
    assert_eq!(resp.status(), 201);
    let all: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(all["event_types"], json!([]));
    let path = format!("/v1/webhooks/{}", all["id"].as_str().unwrap());
    for change in [
        json!({"url": "http://127.0.0.1:10/elsewhere"}),
        json!({"enabled": true}),
    ] {
        let resp = app.patch(&path, &health_reader, &change).await;
        assert_problem(resp, 403, "insufficient_scope").await;
    }
    let kept: serde_json::Value = app.get(&path, &everything).await.json().await.unwrap();
    assert_eq!(kept["url"], url);
    // Its description is not what it delivers: any webhook writer may change it.
    let resp = app
        .patch(&path, &health_reader, &json!({"description": "ops"}))
        .await;
    assert_eq!(resp.status(), 200);

    // The event log follows the same rule: account health needs `accounts:read`.
    let snapshots_only = token("acme", "snapshots:read");
    assert_eq!(app.get("/v1/events", &snapshots_only).await.status(), 200);
    let resp = app
        .get("/v1/events?type=account.health_changed", &snapshots_only)
        .await;
    assert_problem(resp, 403, "insufficient_scope").await;
}

#[tokio::test]
async fn webhook_endpoints_per_tenant_are_capped() {
    let app = spawn_app_with(|c| {
        c.webhooks.allow_private_targets = true;
        c.webhooks.max_endpoints_per_tenant = 3;
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    for i in 0..3 {
        let url = format!("http://127.0.0.1:9/hook-{i}");
        assert_eq!(
            app.post("/v1/webhooks", &t, &json!({"url": url}))
                .await
                .status(),
            201
        );
    }
    let resp = app
        .post(
            "/v1/webhooks",
            &t,
            &json!({"url": "http://127.0.0.1:9/one-more"}),
        )
        .await;
    let p = assert_problem(resp, 409, "webhook_limit_reached").await;
    assert!(p["detail"].as_str().unwrap().contains('3'), "{p}");
    let other = token("globex", ALL_SCOPES);
    assert_eq!(
        app.post(
            "/v1/webhooks",
            &other,
            &json!({"url": "http://127.0.0.1:9/theirs"})
        )
        .await
        .status(),
        201
    );
}

/// The attack run of issue 23, bounded: four hostile tenants each hold the maximum of
/// long-polls, a flood of slow requests, a backlog of operations on a slow vendor and a
/// fan-out of webhooks to a receiver that never answers in time. A fifth tenant's plain
/// requests keep their p99, its operation is checked at once and its webhook arrives at once.
#[tokio::test]
async fn four_hostile_tenants_at_every_limit_leave_a_fifth_unchanged() {
    use snapgate::simulator::Fault;
    use wiremock::{matchers::any, Mock, MockServer, ResponseTemplate};
    let black_hole = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&black_hole)
        .await;
    let receiver = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    const HOSTILE: usize = 4;
    const WAITERS: usize = 10;
    const ENDPOINTS: usize = 10;
    const OPERATIONS: usize = 10;
    const FLOOD: usize = 40;
    let s = spawn_with_simulator_and(Duration::from_secs(120), |c| {
        c.server.max_waiters_per_tenant = WAITERS;
        c.reconciler.enabled = true;
        c.reconciler.tick_ms = 20;
        c.reconciler.first_check_ms = 300;
        c.webhooks.enabled = true;
        c.webhooks.allow_private_targets = true;
        c.webhooks.timeout_ms = 3_000;
        c.webhooks.tick_ms = 50;
        c.webhooks.max_endpoints_per_tenant = ENDPOINTS as u32;
        c.upstream.max_concurrency_per_account = 64;
        c.upstream.max_retries = 0;
    })
    .await;
    let victim = token("victim", ALL_SCOPES);
    add_simulator_accounts(&s.app, &s.sim, &victim).await;
    let alone = p99_of(&s.app, &victim, 60).await;

    // Each hostile tenant: a backlog of Koyeb operations, and endpoints to the black hole.
    let mut hostile = Vec::new();
    for h in 0..HOSTILE {
        let t = token(&format!("hostile-{h}"), ALL_SCOPES);
        add_simulator_accounts(&s.app, &s.sim, &t).await;
        let mut ops = Vec::new();
        for i in 0..OPERATIONS {
            let body = json!({"account": "koyeb", "source_id": s.sim.sources(Vendor::Koyeb)[0], "name": format!("backlog-{i}")});
            let op = accepted(s.app.post("/v1/snapshots", &t, &body).await, "create").await;
            ops.push(op["operation"]["id"].as_str().unwrap().to_owned());
        }
        let mut hooks = Vec::new();
        for i in 0..ENDPOINTS {
            let url = format!("{}/hostile-{h}-{i}", black_hole.uri());
            let made = s.app.post("/v1/webhooks", &t, &json!({"url": url})).await;
            assert_eq!(made.status(), 201);
            let made: serde_json::Value = made.json().await.unwrap();
            hooks.push(made["id"].as_str().unwrap().to_owned());
        }
        hostile.push((t, ops, hooks));
    }
    // Koyeb turns slow: every check of the backlog, and every flooding request, takes 2 s.
    s.sim.set_fault(
        Vendor::Koyeb,
        Fault {
            latency_ms: Some(2_000),
            ..Fault::default()
        },
    );
    let mut attack = Vec::new();
    for (t, ops, hooks) in &hostile {
        for _ in 0..WAITERS {
            let url = format!("{}/v1/operations/{}?wait=30s", s.app.url, ops[0]);
            let (client, t) = (s.app.client.clone(), t.clone());
            attack.push(tokio::spawn(async move {
                let _ = client.get(url).bearer_auth(t).send().await;
            }));
        }
        for i in 0..FLOOD {
            let url = format!("{}/v1/snapshots/koyeb:flood-{i}", s.app.url);
            let (client, t) = (s.app.client.clone(), t.clone());
            attack.push(tokio::spawn(async move {
                let _ = client.get(url).bearer_auth(t).send().await;
            }));
        }
        // Twice the gateway's delivery slots in all (4 × 10 × 2 = 80 against 64).
        for hook in hooks.iter().chain(hooks) {
            let resp = s
                .app
                .post(&format!("/v1/webhooks/{hook}/test"), t, &json!({}))
                .await;
            assert!(resp.status().is_success(), "{}", resp.status());
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The victim, meanwhile: plain requests, an operation, a webhook.
    let beside = p99_of(&s.app, &victim, 60).await;
    let body = json!({"account": "hyperstack", "source_id": s.sim.sources(Vendor::Hyperstack)[0], "name": "mine"});
    let created = Instant::now();
    let op = accepted(s.app.post("/v1/snapshots", &victim, &body).await, "create").await;
    let id = op["operation"]["id"].as_str().unwrap().to_owned();
    let first_check = op["operation"]["next_check_at"].clone();
    let checked = loop {
        let listed: serde_json::Value = s
            .app
            .get("/v1/operations?account=hyperstack", &victim)
            .await
            .json()
            .await
            .unwrap();
        let mine = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == id)
            .cloned()
            .unwrap();
        if mine["next_check_at"] != first_check {
            break created.elapsed();
        }
        assert!(
            created.elapsed() < Duration::from_secs(20),
            "the victim's operation was never checked"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let made = s
        .app
        .post(
            "/v1/webhooks",
            &victim,
            &json!({"url": format!("{}/victim", receiver.uri())}),
        )
        .await;
    let made: serde_json::Value = made.json().await.unwrap();
    let sent = Instant::now();
    let resp = s
        .app
        .post(
            &format!("/v1/webhooks/{}/test", made["id"].as_str().unwrap()),
            &victim,
            &json!({}),
        )
        .await;
    assert!(resp.status().is_success());
    let delivered = loop {
        if !receiver.received_requests().await.unwrap().is_empty() {
            break sent.elapsed();
        }
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "the victim's webhook never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "victim beside {HOSTILE} hostile tenants: p99 {beside:?} (alone {alone:?}), \
         operation checked after {checked:?}, webhook after {delivered:?}"
    );
    for a in attack {
        a.abort();
    }
    s.sim.clear_faults();
    assert!(
        beside < alone * 2 + Duration::from_millis(100),
        "p99 {beside:?}, alone {alone:?}"
    );
    // First check due 300 ms after the create; a reconciler tick is 20 ms.
    assert!(
        checked < Duration::from_millis(1_500),
        "the victim's operation waited {checked:?} behind the hostile backlog"
    );
    assert!(
        delivered < Duration::from_millis(1_000),
        "the victim's webhook waited {delivered:?} behind the hostile fan-out"
    );
}
