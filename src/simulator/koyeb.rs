//! Simulated Koyeb (`/v1`) volume-snapshot API: `SNAPSHOT_STATUS_CREATING` → `AVAILABLE`,
//! rename by `POST /v1/snapshots/{id}`, delete → `DELETING` → gone, restore = `POST /v1/volumes`
//! with `snapshot_id`, plus the volume list the snapshots come from.
//!
//! Auth: `Authorization: Bearer sim-koyeb-token`. Errors `{status, code, message[, fields]}`.
//! Paging `limit` (≤ 100, default 10) / `offset` → `has_next`, newest first.
//! Owns only Koyeb wire shapes and state.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::variants::{VariantSpec, Variants};
use super::{bearer, json_body, lock, phase, Phase, Refusal, Reply, KOYEB_TOKEN};

const ORG_ID: &str = "c402bcad-d06d-4fd6-8af2-08b790c0e249";
const LOCAL_BLK: &str = "PERSISTENT_VOLUME_BACKING_STORE_LOCAL_BLK";
/// id, name, region, size GB, attached service, age in days
type SeedVolume = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    Option<&'static str>,
    i64,
);
/// id, name, index into `SEED_VOLUMES`, age in microseconds
type SeedSnap = (&'static str, &'static str, usize, i64);

#[rustfmt::skip]
const SEED_VOLUMES: [SeedVolume; 3] = [
    ("8f6e2b4a-3c1d-4e5f-9a7b-0c2d4e6f8a1b", "pg-data", "fra", 10, Some("5d1b7c0e-61a2-4f0e-9c3b-2a7e4f8d9b10"), 120),
    ("1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809", "uploads", "was", 20, Some("7e2c8d1f-72b3-4a1f-8d4c-3b8f5a9e0c21"), 75),
    ("3c9d7e1f-0a2b-4c4d-8e6f-7a8b9c0d1e2f", "cache", "sin", 5, None, 12),
];
#[rustfmt::skip]
const SEED_SNAPSHOTS: [SeedSnap; 2] = [
    ("5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e", "pg-data-before-migration", 0, 781_204_221_274),
    ("a7c9e1f3-2b4d-4c6e-8f0a-1c3e5a7b9d2f", "uploads-weekly", 1, 259_261_004_511),
];

struct Volume {
    id: String,
    name: String,
    region: String,
    max_size: i64,
    cur_size: i64,
    snapshot_id: Option<String>,
    service_id: Option<String>,
    created_at: DateTime<Utc>,
    /// A restore that failed to build: `DELETING` until then, gone after.
    removed_at: Option<DateTime<Utc>>,
    /// A restore built under `restore.new_resource_unknown`: a status no page names.
    odd_status: bool,
}

struct Snap {
    id: String,
    name: String,
    size: i64,
    parent_volume_id: String,
    region: String,
    created_at: DateTime<Utc>,
    renamed_at: Option<DateTime<Utc>>,
    deleting_since: Option<DateTime<Utc>>,
    /// Taken before the simulator started (under `koyeb.migrating`: still migrating).
    seeded: bool,
}

struct KoyebState {
    volumes: Vec<Volume>,
    snaps: Vec<Snap>,
}

struct Api {
    delay: TimeDelta,
    state: Mutex<KoyebState>,
}

type ApiState = State<Arc<Api>>;

pub(super) fn source_ids() -> Vec<String> {
    SEED_VOLUMES.iter().map(|v| v.0.to_owned()).collect()
}

pub(super) fn router(delay: TimeDelta, seed: bool, now: DateTime<Utc>) -> Router {
    let api = Arc::new(Api {
        delay,
        state: Mutex::new(seeded(seed, now)),
    });
    Router::new()
        .route("/v1/snapshots", get(list).post(create))
        .route(
            "/v1/snapshots/{id}",
            get(get_one).post(update).delete(delete),
        )
        .route("/v1/volumes", get(list_volumes).post(create_volume))
        .route("/v1/volumes/{id}", get(get_volume))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found") })
        .layer(middleware::from_fn(auth))
        .with_state(api)
}

