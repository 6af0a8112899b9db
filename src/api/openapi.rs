//! The OpenAPI 3.1 document, derived from the handlers' annotations.

use utoipa::{
    openapi::{
        path::Operation,
        response::{Response, ResponseBuilder},
        security::{Http, HttpAuthScheme, SecurityScheme},
        ContentBuilder, Ref, RefOr,
    },
    Modify, OpenApi, PartialSchema, ToSchema,
};

use super::{accounts, health, listing, operations, problem::Problem, providers, snapshots};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "snapgate",
        description = "One HTTP API in front of the snapshot APIs of Hyperstack, Koyeb, Oktawave, Hostinger VPS and Syminet.\n\nEvery `/v1` route takes `Authorization: Bearer <JWT>`; the scopes each route needs are listed on it. Errors are `application/problem+json` (RFC 9457) with a stable `code` and the `request_id`.",
        license(name = "Apache-2.0")
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
    components(schemas(Problem)),
    modifiers(&Security, &ProblemResponses),
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
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Pretty JSON of the document, as `snapgate openapi` prints it.
pub fn document_json() -> String {
    document().to_pretty_json().unwrap_or_default() + "\n"
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

/// Adds the problem responses every `/v1` operation can give, so each route need not list them.
struct ProblemResponses;

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name(Problem::name()))))
                .build(),
        )
        .build()
}

const COMMON: [(&str, &str, &str); 7] = [
    ("400", "BadRequest", "Malformed JSON, path or query"),
    (
        "401",
        "Unauthorized",
        "Missing or invalid bearer token (`WWW-Authenticate: Bearer error=\"invalid_token\"`)",
    ),
    (
        "403",
        "Forbidden",
        "The token lacks the scope this route needs",
    ),
    (
        "413",
        "PayloadTooLarge",
        "The body exceeds the configured limit",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body is not `application/json`",
    ),
    (
        "422",
        "Unprocessable",
        "The body is JSON of the wrong shape; `field` names what was wrong",
    ),
    ("503", "Unavailable", "The gateway's store is unavailable"),
];

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (_, name, description) in COMMON {
            components
                .responses
                .insert(name.to_owned(), RefOr::T(problem_response(description)));
        }
        let _ = Problem::schema();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let ops = [
                (&mut item.get, false),
                (&mut item.delete, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
            ];
            for (op, has_body) in ops {
                if let Some(op) = op.as_mut() {
                    add_common(op, has_body && op.request_body.is_some());
                }
            }
        }
    }
}

fn add_common(op: &mut Operation, has_body: bool) {
    for (status, name, _) in COMMON {
        let body_only = matches!(status, "413" | "415" | "422");
        if body_only && !has_body {
            continue;
        }
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}
