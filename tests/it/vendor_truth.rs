//! Vendor truth III (issue 22): where a vendor behaves as its pages do not say, the gateway is
//! never *silently* wrong. Each test plays one reading through the simulator (a variant or a
//! fault) and asserts what a caller of the public API sees: no list that is short while its
//! `errors` say nothing, no failure shown as `creating` until the 24 h deadline, no create
//! bound to an older snapshot, no permission refusal reported as bad credentials.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::simulator::{Fault, Variants, Vendor};

use crate::helpers::*;
use crate::lifecycle::{accepted, settle, spawn_with_variants, SimApp};
use crate::variants::{get_json, played};

/// The sorted native ids one account lists, with the page's `errors`.
async fn listed_ids(s: &SimApp, account: &str) -> (Vec<String>, Value) {
    let page = get_json(s, &format!("/v1/snapshots?account={account}&page_size=200")).await;
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["native_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    (ids, page["errors"].clone())
}

async fn start_create(s: &SimApp, vendor: Vendor, source: &str, name: &str) -> Value {
    let body = json!({"account": vendor.as_str(), "source_id": source, "name": name});
    accepted(s.app.post("/v1/snapshots", &s.token, &body).await, "create").await["operation"]
        .clone()
}

/// Items 1 and 2: a Koyeb that leaves `has_next` out and caps `limit`, and a Hyperstack that
/// caps `pageSize` while echoing the size asked (with `count` the page's own) are listed whole,
/// exactly as the documented reading lists them.
#[tokio::test]
async fn lists_are_whole_when_pages_are_capped_silently_and_flags_are_missing() {
    let delay = Duration::from_millis(50);
    let baseline = spawn_with_variants(delay, Variants::default(), |_| {}).await;
    for (account, spec) in [
        ("koyeb", "koyeb.page_cap=1,koyeb.no_has_next"),
        (
            "hyperstack",
            "hyperstack.page_cap=1,hyperstack.page_size_echoes_asked",
        ),
        (
            "hyperstack",
            "hyperstack.page_cap=1,hyperstack.page_size_echoes_asked,hyperstack.count_is_page",
        ),
    ] {
        let (want, _) = listed_ids(&baseline, account).await;
        assert!(
            want.len() >= 2,
            "{account} seeds several snapshots: {want:?}"
        );
        let s = spawn_with_variants(delay, played(spec), |_| {}).await;
        let (got, errors) = listed_ids(&s, account).await;
        assert_eq!(errors, json!([]), "{spec}");
        assert_eq!(got, want, "{spec}: every snapshot listed");
    }
}

/// Item 3: `CREATE_FAILED` names a failure: the create fails at once, naming it, instead of
/// reading `creating` until the 24 h deadline.
#[tokio::test]
async fn a_hyperstack_create_failed_status_fails_the_create() {
    let s = spawn_with_variants(
        Duration::from_millis(300),
        played("hyperstack.create_failed_status"),
        |_| {},
    )
    .await;
    s.sim.set_fault(
        Vendor::Hyperstack,
        Fault {
            fail_async: true,
            times: Some(1),
            ..Fault::default()
        },
    );
    let source = s.sim.sources(Vendor::Hyperstack)[0].clone();
    let op = start_create(&s, Vendor::Hyperstack, &source, "doomed").await;
    let op = settle(&s.app, &s.token, &op).await;
    assert_eq!(op["state"], "failed", "{op}");
    let detail = op["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("CREATE_FAILED"), "{detail}");
    let snapshot = get_json(
        &s,
        &format!("/v1/snapshots/{}", op["snapshot_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(snapshot["status"], "error", "{snapshot}");
}

/// Item 3: a status no page names is shown as `unknown` with its `vendor_status`, counted,
/// and a create stuck in it fails after `reconciler.unknown_status_secs`, naming it — and so
/// does a restore whose new VM or volume ends in one.
#[tokio::test]
async fn an_undocumented_status_is_unknown_and_ends_the_operation_within_its_bound() {
    let s = spawn_with_variants(
        Duration::from_millis(200),
        played("hyperstack.undocumented_status,restore.new_resource_unknown"),
        |c| c.reconciler.unknown_status_secs = 2,
    )
    .await;
    let source = s.sim.sources(Vendor::Hyperstack)[1].clone();
    // Restores first, from snapshots that finish normally.
    let mut restores = Vec::new();
    for (vendor, status) in [
        (Vendor::Hyperstack, "SHELVED"),
        (Vendor::Koyeb, "PERSISTENT_VOLUME_STATUS_SUSPENDED"),
    ] {
        let src = s.sim.sources(vendor)[0].clone();
        let op = start_create(&s, vendor, &src, &format!("to-restore-{vendor}")).await;
        let op = settle(&s.app, &s.token, &op).await;
        assert_eq!(op["state"], "succeeded", "{op}");
        let id = op["snapshot_id"].as_str().unwrap().to_owned();
        let body = json!({"new_name": format!("odd-{vendor}")});
        let restore = accepted(
            s.app
                .post(&format!("/v1/snapshots/{id}/restore"), &s.token, &body)
                .await,
            "restore",
        )
        .await;
        restores.push((restore["operation"].clone(), status));
    }
    s.sim.set_fault(
        Vendor::Hyperstack,
        Fault {
            fail_async: true,
            times: Some(1),
            ..Fault::default()
        },
    );
    let started = Instant::now();
    let op = start_create(&s, Vendor::Hyperstack, &source, "stuck").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let id = get_json(
        &s,
        &format!("/v1/operations/{}", op["id"].as_str().unwrap()),
    )
    .await["snapshot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let snapshot = get_json(&s, &format!("/v1/snapshots/{id}")).await;
    assert_eq!(
        (&snapshot["status"], &snapshot["vendor_status"]),
        (&json!("unknown"), &json!("SUSPENDED")),
        "{snapshot}"
    );
    let op = settle(&s.app, &s.token, &op).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "failed before its bound"
    );
    assert_eq!(op["state"], "failed", "{op}");
    assert_eq!(op["error"]["code"], "vendor_status_unknown", "{op}");
    let detail = op["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("SUSPENDED"), "{detail}");
    for (restore, status) in restores {
        let op = settle(&s.app, &s.token, &restore).await;
        assert_eq!(op["state"], "failed", "{op}");
        assert_eq!(op["error"]["code"], "vendor_status_unknown", "{op}");
        let detail = op["error"]["detail"].as_str().unwrap();
        assert!(detail.contains(status), "{detail}");
    }
    let metrics = s
        .app
        .client
        .get(format!("{}/metrics", s.app.url))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("snapgate_vendor_unknown_status_total")
                && l.contains("provider=\"hyperstack\"")
                && l.contains("on=\"snapshot\"")),
        "the unknown status is counted"
    );
}

/// Item 4: a 403 is a permission refusal, not bad credentials, and says so (with the vendor's
/// reason); account health says which. A create whose VM does not exist says the VM is missing.
#[tokio::test]
async fn a_403_is_a_permission_refusal_and_a_missing_source_is_named() {
    let s = spawn_with_variants(Duration::from_millis(50), Variants::default(), |_| {}).await;
    for vendor in [Vendor::Koyeb, Vendor::Hyperstack, Vendor::Syminet] {
        let fault = |status| Fault {
            status: Some(status),
            ..Fault::default()
        };
        s.sim.set_fault(vendor, fault(403));
        let resp = s
            .app
            .get(
                &format!("/v1/snapshots?account={vendor}&strict=true"),
                &s.token,
            )
            .await;
        let p = assert_problem(resp, 502, "account_failed").await;
        let resp = s
            .app
            .post(
                &format!("/v1/accounts/{vendor}/verify"),
                &s.token,
                &json!({}),
            )
            .await;
        let health: Value = resp.json().await.unwrap();
        assert_eq!(health["status"], "failing", "{vendor}: {health}");
        assert_eq!(
            health["problem"]["code"], "provider_permission_denied",
            "{vendor}: {health} ({p})"
        );
        assert_eq!(health["problem"]["upstream_status"], 403, "{health}");
        let detail = health["problem"]["detail"].as_str().unwrap();
        assert!(detail.contains("refused this action"), "{detail}");
        s.sim.set_fault(vendor, fault(401));
        let resp = s
            .app
            .post(
                &format!("/v1/accounts/{vendor}/verify"),
                &s.token,
                &json!({}),
            )
            .await;
        let health: Value = resp.json().await.unwrap();
        assert_eq!(
            health["problem"]["code"], "provider_auth_failed",
            "{health}"
        );
        s.sim.clear_faults();
    }
    for (vendor, missing, what) in [
        (Vendor::Hyperstack, "999999", "vm"),
        (Vendor::Oktawave, "999999", "instance"),
        (Vendor::Hostinger, "999999", "vm"),
    ] {
        let body = json!({"account": vendor.as_str(), "source_id": missing, "name": "nowhere",
                          "replace_existing": vendor == Vendor::Hostinger});
        let resp = s.app.post("/v1/snapshots", &s.token, &body).await;
        let p = assert_problem(resp, 404, "source_not_found").await;
        assert_eq!(p["field"], "source_id", "{p}");
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains(what) && detail.contains(missing),
            "{vendor}: {detail}"
        );
    }
}

/// Item 5: an Oktawave whose list shows a new snapshot only a while after its ticket ended
/// never binds the create to an older snapshot of the same name.
#[tokio::test]
async fn an_oktawave_create_is_never_bound_to_an_older_snapshot_of_its_name() {
    let s = spawn_with_variants(
        Duration::from_millis(300),
        played("oktawave.listing_lag=2"),
        |_| {},
    )
    .await;
    let (old_id, instance, name) = {
        let page = get_json(&s, "/v1/snapshots?account=oktawave").await;
        let old = page["items"][0].clone();
        (
            old["id"].as_str().unwrap().to_owned(),
            old["source"]["id"].as_str().unwrap().to_owned(),
            old["name"].as_str().unwrap().to_owned(),
        )
    };
    let op = start_create(&s, Vendor::Oktawave, &instance, &name).await;
    let op = settle(&s.app, &s.token, &op).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    let new_id = op["snapshot_id"].as_str().unwrap();
    assert_ne!(new_id, old_id, "bound to last week's `{name}`");
    let snapshot = get_json(&s, &format!("/v1/snapshots/{new_id}")).await;
    assert_eq!(snapshot["name"], name.as_str());
}

/// Item 6: the gateway's own unfinished create counts: a second create of the same Hostinger
/// VM while the first runs never reaches the vendor, and says which operation holds it.
#[tokio::test]
async fn a_second_hostinger_create_while_the_first_runs_is_refused_by_the_gateway() {
    let s = spawn_with_variants(Duration::from_millis(1500), Variants::default(), |_| {}).await;
    let body = |replace: bool| {
        json!({"account": "hostinger", "source_id": "1268502", "name": "n",
               "replace_existing": replace})
    };
    let first = accepted(
        s.app.post("/v1/snapshots", &s.token, &body(true)).await,
        "first",
    )
    .await;
    let first_id = first["operation"]["id"].as_str().unwrap();
    s.sim.clear_requests();
    let resp = s.app.post("/v1/snapshots", &s.token, &body(false)).await;
    let p = assert_problem(resp, 409, "snapshot_exists").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains(first_id), "{detail}");
    let posts = s
        .sim
        .requests(Some(Vendor::Hostinger))
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 0, "the second create reached the vendor");
    let done = settle(&s.app, &s.token, &first["operation"]).await;
    assert_eq!(done["state"], "succeeded", "{done}");
}

/// Item 6: an interrupted Hostinger create (the gateway's deadline cut the call) is settled
/// from the VM's snapshot taken after the request — Hostinger snapshots have no name to match.
#[tokio::test]
async fn an_interrupted_hostinger_create_is_settled_by_its_time() {
    let s = spawn_with_variants(Duration::from_millis(200), Variants::default(), |c| {
        c.server.request_timeout_ms = 1_000;
    })
    .await;
    // The vendor answers after the gateway gave up (1 s), within the time an interrupted
    // call is still honoured (2 s).
    s.sim.set_fault(
        Vendor::Hostinger,
        Fault {
            latency_ms: Some(1_300),
            times: Some(1),
            ..Fault::default()
        },
    );
    let body = json!({"account": "hostinger", "source_id": "1268054", "name": "cut",
                      "replace_existing": true});
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/snapshots", s.app.url))
        .bearer_auth(&s.token)
        .header("idempotency-key", "hostinger-cut")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 504, "deadline_exceeded").await;
    let ops = get_json(&s, "/v1/operations?account=hostinger").await;
    let op = ops["items"][0].clone();
    assert_eq!(op["kind"], "create", "{ops}");
    let op = settle(&s.app, &s.token, &op).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    assert_eq!(op["snapshot_id"], "hostinger:1268054", "{op}");
}

