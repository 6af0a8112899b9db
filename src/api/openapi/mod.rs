//! The OpenAPI 3.1 document: derived from the handlers' annotations, then completed here with
//! what derive macros cannot say — every failure each route can answer, the per-provider shape of
//! account bodies, the constraints the server enforces, and links between operations.
//!
//! Everything a route can answer is declared, so a client generated from the document gets a
//! typed `Problem` for every failure, and Schemathesis holds the server to it in CI.

use serde_json::Value;
use utoipa::{
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
    Modify, OpenApi,
};

use super::{
    accounts, events, health, listing, operations, policies, problem::Problem, providers,
    snapshots, snapshots::Include, webhooks,
};
use crate::{domain::Capabilities, providers::ProviderInfo};

mod failures;
mod shapes;

pub use failures::ROUTE_FAILURES;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "snapgate",
        description = "One HTTP API in front of the snapshot APIs of {providers}.\n\nEvery `/v1` route takes `Authorization: Bearer <JWT>`; the scopes each route needs are listed on it. Errors are `application/problem+json` (RFC 9457) with a stable `code` and the `request_id`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        providers::list,
        accounts::list, accounts::create, accounts::get, accounts::update, accounts::delete,
        accounts::verify, accounts::sources,
        listing::list, snapshots::get, snapshots::create, snapshots::update, snapshots::delete,
        snapshots::restore, snapshots::image, snapshots::name_availability,
        operations::list, operations::get, events::list,
        webhooks::list, webhooks::create, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::test, webhooks::rotate_secret, webhooks::deliveries, webhooks::redeliver,
        policies::list, policies::create, policies::get, policies::update, policies::delete,
        policies::runs, policies::preview,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(Problem, Include)),
    modifiers(&Security),
    tags(
        (name = "providers", description = "The clouds and what each supports"),
        (name = "accounts", description = "Provider credentials, sealed at rest and write-only"),
        (name = "snapshots", description = "The normalized snapshot API over every provider"),
        (name = "operations", description = "Async work (create, delete, restore, rename, image), advanced from the vendor"),
        (name = "events", description = "The tenant's event log: operations finishing, snapshots created, deleted and restored, account health"),
        (name = "webhooks", description = "Endpoints the tenant's events are POSTed to, signed per Standard Webhooks 1.0, with their delivery logs"),
        (name = "webhook-events", description = "What snapgate POSTs to a webhook endpoint, one request per event type (OpenAPI `webhooks`): for receivers, not called by clients"),
        (name = "policies", description = "Snapshot schedules and retention the gateway runs, across every cloud, on any replica"),
        (name = "service", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

/// The document as served at `/openapi.json` and committed under `openapi/`.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    complete(&mut doc, &crate::providers::infos().collect::<Vec<_>>());
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
            "A JWT carrying the tenant claim and the scopes `snapshots:read`, `snapshots:write`, `accounts:read`, `accounts:write`, `webhooks:read`, `webhooks:write`, `policies:read`, `policies:write` (in `scope` or `scp`). `snapgate token` mints one for development.".to_owned(),
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
/// A snapshot or image name: as [`PLAIN_TEXT_PATTERN`], and no `/` or `\\` (vendors put names
/// in URL paths, where they would be a separator, or an escape a vendor decodes to one).
pub const NAME_PATTERN: &str = "^[^/\\\\\\u0000-\\u001f\\u007f-\\u009f]*[^/\\\\\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^/\\\\\\u0000-\\u001f\\u007f-\\u009f]*$";
/// `Idempotency-Key`: 1–255 visible ASCII characters.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";

/// Completes the derived document (see the module comment).
fn complete(doc: &mut Value, providers: &[&ProviderInfo]) {
    // Relative: Swagger UI and other readers call the gateway that served the document; a
    // generated client is given its gateway's base URL.
    doc["servers"] = serde_json::json!([{
        "url": "/",
        "description": "The gateway that serves this document (`snapgate serve` listens on 127.0.0.1:8080 by default)",
    }]);
    // A closed set, so a typed client can switch on it.
    doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"] =
        serde_json::json!(crate::domain::problem::CODES.as_slice());
    failures::add_failure_responses(doc);
    failures::type_nested_problems(doc);
    shapes::constrain(doc);
    shapes::no_empty_query_values(doc);
    shapes::model_account_bodies(doc, providers);
    shapes::link(doc);
    shapes::describe_webhooks(doc);
    name_providers(doc, providers);
}

/// Whether a provider's capabilities include something.
type CanDo = fn(&Capabilities) -> bool;

/// What only some providers can do, by operation: said on the operation with the names of the
/// providers that can, from their declarations.
const CAPABLE: [(&str, &str, CanDo); 8] = [
    ("createSnapshot", "create snapshots", |c| c.create),
    (
        "createSnapshot",
        "keep one snapshot per source, replaced by a create",
        |c| c.create_replaces_existing,
    ),
    ("updateSnapshot", "rename snapshots", |c| c.rename),
    ("updateSnapshot", "change descriptions", |c| c.describe),
    ("restoreSnapshot", "restore to a new resource", |c| {
        c.restore_to_new_resource
    }),
    ("restoreSnapshot", "restore in place (destructive)", |c| {
        c.restore_in_place
    }),
    ("createImageFromSnapshot", "make images", |c| c.create_image),
    ("checkSnapshotName", "check names", |c| c.name_availability),
];

/// Names the providers where the document speaks of them: the API's description and, on each
/// operation only some providers can do, which ones can (`GET /v1/providers` says the same).
fn name_providers(doc: &mut Value, providers: &[&ProviderInfo]) {
    let names = |which: &dyn Fn(&ProviderInfo) -> bool| {
        let names: Vec<&str> = providers
            .iter()
            .filter(|p| which(p))
            .map(|p| p.display_name)
            .collect();
        match names.split_last() {
            None => "none".to_owned(),
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        }
    };
    if let Some(text) = doc["info"]["description"].as_str() {
        doc["info"]["description"] = text.replace("{providers}", &names(&|_| true)).into();
    }
    for_each_operation(doc, |_, _, op| {
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        for (_, what, can) in CAPABLE.iter().filter(|(op_id, ..)| *op_id == id) {
            let line = format!(
                "Providers that {what}: {}.",
                names(&|p| can(&p.capabilities))
            );
            let text = op["description"].as_str().unwrap_or_default();
            let joined = if text.is_empty() {
                line
            } else {
                format!("{text}\n\n{line}")
            };
            op["description"] = joined.into();
        }
    });
}

/// Calls `f(path, method, operation)` for every operation of the document.
pub(super) fn for_each_operation(doc: &mut Value, mut f: impl FnMut(&str, &str, &mut Value)) {
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
pub(super) fn merge(target: &mut Value, extra: Value) {
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
