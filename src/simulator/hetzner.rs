//! Simulated Hetzner Cloud (`/v1`) snapshot API: snapshots are images of type `snapshot`,
//! created by a server action (`running` → `success` | `error`) and answered with the image
//! (`creating` until the action ends); images listed with `page`/`per_page` and
//! `meta.pagination`; synchronous delete (204), refused with 423 `protected` for a
//! delete-protected image; restore by rebuilding a server (action) or creating a server from
//! the image (server + action); a server with a running action is `locked` (423).
//!
//! Auth: `Authorization: Bearer sim-hetzner-token`. Errors `{"error": {code, message, details}}`.
//! Every answer carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.
//! Owns only Hetzner wire shapes and state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::FailAsync;
use super::variants::{VariantSpec, Variants};
use super::{bearer, json_body, lock, phase, query_int, query_map, Phase, Refusal, Reply};

/// id, name, server type, location
type SeedServer = (i64, &'static str, &'static str, &'static str);
const SEED_SERVERS: [SeedServer; 3] = [
    (42, "web-1", "cx22", "fsn1"),
    (43, "db-1", "cpx31", "nbg1"),
    (44, "cache-1", "cx22", "hel1"),
];
const RATE_LIMIT: i64 = 3600;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Command {
    CreateImage,
    Rebuild,
    CreateServer,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::CreateImage => "create_image",
            Command::Rebuild => "rebuild_server",
            Command::CreateServer => "create_server",
        }
    }
}

struct Image {
    id: i64,
    description: String,
    server: i64,
    created: DateTime<Utc>,
    protected: bool,
    /// The action that makes it, while it has one.
    action: Option<i64>,
}

struct Action {
    id: i64,
    command: Command,
    server: i64,
    created: DateTime<Utc>,
    fails: bool,
}

struct Server {
    id: i64,
    name: String,
    server_type: &'static str,
    location: &'static str,
}

struct HState {
    images: BTreeMap<i64, Image>,
    actions: BTreeMap<i64, Action>,
    servers: BTreeMap<i64, Server>,
    next_image: i64,
    next_action: i64,
    next_server: i64,
}

struct Api {
    delay: TimeDelta,
    state: Mutex<HState>,
}

type ApiState = State<Arc<Api>>;

pub(super) fn source_ids() -> Vec<String> {
    SEED_SERVERS.iter().map(|s| s.0.to_string()).collect()
}

pub(super) fn router(delay: TimeDelta, seed: bool, now: DateTime<Utc>) -> Router {
    let api = Arc::new(Api {
        delay,
        state: Mutex::new(seeded(seed, now)),
    });
    Router::new()
        .route("/images", get(list_images))
        .route(
            "/images/{id}",
            get(get_image).put(update_image).delete(delete_image),
        )
        .route("/servers", get(list_servers).post(create_server))
        .route("/servers/{id}", get(get_server))
        .route("/servers/{id}/actions/create_image", post(create_image))
        .route("/servers/{id}/actions/rebuild", post(rebuild))
        .route("/actions/{id}", get(get_action))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "not found") })
        .layer(middleware::from_fn(auth))
        .with_state(api)
}

fn seeded(seed: bool, now: DateTime<Utc>) -> HState {
    let mut st = HState {
        images: BTreeMap::new(),
        actions: BTreeMap::new(),
        servers: SEED_SERVERS
            .iter()
            .map(|&(id, name, server_type, location)| {
                let server = Server {
                    id,
                    name: name.to_owned(),
                    server_type,
                    location,
                };
                (id, server)
            })
            .collect(),
        next_image: 4713,
        next_action: 100,
        next_server: 1000,
    };
    if seed {
        let seeds = [
            (4711, "nightly web-1", 42, TimeDelta::days(3), false),
            (4712, "before upgrade", 43, TimeDelta::days(9), true),
        ];
        for (id, description, server, age, protected) in seeds {
            let image = Image {
                id,
                description: description.to_owned(),
                server,
                created: now - age,
                protected,
                action: None,
            };
            st.images.insert(id, image);
        }
    }
    st
}

/// The vendor's error body.
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": code, "message": message, "details": {} } });
    (status, Json(body)).into_response()
}

/// The simulator's generic refusal in this vendor's shape.
fn vendor_error(status: StatusCode, message: &str) -> Response {
    let code = match status.as_u16() {
        401 => "unauthorized",
        404 => "not_found",
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_input",
        503 => "unavailable",
        _ => "server_error",
    };
    error(status, code, message)
}

fn not_found(what: &str) -> Refusal {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("{what} not found"),
    )
    .into()
}

fn invalid(message: &str) -> Refusal {
    error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message).into()
}

