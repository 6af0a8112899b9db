//! Snapshot policies through the public API, on the simulator: one snapshot per slot and
//! source (also with a replica failing and killed mid-run, on PostgreSQL), retention pruning
//! only what the policy made, missed slots run once, a failing vendor recorded and pruning
//! nothing, and the checks of the policy itself.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use snapgate::{
    simulator::{self, SimulatorConfig, Vendor},
    store::faulty::{FaultPlan, Faulty},
};

use crate::{
    helpers::*,
    lifecycle::{add_simulator_accounts, settle, spawn_with_simulator_and, spawn_with_store},
    store_contract::TestDatabase,
};

/// The runner (and the reconciler) paced for a test: slots of a second run at once.
fn fast(c: &mut snapgate::Config) {
    c.policies.enabled = true;
    c.policies.tick_ms = 100;
    c.policies.check_ms = 100;
    c.policies.jitter_secs = 0;
    c.policies.claim_lease_secs = 1;
    c.reconciler.first_check_ms = 100;
}

async fn create_policy(app: &TestApp, t: &str, body: Value) -> Value {
    let resp = app.post("/v1/policies", t, &body).await;
    let status = resp.status();
    let policy: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{policy}");
    policy
}

async fn runs(app: &TestApp, t: &str, id: &str) -> Vec<Value> {
    let page = json_of(
        app.get(&format!("/v1/policies/{id}/runs?page_size=200"), t)
            .await,
    )
    .await;
    page["items"].as_array().unwrap().clone()
}

