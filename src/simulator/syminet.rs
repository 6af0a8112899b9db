//! Simulated Syminet Cloud (`/api/v1`) snapshot API: 202 fire-and-forget create, rename, delete
//! and restore; a new snapshot is listed at once with `in_progress: true` and a `progress`
//! percentage, then settles (`null`); renames and deletes take effect after the async delay.
//!
//! Auth: `authorization: bearer sim-syminet-token`. Errors `{"error": "..."}`. List-all pages are
//! 10 items (`page`, `pages`, `results`; page 0 when empty). Timestamps `YYYY-MM-DD HH:MM:SS.ffffff`
//! (UTC). Owns only Syminet wire shapes and state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::FailAsync;
use super::variants::{VariantSpec, Variants};
use super::SYMINET_TOKEN;
use super::{bearer, json_body, lock, phase, query_int, query_map, Phase, Refusal, Reply};

/// id, name, datacenter id, region, disk GB
const SEED_SLICES: [(i64, &str, i64, &str, i64); 3] = [
    (3911, "web1.example.com", 6, "SFO1", 50),
    (3920, "db1", 6, "SFO1", 80),
    (3934, "cache1", 9, "NYC1", 25),
];
const USER_ID: i64 = 1502;
const PAGE_SIZE: usize = 10;

struct Snap {
    id: i64,
    name: String,
    vm_id: i64,
    created: DateTime<Utc>,
    size: i64,
    fails: bool,
    /// (takes effect at, new name)
    renames: Vec<(DateTime<Utc>, String)>,
    deleted_at: Option<DateTime<Utc>>,
}

struct SymState {
    snaps: BTreeMap<i64, Snap>,
    next_id: i64,
    /// slice → when the restore overwriting its disk ends
    restoring: BTreeMap<i64, DateTime<Utc>>,
}

struct Api {
    delay: TimeDelta,
    state: Mutex<SymState>,
}

type ApiState = State<Arc<Api>>;

pub(super) fn source_ids() -> Vec<String> {
    SEED_SLICES.iter().map(|s| s.0.to_string()).collect()
}

pub(super) fn router(delay: TimeDelta, seed: bool, now: DateTime<Utc>) -> Router {
    let mut snaps = BTreeMap::new();
    if seed {
        let seeds = [
            (
                15340,
                "web1-before-upgrade",
                3911,
                18,
                TimeDelta::days(8) + TimeDelta::microseconds(3_118_204),
            ),
            (
                15377,
                "db1-1741989600",
                3920,
                2,
                TimeDelta::days(1) + TimeDelta::microseconds(7_540_912),
            ),
        ];
        for (id, name, vm_id, size, age) in seeds {
            let snap = Snap {
                id,
                name: name.to_owned(),
                vm_id,
                created: now - age,
                size,
                fails: false,
                renames: Vec::new(),
                deleted_at: None,
            };
            snaps.insert(id, snap);
        }
    }
    let api = Arc::new(Api {
        delay,
        state: Mutex::new(SymState {
            snaps,
            next_id: 15400,
            restoring: BTreeMap::new(),
        }),
    });
    Router::new()
        .route("/images", get(list))
        .route("/images/snapshots/{id}", get(list_for_slice))
        .route("/images/snapshots/{id}/create", post(create))
        .route("/images/snapshots/{id}/rename", post(rename))
        .route("/images/snapshots/{id}/delete", delete(remove))
        .route("/images/snapshots/{id}/restore/{slice}", post(restore))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn(auth))
        .with_state(api)
}

/// The vendor error body `{"error": ...}`.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn auth(req: Request, next: Next) -> Response {
    if bearer(req.headers().get(header::AUTHORIZATION)) != Some(SYMINET_TOKEN) {
        return error(StatusCode::UNAUTHORIZED, "invalid or missing API token");
    }
    next.run(req).await
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Seconds as the panel shows them (`"43s"`, `"04s"`), rounded up.
fn duration(d: TimeDelta) -> String {
    let ms = d.num_milliseconds().max(0);
    format!("{:02}s", (ms + 999) / 1000)
}

fn accepted() -> Reply {
    Ok(StatusCode::ACCEPTED.into_response())
}

fn refuse(status: StatusCode, message: &str) -> Refusal {
    error(status, message).into()
}

/// The slice a path segment names: (id, disk GB).
fn find_slice(raw: &str) -> Result<(i64, i64), Refusal> {
    let id: Option<i64> = raw.parse().ok();
    SEED_SLICES
        .iter()
        .find(|s| Some(s.0) == id)
        .map(|s| (s.0, s.4))
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "slice not found"))
}

