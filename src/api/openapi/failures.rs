//! Every failure each route can answer, declared once as shared `Problem` responses.

use serde_json::{json, Map, Value};

use super::for_each_operation;

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
    failure("404", "NotFound", "No such resource for the caller's tenant, or the VM, volume, instance or slice a create or restore names does not exist at the provider (`source_not_found`, `field` names it)"),
    failure("408", "RequestTimeout", "The request body did not arrive within the gateway's deadline"),
    failure("409", "Conflict", "The resource exists, the provider reported a conflict, or a request with this `Idempotency-Key` is still in flight"),
    failure("413", "PayloadTooLarge", "The body exceeds the configured limit (checked on `Content-Length` before it is read)"),
    failure("415", "UnsupportedMediaType", "The body is not `application/json`"),
    failure("422", "Unprocessable", "The body is JSON of the wrong shape, a field the provider cannot take, or an `Idempotency-Key` reused with another body; `field` names what was wrong"),
    retried(failure("429", "RateLimited", "The provider is rate limiting this account; `Retry-After` says when to try again")),
    failure("501", "UnsupportedOperation", "The account's provider cannot do this; `supported_by` lists those that can"),
    failure("502", "BadGateway", "The provider failed or answered garbage (`upstream_error`), refused the stored credentials (`provider_auth_failed`, its 401) or refused this action to them (`provider_permission_denied`, its 403)"),
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
pub const ROUTE_FAILURES: [(&str, &[&str]); 35] = [
    ("listProviders", &[]),
    ("listAccounts", &[]),
    ("createAccount", &["409"]),
    ("getAccount", &["404"]),
    ("updateAccount", &["404"]),
    ("deleteAccount", &["404"]),
    ("verifyAccount", &["404"]),
    ("checkSnapshotName", VENDOR_READ),
    ("listAccountSources", VENDOR_READ),
    ("listSnapshots", &["404", "502"]),
    ("getSnapshot", VENDOR_READ),
    ("createSnapshot", VENDOR_WRITE),
    ("updateSnapshot", VENDOR_WRITE),
    ("deleteSnapshot", VENDOR_WRITE),
    ("restoreSnapshot", VENDOR_WRITE),
    ("createImageFromSnapshot", VENDOR_WRITE),
    ("listOperations", &[]),
    ("getOperation", &["404", "429"]),
    ("listEvents", &["410"]),
    ("listWebhooks", &[]),
    ("createWebhook", &["409"]),
    ("getWebhook", &["404"]),
    ("updateWebhook", &["404"]),
    ("deleteWebhook", &["404"]),
    ("testWebhook", &["404"]),
    ("rotateWebhookSecret", &["404"]),
    ("listWebhookDeliveries", &["404"]),
    ("redeliverWebhookDelivery", &["404"]),
    ("listPolicies", &[]),
    ("createPolicy", &[]),
    ("getPolicy", &["404"]),
    ("updatePolicy", &["404"]),
    ("deletePolicy", &["404"]),
    ("listPolicyRuns", &["404"]),
    // With `all_sources`, a preview lists the account's sources at the provider.
    ("previewPolicy", VENDOR_READ),
];

fn problem_ref() -> Value {
    json!({"$ref": "#/components/schemas/Problem"})
}

pub(super) fn add_failure_responses(doc: &mut Value) {
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
pub(super) fn type_nested_problems(doc: &mut Value) {
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