/// Waits until the policy has `n` finished runs; its runs, newest first.
async fn finished_runs(app: &TestApp, t: &str, id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = runs(app, t, id).await;
        if all.iter().filter(|r| r["state"] != "running").count() >= n {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} runs finished: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pauses the policy and waits for its runs in progress to finish; all its runs.
async fn pause_and_drain(app: &TestApp, t: &str, id: &str) -> Vec<Value> {
    let paused = app
        .patch(&format!("/v1/policies/{id}"), t, &json!({"enabled": false}))
        .await;
    assert_eq!(paused.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = runs(app, t, id).await;
        if all.iter().all(|r| r["state"] != "running") {
            return all;
        }
        assert!(Instant::now() < deadline, "runs never finished: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The snapshots of `source` the vendor holds whose name the policy made, by name, with
/// how many of each (deleted ones excluded once their delete has finished).
async fn at_vendor(
    app: &TestApp,
    t: &str,
    account: &str,
    source: &str,
    policy: &str,
) -> HashMap<String, usize> {
    let page = json_of(
        app.get(
            &format!("/v1/snapshots?account={account}&source_id={source}&page_size=200"),
            t,
        )
        .await,
    )
    .await;
    assert_eq!(page["errors"], json!([]), "{page}");
    let mut names = HashMap::new();
    for item in page["items"].as_array().unwrap() {
        let name = item["name"].as_str().unwrap_or_default();
        if name.starts_with(policy) {
            *names.entry(name.to_owned()).or_insert(0) += 1;
        }
    }
    names
}

/// Waits for every prune's delete operation to end.
async fn settle_prunes(app: &TestApp, t: &str, runs: &[Value]) -> usize {
    let mut pruned = 0;
    for run in runs {
        for p in run["pruned"].as_array().unwrap() {
            assert!(p["error"].is_null(), "a prune failed: {p}");
            let op = settle(app, t, &json!({"id": p["operation_id"]})).await;
            assert_eq!(op["state"], "succeeded", "{op}");
            pruned += 1;
        }
    }
    pruned
}

async fn events_of(app: &TestApp, t: &str, kind: &str) -> Vec<Value> {
    let page = json_of(
        app.get(&format!("/v1/events?type={kind}&page_size=200"), t)
            .await,
    )
    .await;
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_one_second_policy_makes_one_snapshot_per_slot_and_keeps_the_last_two() {
    let s = spawn_with_simulator_and(Duration::from_millis(50), fast).await;
    let (app, t) = (&s.app, s.token.as_str());
    let sources = s.sim.sources(Vendor::Koyeb);
    let policy = create_policy(
        app,
        t,
        json!({
            "account": "koyeb", "source_ids": [sources[0]],
            "schedule": {"interval_secs": 1}, "retention": {"keep_last": 2},
        }),
    )
    .await;
    let id = policy["id"].as_str().unwrap();
    assert!(policy["next_run_at"].is_string(), "{policy}");
    finished_runs(app, t, id, 4).await;
    let all = pause_and_drain(app, t, id).await;

    // One run per slot, each of which made exactly one snapshot.
    let slots: BTreeSet<&str> = all.iter().map(|r| r["slot"].as_str().unwrap()).collect();
    assert_eq!(slots.len(), all.len(), "two runs for one slot: {all:?}");
    for run in &all {
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["targets"].as_array().unwrap().len(), 1);
        assert_eq!(run["targets"][0]["state"], "succeeded", "{run}");
    }
    // Retention pruned all but the two newest, each pruned once and only after its run.
    let pruned = settle_prunes(app, t, &all).await;
    assert_eq!(pruned, all.len() - 2, "{all:?}");
    let names = at_vendor(app, t, "koyeb", &sources[0], id).await;
    let newest: BTreeSet<String> = all[..2]
        .iter()
        .map(|r| r["targets"][0]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.keys().cloned().collect::<BTreeSet<_>>(), newest);
    assert!(names.values().all(|n| *n == 1), "{names:?}");

    // The log says so, and the policy shows its last runs.
    assert_eq!(events_of(app, t, "snapshot.pruned").await.len(), pruned);
    assert_eq!(
        events_of(app, t, "policy.run_succeeded").await.len(),
        all.len()
    );
    let shown = json_of(app.get(&format!("/v1/policies/{id}"), t).await).await;
    assert_eq!(shown["last_runs"][0]["id"], all[0]["id"], "{shown}");
    assert!(shown["next_run_at"].is_null(), "paused: {shown}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("snapgate_policy_runs_total{outcome=\"succeeded\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn slots_missed_while_no_replica_could_run_them_run_once() {
    let plan = Arc::new(FaultPlan::default());
    let wrap_plan = plan.clone();
    let s = spawn_with_store(
        Duration::from_millis(20),
        Default::default(),
        fast,
        move |store| Faulty::wrap(store, wrap_plan),
    )
    .await;
    let (app, t) = (&s.app, s.token.as_str());
    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    let policy = create_policy(
        app,
        t,
        json!({"account": "koyeb", "source_ids": [source], "schedule": {"interval_secs": 1}}),
    )
    .await;
    let id = policy["id"].as_str().unwrap();
    // From now the store refuses the runner's next 25 looks (4.5 s at 100 ms): as if every
    // replica were down for three slots or more.
    plan.fail("due_policies", 0, 45);
    let first_slot =
        chrono::DateTime::parse_from_rfc3339(policy["next_slot"].as_str().unwrap()).unwrap();
    finished_runs(app, t, id, 1).await;
    let all = pause_and_drain(app, t, id).await;
    assert!(
        plan.failed("due_policies") >= 40,
        "the outage did not happen"
    );
    let oldest = all.last().unwrap();
    let oldest_slot =
        chrono::DateTime::parse_from_rfc3339(oldest["slot"].as_str().unwrap()).unwrap();
    // The slots passed during the outage were not each run: the first run is for the latest.
    assert!(
        oldest_slot - first_slot >= chrono::TimeDelta::seconds(2),
        "missed slots were run one by one: first slot {first_slot}, runs {all:?}"
    );
    let names = at_vendor(app, t, "koyeb", &source, id).await;
    assert_eq!(names.len(), all.len(), "{names:?} {all:?}");
}

#[tokio::test]
async fn a_failing_vendor_fails_the_run_says_so_and_prunes_nothing() {
    let s = spawn_with_simulator_and(Duration::from_millis(20), fast).await;
    let (app, t) = (&s.app, s.token.as_str());
    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    let policy = create_policy(
        app,
        t,
        json!({
            "account": "koyeb", "source_ids": [source],
            "schedule": {"interval_secs": 1}, "retention": {"keep_last": 1},
        }),
    )
    .await;
    let id = policy["id"].as_str().unwrap();
    finished_runs(app, t, id, 1).await;
    // The vendor now refuses the account's credentials.
    let broken = app
        .patch(
            "/v1/accounts/koyeb",
            t,
            &json!({"credentials": {"token": "wrong-token"}}),
        )
        .await;
    assert_eq!(broken.status(), 200);
    let before = runs(app, t, id).await.len();
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let all = runs(app, t, id).await;
        if let Some(f) = all.iter().find(|r| r["state"] == "failed") {
            break f.clone();
        }
        assert!(Instant::now() < deadline, "no run failed: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(runs(app, t, id).await.len() > before);
    assert_eq!(failed["targets"][0]["state"], "failed", "{failed}");
    assert_eq!(
        failed["targets"][0]["error"]["code"], "provider_auth_failed",
        "{failed}"
    );
    assert_eq!(failed["pruned"], json!([]), "{failed}");
    let events = events_of(app, t, "policy.run_failed").await;
    assert!(!events.is_empty());
    assert_eq!(events[0]["data"]["policy_id"], id);

    // Repaired: the snapshot made before the failure is still there (nothing was pruned on
    // the failing runs' account of it).
    let fixed = s.sim.credentials(Vendor::Koyeb)[0].1.clone();
    let repaired = app
        .patch(
            "/v1/accounts/koyeb",
            t,
            &json!({"credentials": {"token": fixed}}),
        )
        .await;
    assert_eq!(repaired.status(), 200);
    let all = pause_and_drain(app, t, id).await;
    let oldest = all.last().unwrap();
    assert_eq!(oldest["state"], "succeeded", "{oldest}");
    let failed_runs = all.iter().filter(|r| r["state"] == "failed").count();
    assert!(failed_runs >= 1);
    for run in all.iter().filter(|r| r["state"] == "failed") {
        assert_eq!(run["pruned"], json!([]), "a failed run pruned: {run}");
    }
}

#[tokio::test]
async fn preview_says_what_the_next_run_creates_and_what_retention_would_prune() {
    let s = spawn_with_simulator_and(Duration::from_millis(20), fast).await;
    let (app, t) = (&s.app, s.token.as_str());
    let source = s.sim.sources(Vendor::Koyeb)[0].clone();
    let policy = create_policy(
        app,
        t,
        json!({
            "account": "koyeb", "source_ids": [source], "name_template": "nightly-{source}-{slot}",
            "schedule": {"interval_secs": 1}, "retention": {"keep_last": 1},
        }),
    )
    .await;
    let id = policy["id"].as_str().unwrap();
    finished_runs(app, t, id, 2).await;
    let all = pause_and_drain(app, t, id).await;
    // The prunes' deletes finished too, so the vendor's list below is settled.
    settle_prunes(app, t, &all).await;
    // Resumed (next slot after now), then previewed.
    let resumed = app
        .patch(
            &format!("/v1/policies/{id}"),
            t,
            &json!({"enabled": true, "schedule": {"interval_secs": 3600}}),
        )
        .await;
    assert_eq!(resumed.status(), 200);
    let preview = json_of(
        app.post(&format!("/v1/policies/{id}/preview"), t, &json!({}))
            .await,
    )
    .await;
    let slot = preview["slot"].as_str().unwrap();
    let compact: String = chrono::DateTime::parse_from_rfc3339(slot)
        .unwrap()
        .format("%Y%m%dt%H%M%Sz")
        .to_string();
    assert_eq!(
        preview["creates"][0]["name"],
        format!("nightly-{source}-{compact}"),
        "{preview}"
    );
    let decided = preview["retention"][0]["snapshots"].as_array().unwrap();
    assert_eq!(decided[0]["snapshot_id"], "(next)", "{preview}");
    assert!(decided[0]["reasons"]
        .as_array()
        .unwrap()
        .contains(&json!("last")));
    // Every snapshot the policy holds would be pruned once the next one succeeds.
    assert!(decided.len() >= 2, "{preview}");
    assert!(
        decided[1..].iter().all(|d| d["reasons"] == json!([])),
        "{preview}"
    );
    // And nothing was done: the vendor still has them.
    let names = at_vendor(app, t, "koyeb", &source, "nightly-").await;
    assert_eq!(names.len(), decided.len() - 1, "{names:?}");
}

#[tokio::test]
async fn a_policy_is_checked_before_it_is_stored() {
    let s = spawn_with_simulator_and(Duration::from_millis(20), |_| {}).await;
    let (app, t) = (&s.app, s.token.as_str());
    let ok = json!({"account": "koyeb", "source_ids": ["v1"], "schedule": {"interval_secs": 60}});
    let cases = [
        (json!({"schedule": {"cron": "61 * * * *"}}), "schedule.cron"),
        (
            json!({"schedule": {"cron": "0 3 * * *", "time_zone": "Mars/Olympus"}}),
            "schedule.time_zone",
        ),
        (
            json!({"schedule": {"interval_secs": 0}}),
            "schedule.interval_secs",
        ),
        (
            json!({"retention": {"keep_within": "3w"}}),
            "retention.keep_within",
        ),
        (json!({"retention": {"keep_last": 0}}), "retention"),
        (json!({"name_template": "{policy}-{when}"}), "name_template"),
        (json!({"source_ids": []}), "source_ids"),
        (json!({"source_ids": ["a", "a"]}), "source_ids"),
        (json!({"account": "nobody"}), "account"),
    ];
    for (change, field) in cases {
        let mut body = ok.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let problem = assert_problem(
            app.post("/v1/policies", t, &body).await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    // Scopes: reading needs policies:read, writing policies:write.
    let reader = token("acme", "policies:read");
    assert_problem(
        app.post("/v1/policies", &reader, &ok).await,
        403,
        "insufficient_scope",
    )
    .await;
    let created = create_policy(app, t, json!({"account": "koyeb", "source_ids": ["v1"], "schedule": {"cron": "0 3 * * *", "time_zone": "Europe/Warsaw"}})).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        json_of(app.get(&format!("/v1/policies/{id}"), &reader).await).await["id"],
        id
    );
    // Another tenant cannot see it; an id that cannot exist is a 404 too.
    let other = token("globex", ALL_SCOPES);
    assert_problem(
        app.get(&format!("/v1/policies/{id}"), &other).await,
        404,
        "policy_not_found",
    )
    .await;
    assert_problem(
        app.get("/v1/policies/pol_nope", t).await,
        404,
        "policy_not_found",
    )
    .await;
    // Deleted: gone, with its runs.
    assert_eq!(
        app.delete(&format!("/v1/policies/{id}"), t).await.status(),
        204
    );
    assert_problem(
        app.get(&format!("/v1/policies/{id}/runs"), t).await,
        404,
        "policy_not_found",
    )
    .await;
}

/// Two replicas on one PostgreSQL database run one policy; one of them cannot record what it
/// did (its store fails every save of a run, as if it died right after each vendor call) and
/// is then killed. Every slot still runs once and makes exactly one snapshot per source.
#[tokio::test]
async fn two_replicas_one_failing_then_killed_make_one_snapshot_per_slot_and_source() {
    let Some(db) = TestDatabase::create("policy replicas").await else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = simulator::start(
        listener,
        SimulatorConfig {
            async_delay: Duration::from_millis(50),
            ..SimulatorConfig::default()
        },
    )
    .await
    .unwrap();
    let spawn = |plan: Option<Arc<FaultPlan>>| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir);
        snapgate::demo::point_at_simulator(&mut config, &sim);
        fast(&mut config);
        config.store.url = db.url.clone();
        config.store.max_connections = 4;
        spawn_config_wrapping(config, dir, move |store| match plan {
            Some(plan) => Faulty::wrap(store, plan),
            None => store,
        })
    };
    let plan = Arc::new(FaultPlan::default());
    plan.fail("save_run", 0, u32::MAX);
    // The failing replica runs alone first, so it surely takes part mid-run.
    let doomed = spawn(Some(plan.clone())).await;
    let t = token("acme", ALL_SCOPES);
    add_simulator_accounts(&doomed, &sim, &t).await;
    let sources = sim.sources(Vendor::Koyeb);
    let policy = create_policy(
        &doomed,
        &t,
        json!({
            "account": "koyeb", "source_ids": [sources[0], sources[1]],
            "schedule": {"interval_secs": 1},
        }),
    )
    .await;
    let id = policy["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while plan.failed("save_run") == 0 {
        assert!(
            Instant::now() < deadline,
            "the failing replica never worked a run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then a healthy replica joins, and a second later the failing one is killed.
    let survivor = spawn(None).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(doomed);
    finished_runs(&survivor, &t, id, 4).await;
    let all = pause_and_drain(&survivor, &t, id).await;

    let slots: BTreeSet<&str> = all.iter().map(|r| r["slot"].as_str().unwrap()).collect();
    assert_eq!(slots.len(), all.len(), "two runs for one slot: {all:?}");
    for source in &sources[..2] {
        let names = at_vendor(&survivor, &t, "koyeb", source, id).await;
        assert!(
            names.values().all(|n| *n == 1),
            "a slot made two snapshots of {source}: {names:?}"
        );
        // Every run made its snapshot of this source, and nothing else was made.
        let made: BTreeSet<String> = all
            .iter()
            .flat_map(|r| r["targets"].as_array().unwrap().clone())
            .filter(|tg| tg["source_id"] == json!(source))
            .map(|tg| {
                assert_eq!(tg["state"], "succeeded", "{tg}");
                tg["name"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(names.keys().cloned().collect::<BTreeSet<_>>(), made);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_provider_keeping_one_snapshot_per_source_is_replaced_and_says_so() {
    let s = spawn_with_simulator_and(Duration::from_millis(20), fast).await;
    let (app, t) = (&s.app, s.token.as_str());
    let vm = s.sim.sources(Vendor::Hostinger)[0].clone();
    let policy = create_policy(
        app,
        t,
        json!({
            "account": "hostinger", "source_ids": [vm],
            "schedule": {"interval_secs": 1}, "retention": {"keep_last": 5},
        }),
    )
    .await;
    let id = policy["id"].as_str().unwrap();
    let notes = policy["notes"].to_string();
    assert!(notes.contains("replaces the previous one"), "{policy}");
    finished_runs(app, t, id, 3).await;
    let all = pause_and_drain(app, t, id).await;
    for run in &all {
        assert_eq!(run["state"], "succeeded", "{run}");
    }
    // Every snapshot but the newest was replaced by the vendor, whatever keep_last says, and
    // recorded so: nothing was deleted by the gateway.
    let pruned: Vec<&Value> = all
        .iter()
        .flat_map(|r| r["pruned"].as_array().unwrap())
        .collect();
    assert_eq!(pruned.len(), all.len() - 1, "{all:?}");
    for p in pruned {
        assert_eq!(p["reason"], "replaced_by_vendor", "{p}");
        assert!(p["operation_id"].is_null(), "{p}");
    }
}

#[tokio::test]
async fn runs_are_spread_over_the_jitter_and_never_before_their_slot() {
    let s = spawn_with_simulator_and(Duration::from_millis(20), |c| {
        c.policies.jitter_secs = 60;
    })
    .await;
    let (app, t) = (&s.app, s.token.as_str());
    let mut offsets = BTreeSet::new();
    for _ in 0..12 {
        let policy = create_policy(
            app,
            t,
            json!({"account": "koyeb", "source_ids": ["v"], "schedule": {"cron": "0 0 * * *"}}),
        )
        .await;
        let at =
            |k: &str| chrono::DateTime::parse_from_rfc3339(policy[k].as_str().unwrap()).unwrap();
        let offset = (at("next_run_at") - at("next_slot")).num_seconds();
        assert!((0..=60).contains(&offset), "{policy}");
        offsets.insert(offset);
    }
    // Twelve policies sharing midnight do not all start at once.
    assert!(offsets.len() > 3, "{offsets:?}");
    // An interval shorter than four jitters is jittered by at most a quarter of it.
    let short = create_policy(
        app,
        t,
        json!({"account": "koyeb", "source_ids": ["v"], "schedule": {"interval_secs": 8}}),
    )
    .await;
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(short[k].as_str().unwrap()).unwrap();
    assert!(
        (at("next_run_at") - at("next_slot")).num_seconds() <= 2,
        "{short}"
    );
}

#[tokio::test]
async fn every_providers_sources_are_the_ones_its_simulator_holds_or_a_501() {
    let s = spawn_with_simulator_and(Duration::from_millis(20), |_| {}).await;
    let (app, t) = (&s.app, s.token.as_str());
    let providers = json_of(app.get("/v1/providers", t).await).await;
    for vendor in Vendor::ALL {
        let declared = providers["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == vendor.as_str())
            .unwrap_or_else(|| panic!("{vendor:?} not in {providers}"));
        let (status, body) = account_sources(app, t, vendor.as_str()).await;
        if declared["capabilities"]["list_sources"] == true {
            assert_eq!(status, 200, "{vendor:?}: {body}");
            let listed: BTreeSet<String> = listed_sources(&body)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let held: BTreeSet<String> = s.sim.sources(vendor).into_iter().collect();
            assert_eq!(listed, held, "{vendor:?}");
        } else {
            assert_eq!(status, 501, "{vendor:?}: {body}");
        }
    }
}

#[tokio::test]
async fn a_policy_over_all_sources_lists_them_each_run_and_fails_whole_when_it_cannot() {
    let s = spawn_with_simulator_and(Duration::from_millis(20), fast).await;
    let (app, t) = (&s.app, s.token.as_str());
    let sources: BTreeSet<String> = s.sim.sources(Vendor::Hetzner).into_iter().collect();
    assert!(sources.len() >= 3);
    let both = app
        .post(
            "/v1/policies",
            t,
            &json!({"account": "hetzner", "all_sources": true, "source_ids": ["42"],
                    "schedule": {"interval_secs": 1}}),
        )
        .await;
    assert_eq!(both.status(), 422, "all_sources with named sources");
    let policy = create_policy(
        app,
        t,
        json!({
            "account": "hetzner", "all_sources": true,
            "schedule": {"interval_secs": 1}, "retention": {"keep_last": 1},
        }),
    )
    .await;
    assert_eq!(policy["all_sources"], true);
    assert_eq!(policy["source_ids"], json!([]));
    let id = policy["id"].as_str().unwrap();
    let preview = json_of(
        app.post(&format!("/v1/policies/{id}/preview"), t, &json!({}))
            .await,
    )
    .await;
    let planned: BTreeSet<String> = preview["creates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(planned, sources, "{preview}");

    finished_runs(app, t, id, 2).await;
    let all = pause_and_drain(app, t, id).await;
    for run in &all {
        assert_eq!(run["state"], "succeeded", "{run}");
        assert!(run["sources_listed_at"].is_string(), "{run}");
        let targets: BTreeSet<String> = run["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["source_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            targets, sources,
            "each run snapshots every source once: {run}"
        );
    }
    settle_prunes(app, t, &all).await;
    for source in &sources {
        let held = at_vendor(app, t, "hetzner", source, id).await;
        assert_eq!(held.len(), 1, "keep_last 1 of {source}: {held:?}");
        assert!(held.values().all(|n| *n == 1), "{held:?}");
    }

    // The vendor now refuses the credentials: the listing fails, so the run fails as a
    // whole, saying why, with nothing created or pruned.
    let broken = app
        .patch(
            "/v1/accounts/hetzner",
            t,
            &json!({"credentials": {"token": "wrong-token"}}),
        )
        .await;
    assert_eq!(broken.status(), 200);
    // A preview lists the sources too: it answers the provider's refusal, as its document says.
    let refused = app
        .post(&format!("/v1/policies/{id}/preview"), t, &json!({}))
        .await;
    assert_eq!(refused.status(), 502);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "provider_auth_failed", "{problem}");
    let doc = snapgate::api::openapi::document();
    let documented = &doc["paths"]["/v1/policies/{policy}/preview"]["post"]["responses"];
    assert!(documented.get("502").is_some(), "{documented}");
    let resumed = app
        .patch(&format!("/v1/policies/{id}"), t, &json!({"enabled": true}))
        .await;
    assert_eq!(resumed.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let runs = runs(app, t, id).await;
        if let Some(f) = runs.iter().find(|r| r["state"] == "failed") {
            break f.clone();
        }
        assert!(Instant::now() < deadline, "no run failed: {runs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["error"]["code"], "provider_auth_failed", "{failed}");
    assert_eq!(failed["targets"], json!([]), "{failed}");
    assert_eq!(failed["pruned"], json!([]), "{failed}");
    assert!(failed["sources_listed_at"].is_null(), "{failed}");
    let events = events_of(app, t, "policy.run_failed").await;
    assert!(
        events
            .iter()
            .any(|e| e["data"]["run"]["error"]["code"] == "provider_auth_failed"),
        "{events:?}"
    );
}