fn seeded(seed: bool, now: DateTime<Utc>) -> KoyebState {
    let volumes = SEED_VOLUMES
        .iter()
        .map(|&(id, name, region, size, service, days)| Volume {
            id: id.to_owned(),
            name: name.to_owned(),
            region: region.to_owned(),
            max_size: size,
            cur_size: size / 3,
            snapshot_id: None,
            service_id: service.map(str::to_owned),
            created_at: now - TimeDelta::days(days) - TimeDelta::microseconds(381_207),
            removed_at: None,
            odd_status: false,
        })
        .collect();
    let snaps = SEED_SNAPSHOTS
        .iter()
        .filter(|_| seed)
        .map(|&(id, name, volume, age)| {
            let (parent, _, region, size, _, _) = SEED_VOLUMES[volume];
            Snap {
                id: id.to_owned(),
                name: name.to_owned(),
                size,
                parent_volume_id: parent.to_owned(),
                region: region.to_owned(),
                created_at: now - TimeDelta::microseconds(age),
                renamed_at: None,
                deleting_since: None,
                seeded: true,
            }
        })
        .collect();
    KoyebState { volumes, snaps }
}

/// The vendor `Error` body.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let code = match status.as_u16() {
        400 => "invalid_argument",
        401 => "authentication_error",
        403 => "authorization_required",
        404 => "unknown_resource",
        429 => "rate_limit_error",
        _ => "api_error",
    };
    let body = json!({ "status": status.as_u16(), "code": code, "message": message });
    (status, Json(body)).into_response()
}

/// 400 `ErrorWithFields` naming the offending field.
fn invalid(field: &str, description: &str) -> Refusal {
    let body = json!({
        "status": 400,
        "code": "invalid_argument",
        "message": "Invalid argument",
        "fields": [{ "field": field, "description": description }],
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response().into()
}

async fn auth(req: Request, next: Next) -> Response {
    if bearer(req.headers().get(header::AUTHORIZATION)) != Some(KOYEB_TOKEN) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Request unauthenticated with bearer",
        );
    }
    next.run(req).await
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl Api {
    /// Status at `now`, or `None` once a deletion has finished. Under `koyeb.migrating` a
    /// finished snapshot moves to cold storage (`MIGRATING`) for one more delay; seeded ones
    /// are still moving.
    fn status(&self, s: &Snap, v: &Variants, now: DateTime<Utc>) -> Option<&'static str> {
        if let Some(since) = s.deleting_since {
            return (phase(since, self.delay, now) != Phase::Done)
                .then_some("SNAPSHOT_STATUS_DELETING");
        }
        let migrating = v.flag(MIGRATING)
            && (s.seeded || phase(s.created_at + self.delay, self.delay, now) != Phase::Done);
        Some(match phase(s.created_at, self.delay, now) {
            Phase::Done if migrating => "SNAPSHOT_STATUS_MIGRATING",
            Phase::Done => "SNAPSHOT_STATUS_AVAILABLE",
            _ => "SNAPSHOT_STATUS_CREATING",
        })
    }

    /// Drops snapshots whose deletion has finished and volumes whose failed restore is cleaned up.
    fn settle(&self, st: &mut KoyebState, now: DateTime<Utc>) {
        st.snaps.retain(|s| {
            s.deleting_since
                .is_none_or(|since| phase(since, self.delay, now) != Phase::Done)
        });
        st.volumes
            .retain(|v| v.removed_at.is_none_or(|at| at > now));
    }

    fn snapshot(&self, s: &Snap, v: &Variants, now: DateTime<Utc>) -> Value {
        let status = self.status(s, v, now).unwrap_or("SNAPSHOT_STATUS_DELETED");
        let mut updated = s.created_at;
        if status != "SNAPSHOT_STATUS_CREATING" {
            updated = s.created_at + self.delay;
        }
        updated = updated.max(s.renamed_at.unwrap_or(updated));
        updated = updated.max(s.deleting_since.unwrap_or(updated));
        json!({
            "id": s.id,
            "name": s.name,
            "size": s.size,
            "created_at": ts(s.created_at),
            "updated_at": ts(updated),
            "organization_id": ORG_ID,
            "parent_volume_id": s.parent_volume_id,
            "region": s.region,
            "status": status,
            "type": "SNAPSHOT_TYPE_LOCAL",
        })
    }
}

