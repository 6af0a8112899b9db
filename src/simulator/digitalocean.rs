//! Simulated DigitalOcean (`/v2`) snapshot API: droplet snapshots made by a droplet action
//! (`in-progress` → `completed` | `errored`) whose answer never names the snapshot (it appears
//! in the lists once the action completes); volume snapshots made at once (`201`); one list
//! for both (`links.pages`, `meta.total`), a droplet's own list with integer ids; renames of
//! droplet snapshots through `/images`; restore as a new droplet or volume, or by rebuilding.
//!
//! Auth: `Authorization: Bearer sim-digitalocean-token`. Errors `{id, message, request_id}`.
//! Every answer carries `ratelimit-limit`, `ratelimit-remaining` and `ratelimit-reset`.
//! Owns only DigitalOcean wire shapes and state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::FailAsync;
use super::variants::{VariantSpec, Variants};
use super::{bearer, json_body, lock, phase, query_int, query_map, Phase, Refusal, Reply};

/// id, name, size, region
const DROPLETS: [(i64, &str, &str, &str); 2] = [
    (3164444, "web-01", "s-1vcpu-1gb", "nyc3"),
    (3164445, "db-01", "s-2vcpu-4gb", "sfo3"),
];
/// id, name, size (GB), region
const VOLUMES: [(&str, &str, i64, &str); 1] = [(
    "7724db7c-e098-11e5-b522-000f53304e51",
    "big-data",
    10,
    "nyc1",
)];
/// GPU droplets: listed only with `type=gpus`.
const GPU_DROPLETS: [(i64, &str, &str, &str); 1] = [(3164460, "gpu-01", "gpu-h100x1-80gb", "tor1")];
const HOURLY_LIMIT: i64 = 5000;

struct Snap {
    id: String,
    name: String,
    resource: String,
    volume: bool,
    region: &'static str,
    size: i64,
    created: DateTime<Utc>,
}

struct Action {
    id: i64,
    kind: &'static str,
    droplet: i64,
    created: DateTime<Utc>,
    fails: bool,
    /// A snapshot action's snapshot, made once the action completes.
    snapshot_name: Option<String>,
    applied: bool,
}

struct DState {
    snaps: BTreeMap<String, Snap>,
    actions: BTreeMap<i64, Action>,
    next_snapshot: i64,
    next_action: i64,
    next_droplet: i64,
}

struct Api {
    delay: TimeDelta,
    state: Mutex<DState>,
}

type ApiState = State<Arc<Api>>;

pub(super) fn source_ids() -> Vec<String> {
    DROPLETS
        .iter()
        .chain(&GPU_DROPLETS)
        .map(|d| d.0.to_string())
        .chain(VOLUMES.iter().map(|v| v.0.to_owned()))
        .collect()
}

pub(super) fn router(delay: TimeDelta, seed: bool, now: DateTime<Utc>) -> Router {
    let api = Arc::new(Api {
        delay,
        state: Mutex::new(seeded(seed, now)),
    });
    Router::new()
        .route("/snapshots", get(list))
        .route("/snapshots/{id}", get(get_one).delete(delete))
        .route("/droplets", get(list_droplets).post(new_droplet))
        .route("/droplets/{id}", get(droplet))
        .route("/droplets/{id}/snapshots", get(droplet_snapshots))
        .route("/droplets/{id}/actions", post(droplet_action))
        .route("/volumes", get(list_volumes).post(new_volume))
        .route("/volumes/{id}/snapshots", post(volume_snapshot))
        .route("/images/{id}", put(rename))
        .route("/actions/{id}", get(action))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found") })
        .layer(middleware::from_fn(auth))
        .with_state(api)
}

