//! The merged list across accounts: order, one cursor, filters, partial failures, tenants.

use snapgate::domain::ProviderKind;
use std::{collections::HashMap, time::Duration};

use serde_json::{json, Value};
use wiremock::{matchers::path, Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::*;

/// A Hyperstack stand-in serving a different snapshot set per `api_key`, paged like the vendor.
struct PagedVendor {
    sets: HashMap<String, Vec<Value>>,
}

impl Respond for PagedVendor {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let key = req
            .headers
            .get("api_key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let page: usize = q["page"].parse().unwrap();
        let size: usize = q["pageSize"].parse().unwrap();
        match key {
            "fail-500" => return ResponseTemplate::new(500).set_body_json(json!({"message": "Internal Server Error"})),
            "limited" => return ResponseTemplate::new(429).insert_header("retry-after", "30"),
            "slow" => return ResponseTemplate::new(200).set_delay(Duration::from_secs(3)),
            // The second page (asked because a `count` equal to its page proves nothing) is
            // empty and quick.
            k if k.starts_with("lag-") && page > 1 => {
                return ResponseTemplate::new(200).set_body_json(
                    json!({"status": true, "message": "", "snapshots": [], "count": 0, "page": page, "page_size": 100}),
                )
            }
            k if k.starts_with("lag-") => {
                return ResponseTemplate::new(200)
                    .set_body_json(json!({"status": true, "message": "", "snapshots": [snapshot(9, 1, k, 1, "COMPLETE")], "count": 1, "page": 1, "page_size": 100}))
                    .set_delay(Duration::from_millis(300))
            }
            _ => {}
        }
        let all = self.sets.get(key).cloned().unwrap_or_default();
        let items: Vec<Value> = all.into_iter().skip((page - 1) * size).take(size).collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "status": true, "message": "", "snapshots": items, "count": items.len(), "page": page, "page_size": size
        }))
    }
}

fn snapshot(id: u64, vm: u64, name: &str, minute: u64, status: &str) -> Value {
    // Several snapshots share a timestamp so ties are ordered by id.
    json!({"id": id, "name": name, "description": "", "vm_id": vm, "region_id": 1, "status": status,
           "is_image": false, "size": 10, "labels": [],
           "created_at": format!("2025-01-01T{:02}:{:02}:00", minute / 60, minute % 60), "updated_at": "2025-01-01T00:00:00"})
}

async fn setup(
    sets: HashMap<String, Vec<Value>>,
    keys: &[(&str, &str)],
) -> (MockServer, TestApp, String) {
    let mock = MockServer::start().await;
    Mock::given(path("/core/snapshots"))
        .respond_with(PagedVendor { sets })
        .mount(&mock)
        .await;
    let uri = mock.uri();
    let app = spawn_app_with(|c| {
        c.providers.set(ProviderKind::Hyperstack, "base_url", uri);
        c.listing.account_timeout_ms = 1000;
        // These accounts stand for separate callers: one's 429 must not hold the others, as
        // it would for accounts sharing the gateway's address (Hyperstack limits per IP).
        c.upstream.address_rate_limited_providers = Some(Default::default());
    })
    .await;
    let t = token("acme", ALL_SCOPES);
    for (id, key) in keys {
        let body = json!({"id": id, "provider": "hyperstack", "credentials": {"api_key": key}});
        assert_eq!(app.post("/v1/accounts", &t, &body).await.status(), 201);
    }
    (mock, app, t)
}

async fn walk(app: &TestApp, t: &str, query: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("/v1/snapshots?{query}");
        if let Some(tok) = &token {
            url += &format!("&page_token={tok}");
        }
        let resp = app.get(&url, t).await;
        assert_eq!(resp.status(), 200);
        let page: Value = resp.json().await.unwrap();
        pages += 1;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 100, "runaway paging");
    }
    (items, pages)
}

