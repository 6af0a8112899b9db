//! The gateway under every reading of what the vendor pages leave undocumented: the simulator
//! plays each variant (see `snapgate::simulator::Variants`) and the gateway must stay right.
//! One test runs the lifecycle and listing contract under every variant; the others pin the
//! behaviour each variant exists for (issue 15, items 1–10).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapgate::simulator::{Fault, Variants, Vendor};

use crate::helpers::*;
use crate::lifecycle::{accepted, lifecycle, settle, spawn_with_variants, SimApp};

pub(crate) fn played(spec: &str) -> Variants {
    let mut v = Variants::default();
    v.apply(spec).unwrap();
    v
}

pub(crate) async fn get_json(s: &SimApp, path: &str) -> Value {
    let resp = s.app.get(path, &s.token).await;
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// Every snapshot the gateway lists, per provider, as (name, status, source) sorted; and the
/// list's `errors`.
async fn listing(s: &SimApp) -> (BTreeMap<String, Vec<(Value, Value, Value)>>, Value) {
    let page = get_json(s, "/v1/snapshots?page_size=200").await;
    assert_eq!(page["next_page_token"], Value::Null);
    let mut by_provider: BTreeMap<String, Vec<(Value, Value, Value)>> = BTreeMap::new();
    for item in page["items"].as_array().unwrap() {
        by_provider
            .entry(item["provider"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                item["name"].clone(),
                item["status"].clone(),
                item["source"]["id"].clone(),
            ));
    }
    for items in by_provider.values_mut() {
        items.sort_by_key(|i| i.0.to_string());
    }
    (by_provider, page["errors"].clone())
}

/// Creates a snapshot and waits for it; returns its gateway id.
async fn created(s: &SimApp, vendor: Vendor, source: &str, name: &str) -> String {
    let body = json!({"account": vendor.as_str(), "source_id": source, "name": name});
    let started = accepted(s.app.post("/v1/snapshots", &s.token, &body).await, "create").await;
    let op = settle(&s.app, &s.token, &started["operation"]).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    op["snapshot_id"].as_str().unwrap().to_owned()
}

/// The variants under which the whole contract must hold unchanged.
const CONTRACT_VARIANTS: [&str; 14] = [
    "hyperstack.page_cap=1",
    "hyperstack.create_failed_status",
    "hyperstack.undocumented_status",
    "hyperstack.page_cap=1,hyperstack.page_size_echoes_asked,hyperstack.count_is_page",
    "hyperstack.not_found_400",
    "koyeb.migrating",
    "koyeb.page_cap=1,koyeb.no_has_next",
    "oktawave.page_base=0",
    "oktawave.snapshot_before_ticket",
    "oktawave.listing_lag=1",
    "syminet.slice_list_shows_in_progress",
    "syminet.progress_only",
    "syminet.restore_secs=2",
    "429-without-retry-after",
];

#[tokio::test]
async fn the_lifecycle_and_the_listing_hold_under_every_variant() {
    let runs = std::iter::once(None)
        .chain(CONTRACT_VARIANTS.map(Some))
        .map(|spec| async move {
            let variants = spec.map(played).unwrap_or_default();
            let s = spawn_with_variants(Duration::from_millis(300), variants, |_| {}).await;
            futures::future::join_all(Vendor::ALL.map(|v| lifecycle(&s, v))).await;
            (spec, listing(&s).await)
        });
    let results = futures::future::join_all(runs).await;
    let (_, (baseline, errors)) = &results[0];
    assert_eq!(*errors, json!([]));
    assert_eq!(
        baseline.len(),
        snapgate::domain::ProviderKind::ALL.len(),
        "every provider lists: {baseline:?}"
    );
    for (spec, (listed, errors)) in &results[1..] {
        assert_eq!(*errors, json!([]), "{spec:?}");
        assert_eq!(
            listed, baseline,
            "{spec:?} lists what the default reading lists"
        );
    }
}

/// Item 1: a Syminet restore cannot be observed; the operation says so and is reported done
/// only after the configured settle time.
#[tokio::test]
async fn a_syminet_restore_is_assumed_done_after_the_settle_time_and_says_so() {
    let s = spawn_with_variants(
        Duration::from_millis(200),
        played("syminet.restore_secs=2"),
        |c| {
            c.providers.set(
                snapgate::domain::ProviderKind::Syminet,
                "restore_settle_secs",
                3,
            )
        },
    )
    .await;
    let slice = s.sim.sources(Vendor::Syminet)[0].clone();
    let id = created(&s, Vendor::Syminet, &slice, "before-restore").await;
    let started = Instant::now();
    let restore = accepted(
        s.app
            .post(&format!("/v1/snapshots/{id}/restore"), &s.token, &json!({}))
            .await,
        "restore",
    )
    .await;
    let op = &restore["operation"];
    assert_eq!(op["completion"], "assumed", "{op}");
    let note = op["completion_note"].as_str().unwrap();
    assert!(note.contains("3 s"), "{note}");
    // Syminet is still overwriting the slice: it refuses a snapshot of it meanwhile.
    let body = json!({"account": "syminet", "source_id": slice, "name": "too-early"});
    let resp = s.app.post("/v1/snapshots", &s.token, &body).await;
    assert_eq!(resp.status(), 409, "{}", resp.text().await.unwrap());

    let op = settle(&s.app, &s.token, op).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    assert_eq!(op["completion"], "assumed");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "reported done after {:?}, before the settle time",
        started.elapsed()
    );
    // Once reported done, the slice is usable.
    created(&s, Vendor::Syminet, &slice, "after-restore").await;
}