fn seeded(seed: bool, now: DateTime<Utc>) -> DState {
    let mut st = DState {
        snaps: BTreeMap::new(),
        actions: BTreeMap::new(),
        next_snapshot: 6_372_400,
        next_action: 36_805_000,
        next_droplet: 3_170_000,
    };
    if seed {
        let web = Snap {
            id: "6372321".to_owned(),
            name: "web-01-nightly".to_owned(),
            resource: "3164444".to_owned(),
            volume: false,
            region: "nyc3",
            size: 25,
            created: now - TimeDelta::days(2),
        };
        let data = Snap {
            id: "8fa70202-873f-11e6-8b68-000f533176b1".to_owned(),
            name: "big-data-weekly".to_owned(),
            resource: VOLUMES[0].0.to_owned(),
            volume: true,
            region: "nyc1",
            size: 10,
            created: now - TimeDelta::days(5),
        };
        for s in [web, data] {
            st.snaps.insert(s.id.clone(), s);
        }
    }
    st
}

/// The vendor's error body for a status.
pub(super) fn vendor_error(status: StatusCode, message: &str) -> Response {
    let id = match status.as_u16() {
        401 => "unauthorized",
        404 => "not_found",
        422 => "unprocessable_entity",
        429 => "too_many_requests",
        400..=499 => "bad_request",
        _ => "server_error",
    };
    let body =
        json!({ "id": id, "message": message, "request_id": uuid::Uuid::new_v4().to_string() });
    (status, Json(body)).into_response()
}

fn error(status: StatusCode, id: &str) -> Response {
    let message = match id {
        "not_found" => "The resource you requested could not be found.",
        "unauthorized" => "Unable to authenticate you.",
        _ => "The request could not be processed.",
    };
    vendor_error(status, message)
}

fn not_found() -> Refusal {
    error(StatusCode::NOT_FOUND, "not_found").into()
}

fn unprocessable(message: &str) -> Refusal {
    vendor_error(StatusCode::UNPROCESSABLE_ENTITY, message).into()
}

/// Bearer auth, and the rate-limit headers on every answer.
async fn auth(req: Request, next: Next) -> Response {
    let spent = req
        .extensions()
        .get::<Variants>()
        .is_some_and(|v| v.flag(RATE_LIMIT_SPENT));
    let mut response =
        if bearer(req.headers().get(header::AUTHORIZATION)) == Some(super::DIGITALOCEAN_TOKEN) {
            next.run(req).await
        } else {
            error(StatusCode::UNAUTHORIZED, "unauthorized")
        };
    let remaining = if spent { 0 } else { HOURLY_LIMIT - 1 };
    let headers = response.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", HOURLY_LIMIT),
        ("ratelimit-remaining", remaining),
        ("ratelimit-reset", Utc::now().timestamp() + 60),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    response
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Api {
    /// Locks the state after applying finished actions: a completed snapshot action's
    /// snapshot appears then (or, in a variant, a little later).
    fn settled(&self, now: DateTime<Utc>, v: &Variants) -> MutexGuard<'_, DState> {
        let lag = TimeDelta::seconds(v.number(LISTING_LAG).unwrap_or(0));
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        for a in st.actions.values_mut() {
            let done = phase(a.created, self.delay, now) == Phase::Done;
            if a.applied || !done || a.fails || now < a.created + self.delay + lag {
                continue;
            }
            a.applied = true;
            let Some(name) = a.snapshot_name.clone() else {
                continue;
            };
            let id = st.next_snapshot.to_string();
            st.next_snapshot += 1;
            let region = DROPLETS
                .iter()
                .find(|d| d.0 == a.droplet)
                .map_or("nyc3", |d| d.3);
            let snap = Snap {
                id: id.clone(),
                name,
                resource: a.droplet.to_string(),
                volume: false,
                region,
                size: 25,
                created: a.created + self.delay / 2,
            };
            st.snaps.insert(id, snap);
        }
        guard
    }

    fn action(&self, a: &Action, now: DateTime<Utc>) -> Value {
        let (status, completed) = match phase(a.created, self.delay, now) {
            Phase::Done if a.fails => ("errored", Some(a.created + self.delay)),
            Phase::Done => ("completed", Some(a.created + self.delay)),
            _ => ("in-progress", None),
        };
        json!({
            "id": a.id,
            "status": status,
            "type": a.kind,
            "started_at": ts(a.created),
            "completed_at": completed.map(ts),
            "resource_id": a.droplet,
            "resource_type": "droplet",
            "region_slug": "nyc3",
        })
    }

    fn open(&self, st: &mut DState, kind: &'static str, droplet: i64, fails: bool) -> i64 {
        let id = st.next_action;
        st.next_action += 1;
        let action = Action {
            id,
            kind,
            droplet,
            created: Utc::now(),
            fails,
            snapshot_name: None,
            applied: false,
        };
        st.actions.insert(id, action);
        id
    }
}