fn volume(v: &Volume) -> Value {
    let mut body = json!({
        "id": v.id,
        "name": v.name,
        "created_at": ts(v.created_at),
        "updated_at": ts(v.created_at),
        "organization_id": ORG_ID,
        "region": v.region,
        "read_only": false,
        "max_size": v.max_size,
        "cur_size": v.cur_size,
        "status": if v.odd_status {
            "PERSISTENT_VOLUME_STATUS_SUSPENDED"
        } else if v.removed_at.is_some() {
            "PERSISTENT_VOLUME_STATUS_DELETING"
        } else if v.service_id.is_some() {
            "PERSISTENT_VOLUME_STATUS_ATTACHED"
        } else {
            "PERSISTENT_VOLUME_STATUS_DETACHED"
        },
        "backing_store": LOCAL_BLK,
    });
    if let Value::Object(map) = &mut body {
        if let Some(s) = &v.snapshot_id {
            map.insert("snapshot_id".into(), json!(s));
        }
        if let Some(s) = &v.service_id {
            map.insert("service_id".into(), json!(s));
        }
    }
    body
}

/// `limit`/`offset` and repeated-key filters from a raw query.
struct Paging {
    limit: usize,
    offset: usize,
    pairs: Vec<(String, String)>,
}

fn paging(query: Option<&str>) -> Result<Paging, Refusal> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let number = |key: &str, default: usize| -> Result<usize, Refusal> {
        match pairs.iter().rev().find(|(k, _)| k == key) {
            None => Ok(default),
            Some((_, v)) if v.is_empty() => Ok(default),
            Some((_, v)) => v
                .parse()
                .map_err(|_| invalid(key, "must be a non-negative integer")),
        }
    };
    let limit = number("limit", 10)?;
    if limit > 100 {
        return Err(invalid("limit", "must be less than or equal to 100"));
    }
    let offset = number("offset", 0)?;
    Ok(Paging {
        limit,
        offset,
        pairs,
    })
}

impl Paging {
    fn values(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The page of `items` plus the reply's `limit`, `offset`, `has_next`.
    fn page(&self, items: Vec<Value>, key: &str) -> Response {
        self.page_as(items, key, &Variants::default())
    }

    /// [`Paging::page`] as the variants play it: `koyeb.page_cap` applies a smaller limit
    /// than asked (still echoing the one asked), `koyeb.no_has_next` leaves the flag out.
    fn page_as(&self, items: Vec<Value>, key: &str, v: &Variants) -> Response {
        let applied = v
            .number(PAGE_CAP)
            .map_or(self.limit, |cap| self.limit.min(cap as usize));
        let has_next = self.offset.saturating_add(applied) < items.len();
        let page: Vec<Value> = items.into_iter().skip(self.offset).take(applied).collect();
        let mut body =
            json!({ key: page, "limit": self.limit, "offset": self.offset, "has_next": has_next });
        if v.flag(NO_HAS_NEXT) {
            if let Value::Object(map) = &mut body {
                map.remove("has_next");
            }
        }
        Json(body).into_response()
    }
}

fn not_found(what: &str) -> Refusal {
    error(StatusCode::NOT_FOUND, &format!("{what} not found")).into()
}

async fn list(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    RawQuery(query): RawQuery,
) -> Reply {
    let p = paging(query.as_deref())?;
    let (statuses, regions) = (p.values("statuses"), p.values("region"));
    let orgs = p.values("organization_id");
    let now = Utc::now();
    let mut st = lock(&api.state);
    api.settle(&mut st, now);
    let mut snaps: Vec<&Snap> = st.snaps.iter().collect();
    snaps.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let items = snaps
        .into_iter()
        .map(|s| api.snapshot(s, v, now))
        .filter(|v| statuses.is_empty() || statuses.iter().any(|s| v["status"] == *s))
        .filter(|v| regions.is_empty() || regions.iter().any(|r| v["region"] == *r))
        .filter(|_| orgs.is_empty() || orgs.contains(&ORG_ID))
        .collect();
    Ok(p.page_as(items, "snapshots", v))
}

async fn get_one(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let now = Utc::now();
    let mut st = lock(&api.state);
    api.settle(&mut st, now);
    let s = st
        .snaps
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| not_found("Snapshot"))?;
    Ok(Json(json!({ "snapshot": api.snapshot(s, v, now) })).into_response())
}