/// Item 2: when the per-slice list shows snapshots still being taken, a create is not done
/// before the snapshot is.
#[tokio::test]
async fn a_syminet_create_is_done_only_when_the_snapshot_is_finished() {
    let delay = Duration::from_millis(1500);
    let s = spawn_with_variants(
        delay,
        played("syminet.slice_list_shows_in_progress"),
        |_| {},
    )
    .await;
    let slice = s.sim.sources(Vendor::Syminet)[1].clone();
    let started = Instant::now();
    let body = json!({"account": "syminet", "source_id": slice, "name": "in-flight"});
    let op = accepted(s.app.post("/v1/snapshots", &s.token, &body).await, "create").await;
    let id = op["operation"]["id"].as_str().unwrap().to_owned();
    let mut seen_creating = false;
    let done = loop {
        let op = get_json(&s, &format!("/v1/operations/{id}")).await;
        if op["state"] != "running" {
            break op;
        }
        if let Some(snapshot) = op["snapshot_id"].as_str() {
            let asked = started.elapsed();
            let snap = get_json(&s, &format!("/v1/snapshots/{snapshot}")).await;
            // Well before Syminet can have finished, the snapshot is `creating`, never
            // `available` (near the end it may finish between the two reads).
            if asked + Duration::from_millis(300) < delay {
                assert_eq!(snap["status"], "creating", "{snap}");
                seen_creating = true;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(
        started.elapsed() >= delay - Duration::from_millis(100),
        "done after {:?}, before Syminet finished the snapshot",
        started.elapsed()
    );
    assert!(
        seen_creating,
        "the snapshot was named while it was being taken"
    );
}

/// Item 3: a Hyperstack that caps `pageSize` below what was asked still lists everything.
#[tokio::test]
async fn a_hyperstack_page_cap_drops_nothing() {
    let s = spawn_with_variants(
        Duration::from_millis(50),
        played("hyperstack.page_cap=1"),
        |_| {},
    )
    .await;
    let page = get_json(&s, "/v1/snapshots?account=hyperstack").await;
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"llm-node-pre-upgrade") && names.contains(&"trainer-weekly"));
    let pages = s
        .sim
        .requests(Some(Vendor::Hyperstack))
        .iter()
        .filter(|r| r.path == "/core/snapshots")
        .count();
    assert!(pages >= 2, "walked {pages} capped pages");
}

/// Item 4: an Oktawave whose `pageNumber` counts from 0 is listed whole, once.
#[tokio::test]
async fn an_oktawave_counting_pages_from_zero_is_listed_whole() {
    let s = spawn_with_variants(
        Duration::from_millis(50),
        played("oktawave.page_base=0"),
        |_| {},
    )
    .await;
    let page = get_json(&s, "/v1/snapshots?account=oktawave").await;
    let mut names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["db-01-nightly", "web-01-before-upgrade", "web-01-weekly"]
    );
}