fn snapshot_json(s: &Snap) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "created_at": ts(s.created),
        "regions": [s.region],
        "resource_id": s.resource,
        "resource_type": if s.volume { "volume" } else { "droplet" },
        "min_disk_size": s.size,
        "size_gigabytes": 2.34,
        "tags": [],
    })
}

async fn list(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    RawQuery(query): RawQuery,
) -> Reply {
    let q = query_map(query.as_deref());
    let st = api.settled(Utc::now(), v);
    let kind = q.get("resource_type").map(String::as_str);
    let all = st
        .snaps
        .values()
        .filter(|s| kind.is_none_or(|k| (k == "volume") == s.volume))
        .map(snapshot_json);
    paged(&q, v, "snapshots", all.collect())
}

/// `GET /droplets`: GPU droplets only with `type=gpus`, and only then.
async fn list_droplets(Extension(ref v): Extension<Variants>, RawQuery(query): RawQuery) -> Reply {
    let q = query_map(query.as_deref());
    let gpus = match q.get("type").map(String::as_str) {
        None | Some("droplets") => false,
        Some("gpus") => true,
        Some(_) => return Err(unprocessable("type must be droplets or gpus")),
    };
    let all = if gpus {
        &GPU_DROPLETS[..]
    } else {
        &DROPLETS[..]
    };
    paged(
        &q,
        v,
        "droplets",
        all.iter().map(|d| droplet_json(*d)).collect(),
    )
}

async fn list_volumes(Extension(ref v): Extension<Variants>, RawQuery(query): RawQuery) -> Reply {
    let q = query_map(query.as_deref());
    let all = VOLUMES.iter().map(|(id, name, size, region)| {
        json!({
            "id": id, "name": name, "size_gigabytes": size, "droplet_ids": [],
            "region": { "slug": region, "name": region },
        })
    });
    paged(&q, v, "volumes", all.collect())
}

/// One page of a list as DigitalOcean answers it: `page` from 1, `per_page` 1 to 200
/// (lowered by the `page_cap` variant), `links.pages` (no `next` under `no_next_link`) and
/// `meta.total`.
fn paged(
    q: &std::collections::HashMap<String, String>,
    v: &Variants,
    key: &str,
    all: Vec<Value>,
) -> Reply {
    let number = |key| query_int(q, key).map_err(|_| unprocessable("invalid page"));
    let page = number("page")?.unwrap_or(1).max(1);
    let per_page = number("per_page")?.unwrap_or(20).clamp(1, 200);
    let per_page = v.number(PAGE_CAP).map_or(per_page, |cap| per_page.min(cap));
    let total = all.len() as i64;
    let last = ((total + per_page - 1) / per_page).max(1);
    let skip = usize::try_from((page - 1) * per_page).unwrap_or(usize::MAX);
    let items: Vec<Value> = all
        .into_iter()
        .skip(skip)
        .take(usize::try_from(per_page).unwrap_or(0))
        .collect();
    let link =
        |p: i64| format!("https://api.digitalocean.com/v2/{key}?page={p}&per_page={per_page}");
    let mut pages = serde_json::Map::new();
    if page < last && !v.flag(NO_NEXT_LINK) {
        pages.insert("next".to_owned(), link(page + 1).into());
        pages.insert("last".to_owned(), link(last).into());
    }
    if page > 1 {
        pages.insert("first".to_owned(), link(1).into());
        pages.insert("prev".to_owned(), link(page - 1).into());
    }
    Ok(Json(json!({
        key: items,
        "links": { "pages": pages },
        "meta": { "total": total },
    }))
    .into_response())
}

async fn get_one(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let st = api.settled(Utc::now(), v);
    let s = st.snaps.get(&id).ok_or_else(not_found)?;
    Ok(Json(json!({ "snapshot": snapshot_json(s) })).into_response())
}

