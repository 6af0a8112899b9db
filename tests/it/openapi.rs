//! The OpenAPI document: served, browsable, complete, and committed without drift.

use serde_json::Value;

use crate::helpers::*;

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json is committed");
    let generated = snapgate::api::openapi::document_json();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn the_document_and_swagger_ui_are_served() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let resp = app
        .client
        .get(format!("{}/docs/", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("swagger"));
}

#[test]
fn every_route_has_scopes_and_problem_responses_documented() {
    let doc: Value = serde_json::from_str(&snapgate::api::openapi::document_json()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/v1/providers",
        "/v1/accounts",
        "/v1/accounts/{account}",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(route), "{route} missing");
    }
    for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/v1/")) {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["security"][0]["bearer"].is_array(),
                "{method} {path} lacks security"
            );
            for status in ["401", "403"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path} lacks {status}"
                );
            }
            if op.get("requestBody").is_some() {
                assert!(
                    op["responses"]["422"].is_object(),
                    "{method} {path} lacks 422"
                );
            }
        }
    }
    assert_eq!(
        doc["paths"]["/v1/accounts"]["post"]["security"][0]["bearer"][0],
        "accounts:write"
    );
}