/// Item 7: a Syminet that signals work only through `progress` (with `in_progress` null): a
/// create is not done before the snapshot is.
#[tokio::test]
async fn a_syminet_create_signalled_only_by_progress_waits_for_it() {
    let delay = Duration::from_millis(1500);
    // The per-slice list shows the unfinished snapshot too, so only the account-wide item's
    // `progress` can tell that it is not done.
    let s = spawn_with_variants(
        delay,
        played("syminet.progress_only,syminet.slice_list_shows_in_progress"),
        |_| {},
    )
    .await;
    let slice = s.sim.sources(Vendor::Syminet)[1].clone();
    let started = Instant::now();
    let op = start_create(&s, Vendor::Syminet, &slice, "progress-only").await;
    let op = settle(&s.app, &s.token, &op).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    assert!(
        started.elapsed() >= delay - Duration::from_millis(100),
        "done after {:?}, before Syminet finished the snapshot",
        started.elapsed()
    );
}

/// Item 7: a Syminet restore is assumed to take its snapshot's size at the configured rate,
/// never less than the settle time, and says so.
#[tokio::test]
async fn a_syminet_restore_is_assumed_to_take_its_size_at_the_configured_rate() {
    let s = spawn_with_variants(
        Duration::from_millis(100),
        played("syminet.restore_secs=0"),
        |c| {
            use snapgate::domain::ProviderKind::Syminet;
            c.providers.set(Syminet, "restore_settle_secs", 1);
            c.providers.set(Syminet, "restore_gb_per_minute", 1200.0);
        },
    )
    .await;
    let slice = s.sim.sources(Vendor::Syminet)[0].clone();
    let op = start_create(&s, Vendor::Syminet, &slice, "sized").await;
    let op = settle(&s.app, &s.token, &op).await;
    let id = op["snapshot_id"].as_str().unwrap().to_owned();
    let size = get_json(&s, &format!("/v1/snapshots/{id}")).await["size_gb"]
        .as_f64()
        .expect("Syminet states the size");
    let expected = ((size / 1200.0 * 60.0).ceil() as u64).max(1);
    let started = Instant::now();
    let restore = accepted(
        s.app
            .post(&format!("/v1/snapshots/{id}/restore"), &s.token, &json!({}))
            .await,
        "restore",
    )
    .await;
    let note = restore["operation"]["completion_note"].as_str().unwrap();
    assert!(
        note.contains(&format!("reported done {expected} s")) && note.contains("GB per minute"),
        "{note}"
    );
    let done = settle(&s.app, &s.token, &restore["operation"]).await;
    assert_eq!(done["state"], "succeeded");
    assert!(started.elapsed() >= Duration::from_secs(expected) - Duration::from_millis(200));
}

