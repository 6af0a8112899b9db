//! The shapes the server enforces: constraints, per-provider account bodies, examples a
//! person can send, and links between operations.

use serde_json::{json, Map, Value};

use super::{
    for_each_operation, merge, ACCOUNT_ID_PATTERN, HEADER_TEXT_PATTERN, IDEMPOTENCY_KEY_PATTERN,
    NAME_PATTERN, NOT_BLANK_PATTERN, PLAIN_TEXT_PATTERN, SNAPSHOT_ID_PATTERN,
};
use crate::{
    api::{accounts, paging, snapshots, webhooks},
    domain::FieldSpec,
    providers::ProviderInfo,
};

/// A snapshot or image name, as the server checks it.
fn name_schema() -> Value {
    json!({"minLength": 1, "maxLength": snapshots::MAX_NAME, "pattern": NAME_PATTERN})
}

/// The limits the server enforces, stated where a client can see them: in bodies, then in
/// parameters.
pub(super) fn constrain(doc: &mut Value) {
    constrain_bodies(&mut doc["components"]["schemas"]);
    constrain_parameters(doc);
}

fn constrain_bodies(schemas: &mut Value) {
    let text = |max: usize| json!({"minLength": 1, "maxLength": max, "pattern": NOT_BLANK_PATTERN});
    let name = name_schema();
    let webhook_url = json!({
        "maxLength": webhooks::MAX_URL,
        "pattern": *webhooks::URL_PATTERN,
    });
    for (schema, property, constraint) in [
        (
            "CreateSnapshot",
            "account",
            json!({"pattern": ACCOUNT_ID_PATTERN}),
        ),
        ("CreateSnapshot", "source_id", text(snapshots::MAX_NAME)),
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
        ("CreateWebhook", "url", webhook_url.clone()),
        ("UpdateWebhook", "url", webhook_url.clone()),
        (
            "CreateWebhook",
            "description",
            json!({"maxLength": webhooks::MAX_DESCRIPTION}),
        ),
        (
            "UpdateWebhook",
            "description",
            json!({"maxLength": webhooks::MAX_DESCRIPTION}),
        ),
    ] {
        merge(&mut schemas[schema]["properties"][property], constraint);
    }
    // Free-form JSON objects say so: a generator otherwise warns of a map of undefined type.
    for (schema, property) in [
        ("AccountView", "settings"),
        ("Event", "data"),
        ("Operation", "result"),
        ("Snapshot", "vendor"),
    ] {
        schemas[schema]["properties"][property]["additionalProperties"] = json!(true);
    }
    // `PATCH /v1/snapshots/{id}` needs something to change; a member is a string or absent.
    schemas["UpdateSnapshot"]["minProperties"] = json!(1);
    for property in ["name", "description"] {
        schemas["UpdateSnapshot"]["properties"][property]["type"] = json!("string");
    }
}

