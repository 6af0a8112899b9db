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
    for _ in 0..2 {
        // Built on the first request, then served as it was built.
        let resp = app
            .client
            .get(format!("{}/openapi.json", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let served: Value = resp.json().await.unwrap();
        assert_eq!(served, snapgate::api::openapi::document());
    }
    let doc = snapgate::api::openapi::document();
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

fn committed_document() -> Value {
    serde_json::from_str(&snapgate::api::openapi::document_json()).unwrap()
}

/// `(method, path, operation)` for every operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.clone(), path.clone(), op.clone()));
        }
    }
    out
}

#[test]
fn operation_ids_are_unique_and_name_what_they_do() {
    let doc = committed_document();
    let ops = operations(&doc);
    let mut ids: Vec<&str> = ops
        .iter()
        .map(|(_, _, op)| op["operationId"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(
            id.chars().next().unwrap().is_ascii_lowercase()
                && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{id} is not camelCase"
        );
    }
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        count,
        "operationIds repeat: Swagger UI resolves by id"
    );
    let id_of = |method: &str, path: &str| doc["paths"][path][method]["operationId"].clone();
    assert_eq!(id_of("get", "/v1/snapshots"), "listSnapshots");
    assert_eq!(id_of("post", "/v1/snapshots"), "createSnapshot");
    assert_eq!(id_of("get", "/v1/snapshots/{snapshot}"), "getSnapshot");
    assert_eq!(id_of("get", "/v1/accounts"), "listAccounts");
    assert_eq!(id_of("get", "/v1/operations/{operation}"), "getOperation");
}

#[test]
fn every_reference_resolves() {
    let doc = committed_document();
    fn walk(v: &Value, doc: &Value, missing: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let pointer = r.trim_start_matches('#');
                    if doc.pointer(pointer).is_none() {
                        missing.push(r.clone());
                    }
                }
                map.values().for_each(|x| walk(x, doc, missing));
            }
            Value::Array(items) => items.iter().for_each(|x| walk(x, doc, missing)),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    walk(&doc, &doc, &mut missing);
    assert!(missing.is_empty(), "dangling references: {missing:?}");
}

#[test]
fn every_failure_a_route_can_answer_is_a_declared_problem() {
    let doc = committed_document();
    let resolve = |r: &Value| -> Value {
        match r["$ref"].as_str() {
            Some(p) => doc.pointer(p.trim_start_matches('#')).unwrap().clone(),
            None => r.clone(),
        }
    };
    let vendor_facing = [
        "getSnapshot",
        "createSnapshot",
        "updateSnapshot",
        "deleteSnapshot",
        "restoreSnapshot",
        "createImageFromSnapshot",
        "checkSnapshotName",
    ];
    for (method, path, op) in operations(&doc) {
        if !path.starts_with("/v1/") {
            continue;
        }
        let id = op["operationId"].as_str().unwrap();
        let mut needed = vec!["400", "401", "403", "503", "504"];
        if op.get("requestBody").is_some() {
            needed.extend(["413", "415", "422"]);
        }
        if vendor_facing.contains(&id) {
            needed.extend(["404", "422", "429", "501", "502"]);
        }
        for status in needed {
            let response = resolve(&op["responses"][status]);
            assert_eq!(
                response["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{method} {path} ({id}) does not declare {status} as a Problem"
            );
        }
        for status in ["429", "503"] {
            if op["responses"].get(status).is_some() {
                let response = resolve(&op["responses"][status]);
                assert!(
                    response["headers"]["Retry-After"].is_object(),
                    "{id} {status} lacks Retry-After"
                );
            }
        }
    }
}

#[test]
fn problems_nested_in_other_bodies_are_typed() {
    let doc = committed_document();
    let schemas = &doc["components"]["schemas"];
    let problem = serde_json::json!({"$ref": "#/components/schemas/Problem"});
    assert_eq!(
        schemas["SnapshotPage"]["properties"]["errors"]["items"],
        problem
    );
    for (schema, property) in [
        ("Operation", "error"),
        ("AccountHealth", "problem"),
        ("Verification", "problem"),
    ] {
        let variants = schemas[schema]["properties"][property]["oneOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema}.{property} is untyped"));
        assert!(variants.contains(&problem), "{schema}.{property}");
    }
}

#[test]
fn account_bodies_are_one_shape_per_provider_with_its_own_fields() {
    let doc = committed_document();
    let schemas = &doc["components"]["schemas"];
    let create = &schemas["CreateAccount"];
    assert_eq!(create["discriminator"]["propertyName"], "provider");
    assert_eq!(
        create["oneOf"].as_array().unwrap().len(),
        snapgate::domain::ProviderKind::ALL.len()
    );
    let okta = &schemas["CreateOktawaveAccount"];
    // Nested closed objects are named components (generators name them, instead of warning).
    let resolve = |reference: &serde_json::Value| {
        let name = reference["$ref"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        schemas[name].clone()
    };
    let creds = resolve(&okta["properties"]["credentials"]);
    assert_eq!(creds["additionalProperties"], false);
    let mut required: Vec<&str> = creds["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(
        required,
        ["client_id", "client_secret", "password", "username"]
    );
    assert_eq!(
        resolve(&okta["properties"]["settings"])["properties"]["region"]["enum"],
        serde_json::json!(["pl1", "pl2"])
    );
    // A provider with no settings takes none: an object that admits no member.
    let hostinger_settings = &schemas["CreateHostingerAccount"]["properties"]["settings"];
    assert_eq!(
        hostinger_settings["additionalProperties"],
        serde_json::json!({"not": {}})
    );
    // The example a person sends from Swagger UI is valid for the server (tested end to end in
    // .ci/clients); here: it names the variant's own provider.
    assert_eq!(okta["example"]["provider"], "oktawave");
}

#[tokio::test]
async fn swagger_ui_never_asks_an_online_validator() {
    let app = spawn_app().await;
    let init = app
        .client
        .get(format!("{}/docs/swagger-initializer.js", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let compact: String = init.split_whitespace().collect();
    assert!(
        compact.contains(r#""validatorUrl":"none""#),
        "validatorUrl is not none: {init}"
    );
    assert!(init.contains("/openapi.json"), "{init}");
}

/// Generators write one file per tag: the requests snapgate sends to receivers (`webhooks`)
/// must not share a tag with the API callers use, or one file overwrites the other
/// (openapi-generator's `python` client then does not even import).
#[test]
fn the_events_sent_to_receivers_share_no_tag_with_the_api() {
    let doc = committed_document();
    let api_tags: std::collections::BTreeSet<String> = operations(&doc)
        .iter()
        .flat_map(|(_, _, op)| op["tags"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    let hooks = doc["webhooks"].as_object().unwrap();
    assert!(!hooks.is_empty());
    for (name, hook) in hooks {
        // Nobody calls them: generators leave them out of clients (typescript-fetch wrote an
        // API for them that did not compile).
        assert_eq!(hook["post"]["x-internal"], true, "{name}");
        for tag in hook["post"]["tags"].as_array().unwrap() {
            let tag = tag.as_str().unwrap();
            assert!(
                !api_tags.contains(tag),
                "webhook event {name} is tagged `{tag}`, a tag of the API"
            );
        }
    }
}