/// Item 8: a one-off Hyperstack 400 while a create is polled does not fail the create.
#[tokio::test]
async fn a_one_off_hyperstack_400_during_a_poll_does_not_fail_the_create() {
    let s = spawn_with_variants(Duration::from_millis(1000), Variants::default(), |_| {}).await;
    let source = s.sim.sources(Vendor::Hyperstack)[0].clone();
    let op = start_create(&s, Vendor::Hyperstack, &source, "blip").await;
    s.sim.set_fault(
        Vendor::Hyperstack,
        Fault {
            status: Some(400),
            times: Some(1),
            ..Fault::default()
        },
    );
    let polled = get_json(
        &s,
        &format!("/v1/operations/{}", op["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(polled["state"], "running", "{polled}");
    let op = settle(&s.app, &s.token, &op).await;
    assert_eq!(op["state"], "succeeded", "{op}");
}

/// Item 8: Hyperstack limits by source address, so one account's 429 holds every Hyperstack
/// account behind the gateway.
#[tokio::test]
async fn a_hyperstack_429_holds_every_hyperstack_account() {
    let s = spawn_with_variants(Duration::from_millis(50), Variants::default(), |_| {}).await;
    let body = json!({"id": "hyperstack-b", "provider": "hyperstack",
                      "credentials": {"api_key": "another-hyperstack-key"}});
    assert_eq!(
        s.app.post("/v1/accounts", &s.token, &body).await.status(),
        201
    );
    s.sim.set_fault(
        Vendor::Hyperstack,
        Fault {
            rate_limit_retry_after: Some(30),
            times: Some(1),
            ..Fault::default()
        },
    );
    let resp = s.app.get("/v1/snapshots/hyperstack:1402", &s.token).await;
    assert_problem(resp, 429, "provider_rate_limited").await;
    s.sim.clear_requests();
    let resp = s.app.get("/v1/snapshots/hyperstack-b:1402", &s.token).await;
    assert_problem(resp, 429, "provider_rate_limited").await;
    assert!(
        s.sim.requests(Some(Vendor::Hyperstack)).is_empty(),
        "the other account is held too"
    );
}