fn big_sets() -> HashMap<String, Vec<Value>> {
    let mut sets = HashMap::new();
    // 130 snapshots: two vendor pages of 100.
    sets.insert(
        "k-a".to_owned(),
        (0..130)
            .map(|i| {
                snapshot(
                    1000 + i,
                    1 + i % 3,
                    &format!("alpha-{i}"),
                    i / 2,
                    "COMPLETE",
                )
            })
            .collect(),
    );
    sets.insert(
        "k-b".to_owned(),
        (0..45)
            .map(|i| {
                snapshot(
                    2000 + i,
                    7,
                    &format!("Beta-{i}"),
                    i,
                    if i % 5 == 0 { "CREATING" } else { "COMPLETE" },
                )
            })
            .collect(),
    );
    sets
}

#[tokio::test]
async fn following_page_tokens_yields_every_snapshot_exactly_once_newest_first() {
    let (_mock, app, t) = setup(big_sets(), &[("a", "k-a"), ("b", "k-b")]).await;
    let (items, pages) = walk(&app, &t, "page_size=40").await;
    assert_eq!(items.len(), 175);
    assert_eq!(pages, 5);
    let ids: std::collections::HashSet<&str> =
        items.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 175, "no duplicates");
    for w in items.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let (ta, tb) = (
            a["created_at"].as_str().unwrap(),
            b["created_at"].as_str().unwrap(),
        );
        assert!(
            ta > tb || (ta == tb && a["id"].as_str() < b["id"].as_str()),
            "order broken at {a} / {b}"
        );
    }
    // Default page size is 50.
    let first: Value = app.get("/v1/snapshots", &t).await.json().await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 50);
    assert_eq!(first["errors"], json!([]));
}