impl Api {
    /// Locks the state after applying due renames and deletes and dropping failed creates.
    fn settled(&self, now: DateTime<Utc>) -> MutexGuard<'_, SymState> {
        let mut st = lock(&self.state);
        let delay = self.delay;
        st.snaps.retain(|_, s| {
            let created_failed = s.fails && phase(s.created, delay, now) == Phase::Done;
            !created_failed && s.deleted_at.is_none_or(|at| at > now)
        });
        for s in st.snaps.values_mut() {
            let (due, later): (Vec<_>, Vec<_>) =
                s.renames.drain(..).partition(|(at, _)| *at <= now);
            s.renames = later;
            if let Some((_, name)) = due.into_iter().last() {
                s.name = name;
            }
        }
        st
    }

    fn in_progress(&self, s: &Snap, now: DateTime<Utc>) -> Option<u8> {
        match phase(s.created, self.delay, now) {
            Phase::Done => None,
            Phase::Queued => Some(0),
            Phase::Running(p) => Some(p),
        }
    }

    fn item(&self, s: &Snap, now: DateTime<Utc>, v: &Variants) -> Value {
        let slice = SEED_SLICES.iter().find(|sl| sl.0 == s.vm_id);
        let (dc, region, vmname) = slice.map_or((0, "", ""), |sl| (sl.2, sl.3, sl.1));
        let progress = self.in_progress(s, now);
        let took = if progress.is_some() {
            now - s.created
        } else {
            self.delay
        };
        json!({
            "created": ts(s.created),
            "datacenter_id": dc,
            "duration": duration(took),
            "id": s.id,
            // `syminet.progress_only`: only `progress` says the snapshot is being taken.
            "in_progress": progress.filter(|_| !v.flag(PROGRESS_ONLY)).map(|_| true),
            "legacy": null,
            "name": s.name,
            "perms": "rw",
            "progress": progress,
            "region": region,
            "snapshot_size": if progress.is_some() { 0 } else { s.size },
            "vm_datacenter_id": dc,
            "vm_deleted": null,
            "vm_id": s.vm_id,
            "vm_perms": "rw",
            "vm_user_id": USER_ID,
            "vmname": vmname,
        })
    }
}

async fn list(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    RawQuery(query): RawQuery,
) -> Reply {
    let q = query_map(query.as_deref());
    let page =
        query_int(&q, "page").map_err(|_| refuse(StatusCode::BAD_REQUEST, "invalid page"))?;
    let page = page.unwrap_or(1).max(1);
    let text = q.get("query").map(|t| t.to_lowercase()).unwrap_or_default();
    let now = Utc::now();
    let st = api.settled(now);
    let matching: Vec<&Snap> = st
        .snaps
        .values()
        .filter(|s| {
            // Documented as `?query=SLICE_NAME` but described as a snapshot-name filter: take both.
            let slice = SEED_SLICES
                .iter()
                .find(|sl| sl.0 == s.vm_id)
                .map_or("", |sl| sl.1);
            s.name.to_lowercase().contains(&text) || slice.to_lowercase().contains(&text)
        })
        .collect();
    if matching.is_empty() {
        let empty = json!({ "data": [], "page": 0, "pages": 0, "results": 0 });
        return Ok(Json(empty).into_response());
    }
    let skip = usize::try_from(page - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(PAGE_SIZE);
    let data: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(PAGE_SIZE)
        .map(|s| api.item(s, now, v))
        .collect();
    Ok(Json(json!({
        "data": data,
        "page": page,
        "pages": matching.len().div_ceil(PAGE_SIZE),
        "results": matching.len(),
    }))
    .into_response())
}

/// `GET /images/snapshots/{SLICE_ID}`: the slice's finished snapshots, short items, no paging.
/// Under `syminet.slice_list_shows_in_progress` unfinished snapshots are listed too (the short
/// item has no `in_progress` to tell them apart).
async fn list_for_slice(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(slice): Path<String>,
) -> Reply {
    let (slice_id, disk) = find_slice(&slice)?;
    let now = Utc::now();
    let st = api.settled(now);
    let data: Vec<Value> = st
        .snaps
        .values()
        .filter(|s| {
            s.vm_id == slice_id
                && (v.flag(SLICE_LIST_SHOWS_IN_PROGRESS) || api.in_progress(s, now).is_none())
        })
        .map(|s| {
            json!({
                "backup_full_size": disk,
                "created": ts(s.created),
                "duration": duration(api.delay),
                "id": s.id,
                "name": s.name,
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

#[derive(Deserialize)]
struct NameReq {
    snapshot_name: Option<String>,
}

fn snapshot_name(body: &[u8]) -> Result<String, Refusal> {
    let req: NameReq = json_body(body).map_err(|e| refuse(StatusCode::BAD_REQUEST, &e))?;
    req.snapshot_name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "missing snapshot name"))
}

async fn create(
    State(api): ApiState,
    Path(slice): Path<String>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
    body: Bytes,
) -> Reply {
    let (slice_id, disk) = find_slice(&slice)?;
    let name = snapshot_name(&body)?;
    let now = Utc::now();
    let mut st = api.settled(now);
    if st
        .snaps
        .values()
        .any(|s| s.vm_id == slice_id && api.in_progress(s, now).is_some())
    {
        let busy = "a snapshot of this slice is already in progress";
        return Err(refuse(StatusCode::CONFLICT, busy));
    }
    if st
        .restoring
        .get(&slice_id)
        .is_some_and(|until| *until > now)
    {
        let busy = "the slice is being restored";
        return Err(refuse(StatusCode::CONFLICT, busy));
    }
    let id = st.next_id;
    st.next_id += 1;
    let snap = Snap {
        id,
        name,
        vm_id: slice_id,
        created: now,
        size: (disk / 3).max(1),
        fails,
        renames: Vec::new(),
        deleted_at: None,
    };
    st.snaps.insert(id, snap);
    accepted()
}

/// The finished snapshot a path segment names.
fn settled_snapshot<'a>(
    api: &Api,
    st: &'a mut SymState,
    raw: &str,
    now: DateTime<Utc>,
) -> Result<&'a mut Snap, Refusal> {
    let snap = raw
        .parse::<i64>()
        .ok()
        .and_then(|id| st.snaps.get_mut(&id))
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "snapshot not found"))?;
    if api.in_progress(snap, now).is_some() {
        return Err(refuse(StatusCode::CONFLICT, "snapshot is in progress"));
    }
    Ok(snap)
}