async fn delete(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let mut st = api.settled(Utc::now(), v);
    st.snaps.remove(&id).ok_or_else(not_found)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn find_droplet(raw: &str) -> Result<(i64, &'static str, &'static str, &'static str), Refusal> {
    let id: Option<i64> = raw.parse().ok();
    DROPLETS
        .iter()
        .chain(&GPU_DROPLETS)
        .copied()
        .find(|d| Some(d.0) == id)
        .ok_or_else(not_found)
}

async fn droplet(Path(id): Path<String>) -> Reply {
    let found = find_droplet(&id)?;
    Ok(Json(json!({ "droplet": droplet_json(found) })).into_response())
}

fn droplet_json((id, name, size, region): (i64, &str, &str, &str)) -> Value {
    json!({
        "id": id, "name": name, "status": "active", "size_slug": size,
        "region": { "slug": region, "name": region },
    })
}

async fn droplet_snapshots(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let (droplet, ..) = find_droplet(&id)?;
    let st = api.settled(Utc::now(), v);
    let items: Vec<Value> = st
        .snaps
        .values()
        .filter(|s| !s.volume && s.resource == droplet.to_string())
        .map(|s| {
            json!({
                "id": s.id.parse::<i64>().unwrap_or_default(),
                "name": s.name,
                "type": "snapshot",
                "created_at": ts(s.created),
                "regions": [s.region],
                "min_disk_size": s.size,
                "size_gigabytes": 2.34,
            })
        })
        .collect();
    let total = items.len();
    Ok(
        Json(json!({ "snapshots": items, "links": {}, "meta": { "total": total } }))
            .into_response(),
    )
}

#[derive(Deserialize)]
struct DropletAction {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    image: Option<Value>,
}

async fn droplet_action(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let request: DropletAction = json_body(&body).map_err(|e| unprocessable(&e))?;
    let (droplet, ..) = find_droplet(&id)?;
    let now = Utc::now();
    let mut st = api.settled(now, v);
    let kind = match request.kind.as_str() {
        "snapshot" => "snapshot",
        "rebuild" => {
            let image = request.image.as_ref().and_then(|i| {
                i.as_i64()
                    .map(|n| n.to_string())
                    .or_else(|| i.as_str().map(str::to_owned))
            });
            if !image.is_some_and(|i| st.snaps.contains_key(&i)) {
                return Err(unprocessable("image is not a snapshot of this account"));
            }
            "rebuild"
        }
        other => {
            return Err(unprocessable(&format!(
                "action type {other} is not simulated"
            )))
        }
    };
    let action = api.open(&mut st, kind, droplet, fails);
    if kind == "snapshot" {
        let name = request
            .name
            .unwrap_or_else(|| format!("{id}-{}", now.timestamp_millis()));
        if let Some(a) = st.actions.get_mut(&action) {
            a.snapshot_name = Some(name);
        }
    }
    let body = json!({ "action": api.action(&st.actions[&action], now) });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct VolumeSnapshot {
    name: String,
    tags: Option<Vec<String>>,
}

async fn volume_snapshot(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let request: VolumeSnapshot = json_body(&body).map_err(|e| unprocessable(&e))?;
    let _ = request.tags;
    let volume = VOLUMES.iter().find(|v| v.0 == id).ok_or_else(not_found)?;
    let mut st = api.settled(Utc::now(), v);
    let snap = Snap {
        id: uuid::Uuid::new_v4().to_string(),
        name: request.name,
        resource: volume.0.to_owned(),
        volume: true,
        region: volume.3,
        size: volume.2,
        created: Utc::now(),
    };
    let body = json!({ "snapshot": snapshot_json(&snap) });
    st.snaps.insert(snap.id.clone(), snap);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

async fn rename(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let request: Rename = json_body(&body).map_err(|e| unprocessable(&e))?;
    let mut st = api.settled(Utc::now(), v);
    let snap = st
        .snaps
        .get_mut(&id)
        .filter(|s| !s.volume)
        .ok_or_else(not_found)?;
    snap.name = request.name;
    Ok(Json(json!({ "image": { "id": id.parse::<i64>().unwrap_or_default(), "name": snap.name, "type": "snapshot" } })).into_response())
}

#[derive(Deserialize)]
struct NewDroplet {
    name: String,
    size: String,
    region: String,
    image: Value,
}

async fn new_droplet(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
    body: Bytes,
) -> Reply {
    let request: NewDroplet = json_body(&body).map_err(|e| unprocessable(&e))?;
    let _ = (request.size, request.region);
    let mut st = api.settled(Utc::now(), v);
    let image = request.image.as_i64().map(|i| i.to_string());
    if !image.is_some_and(|i| st.snaps.contains_key(&i)) {
        return Err(unprocessable(
            "You specified an invalid image for Droplet creation.",
        ));
    }
    let id = st.next_droplet;
    st.next_droplet += 1;
    let action = api.open(&mut st, "create", id, fails);
    let body = json!({
        "droplet": { "id": id, "name": request.name, "status": "new" },
        "links": { "actions": [{ "id": action, "rel": "create", "href": format!("https://api.digitalocean.com/v2/actions/{action}") }] },
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct NewVolume {
    name: String,
    size_gigabytes: i64,
    snapshot_id: String,
    region: Option<String>,
}

async fn new_volume(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    body: Bytes,
) -> Reply {
    let request: NewVolume = json_body(&body).map_err(|e| unprocessable(&e))?;
    let _ = request.region;
    let st = api.settled(Utc::now(), v);
    let snap = st
        .snaps
        .get(&request.snapshot_id)
        .filter(|s| s.volume)
        .ok_or_else(|| unprocessable("snapshot_id is not a volume snapshot"))?;
    if request.size_gigabytes < snap.size {
        return Err(unprocessable(
            "size_gigabytes is smaller than the snapshot's min_disk_size",
        ));
    }
    let body = json!({ "volume": {
        "id": uuid::Uuid::new_v4().to_string(), "name": request.name,
        "size_gigabytes": request.size_gigabytes, "region": { "slug": snap.region },
    }});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn action(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let now = Utc::now();
    let st = api.settled(now, v);
    let a = id
        .parse::<i64>()
        .ok()
        .and_then(|id| st.actions.get(&id))
        .ok_or_else(not_found)?;
    Ok(Json(json!({ "action": api.action(a, now) })).into_response())
}

/// Variant: a completed snapshot action's snapshot is listed only n seconds later
const LISTING_LAG: &str = "digitalocean.listing_lag";
/// Variant: caps `per_page` at n without saying so
const PAGE_CAP: &str = "digitalocean.page_cap";
/// Variant: list pages carry no `links.pages.next`
const NO_NEXT_LINK: &str = "digitalocean.no_next_link";
/// Variant: every answer says none of the rate limit is left (`ratelimit-remaining: 0`)
const RATE_LIMIT_SPENT: &str = "digitalocean.rate_limit_spent";

/// The readings of undocumented behaviour this vendor can play (see [`super::variants`]).
static VARIANTS: &[VariantSpec] = &[
    VariantSpec::number(
        LISTING_LAG,
        0,
        86_400,
        "a completed snapshot action's snapshot is listed only n seconds later",
    ),
    VariantSpec::number(PAGE_CAP, 1, 200, "caps `per_page` at n without saying so"),
    VariantSpec::flag(NO_NEXT_LINK, "list pages carry no `links.pages.next`"),
    VariantSpec::flag(
        RATE_LIMIT_SPENT,
        "every answer says none of the rate limit is left (`ratelimit-remaining: 0`)",
    ),
];

/// The simulator's entry for this vendor.
pub(super) static SPEC: super::Spec = super::Spec {
    name: "digitalocean",
    prefix: "/digitalocean/v2",
    credentials: &[("token", super::DIGITALOCEAN_TOKEN)],
    source_ids,
    error: vendor_error,
    routers: |b| vec![(SPEC.prefix, false, router(b.delay, b.seed, b.now))],
    gateway_settings: |_| Vec::new(),
    variants: VARIANTS,
};
