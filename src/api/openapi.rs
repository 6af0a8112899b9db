//! The OpenAPI 3.1 document: derived from the handlers' annotations, then completed here with
//! what derive macros cannot say — every failure each route can answer, the per-provider shape of
//! account bodies, the constraints the server enforces, and links between operations.
//!
//! Everything a route can answer is declared, so a client generated from the document gets a
//! typed `Problem` for every failure, and Schemathesis holds the server to it in CI.

use serde_json::{json, Map, Value};
use utoipa::{
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
    Modify, OpenApi,
};

use super::{
    accounts, health, listing, operations, problem::Problem, providers, snapshots,
    snapshots::Include,
};
use crate::{domain::FieldSpec, providers::ProviderInfo};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "snapgate",
        description = "One HTTP API in front of the snapshot APIs of Hyperstack, Koyeb, Oktawave, Hostinger VPS and Syminet.\n\nEvery `/v1` route takes `Authorization: Bearer <JWT>`; the scopes each route needs are listed on it. Errors are `application/problem+json` (RFC 9457) with a stable `code` and the `request_id`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        providers::list,
        accounts::list, accounts::create, accounts::get, accounts::update, accounts::delete,
        accounts::verify,
        listing::list, snapshots::get, snapshots::create, snapshots::update, snapshots::delete,
        snapshots::restore, snapshots::image, snapshots::name_availability,
        operations::list, operations::get,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(Problem, Include)),
    modifiers(&Security),
    tags(
        (name = "providers", description = "The five clouds and what each supports"),
        (name = "accounts", description = "Provider credentials, sealed at rest and write-only"),
        (name = "snapshots", description = "The normalized snapshot API over all five providers"),
        (name = "operations", description = "Async work (create, delete, restore, rename, image), advanced from the vendor"),
        (name = "service", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

/// The document as served at `/openapi.json` and committed under `openapi/`.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    complete(&mut doc, &crate::providers::infos());
    doc
}

/// Pretty JSON of the document, as `snapgate openapi` prints it.
pub fn document_json() -> String {
    serde_json::to_string_pretty(&document()).unwrap_or_default() + "\n"
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".to_owned());
        http.description = Some(
            "A JWT carrying the tenant claim and the scopes `snapshots:read`, `snapshots:write`, `accounts:read`, `accounts:write` (in `scope` or `scp`). `snapgate token` mints one for development.".to_owned(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Account ids, as `AccountId` parses them.
pub const ACCOUNT_ID_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";
/// Snapshot ids `{account}:{native_id}`, as `SnapshotId` parses them.
pub const SNAPSHOT_ID_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}:[A-Za-z0-9._-]{1,128}$";
/// At least one character that is not white space (exactly Rust's `char::is_whitespace`, which
/// `str::trim` uses), so a text the server calls blank is one the schema calls invalid.
pub const NOT_BLANK_PATTERN: &str = "[^\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
/// A credential sent in a header: visible ASCII and spaces, not blank.
pub const HEADER_TEXT_PATTERN: &str = "^[ -~]*[!-~][ -~]*$";
/// Any other account field: no control characters, not blank.
pub const PLAIN_TEXT_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// `Idempotency-Key`: 1–255 visible ASCII characters.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";

/// A problem response every route may answer: (status, component name, description, headers).
struct Failure {
    status: &'static str,
    name: &'static str,
    description: &'static str,
    retry_after: bool,
    www_authenticate: bool,
}

const fn failure(status: &'static str, name: &'static str, description: &'static str) -> Failure {
    Failure {
        status,
        name,
        description,
        retry_after: false,
        www_authenticate: false,
    }
}

const fn retried(mut f: Failure) -> Failure {
    f.retry_after = true;
    f
}

const fn challenged(mut f: Failure) -> Failure {
    f.www_authenticate = true;
    f
}

const FAILURES: [Failure; 14] = [
    failure("400", "BadRequest", "Malformed JSON, path, query or `Idempotency-Key`, or a request the provider rejected (`upstream_rejected`)"),
    challenged(failure("401", "Unauthorized", "Missing or invalid bearer token (`WWW-Authenticate: Bearer error=\"invalid_token\"`)")),
    challenged(failure("403", "Forbidden", "The token lacks the scope this route needs (`insufficient_scope`)")),
    failure("404", "NotFound", "No such resource for the caller's tenant"),
    failure("408", "RequestTimeout", "The request body did not arrive within the gateway's deadline"),
    failure("409", "Conflict", "The resource exists, the provider reported a conflict, or a request with this `Idempotency-Key` is still in flight"),
    failure("413", "PayloadTooLarge", "The body exceeds the configured limit (checked on `Content-Length` before it is read)"),
    failure("415", "UnsupportedMediaType", "The body is not `application/json`"),
    failure("422", "Unprocessable", "The body is JSON of the wrong shape, a field the provider cannot take, or an `Idempotency-Key` reused with another body; `field` names what was wrong"),
    retried(failure("429", "RateLimited", "The provider is rate limiting this account; `Retry-After` says when to try again")),
    failure("501", "NotImplemented", "The account's provider cannot do this; `supported_by` lists those that can"),
    failure("502", "BadGateway", "The provider failed, answered garbage or refused the stored credentials"),
    retried(failure("503", "Unavailable", "The gateway's store is unavailable, or the provider failed repeatedly and calls are paused (`Retry-After`)")),
    retried(failure("504", "GatewayTimeout", "The provider or the gateway's own deadline ran out; the outcome may be unknown")),
];

/// Failures of every `/v1` route, and of every route with a body.
const EVERY_ROUTE: &[&str] = &["400", "401", "403", "503", "504"];
const WITH_BODY: &[&str] = &["408", "413", "415", "422"];
/// Failures of a route that reads from a provider / changes something at a provider.
const VENDOR_READ: &[&str] = &["404", "422", "429", "501", "502"];
const VENDOR_WRITE: &[&str] = &["404", "409", "422", "429", "501", "502"];

/// What each `/v1` operation can fail with beyond [`EVERY_ROUTE`] and [`WITH_BODY`].
pub const ROUTE_FAILURES: [(&str, &[&str]); 17] = [
    ("listProviders", &[]),
    ("listAccounts", &[]),
    ("createAccount", &["409"]),
    ("getAccount", &["404"]),
    ("updateAccount", &["404"]),
    ("deleteAccount", &["404"]),
    ("verifyAccount", &["404"]),
    ("checkSnapshotName", VENDOR_READ),
    ("listSnapshots", &["404", "502"]),
    ("getSnapshot", VENDOR_READ),
    ("createSnapshot", VENDOR_WRITE),
    ("updateSnapshot", VENDOR_WRITE),
    ("deleteSnapshot", VENDOR_WRITE),
    ("restoreSnapshot", VENDOR_WRITE),
    ("createImageFromSnapshot", VENDOR_WRITE),
    ("listOperations", &[]),
    ("getOperation", &["404"]),
];

/// Completes the derived document (see the module comment).
fn complete(doc: &mut Value, providers: &[&ProviderInfo]) {
    add_failure_responses(doc);
    type_nested_problems(doc);
    constrain(doc);
    model_account_bodies(doc, providers);
    link(doc);
}

fn problem_ref() -> Value {
    json!({"$ref": "#/components/schemas/Problem"})
}

fn add_failure_responses(doc: &mut Value) {
    let responses = &mut doc["components"]["responses"];
    for f in &FAILURES {
        let mut headers = Map::new();
        if f.retry_after {
            headers.insert(
                "Retry-After".into(),
                json!({"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}}),
            );
        }
        if f.www_authenticate {
            headers.insert(
                "WWW-Authenticate".into(),
                json!({"description": "The RFC 6750 challenge", "schema": {"type": "string"}}),
            );
        }
        let mut response = json!({
            "description": f.description,
            "content": {"application/problem+json": {"schema": problem_ref()}},
        });
        if !headers.is_empty() {
            response["headers"] = Value::Object(headers);
        }
        responses[f.name] = response;
    }
    for_each_operation(doc, |path, _, op| {
        if !path.starts_with("/v1/") {
            return;
        }
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        let extra = ROUTE_FAILURES
            .iter()
            .find(|(name, _)| *name == id)
            .map_or(&[][..], |(_, statuses)| *statuses);
        let body: &[&str] = if op.get("requestBody").is_some() {
            WITH_BODY
        } else {
            &[]
        };
        let listed = op["responses"].as_object_mut();
        let Some(listed) = listed else { return };
        for status in EVERY_ROUTE.iter().chain(body).chain(extra) {
            let Some(f) = FAILURES.iter().find(|f| f.status == *status) else {
                continue;
            };
            match listed.get_mut(*status) {
                // A route's own description of a failure is kept; its headers are added.
                Some(own) => {
                    if let Some(headers) = own_headers(f) {
                        own["headers"] = headers;
                    }
                }
                None => {
                    listed.insert(
                        (*status).to_owned(),
                        json!({"$ref": format!("#/components/responses/{}", f.name)}),
                    );
                }
            }
        }
    });
}

fn own_headers(f: &Failure) -> Option<Value> {
    f.retry_after.then(|| {
        json!({"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}}})
    })
}

/// `Operation.error`, `AccountHealth.problem`, `Verification.problem` and `SnapshotPage.errors`
/// hold problems: typed, so a generated client gives a `Problem`, not a map.
fn type_nested_problems(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let nullable_problem = json!({"oneOf": [{"type": "null"}, problem_ref()]});
    for (schema, property) in [
        ("Operation", "error"),
        ("AccountHealth", "problem"),
        ("Verification", "problem"),
    ] {
        let description = schemas[schema]["properties"][property]["description"].clone();
        let mut typed = nullable_problem.clone();
        if !description.is_null() {
            typed["description"] = description;
        }
        schemas[schema]["properties"][property] = typed;
    }
    schemas["SnapshotPage"]["properties"]["errors"]["items"] = problem_ref();
}

/// The limits the server enforces, stated where a client can see them.
fn constrain(doc: &mut Value) {
    let text = |max: usize| json!({"minLength": 1, "maxLength": max, "pattern": NOT_BLANK_PATTERN});
    let name = text(snapshots::MAX_NAME);
    let schemas = &mut doc["components"]["schemas"];
    for (schema, property, constraint) in [
        (
            "CreateSnapshot",
            "account",
            json!({"pattern": ACCOUNT_ID_PATTERN}),
        ),
        ("CreateSnapshot", "source_id", name.clone()),
        ("CreateSnapshot", "name", name.clone()),
        (
            "CreateSnapshot",
            "description",
            json!({"maxLength": snapshots::MAX_NAME}),
        ),
        (
            "UpdateSnapshot",
            "name",
            with_example(&name, "pre-upgrade-2"),
        ),
        (
            "UpdateSnapshot",
            "description",
            json!({"maxLength": snapshots::MAX_NAME, "example": "before the 2.0 upgrade"}),
        ),
        (
            "RestoreSnapshot",
            "new_name",
            with_example(&name, "restored-vm"),
        ),
        ("RestoreSnapshot", "target_id", json!({"example": null})),
        ("CreateImage", "name", with_example(&name, "golden-image")),
        ("CreateImage", "labels", json!({"example": ["env=prod"]})),
    ] {
        merge(&mut schemas[schema]["properties"][property], constraint);
    }
    // `PATCH /v1/snapshots/{id}` needs something to change; a member is a string or absent.
    schemas["UpdateSnapshot"]["minProperties"] = json!(1);
    for property in ["name", "description"] {
        schemas["UpdateSnapshot"]["properties"][property]["type"] = json!("string");
    }

    for_each_operation(doc, |_, _, op| {
        // `GET /v1/operations?account=` takes one account id; the snapshot list's `account`
        // filter takes any text (an unknown id simply matches nothing).
        let one_account = op["operationId"] == "listOperations";
        let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
            return;
        };
        for p in params {
            let constraint = match (p["in"].as_str(), p["name"].as_str()) {
                (Some("path"), Some("account")) => json!({"pattern": ACCOUNT_ID_PATTERN}),
                (Some("query"), Some("account")) if one_account => {
                    json!({"pattern": ACCOUNT_ID_PATTERN})
                }
                (Some("path"), Some("snapshot")) => json!({"pattern": SNAPSHOT_ID_PATTERN}),
                (Some("path"), Some("name")) => text(snapshots::MAX_NAME),
                (Some("header"), Some("Idempotency-Key")) => json!({
                    "type": "string", "minLength": 1, "maxLength": 255,
                    "pattern": IDEMPOTENCY_KEY_PATTERN,
                }),
                (Some("query"), Some("page_size")) => json!({
                    "type": "integer", "minimum": 1, "maximum": listing::MAX_PAGE_SIZE,
                }),
                (Some("query"), Some("limit")) => json!({
                    "type": "integer", "minimum": 1, "maximum": operations::MAX_LIMIT,
                }),
                _ => continue,
            };
            // Integers are declared plainly: the derived `format` (uint32, …) is not the limit.
            if let Some(schema) = p["schema"].as_object_mut() {
                schema.remove("format");
            }
            merge(&mut p["schema"], constraint);
        }
    });
}

fn with_example(schema: &Value, example: &str) -> Value {
    let mut schema = schema.clone();
    schema["example"] = json!(example);
    schema
}

/// `POST /v1/accounts` is one shape per provider, chosen by `provider`: its credential and
/// setting fields are exactly those the provider declares (`GET /v1/providers` lists the same).
fn model_account_bodies(doc: &mut Value, providers: &[&ProviderInfo]) {
    let schemas = &mut doc["components"]["schemas"];
    let generic = schemas["CreateAccount"].clone();
    let mut variants = Vec::new();
    let mut mapping = Map::new();
    for info in providers {
        let kind = info.kind.as_str();
        let title = format!("Create{}Account", capitalized(kind));
        let mut variant = generic.clone();
        variant["description"] = json!(format!("A {} account.", info.display_name));
        variant["additionalProperties"] = json!(false);
        let properties = &mut variant["properties"];
        properties["id"]["pattern"] = json!(ACCOUNT_ID_PATTERN);
        properties["provider"] = json!({"type": "string", "enum": [kind]});
        properties["display_name"]["maxLength"] = json!(accounts::MAX_DISPLAY_NAME);
        properties["credentials"] = fields_schema(
            info.credential_fields,
            "Credential fields; write-only, sealed at rest",
        );
        properties["settings"] = fields_schema(info.setting_fields, "Non-secret settings");
        let mut required = vec![json!("id"), json!("provider"), json!("credentials")];
        if info.setting_fields.iter().any(|f| f.required) {
            required.push(json!("settings"));
        }
        variant["required"] = Value::Array(required);
        // A body Swagger UI's "Try it out" can send as it is (only the secrets to fill in).
        let fill = |fields: &[FieldSpec]| -> Map<String, Value> {
            fields
                .iter()
                .filter(|f| f.required)
                .map(|f| {
                    let value = f
                        .allowed
                        .and_then(|a| a.first().copied())
                        .map_or_else(|| format!("<{}>", f.name.replace('_', " ")), str::to_owned);
                    (f.name.to_owned(), json!(value))
                })
                .collect()
        };
        variant["example"] = json!({
            "id": format!("prod-{kind}"),
            "provider": kind,
            "display_name": format!("Production {}", info.display_name),
            "credentials": fill(info.credential_fields),
            "settings": fill(info.setting_fields),
        });
        mapping.insert(
            kind.to_owned(),
            json!(format!("#/components/schemas/{title}")),
        );
        variants.push(json!({"$ref": format!("#/components/schemas/{title}")}));
        schemas[title.as_str()] = variant;
    }
    schemas["CreateAccount"] = json!({
        "description": generic["description"].clone(),
        "oneOf": variants,
        "discriminator": {"propertyName": "provider", "mapping": mapping},
    });
    // A PATCH does not name the provider: its members are those of any provider, and the
    // server checks them against the account's own (422 naming the field otherwise).
    let union = |section: fn(&ProviderInfo) -> &'static [FieldSpec]| {
        let mut all: Vec<FieldSpec> = Vec::new();
        for info in providers {
            for f in section(info) {
                match all.iter_mut().find(|seen| seen.name == f.name) {
                    Some(seen) => {
                        seen.visible_ascii &= f.visible_ascii;
                        seen.required = false;
                    }
                    None => all.push(FieldSpec {
                        required: false,
                        ..f.clone()
                    }),
                }
            }
        }
        all
    };
    for (section, fields, what) in [
        (
            "credentials",
            union(|i| i.credential_fields),
            "Replaces all credentials: every field the account's provider requires must be given",
        ),
        (
            "settings",
            union(|i| i.setting_fields),
            "Replaces all settings (those of the account's provider)",
        ),
    ] {
        let mut schema = fields_schema(&fields, what);
        if section == "credentials" {
            schema["minProperties"] = json!(1);
        }
        schemas["UpdateAccount"]["properties"][section] =
            json!({"oneOf": [{"type": "null"}, schema]});
    }
    schemas["UpdateAccount"]["properties"]["display_name"]["maxLength"] =
        json!(accounts::MAX_DISPLAY_NAME);
    schemas["UpdateAccount"]["example"] = json!({"display_name": "Production (EU)"});
}

fn fields_schema(fields: &[FieldSpec], description: &str) -> Value {
    let mut properties = Map::new();
    for f in fields {
        let pattern = if f.visible_ascii {
            HEADER_TEXT_PATTERN
        } else {
            PLAIN_TEXT_PATTERN
        };
        let mut field = json!({"type": "string", "description": f.description, "pattern": pattern});
        if let Some(allowed) = f.allowed {
            field = json!({"type": "string", "description": f.description, "enum": allowed});
        }
        properties.insert(f.name.to_owned(), field);
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// OpenAPI links: from work accepted to its operation, from a created or fetched resource to
/// what can be done with it (stateful clients and test tools follow them).
fn link(doc: &mut Value) {
    let to_operation = json!({"GetOperation": {
        "operationId": "getOperation",
        "parameters": {"operation": "$response.body#/operation/id"},
        "description": "The operation tracking the accepted work",
    }});
    let account_links = links_with(
        "account",
        &[
            "getAccount",
            "updateAccount",
            "verifyAccount",
            "deleteAccount",
        ],
    );
    let snapshot_links = links_with(
        "snapshot",
        &["updateSnapshot", "restoreSnapshot", "deleteSnapshot"],
    );
    for_each_operation(doc, |_, _, op| {
        let (status, links) = match op["operationId"].as_str().unwrap_or_default() {
            "createSnapshot"
            | "updateSnapshot"
            | "deleteSnapshot"
            | "restoreSnapshot"
            | "createImageFromSnapshot" => ("202", to_operation.clone()),
            "createAccount" | "getAccount" => {
                let status = if op["responses"]["201"].is_object() {
                    "201"
                } else {
                    "200"
                };
                (status, account_links.clone())
            }
            "getSnapshot" => ("200", snapshot_links.clone()),
            _ => return,
        };
        op["responses"][status]["links"] = links;
    });
}

/// Links to `operations`, each taking the response body's `id` as its `parameter`.
fn links_with(parameter: &str, operations: &[&str]) -> Value {
    let links: Map<String, Value> = operations
        .iter()
        .map(|op| {
            (
                capitalized(op),
                json!({"operationId": op, "parameters": {parameter: "$response.body#/id"}}),
            )
        })
        .collect();
    Value::Object(links)
}

/// Calls `f(path, method, operation)` for every operation of the document.
fn for_each_operation(doc: &mut Value, mut f: impl FnMut(&str, &str, &mut Value)) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if matches!(method.as_str(), "get" | "put" | "post" | "patch" | "delete") {
                f(path, method, op);
            }
        }
    }
}

/// Adds `extra`'s members to `target` (an object), replacing same-named ones.
fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v1_operation_says_what_it_can_fail_with() {
        let doc = document();
        let mut seen = Vec::new();
        let mut doc = doc;
        for_each_operation(&mut doc, |path, method, op| {
            if path.starts_with("/v1/") {
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                assert!(
                    ROUTE_FAILURES.iter().any(|(name, _)| *name == id),
                    "{method} {path} ({id}) is missing from ROUTE_FAILURES"
                );
                seen.push(id);
            }
        });
        assert_eq!(seen.len(), ROUTE_FAILURES.len());
    }

    #[test]
    fn the_blank_pattern_is_rusts_white_space() {
        // Every char Rust trims is in the pattern's excluded class, and a few that are not.
        let excluded = [
            '\u{9}', '\u{a}', '\u{b}', '\u{c}', '\u{d}', ' ', '\u{85}', '\u{a0}', '\u{1680}',
            '\u{2000}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
        ];
        for c in excluded {
            assert!(c.is_whitespace(), "{c:?}");
        }
        for c in ['\u{1c}', '\u{200b}', '\u{180e}', 'a'] {
            assert!(!c.is_whitespace(), "{c:?}");
        }
        let count = (0..=0x10ffffu32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .count();
        assert_eq!(
            count, 25,
            "Rust's White_Space set changed: update NOT_BLANK_PATTERN"
        );
    }
}