/// Bearer auth, and the rate-limit headers on every answer.
async fn auth(req: Request, next: Next) -> Response {
    let spent = req
        .extensions()
        .get::<Variants>()
        .is_some_and(|v| v.flag(RATE_LIMIT_SPENT));
    let mut response =
        if bearer(req.headers().get(header::AUTHORIZATION)) == Some(super::HETZNER_TOKEN) {
            next.run(req).await
        } else {
            error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unable to authenticate",
            )
        };
    let now = Utc::now().timestamp();
    let remaining = if spent { 0 } else { RATE_LIMIT - 1 };
    let headers = response.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", RATE_LIMIT),
        ("ratelimit-remaining", remaining),
        ("ratelimit-reset", now + RATE_LIMIT - remaining),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    response
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Api {
    /// Locks the state after applying finished actions: a failed create drops its image
    /// (or, in a variant, leaves it `unavailable`).
    fn settled(&self, now: DateTime<Utc>, v: &Variants) -> MutexGuard<'_, HState> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let failed: Vec<i64> = st
            .images
            .values()
            .filter_map(|i| {
                let a = st.actions.get(&i.action?)?;
                (a.fails && phase(a.created, self.delay, now) == Phase::Done).then_some(i.id)
            })
            .collect();
        if !v.flag(FAILED_IMAGE_STAYS) {
            for id in failed {
                st.images.remove(&id);
            }
        }
        guard
    }

    fn action(&self, a: &Action, now: DateTime<Utc>) -> Value {
        let (status, progress, finished) = match phase(a.created, self.delay, now) {
            Phase::Queued => ("running", 0, None),
            Phase::Running(p) => ("running", p, None),
            Phase::Done if a.fails => ("error", 100, Some(a.created + self.delay)),
            Phase::Done => ("success", 100, Some(a.created + self.delay)),
        };
        let error = (status == "error")
            .then(|| json!({ "code": "action_failed", "message": "Action failed" }));
        json!({
            "id": a.id,
            "command": a.command.as_str(),
            "status": status,
            "progress": progress,
            "started": ts(a.created),
            "finished": finished.map(ts),
            "resources": [{ "id": a.server, "type": "server" }],
            "error": error,
        })
    }

    fn image(&self, st: &HState, i: &Image, now: DateTime<Utc>) -> Value {
        let making = i.action.and_then(|id| st.actions.get(&id));
        let status = match making.map(|a| (phase(a.created, self.delay, now), a.fails)) {
            Some((Phase::Done, true)) => "unavailable",
            Some((Phase::Done, false)) | None => "available",
            Some(_) => "creating",
        };
        let server = st.servers.get(&i.server);
        json!({
            "id": i.id,
            "type": "snapshot",
            "status": status,
            "name": null,
            "description": i.description,
            "image_size": (status == "available").then_some(2.3),
            "disk_size": 40,
            "created": ts(i.created),
            "created_from": { "id": i.server, "name": server.map_or("deleted", |s| s.name.as_str()) },
            "bound_to": null,
            "os_flavor": "ubuntu",
            "os_version": "24.04",
            "rapid_deploy": false,
            "protection": { "delete": i.protected },
            "deprecated": null,
            "deleted": null,
            "labels": {},
            "architecture": "x86",
        })
    }

    fn server(&self, st: &HState, s: &Server, now: DateTime<Utc>) -> Value {
        let status = if self.locked(st, s.id, now) {
            "rebuilding"
        } else {
            "running"
        };
        json!({
            "id": s.id,
            "name": s.name,
            "status": status,
            "server_type": { "name": s.server_type, "cores": 2, "memory": 4.0, "disk": 40 },
            "location": { "name": s.location, "network_zone": "eu-central" },
            "locked": false,
            "protection": { "delete": false, "rebuild": false },
        })
    }

    fn locked(&self, st: &HState, server: i64, now: DateTime<Utc>) -> bool {
        st.actions
            .values()
            .any(|a| a.server == server && phase(a.created, self.delay, now) != Phase::Done)
    }

    fn open(&self, st: &mut HState, command: Command, server: i64, fails: bool) -> i64 {
        let id = st.next_action;
        st.next_action += 1;
        let action = Action {
            id,
            command,
            server,
            created: Utc::now(),
            fails,
        };
        st.actions.insert(id, action);
        id
    }
}

fn id_of(raw: &str) -> Option<i64> {
    raw.parse().ok()
}