fn constrain_parameters(doc: &mut Value) {
    let name = name_schema();
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
                (Some("path"), Some("webhook")) => {
                    json!({"pattern": webhooks::WEBHOOK_ID_PATTERN})
                }
                (Some("path"), Some("delivery")) => {
                    json!({"pattern": webhooks::DELIVERY_ID_PATTERN})
                }
                (Some("path"), Some("policy")) => {
                    json!({"pattern": super::super::policies::POLICY_ID_PATTERN})
                }
                (Some("path"), Some("name")) => name.clone(),
                (Some("header"), Some("Idempotency-Key")) => json!({
                    "type": "string", "minLength": 1, "maxLength": 255,
                    "pattern": IDEMPOTENCY_KEY_PATTERN,
                }),
                (Some("query"), Some("page_size")) => json!({
                    "type": "integer", "minimum": 1, "maximum": paging::MAX_PAGE_SIZE,
                }),
                // The event log's cursor and type filter.
                (Some("query"), Some("after")) => json!({"pattern": "^[A-Za-z0-9_-]{22}$"}),
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

/// A query value is never empty: the server refuses `?snapshot=` (`400` naming it) rather than
/// read it as absent, so free-text parameters declare `minLength: 1`. The merged list's
/// `source_id` and `name` filters read an empty value as given (matching nothing and
/// everything), and keep their plain declaration. Integers are declared plainly: the derived
/// `format` (int32, …) is not the limit.
pub(super) fn no_empty_query_values(doc: &mut Value) {
    for_each_operation(doc, |_, _, op| {
        let merged_list = op["operationId"] == "listSnapshots";
        // `get_mut`: indexing a missing member mutably would add it as `null`.
        let parameters = op.get_mut("parameters").and_then(Value::as_array_mut);
        for p in parameters.into_iter().flatten() {
            if p["in"] != "query" {
                continue;
            }
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            let Some(schema) = p["schema"].as_object_mut() else {
                continue;
            };
            if schema.get("type") == Some(&json!("integer")) {
                schema.remove("format");
            }
            let free_text = schema.get("type") == Some(&json!("string"))
                && !schema.contains_key("pattern")
                && !schema.contains_key("enum");
            if free_text && !(merged_list && matches!(name.as_str(), "source_id" | "name")) {
                schema.insert("minLength".to_owned(), json!(1));
            }
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
pub(super) fn model_account_bodies(doc: &mut Value, providers: &[&ProviderInfo]) {
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
        let name = capitalized(kind);
        properties["credentials"] = component(
            schemas,
            &format!("{name}Credentials"),
            fields_schema(info.credential_fields),
            "Credential fields; write-only, sealed at rest",
        );
        properties["settings"] = component(
            schemas,
            &format!("{name}Settings"),
            fields_schema(info.setting_fields),
            "Non-secret settings",
        );
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
    model_account_patch(schemas, providers);
}

/// `UpdateAccount`: a PATCH does not name the provider, so its members are those of any
/// provider, and the server checks them against the account's own (422 naming the field).
fn model_account_patch(schemas: &mut Value, providers: &[&ProviderInfo]) {
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
    for (section, name, fields, what) in [
        (
            "credentials",
            "AccountCredentialsPatch",
            union(|i| i.credential_fields),
            "Replaces all credentials: every field the account's provider requires must be given",
        ),
        (
            "settings",
            "AccountSettingsPatch",
            union(|i| i.setting_fields),
            "Replaces all settings (those of the account's provider)",
        ),
    ] {
        let mut schema = fields_schema(&fields);
        if section == "credentials" {
            schema["minProperties"] = json!(1);
        }
        let reference = component(schemas, name, schema, what);
        schemas["UpdateAccount"]["properties"][section] = json!({
            "description": what,
            "oneOf": [{"type": "null"}, {"$ref": reference["$ref"]}],
        });
    }
    schemas["UpdateAccount"]["properties"]["display_name"]["maxLength"] =
        json!(accounts::MAX_DISPLAY_NAME);
    schemas["UpdateAccount"]["example"] = json!({"display_name": "Production (EU)"});
}

/// `schema` as the component `name` (described), and a described reference to it. An object of
/// no fields stays inline, as an object that takes no members: generators give a closed object
/// nested in another a name of their own (or warn that it has none), and give an empty closed
/// object no value type.
fn component(schemas: &mut Value, name: &str, mut schema: Value, description: &str) -> Value {
    if schema["properties"].as_object().is_some_and(Map::is_empty) {
        return json!({
            "type": "object",
            "description": description,
            "additionalProperties": {"not": {}},
        });
    }
    schema["description"] = json!(description);
    schemas[name] = schema;
    json!({"$ref": format!("#/components/schemas/{name}"), "description": description})
}

fn fields_schema(fields: &[FieldSpec]) -> Value {
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
pub(super) fn link(doc: &mut Value) {
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
    let webhook_links = links_with(
        "webhook",
        &[
            "getWebhook",
            "updateWebhook",
            "testWebhook",
            "rotateWebhookSecret",
            "listWebhookDeliveries",
            "deleteWebhook",
        ],
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
            "createWebhook" => ("201", webhook_links.clone()),
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

/// The requests snapgate sends to webhook endpoints (OpenAPI 3.1 `webhooks`): one per event
/// type, each a Standard Webhooks delivery.
pub(super) fn describe_webhooks(doc: &mut Value) {
    let header = |name: &str, description: &str, example: &str| {
        json!({"name": name, "in": "header", "required": true, "description": description,
               "schema": {"type": "string"}, "example": example})
    };
    let parameters = json!([
        header("webhook-id", "The event's id: the same on every attempt and redelivery, so a receiver can drop duplicates", "evt_0192f8a4c3d27b1e9f6a5b4c3d2e1f00"),
        header("webhook-timestamp", "Unix seconds when this attempt was signed; receivers refuse old ones (replays)", "1764590000"),
        header("webhook-signature", "`v1,` + base64 of HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` under the endpoint's `whsec_` secret (the base64 after the prefix is the key); during a secret rotation's grace period two signatures, space-separated", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
    ]);
    let types = [
        ("operation.succeeded", "An operation finished: `data.operation` is the operation as `GET /v1/operations/{id}` returns it"),
        ("operation.failed", "An operation failed: `data.operation.error` is the problem"),
        ("snapshot.created", "A create operation succeeded: `data.snapshot_id` and `data.operation`"),
        ("snapshot.deleted", "A delete operation succeeded"),
        ("snapshot.restored", "A restore operation succeeded (its `completion` says whether the vendor reported it or it is assumed)"),
        ("account.health_changed", "An account's verification changed its health: `data.account`"),
        ("webhook.test", "Sent by `POST /v1/webhooks/{id}/test`"),
    ];
    let mut hooks = Map::new();
    for (kind, description) in types {
        hooks.insert(
            kind.to_owned(),
            json!({"post": {
                "summary": format!("`{kind}` delivered to a webhook endpoint"),
                "description": format!("{description}. The body is signed: verify `webhook-signature` (any Standard Webhooks 1.0 library does) before trusting it. Answer 2xx within the timeout; anything else is retried on the schedule."),
                "operationId": format!("on_{}", kind.replace('.', "_")),
                // Not `webhooks`: generators write one file per tag, and these requests (sent
                // *to* a receiver) would overwrite the webhook management API's.
                "tags": ["webhook-events"],
                // Sent to receivers, never called by a client: generators leave it out
                // (typescript-fetch otherwise writes an API for it that does not compile).
                "x-internal": true,
                "parameters": parameters.clone(),
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookPayload"}}}},
                "responses": {"200": {"description": "Received (any 2xx ends the delivery)"}},
            }}),
        );
    }
    doc["webhooks"] = Value::Object(hooks);
    doc["components"]["schemas"]["WebhookPayload"] = json!({
        "type": "object",
        "description": "The body of every delivery (Standard Webhooks: `type`, `timestamp`, `data`; plus the event's `id`).",
        "required": ["id", "type", "timestamp", "data"],
        "properties": {
            "id": {"type": "string", "description": "The event id (also the `webhook-id` header)", "example": "evt_0192f8a4c3d27b1e9f6a5b4c3d2e1f00"},
            "type": {"type": "string", "enum": types.iter().map(|(k, _)| *k).collect::<Vec<_>>()},
            "timestamp": {"type": "string", "format": "date-time", "description": "When the event happened"},
            "data": {
                "type": "object",
                "description": "The subject as the API returns it, and who caused it",
                "required": ["actor"],
                "properties": {
                    "actor": {"type": "string", "description": "The caller's `sub`, or `reconciler` for what the gateway saw by itself"},
                    "operation": {"$ref": "#/components/schemas/Operation"},
                    "snapshot_id": {"type": ["string", "null"]},
                    "account": {"type": "object", "additionalProperties": true},
                },
            },
        },
    });
}