#[tokio::test]
async fn filters_select_accounts_statuses_sources_and_names() {
    let (_mock, app, t) = setup(big_sets(), &[("a", "k-a"), ("b", "k-b")]).await;
    let (items, _) = walk(&app, &t, "account=b&page_size=200").await;
    assert_eq!(items.len(), 45);
    let (items, _) = walk(&app, &t, "status=creating").await;
    assert_eq!(items.len(), 9);
    assert!(items.iter().all(|s| s["status"] == "creating"));
    let (items, _) = walk(
        &app,
        &t,
        "status=creating&status=available&provider=hyperstack",
    )
    .await;
    assert_eq!(items.len(), 175);
    let (items, _) = walk(&app, &t, "source_id=7").await;
    assert_eq!(items.len(), 45);
    let (items, _) = walk(&app, &t, "name=BETA-1").await;
    assert_eq!(items.len(), 11, "Beta-1 and Beta-10..19, case-insensitive");
    assert_problem(
        app.get("/v1/snapshots?status=sleeping", &t).await,
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        app.get("/v1/snapshots?page_size=500", &t).await,
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        app.get("/v1/snapshots?color=red", &t).await,
        400,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn a_tampered_or_foreign_page_token_is_400() {
    let (_mock, app, t) = setup(big_sets(), &[("a", "k-a")]).await;
    let page: Value = app
        .get("/v1/snapshots?page_size=10", &t)
        .await
        .json()
        .await
        .unwrap();
    let token = page["next_page_token"].as_str().unwrap().to_owned();
    let mut bytes = token.clone().into_bytes();
    bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert_problem(
        app.get(
            &format!("/v1/snapshots?page_size=10&page_token={tampered}"),
            &t,
        )
        .await,
        400,
        "invalid_page_token",
    )
    .await;
    assert_problem(
        app.get("/v1/snapshots?page_token=garbage", &t).await,
        400,
        "invalid_page_token",
    )
    .await;
    // Bound to the filters and the tenant.
    assert_problem(
        app.get(&format!("/v1/snapshots?name=x&page_token={token}"), &t)
            .await,
        400,
        "invalid_page_token",
    )
    .await;
    let other = token_for("globex");
    assert_problem(
        app.get(&format!("/v1/snapshots?page_token={token}"), &other)
            .await,
        400,
        "invalid_page_token",
    )
    .await;
}

fn token_for(tenant: &str) -> String {
    crate::helpers::token(tenant, ALL_SCOPES)
}

#[tokio::test]
async fn failing_accounts_are_reported_beside_the_others_and_strict_mode_fails_the_list() {
    let mut sets = big_sets();
    sets.remove("k-a");
    let (_mock, app, t) = setup(
        sets,
        &[
            ("b", "k-b"),
            ("broken", "fail-500"),
            ("busy", "limited"),
            ("slow", "slow"),
        ],
    )
    .await;
    let started = std::time::Instant::now();
    let page: Value = app
        .get("/v1/snapshots?page_size=200", &t)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a slow account must not hold the page"
    );
    assert_eq!(page["items"].as_array().unwrap().len(), 45, "{page}");
    let errors = page["errors"].as_array().unwrap();
    let by_account: HashMap<&str, &Value> = errors
        .iter()
        .map(|e| (e["account"].as_str().unwrap(), e))
        .collect();
    assert_eq!(by_account.len(), 3);
    assert_eq!(by_account["broken"]["code"], "upstream_error");
    assert_eq!(by_account["broken"]["retryable"], true);
    assert_eq!(by_account["broken"]["provider"], "hyperstack");
    assert_eq!(by_account["busy"]["code"], "provider_rate_limited");
    assert_eq!(by_account["slow"]["code"], "upstream_timeout");
    let p = assert_problem(
        app.get("/v1/snapshots?strict=true", &t).await,
        502,
        "account_failed",
    )
    .await;
    assert!(p["account"].is_string());
}

#[tokio::test]
async fn another_tenants_accounts_never_appear() {
    let (_mock, app, t) = setup(big_sets(), &[("a", "k-a")]).await;
    let other = token_for("globex");
    let page: Value = app.get("/v1/snapshots", &other).await.json().await.unwrap();
    assert_eq!(page["items"], json!([]));
    assert_eq!(page["errors"], json!([]));
    let mine: Value = app
        .get("/v1/snapshots?page_size=1", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["items"][0]["account"], "a");
}

#[tokio::test]
async fn five_slow_accounts_cost_about_one_accounts_time() {
    let keys: Vec<(String, String)> = (0..5)
        .map(|i| (format!("slow-{i}"), format!("lag-{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = keys.iter().map(|(a, k)| (a.as_str(), k.as_str())).collect();
    let (_mock, app, t) = setup(HashMap::new(), &refs).await;
    let started = std::time::Instant::now();
    let page: Value = app.get("/v1/snapshots", &t).await.json().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    // Sequential would be >= 1.5 s; concurrent is ~0.3 s. Generous bound for a loaded machine.
    assert!(elapsed < Duration::from_millis(1000), "took {elapsed:?}");
}

mod simulated {
    //! The same list against all five simulated vendors.

    use std::{collections::HashSet, time::Duration};

    use serde_json::{json, Value};
    use snapgate::simulator::{Fault, Vendor};

    use super::walk;
    use crate::lifecycle::{settle, spawn_with_simulator};

    async fn create_settled(
        s: &crate::lifecycle::SimApp,
        vendor: Vendor,
        source: &str,
        name: &str,
    ) {
        let mut body = json!({"account": vendor.as_str(), "source_id": source, "name": name});
        if vendor == Vendor::Hostinger {
            body["replace_existing"] = json!(true);
        }
        let resp = s.app.post("/v1/snapshots", &s.token, &body).await;
        assert_eq!(resp.status(), 202, "{vendor:?}");
        let accepted: Value = resp.json().await.unwrap();
        let op = settle(&s.app, &s.token, &accepted["operation"]).await;
        assert_eq!(op["state"], "succeeded", "{op}");
    }

    #[tokio::test]
    async fn a_list_across_all_five_providers_pages_every_snapshot_exactly_once() {
        let s = spawn_with_simulator(Duration::from_millis(50)).await;
        // Syminet pages by 10: 12 more snapshots make its list span two vendor pages.
        let slices = s.sim.sources(Vendor::Syminet);
        for i in 0..12 {
            create_settled(&s, Vendor::Syminet, &slices[i % 3], &format!("bulk-{i:02}")).await;
        }
        for vendor in [
            Vendor::Hyperstack,
            Vendor::Koyeb,
            Vendor::Oktawave,
            Vendor::Hostinger,
        ] {
            for (i, source) in s.sim.sources(vendor).iter().enumerate() {
                create_settled(&s, vendor, source, &format!("bulk-{}-{i}", vendor.as_str())).await;
            }
        }
        let mut expected = HashSet::new();
        for vendor in Vendor::ALL {
            let page: Value = s
                .app
                .get(
                    &format!("/v1/snapshots?account={}&page_size=200", vendor.as_str()),
                    &s.token,
                )
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(page["next_page_token"], Value::Null);
            for item in page["items"].as_array().unwrap() {
                expected.insert(item["id"].as_str().unwrap().to_owned());
            }
        }
        assert!(expected.len() >= 30, "{}", expected.len());
        s.sim.clear_requests();
        let (items, pages) = walk(&s.app, &s.token, "page_size=7").await;
        let seen: Vec<String> = items
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect();
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(seen.len(), unique.len(), "no duplicates");
        assert_eq!(unique, expected, "no gaps");
        assert_eq!(pages, expected.len().div_ceil(7));
        let providers: HashSet<&str> = items
            .iter()
            .map(|i| i["provider"].as_str().unwrap())
            .collect();
        assert_eq!(providers.len(), snapgate::domain::ProviderKind::ALL.len());
        // One timestamp format from every provider: UTC, six fractional digits, so the
        // strings sort as the times do.
        for item in &items {
            let t = item["created_at"].as_str().unwrap_or_default();
            let fraction = t.split_once('.').map(|(_, f)| f).unwrap_or_default();
            assert!(
                t.len() == 27 && fraction.len() == 7 && fraction.ends_with('Z'),
                "{}: {t}",
                item["provider"]
            );
        }
        for w in items.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            let time = |v: &Value| {
                v["created_at"]
                    .as_str()
                    .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap())
            };
            let (ta, tb) = (time(a), time(b));
            let ordered = match (ta, tb) {
                (Some(x), Some(y)) => x > y || (x == y && a["id"].as_str() < b["id"].as_str()),
                (_, None) => true,
                (None, Some(_)) => false,
            };
            assert!(ordered, "order: {a} / {b}");
        }
        let second_pages = s
            .sim
            .requests(Some(Vendor::Syminet))
            .iter()
            .filter(|r| {
                r.path == "/images" && r.query.as_deref().is_some_and(|q| q.contains("page=2"))
            })
            .count();
        assert!(
            second_pages >= pages,
            "every gateway page walked Syminet's second page"
        );
    }

    #[tokio::test]
    async fn five_slow_vendors_cost_about_the_slowest_not_their_sum() {
        let s = spawn_with_simulator(Duration::from_millis(50)).await;
        // Warm the Oktawave token so every account makes its plain list calls only.
        let _ = s.app.get("/v1/snapshots", &s.token).await;
        for vendor in Vendor::ALL {
            s.sim.set_fault(
                vendor,
                Fault {
                    latency_ms: Some(250),
                    ..Fault::default()
                },
            );
        }
        s.sim.clear_requests();
        let started = std::time::Instant::now();
        let page: Value = s
            .app
            .get("/v1/snapshots", &s.token)
            .await
            .json()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(page["errors"], json!([]));
        let calls: Vec<usize> = Vendor::ALL
            .iter()
            .map(|v| s.sim.requests(Some(*v)).len())
            .collect();
        let sequential = Duration::from_millis(250 * calls.iter().sum::<usize>() as u64);
        // Hostinger lists its VMs, then their snapshots 4 at a time: its own chain is the slowest.
        assert!(
            elapsed < sequential / 2,
            "took {elapsed:?}; one after another would be {sequential:?} ({calls:?})"
        );
    }
}