async fn list_images(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    RawQuery(query): RawQuery,
) -> Reply {
    let q = query_map(query.as_deref());
    let now = Utc::now();
    let st = api.settled(now, v);
    let snapshots = q.get("type").is_none_or(|t| t == "snapshot");
    let all = st.images.values().filter(|_| snapshots);
    paged(
        &q,
        v,
        "images",
        all.map(|i| api.image(&st, i, now)).collect(),
    )
}

async fn list_servers(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    RawQuery(query): RawQuery,
) -> Reply {
    let q = query_map(query.as_deref());
    let now = Utc::now();
    let st = api.settled(now, v);
    let all = st.servers.values().map(|s| api.server(&st, s, now));
    paged(&q, v, "servers", all.collect())
}

/// One page of a list as Hetzner answers it: `page` from 1, `per_page` 1 to 50 (lowered by
/// the `page_cap` variant), `meta.pagination`.
fn paged(
    q: &std::collections::HashMap<String, String>,
    v: &Variants,
    key: &str,
    all: Vec<Value>,
) -> Reply {
    let number = |key| query_int(q, key).map_err(|_| invalid(&format!("invalid {key}")));
    let page = number("page")?.unwrap_or(1);
    let per_page = number("per_page")?.unwrap_or(25);
    if page < 1 || !(1..=50).contains(&per_page) {
        return Err(invalid("page must be positive and per_page 1 to 50"));
    }
    let per_page = v.number(PAGE_CAP).map_or(per_page, |cap| per_page.min(cap));
    let total = all.len() as i64;
    let last_page = ((total + per_page - 1) / per_page).max(1);
    let skip = usize::try_from((page - 1) * per_page).unwrap_or(usize::MAX);
    let items: Vec<Value> = all
        .into_iter()
        .skip(skip)
        .take(usize::try_from(per_page).unwrap_or(0))
        .collect();
    Ok(Json(json!({
        key: items,
        "meta": { "pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": (page > 1).then_some(page - 1),
            "next_page": (page < last_page).then_some(page + 1),
            "last_page": last_page,
            "total_entries": total,
        }},
    }))
    .into_response())
}