/// A body field that must be present and not blank.
fn required(value: Option<String>, field: &str) -> Result<String, Refusal> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| invalid(field, "cannot be blank"))
}

#[derive(Deserialize)]
struct CreateReq {
    parent_volume_id: Option<String>,
    name: Option<String>,
}

async fn create(State(api): ApiState, Extension(ref v): Extension<Variants>, body: Bytes) -> Reply {
    // `project_id` is accepted and ignored: projects are not simulated.
    let req: CreateReq = json_body(&body).map_err(|e| invalid("body", &e))?;
    let parent = required(req.parent_volume_id, "parent_volume_id")?;
    let name = required(req.name, "name")?;
    let now = Utc::now();
    let mut st = lock(&api.state);
    api.settle(&mut st, now);
    let vol = st
        .volumes
        .iter()
        .find(|v| v.id == parent)
        .ok_or_else(|| not_found("Volume"))?;
    let snap = Snap {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        size: vol.max_size,
        parent_volume_id: parent,
        region: vol.region.clone(),
        created_at: now,
        renamed_at: None,
        deleting_since: None,
        seeded: false,
    };
    let body = json!({ "snapshot": api.snapshot(&snap, v, now) });
    st.snaps.push(snap);
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
struct UpdateReq {
    name: Option<String>,
}

async fn update(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let req: UpdateReq = json_body(&body).map_err(|e| invalid("body", &e))?;
    let name = required(req.name, "name")?;
    let now = Utc::now();
    let mut st = lock(&api.state);
    api.settle(&mut st, now);
    let s = st
        .snaps
        .iter_mut()
        .find(|s| s.id == id)
        .ok_or_else(|| not_found("Snapshot"))?;
    s.name = name;
    s.renamed_at = Some(now);
    Ok(Json(json!({ "snapshot": api.snapshot(s, v, now) })).into_response())
}

async fn delete(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let now = Utc::now();
    let mut st = lock(&api.state);
    api.settle(&mut st, now);
    let s = st
        .snaps
        .iter_mut()
        .find(|s| s.id == id)
        .ok_or_else(|| not_found("Snapshot"))?;
    s.deleting_since.get_or_insert(now);
    Ok(Json(json!({ "snapshot": api.snapshot(s, v, now) })).into_response())
}

async fn list_volumes(State(api): ApiState, RawQuery(query): RawQuery) -> Reply {
    let p = paging(query.as_deref())?;
    let (regions, names) = (p.values("region"), p.values("name"));
    let mut st = lock(&api.state);
    api.settle(&mut st, Utc::now());
    let mut vols: Vec<&Volume> = st.volumes.iter().collect();
    vols.sort_by_key(|v| std::cmp::Reverse(v.created_at));
    let items = vols
        .into_iter()
        .filter(|v| regions.is_empty() || regions.contains(&v.region.as_str()))
        .filter(|v| names.is_empty() || names.contains(&v.name.as_str()))
        .map(volume)
        .collect();
    Ok(p.page(items, "volumes"))
}

async fn get_volume(State(api): ApiState, Path(id): Path<String>) -> Reply {
    let mut st = lock(&api.state);
    api.settle(&mut st, Utc::now());
    let v = st
        .volumes
        .iter()
        .find(|v| v.id == id)
        .ok_or_else(|| not_found("Volume"))?;
    Ok(Json(json!({ "volume": volume(v) })).into_response())
}

#[derive(Deserialize)]
struct CreateVolumeReq {
    volume_type: Option<String>,
    name: Option<String>,
    region: Option<String>,
    max_size: Option<i64>,
    snapshot_id: Option<String>,
}

/// `POST /v1/volumes`: a new volume, restored from `snapshot_id` when one is given.
async fn create_volume(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    body: Bytes,
) -> Reply {
    let req: CreateVolumeReq = json_body(&body).map_err(|e| invalid("body", &e))?;
    let name = required(req.name, "name")?;
    if req.volume_type.as_deref().is_some_and(|t| t != LOCAL_BLK) {
        return Err(invalid("volume_type", "unsupported backing store"));
    }
    let now = Utc::now();
    let mut st = lock(&api.state);
    api.settle(&mut st, now);
    let snapshot_id = req.snapshot_id.filter(|s| !s.is_empty());
    let region = req.region.filter(|r| !r.is_empty());
    let (region, max_size) = match &snapshot_id {
        Some(sid) => {
            let snap = st
                .snaps
                .iter()
                .find(|s| &s.id == sid)
                .ok_or_else(|| not_found("Snapshot"))?;
            let ready = ["SNAPSHOT_STATUS_AVAILABLE", "SNAPSHOT_STATUS_MIGRATING"];
            if !api.status(snap, v, now).is_some_and(|s| ready.contains(&s)) {
                return Err(invalid("snapshot_id", "snapshot is not available"));
            }
            if req.max_size.is_some_and(|s| s != 0) {
                let why = "cannot be set when creating a volume from a snapshot";
                return Err(invalid("max_size", why));
            }
            if region.as_ref().is_some_and(|r| *r != snap.region) {
                return Err(invalid("region", "must be the region of the snapshot"));
            }
            (snap.region.clone(), snap.size)
        }
        None => {
            let region = required(region, "region")?;
            match req.max_size {
                Some(size) if size > 0 => (region, size),
                _ => return Err(invalid("max_size", "must be greater than 0")),
            }
        }
    };
    if st
        .volumes
        .iter()
        .any(|v| v.name == name && v.region == region)
    {
        return Err(invalid("name", "a volume with this name already exists"));
    }
    let snapshot_id_given = snapshot_id.is_some();
    let fails = snapshot_id_given && v.flag(super::variants::RESTORE_NEW_RESOURCE_FAILS);
    let vol = Volume {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        region,
        max_size,
        cur_size: 0,
        snapshot_id,
        service_id: None,
        created_at: now,
        removed_at: fails.then(|| now + api.delay),
        odd_status: snapshot_id_given && v.flag(super::variants::RESTORE_NEW_RESOURCE_UNKNOWN),
    };
    let body = json!({ "volume": volume(&vol) });
    st.volumes.push(vol);
    Ok(Json(body).into_response())
}

/// Variant: a finished snapshot is `MIGRATING` (to cold storage) before `AVAILABLE`; seeded ones stay `MIGRATING`
const MIGRATING: &str = "koyeb.migrating";
/// Variant: caps `limit` at n without saying so (the reply echoes the limit asked)
const PAGE_CAP: &str = "koyeb.page_cap";
/// Variant: list replies carry no `has_next`
const NO_HAS_NEXT: &str = "koyeb.no_has_next";

/// The readings of undocumented behaviour this vendor can play (see [`super::variants`]).
static VARIANTS: &[VariantSpec] = &[
    VariantSpec::flag(MIGRATING, "a finished snapshot is `MIGRATING` (to cold storage) before `AVAILABLE`; seeded ones stay `MIGRATING`"),
    VariantSpec::number(PAGE_CAP, 1, 100, "caps `limit` at n without saying so (the reply echoes the limit asked)"),
    VariantSpec::flag(NO_HAS_NEXT, "list replies carry no `has_next`"),
];

/// The simulator's entry for this vendor.
pub(super) static SPEC: super::Spec = super::Spec {
    name: "koyeb",
    prefix: "/koyeb",
    credentials: &[("token", super::KOYEB_TOKEN)],
    source_ids,
    error,
    routers: |b| vec![(SPEC.prefix, false, router(b.delay, b.seed, b.now))],
    gateway_settings: |_| Vec::new(),
    variants: VARIANTS,
};
