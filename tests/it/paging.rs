//! One paging convention for every collection: `page_size` + `page_token` → `next_page_token`
//! (`null` on the last page), each token bound to its tenant, collection and filters; and
//! filters that take several values repeat the parameter.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::lifecycle::spawn_with_simulator_and;

/// Follows `next_page_token` from `first` (a path with `page_size`), returning every item's
/// `key` in order and the number of pages.
async fn walk(app: &TestApp, t: &str, first: &str, key: &str) -> (Vec<String>, usize) {
    let (mut seen, mut pages) = (Vec::new(), 0);
    let mut url = first.to_owned();
    loop {
        let page = json_of(app.get(&url, t).await).await;
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item[key].as_str().unwrap().to_owned());
        }
        match page["next_page_token"].as_str() {
            Some(token) => {
                assert!(!page["items"].as_array().unwrap().is_empty(), "{page}");
                let sep = if first.contains('?') { '&' } else { '?' };
                url = format!("{first}{sep}page_token={token}");
            }
            None => {
                assert!(page["next_page_token"].is_null(), "{page}");
                return (seen, pages);
            }
        }
        assert!(pages < 50, "paging does not end");
    }
}

#[tokio::test]
async fn accounts_webhooks_and_operations_page_alike_each_item_once() {
    let s = spawn_with_simulator_and(Duration::from_millis(50), |c| {
        c.webhooks.allow_private_targets = true;
    })
    .await;
    let t = &s.token;

    // Accounts: one per vendor, by id, two per page.
    let (ids, pages) = walk(&s.app, t, "/v1/accounts?page_size=2", "id").await;
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), snapgate::domain::ProviderKind::ALL.len());
    assert_eq!(pages, ids.len().div_ceil(2));
    // A repeated filter selects several providers.
    let (two, _) = walk(
        &s.app,
        t,
        "/v1/accounts?provider=koyeb&provider=syminet&page_size=1",
        "id",
    )
    .await;
    assert_eq!(two, ["koyeb", "syminet"]);

    // Webhooks: oldest first.
    let mut made = Vec::new();
    for i in 0..3 {
        let hook = json_of(
            s.app
                .post(
                    "/v1/webhooks",
                    t,
                    &json!({"url": format!("http://127.0.0.1:9/{i}")}),
                )
                .await,
        )
        .await;
        made.push(hook["id"].as_str().unwrap().to_owned());
    }
    let (hooks, pages) = walk(&s.app, t, "/v1/webhooks?page_size=2", "id").await;
    assert_eq!(hooks, made);
    assert_eq!(pages, 2);

    // Operations: newest first, none twice, none missed.
    let source = s.sim.sources(snapgate::simulator::Vendor::Koyeb)[0].clone();
    let mut ops = Vec::new();
    for i in 0..5 {
        let accepted = json_of(
            s.app
                .post(
                    "/v1/snapshots",
                    t,
                    &json!({"account": "koyeb", "source_id": source, "name": format!("page-{i}")}),
                )
                .await,
        )
        .await;
        ops.push(accepted["operation"]["id"].as_str().unwrap().to_owned());
    }
    let (listed, pages) = walk(&s.app, t, "/v1/operations?page_size=2", "id").await;
    ops.reverse();
    assert_eq!(listed, ops);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn a_token_is_refused_with_other_filters_another_tenant_or_changed() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    for id in ["a1", "a2", "a3"] {
        app.post("/v1/accounts", &t, &account_body(id, "koyeb"))
            .await;
    }
    let page = json_of(app.get("/v1/accounts?page_size=1", &t).await).await;
    let token_ = page["next_page_token"].as_str().unwrap().to_owned();
    for (path, who) in [
        // Other filters.
        (
            format!("/v1/accounts?provider=oktawave&page_size=1&page_token={token_}"),
            t.clone(),
        ),
        // Another collection.
        (
            format!("/v1/webhooks?page_size=1&page_token={token_}"),
            t.clone(),
        ),
        // Another tenant.
        (
            format!("/v1/accounts?page_size=1&page_token={token_}"),
            token("globex", ALL_SCOPES),
        ),
        // Changed.
        (
            format!(
                "/v1/accounts?page_size=1&page_token={}",
                token_.replacen('.', "x.", 1)
            ),
            t.clone(),
        ),
    ] {
        let p = assert_problem(app.get(&path, &who).await, 400, "invalid_page_token").await;
        assert_eq!(p["field"], "page_token", "{path}");
    }
    for bad in ["0", "201", "x"] {
        for collection in ["accounts", "webhooks", "operations"] {
            let p = assert_problem(
                app.get(&format!("/v1/{collection}?page_size={bad}"), &t)
                    .await,
                400,
                "invalid_query",
            )
            .await;
            assert_eq!(p["field"], "page_size", "{collection} {bad}");
        }
    }
}

#[tokio::test]
async fn event_types_repeat_and_an_unknown_one_names_the_parameter() {
    let app = spawn_app().await;
    let t = token("acme", ALL_SCOPES);
    let ok = app
        .get(
            "/v1/events?type=operation.succeeded&type=operation.failed&page_size=5",
            &t,
        )
        .await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert!(body["next_cursor"].is_string(), "{body}");
    for bad in [
        "type=operation.succeeded,operation.failed",
        "type=operation.succeeded&type=nope",
    ] {
        let p = assert_problem(
            app.get(&format!("/v1/events?{bad}"), &t).await,
            400,
            "invalid_query",
        )
        .await;
        assert_eq!(p["field"], "type", "{bad}: {p}");
    }
}