async fn rename(
    State(api): ApiState,
    Path(id): Path<String>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
    body: Bytes,
) -> Reply {
    let now = Utc::now();
    let mut st = api.settled(now);
    let snap = settled_snapshot(&api, &mut st, &id, now)?;
    let name = snapshot_name(&body)?;
    if !fails {
        snap.renames.push((now + api.delay, name));
    }
    accepted()
}

async fn remove(
    State(api): ApiState,
    Path(id): Path<String>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
) -> Reply {
    let now = Utc::now();
    let mut st = api.settled(now);
    let snap = settled_snapshot(&api, &mut st, &id, now)?;
    if !fails {
        snap.deleted_at.get_or_insert(now + api.delay);
    }
    accepted()
}

/// Restore replaces the slice's disk (for `syminet.restore_secs`, default the async delay);
/// nothing of it is visible through the images API, but snapshots of the slice are refused
/// meanwhile.
async fn restore(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path((id, slice)): Path<(String, String)>,
) -> Reply {
    let now = Utc::now();
    let mut st = api.settled(now);
    settled_snapshot(&api, &mut st, &id, now)?;
    let (slice_id, _) = find_slice(&slice)?;
    let takes = v
        .number(RESTORE_SECS)
        .map_or(api.delay, |secs| TimeDelta::seconds(secs));
    st.restoring.insert(slice_id, now + takes);
    accepted()
}

/// Variant: the per-slice list shows snapshots still being taken
const SLICE_LIST_SHOWS_IN_PROGRESS: &str = "syminet.slice_list_shows_in_progress";
/// Variant: a snapshot being taken shows `progress` below 100 and `in_progress: null`
const PROGRESS_ONLY: &str = "syminet.progress_only";
/// Variant: a restore keeps the slice busy n seconds (default: the async delay)
const RESTORE_SECS: &str = "syminet.restore_secs";

/// The readings of undocumented behaviour this vendor can play (see [`super::variants`]).
static VARIANTS: &[VariantSpec] = &[
    VariantSpec::flag(
        SLICE_LIST_SHOWS_IN_PROGRESS,
        "the per-slice list shows snapshots still being taken",
    ),
    VariantSpec::flag(
        PROGRESS_ONLY,
        "a snapshot being taken shows `progress` below 100 and `in_progress: null`",
    ),
    VariantSpec::number(
        RESTORE_SECS,
        0,
        86400,
        "a restore keeps the slice busy n seconds (default: the async delay)",
    ),
];

/// The simulator's entry for this vendor.
pub(super) static SPEC: super::Spec = super::Spec {
    name: "syminet",
    prefix: "/syminet/api/v1",
    credentials: &[("token", super::SYMINET_TOKEN)],
    source_ids,
    error,
    routers: |b| vec![(SPEC.prefix, false, router(b.delay, b.seed, b.now))],
    // The simulator restores in its async delay; a real slice takes minutes.
    // Simulated restores take seconds whatever the size: only the least time applies.
    gateway_settings: |_| {
        vec![
            ("restore_settle_secs", 3.into()),
            ("restore_gb_per_minute", 100_000.into()),
        ]
    },
    variants: VARIANTS,
};