async fn get_image(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let now = Utc::now();
    let st = api.settled(now, v);
    let image = id_of(&id)
        .and_then(|id| st.images.get(&id))
        .ok_or_else(|| not_found("image"))?;
    Ok(Json(json!({ "image": api.image(&st, image, now) })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageUpdate {
    description: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    labels: Option<Value>,
}

async fn update_image(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let update: ImageUpdate = json_body(&body).map_err(|e| invalid(&e))?;
    let _ = (update.kind, update.labels);
    let now = Utc::now();
    let mut st = api.settled(now, v);
    let image = id_of(&id)
        .and_then(|id| st.images.get_mut(&id))
        .ok_or_else(|| not_found("image"))?;
    if let Some(description) = update.description {
        image.description = description;
    }
    let image = &st.images[&image_id(&id)];
    Ok(Json(json!({ "image": api.image(&st, image, now) })).into_response())
}

fn image_id(raw: &str) -> i64 {
    id_of(raw).unwrap_or_default()
}

async fn delete_image(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let mut st = api.settled(Utc::now(), v);
    let image = id_of(&id)
        .and_then(|id| st.images.get(&id))
        .ok_or_else(|| not_found("image"))?;
    if image.protected {
        let message = "image deletion is protected";
        return Err(error(StatusCode::LOCKED, "protected", message).into());
    }
    st.images.remove(&image_id(&id));
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateImage {
    description: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    labels: Option<Value>,
}

/// The server a path names, not locked by a running action.
fn free_server(api: &Api, st: &HState, raw: &str, now: DateTime<Utc>) -> Result<i64, Refusal> {
    let server = id_of(raw)
        .filter(|id| st.servers.contains_key(id))
        .ok_or_else(|| not_found("server"))?;
    if api.locked(st, server, now) {
        let message = "server is locked: there is already an action running";
        return Err(error(StatusCode::LOCKED, "locked", message).into());
    }
    Ok(server)
}

async fn create_image(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let request: CreateImage = json_body(&body).map_err(|e| invalid(&e))?;
    if request.kind.as_deref().is_some_and(|k| k != "snapshot") {
        return Err(invalid("only snapshots are simulated"));
    }
    let _ = request.labels;
    let now = Utc::now();
    let mut st = api.settled(now, v);
    let server = free_server(&api, &st, &id, now)?;
    let action = api.open(&mut st, Command::CreateImage, server, fails);
    let image_id = st.next_image;
    st.next_image += 1;
    let description = request
        .description
        .unwrap_or_else(|| format!("{}-{}", st.servers[&server].name, ts(now)));
    let image = Image {
        id: image_id,
        description,
        server,
        created: now,
        protected: false,
        action: Some(action),
    };
    st.images.insert(image_id, image);
    let body = json!({
        "image": api.image(&st, &st.images[&image_id], now),
        "action": api.action(&st.actions[&action], now),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct Rebuild {
    image: Value,
}

/// An image id given as a number or a numeric string (both are accepted).
fn image_ref(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(id_of))
}

async fn rebuild(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let request: Rebuild = json_body(&body).map_err(|e| invalid(&e))?;
    let now = Utc::now();
    let mut st = api.settled(now, v);
    let server = free_server(&api, &st, &id, now)?;
    let image = image_ref(&request.image)
        .filter(|i| st.images.contains_key(i))
        .ok_or_else(|| not_found("image"))?;
    let _ = image;
    let action = api.open(&mut st, Command::Rebuild, server, fails);
    let body = json!({
        "action": api.action(&st.actions[&action], now),
        "root_password": "sim-generated-root-password",
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct NewServer {
    name: String,
    server_type: String,
    image: Value,
    location: Option<String>,
    start_after_create: Option<bool>,
}

async fn create_server(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
    body: Bytes,
) -> Reply {
    let request: NewServer = json_body(&body).map_err(|e| invalid(&e))?;
    let _ = request.start_after_create;
    let now = Utc::now();
    let mut st = api.settled(now, v);
    image_ref(&request.image)
        .filter(|i| st.images.contains_key(i))
        .ok_or_else(|| invalid("image not found"))?;
    if st.servers.values().any(|s| s.name == request.name) {
        let message = "server name is already used";
        return Err(error(StatusCode::CONFLICT, "uniqueness_error", message).into());
    }
    let server_type = ["cx22", "cpx31"]
        .into_iter()
        .find(|t| *t == request.server_type)
        .ok_or_else(|| invalid("unknown server_type"))?;
    let location = ["fsn1", "nbg1", "hel1"]
        .into_iter()
        .find(|l| request.location.as_deref().is_none_or(|r| r == *l))
        .ok_or_else(|| invalid("unknown location"))?;
    let id = st.next_server;
    st.next_server += 1;
    let server = Server {
        id,
        name: request.name,
        server_type,
        location,
    };
    st.servers.insert(id, server);
    let action = api.open(&mut st, Command::CreateServer, id, fails);
    let body = json!({
        "server": api.server(&st, &st.servers[&id], now),
        "action": api.action(&st.actions[&action], now),
        "next_actions": [],
        "root_password": "sim-generated-root-password",
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn get_server(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let now = Utc::now();
    let st = api.settled(now, v);
    let server = id_of(&id)
        .and_then(|id| st.servers.get(&id))
        .ok_or_else(|| not_found("server"))?;
    Ok(Json(json!({ "server": api.server(&st, server, now) })).into_response())
}

async fn get_action(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let now = Utc::now();
    let st = api.settled(now, v);
    let action = id_of(&id)
        .and_then(|id| st.actions.get(&id))
        .ok_or_else(|| not_found("action"))?;
    Ok(Json(json!({ "action": api.action(action, now) })).into_response())
}

/// Variant: a snapshot whose create action failed stays listed as `unavailable`
const FAILED_IMAGE_STAYS: &str = "hetzner.failed_image_stays";
/// Variant: caps `per_page` at n without saying so in the request (the reply's `per_page` does)
const PAGE_CAP: &str = "hetzner.page_cap";
/// Variant: every answer says none of the rate limit is left (`RateLimit-Remaining: 0`)
const RATE_LIMIT_SPENT: &str = "hetzner.rate_limit_spent";

/// The readings of undocumented behaviour this vendor can play (see [`super::variants`]).
static VARIANTS: &[VariantSpec] = &[
    VariantSpec::flag(
        FAILED_IMAGE_STAYS,
        "a snapshot whose create action failed stays listed as `unavailable` (default: it is gone)",
    ),
    VariantSpec::number(
        PAGE_CAP,
        1,
        50,
        "caps `per_page` at n (the reply's `meta.pagination.per_page` says so)",
    ),
    VariantSpec::flag(
        RATE_LIMIT_SPENT,
        "every answer says none of the rate limit is left (`RateLimit-Remaining: 0`)",
    ),
];

/// The simulator's entry for this vendor.
pub(super) static SPEC: super::Spec = super::Spec {
    name: "hetzner",
    prefix: "/hetzner/v1",
    credentials: &[("token", super::HETZNER_TOKEN)],
    source_ids,
    error: vendor_error,
    routers: |b| vec![(SPEC.prefix, false, router(b.delay, b.seed, b.now))],
    gateway_settings: |_| Vec::new(),
    variants: VARIANTS,
};