/// Item 5: a 429 without `Retry-After` holds for the vendor's documented window; Hostinger,
/// which blocks by address, holds every account behind the gateway's address.
#[tokio::test]
async fn a_429_without_retry_after_holds_for_the_vendor_window_and_hostinger_holds_its_address() {
    let s = spawn_with_variants(
        Duration::from_millis(50),
        played("429-without-retry-after"),
        |_| {},
    )
    .await;
    let once = Fault {
        rate_limit_retry_after: Some(1),
        times: Some(1),
        ..Fault::default()
    };
    s.sim.set_fault(Vendor::Hyperstack, once.clone());
    let resp = s.app.get("/v1/snapshots/hyperstack:1402", &s.token).await;
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (55..=60).contains(&wait),
        "Hyperstack's one-minute window, not {wait}"
    );
    assert_problem(resp, 429, "provider_rate_limited").await;
    s.sim.clear_requests();
    let resp = s.app.get("/v1/snapshots/hyperstack:1402", &s.token).await;
    assert_problem(resp, 429, "provider_rate_limited").await;
    assert!(s.sim.requests(Some(Vendor::Hyperstack)).is_empty(), "held");

    // A second Hostinger account (other credentials) behind the same address.
    let body = json!({"id": "hostinger-b", "provider": "hostinger",
                      "credentials": {"token": "another-hostinger-token"}});
    assert_eq!(
        s.app.post("/v1/accounts", &s.token, &body).await.status(),
        201
    );
    s.sim.set_fault(Vendor::Hostinger, once);
    let vm = &s.sim.sources(Vendor::Hostinger)[0];
    let resp = s
        .app
        .get(&format!("/v1/snapshots/hostinger:{vm}"), &s.token)
        .await;
    assert_problem(resp, 429, "provider_rate_limited").await;
    s.sim.clear_requests();
    let resp = s
        .app
        .get(&format!("/v1/snapshots/hostinger-b:{vm}"), &s.token)
        .await;
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 55, "{wait}");
    assert_problem(resp, 429, "provider_rate_limited").await;
    assert!(
        s.sim.requests(Some(Vendor::Hostinger)).is_empty(),
        "the other account is held too: Hostinger blocks the address"
    );
}

/// Item 6: a restore that makes a new VM or volume is done when that resource is, and fails
/// when it fails to build.
#[tokio::test]
async fn a_restore_whose_new_vm_or_volume_fails_to_build_fails() {
    let s = spawn_with_variants(
        Duration::from_millis(300),
        played("restore.new_resource_fails"),
        |_| {},
    )
    .await;
    for (vendor, what) in [(Vendor::Hyperstack, "VM"), (Vendor::Koyeb, "volume")] {
        let source = s.sim.sources(vendor)[0].clone();
        let id = created(&s, vendor, &source, &format!("restore-fails-{vendor}")).await;
        let body = json!({"new_name": format!("broken-{vendor}")});
        let restore = accepted(
            s.app
                .post(&format!("/v1/snapshots/{id}/restore"), &s.token, &body)
                .await,
            "restore",
        )
        .await;
        let op = &restore["operation"];
        assert_eq!(op["state"], "running", "{vendor}: {op}");
        assert_eq!(op["vendor_ref"]["kind"], "resource", "{op}");
        let op = settle(&s.app, &s.token, op).await;
        assert_eq!(op["state"], "failed", "{vendor}: {op}");
        let detail = op["error"]["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("restored {what}")), "{detail}");
    }
}

/// Item 7: an Oktawave snapshot listed before its ticket ends is `creating`, not `available`.
#[tokio::test]
async fn an_oktawave_snapshot_listed_before_its_ticket_ends_is_creating() {
    let s = spawn_with_variants(
        Duration::from_millis(1500),
        played("oktawave.snapshot_before_ticket"),
        |_| {},
    )
    .await;
    let instance = s.sim.sources(Vendor::Oktawave)[2].clone();
    let body = json!({"account": "oktawave", "source_id": instance, "name": "early-bird"});
    let op = accepted(s.app.post("/v1/snapshots", &s.token, &body).await, "create").await;
    let id = op["operation"]["id"].as_str().unwrap().to_owned();
    let polled = get_json(&s, &format!("/v1/operations/{id}")).await;
    assert_eq!(polled["state"], "running");
    let snapshot = polled["snapshot_id"]
        .as_str()
        .expect("named while the ticket runs");
    let snap = get_json(&s, &format!("/v1/snapshots/{snapshot}")).await;
    assert_eq!(snap["status"], "creating", "{snap}");
    let page = get_json(
        &s,
        &format!("/v1/snapshots?account=oktawave&source_id={instance}"),
    )
    .await;
    assert_eq!(page["items"][0]["status"], "creating", "{page}");

    let done = settle(&s.app, &s.token, &polled).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["snapshot_id"], snapshot);
    let snap = get_json(&s, &format!("/v1/snapshots/{snapshot}")).await;
    assert_eq!(snap["status"], "available", "{snap}");
}

/// Item 8: Koyeb snapshots moving to cold storage (`MIGRATING`) are available and listed as
/// such; a create is done only once its snapshot is `AVAILABLE`.
#[tokio::test]
async fn koyeb_migrating_snapshots_are_available() {
    let delay = Duration::from_millis(500);
    let s = spawn_with_variants(delay, played("koyeb.migrating"), |_| {}).await;
    let page = get_json(
        &s,
        "/v1/snapshots?account=koyeb&status=available&include=vendor",
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    for item in items {
        assert_eq!(item["status"], "available");
        assert_eq!(item["vendor"]["status"], "SNAPSHOT_STATUS_MIGRATING");
    }
    let started = Instant::now();
    let volume = s.sim.sources(Vendor::Koyeb)[2].clone();
    created(&s, Vendor::Koyeb, &volume, "migrates-first").await;
    assert!(
        started.elapsed() >= 2 * delay - Duration::from_millis(100),
        "done after {:?}, while still migrating",
        started.elapsed()
    );
}

/// Item 9: one Hostinger VM whose snapshot cannot be read is one per-item error; the other
/// VMs still list, with their region.
#[tokio::test]
async fn a_hostinger_vm_that_cannot_be_read_is_a_per_item_error() {
    let failing = "1268311";
    let s = spawn_with_variants(
        Duration::from_millis(50),
        played(&format!("hostinger.vm_read_fails={failing}")),
        |_| {},
    )
    .await;
    let page = get_json(&s, "/v1/snapshots?account=hostinger").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["source"]["id"], "1268054");
    assert_eq!(items[0]["region"], "fra", "from the VM's data centre");
    let errors = page["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{page}");
    let e = &errors[0];
    assert_eq!(
        (&e["account"], &e["source_id"], &e["status"], &e["code"]),
        (
            &json!("hostinger"),
            &json!(failing),
            &json!(502),
            &json!("upstream_error")
        ),
        "{e}"
    );
    let resp = s
        .app
        .get("/v1/snapshots?account=hostinger&strict=true", &s.token)
        .await;
    let p = assert_problem(resp, 502, "account_failed").await;
    assert_eq!(p["source_id"], failing);
}

/// Item 10: a Hyperstack answering 400 for a missing snapshot is read as gone.
#[tokio::test]
async fn a_hyperstack_400_for_a_missing_snapshot_is_404() {
    let s = spawn_with_variants(
        Duration::from_millis(50),
        played("hyperstack.not_found_400"),
        |_| {},
    )
    .await;
    let resp = s.app.get("/v1/snapshots/hyperstack:999999", &s.token).await;
    assert_problem(resp, 404, "snapshot_not_found").await;
}
