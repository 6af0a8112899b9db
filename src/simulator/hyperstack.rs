//! Simulated Hyperstack (NexGen Infrahub `/v1`) snapshot API: VM snapshots `CREATING` → `COMPLETE`,
//! restore into a new VM, name availability, images from snapshots (deleted with their snapshot).
//!
//! Auth: header `api_key: sim-hyperstack-key`. Errors `{status: false, message, error_reason}`,
//! 5xx in the legacy `{message}` shape. Timestamps zone-less (`2025-03-11T09:15:42`).
//! Owns only Hyperstack wire shapes and state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::FailAsync;
use super::variants::{VariantSpec, Variants};
use super::HYPERSTACK_API_KEY;
use super::{json_body, lock, phase, query_int, query_map, Phase, Refusal, Reply};

const ORG_ID: i64 = 4410;

/// The flavor object of a VM, and its root disk in GB (the size of a finished snapshot).
fn flavor(name: &str) -> (i64, Value) {
    let (id, cpu, ram, disk, ephemeral, gpu) = match name {
        "n3-A100x1" => (95, 28, 120.0, 100, 750, "A100-80G-PCIe"),
        _ => (71, 14, 58.0, 50, 0, "RTX-A6000"),
    };
    let body = json!({
        "id": id, "name": name, "cpu": cpu, "ram": ram, "disk": disk, "ephemeral": ephemeral,
        "gpu": gpu, "gpu_count": 1, "features": {},
        "labels": [{ "id": 3, "label": "network_optimised" }],
    });
    (disk, body)
}

struct Vm {
    name: String,
    region_id: i64,
    region: &'static str,
    env_id: i64,
    flavor: &'static str,
    image: &'static str,
    has_floating_ip: bool,
    created_at: DateTime<Utc>,
    shutoff: bool,
    fails: bool,
    /// Built under `restore.new_resource_unknown`: ends at a status no page names.
    odd: bool,
}

struct Snap {
    id: i64,
    name: String,
    description: String,
    vm_id: i64,
    labels: Vec<String>,
    created_at: DateTime<Utc>,
    fails: bool,
    /// What a failed snapshot reads (`ERROR`, or a variant's other word).
    failed_as: &'static str,
    is_image: bool,
}

struct HsState {
    vms: BTreeMap<i64, Vm>,
    snaps: BTreeMap<i64, Snap>,
    /// image id → the snapshot it was made from
    images: BTreeMap<i64, i64>,
    next_image: i64,
    next_snapshot: i64,
    next_vm: i64,
}

struct Api {
    delay: TimeDelta,
    state: Mutex<HsState>,
}

type ApiState = State<Arc<Api>>;

pub(super) fn source_ids() -> Vec<String> {
    SEED_VMS.iter().map(|vm| vm.0.to_string()).collect()
}

pub(super) fn router(delay: TimeDelta, seed: bool, now: DateTime<Utc>) -> Router {
    let api = Arc::new(Api {
        delay,
        state: Mutex::new(seeded(seed, now)),
    });
    Router::new()
        .route("/core/snapshots", get(list))
        .route("/core/snapshots/{id}", get(get_one).delete(delete))
        .route("/core/snapshots/{id}/restore", post(restore))
        .route("/core/snapshots/{id}/image", post(create_image))
        .route(
            "/core/snapshots/name-availability/{name}",
            get(name_availability),
        )
        .route("/core/virtual-machines/{id}/snapshots", post(create))
        .route("/core/virtual-machines", get(list_vms))
        .route("/core/virtual-machines/{id}", get(get_vm))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "The requested URL was not found on the server.",
            )
        })
        .layer(middleware::from_fn(auth))
        .with_state(api)
}

/// id, name, region, flavor, has floating IP, shut off, age in days
type SeedVm = (
    i64,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    i64,
);
/// id, name, description, VM, labels, age in seconds
type SeedSnap = (
    i64,
    &'static str,
    &'static str,
    i64,
    &'static [&'static str],
    i64,
);

#[rustfmt::skip]
const SEED_VMS: [SeedVm; 3] = [
    (2058, "llm-node", "CANADA-1", "n3-A100x1", true, false, 90),
    (2101, "trainer", "CANADA-1", "n3-A100x1", false, false, 60),
    (2144, "render-eu", "NORWAY-1", "n3-RTX-A6000x1", false, true, 30),
];
#[rustfmt::skip]
const SEED_SNAPSHOTS: [SeedSnap; 2] = [
    (1402, "llm-node-pre-upgrade", "Before CUDA driver upgrade", 2058, &["pre-upgrade", "llm"], 522_642),
    (1417, "trainer-weekly", "Weekly snapshot of trainer VM", 2101, &[], 180_003),
];

fn seeded(seed: bool, now: DateTime<Utc>) -> HsState {
    let vms = SEED_VMS
        .into_iter()
        .map(
            |(id, name, region, flavor, has_floating_ip, shutoff, days)| {
                let (region_id, env_id) = if region == "CANADA-1" {
                    (3, 118)
                } else {
                    (1, 96)
                };
                let vm = Vm {
                    name: name.to_owned(),
                    region_id,
                    region,
                    env_id,
                    flavor,
                    image: "Ubuntu Server 22.04 LTS R535 CUDA 12.2",
                    has_floating_ip,
                    created_at: now - TimeDelta::days(days),
                    shutoff,
                    fails: false,
                    odd: false,
                };
                (id, vm)
            },
        )
        .collect();
    let snaps = SEED_SNAPSHOTS
        .into_iter()
        .filter(|_| seed)
        .map(|(id, name, description, vm_id, labels, age_secs)| {
            let snap = Snap {
                id,
                name: name.to_owned(),
                description: description.to_owned(),
                vm_id,
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                created_at: now - TimeDelta::seconds(age_secs),
                fails: false,
                failed_as: "ERROR",
                is_image: false,
            };
            (id, snap)
        })
        .collect();
    HsState {
        vms,
        snaps,
        images: BTreeMap::new(),
        next_image: 880,
        next_snapshot: 1500,
        next_vm: 2300,
    }
}

/// The vendor error body: `ErrorResponseModel`, or the legacy `{message}` for 5xx.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    if status.is_server_error() {
        return (status, Json(json!({ "message": message }))).into_response();
    }
    let reason = match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        429 => "too_many_requests",
        _ => "bad_request",
    };
    let body = json!({ "status": false, "message": message, "error_reason": reason });
    (status, Json(body)).into_response()
}

async fn auth(req: Request, next: Next) -> Response {
    let key = req.headers().get("api_key").and_then(|v| v.to_str().ok());
    if key != Some(HYPERSTACK_API_KEY) {
        return error(StatusCode::UNAUTHORIZED, "Invalid API key");
    }
    next.run(req).await
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn not_found(what: &str, id: &str) -> Refusal {
    error(
        StatusCode::NOT_FOUND,
        &format!("{what} with id {id} not found"),
    )
    .into()
}

fn bad(message: &str) -> Refusal {
    error(StatusCode::BAD_REQUEST, message).into()
}

/// The snapshot a path names; a missing one is 404, or 400 under `hyperstack.not_found_400`
/// (the page documents 200/400/401/500 only).
fn snapshot<'a>(st: &'a HsState, raw: &str, v: &Variants) -> Result<&'a Snap, Refusal> {
    let id: Option<i64> = raw.parse().ok();
    id.and_then(|id| st.snaps.get(&id)).ok_or_else(|| {
        if v.flag(NOT_FOUND_400) {
            bad(&format!("Snapshot with id {raw} does not exist"))
        } else {
            not_found("Snapshot", raw)
        }
    })
}

/// A required name of at most 50 characters.
fn name(value: Option<String>, field: &str) -> Result<String, Refusal> {
    let name = value.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(bad(&format!("{field} is required")));
    }
    if name.chars().count() > 50 {
        return Err(bad(&format!("{field} must be at most 50 characters")));
    }
    Ok(name)
}

impl Api {
    fn status(&self, s: &Snap, now: DateTime<Utc>) -> &'static str {
        match phase(s.created_at, self.delay, now) {
            Phase::Done if s.fails => s.failed_as,
            Phase::Done => "COMPLETE",
            _ => "CREATING",
        }
    }

    fn vm_status(&self, vm: &Vm, now: DateTime<Utc>) -> &'static str {
        match phase(vm.created_at, self.delay, now) {
            Phase::Done if vm.fails => "ERROR",
            Phase::Done if vm.odd => "SHELVED",
            Phase::Done if vm.shutoff => "SHUTOFF",
            Phase::Done => "ACTIVE",
            _ => "CREATING",
        }
    }

    /// A VM as `GET /core/virtual-machines` and `…/{id}` show it.
    fn vm_fields(&self, id: i64, vm: &Vm, now: DateTime<Utc>) -> Value {
        let status = self.vm_status(vm, now);
        json!({
            "id": id, "name": vm.name, "status": status,
            "vm_state": if status == "CREATING" { "building" } else { "active" },
            "os": vm.image, "flavor": flavor(vm.flavor).1,
            "environment": { "id": vm.env_id, "name": format!("default-{}", vm.region), "org_id": ORG_ID, "region": vm.region },
            "created_at": ts(vm.created_at),
        })
    }

    /// `SnapshotFields`, as in list and create responses.
    fn fields(&self, st: &HsState, s: &Snap, now: DateTime<Utc>) -> Value {
        let status = self.status(s, now);
        let vm = st.vms.get(&s.vm_id);
        let done = status != "CREATING";
        json!({
            "id": s.id,
            "name": s.name,
            "description": s.description,
            "vm_id": s.vm_id,
            "region_id": vm.map_or(0, |vm| vm.region_id),
            "status": status,
            "is_image": s.is_image,
            "size": if status == "COMPLETE" { vm.map_or(0, |vm| flavor(vm.flavor).0) } else { 0 },
            "labels": s.labels,
            "has_floating_ip": vm.is_some_and(|vm| vm.has_floating_ip),
            "created_at": ts(s.created_at),
            "updated_at": ts(if done { s.created_at + self.delay } else { s.created_at }),
        })
    }

    /// `SnapshotRetrieveFields`: list fields, labels as a string, plus VM details.
    fn retrieve(&self, st: &HsState, s: &Snap, now: DateTime<Utc>) -> Value {
        let mut v = self.fields(st, s, now);
        if let (Value::Object(map), Some(vm)) = (&mut v, st.vms.get(&s.vm_id)) {
            let extra = json!({
                "labels": s.labels.join(","),
                "region": vm.region,
                "custom_image": "",
                "volume_id": format!("a3f0c1de-5b7e-4c39-9d0e-{:012x}", s.vm_id),
                "volume_name": format!("{}-boot", vm.name),
                "vm_name": vm.name,
                "vm_status": self.vm_status(vm, now),
                "vm_environment": format!("default-{}", vm.region),
                "vm_flavor": vm.flavor,
                "vm_image": vm.image,
                "vm_keypair": "ops-key",
            });
            if let Value::Object(extra) = extra {
                map.extend(extra);
            }
        }
        v
    }
}

/// `page` (from 1) and `pageSize` as Hyperstack's lists read them: the page, the size asked
/// for, and the size served (lowered by the `page_cap` variant).
fn paging(
    q: &std::collections::HashMap<String, String>,
    v: &Variants,
) -> Result<(i64, i64, i64), Refusal> {
    let (Ok(page), Ok(page_size)) = (query_int(q, "page"), query_int(q, "pageSize")) else {
        return Err(bad("page and pageSize must be integers"));
    };
    let (page, page_size) = (page.unwrap_or(1), page_size.unwrap_or(20));
    if page < 1 || page_size < 1 {
        return Err(bad("page and pageSize must be positive"));
    }
    let served = v
        .number(PAGE_CAP)
        .map_or(page_size, |cap| page_size.min(cap));
    Ok((page, page_size, served))
}

async fn list(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    RawQuery(query): RawQuery,
) -> Reply {
    let q = query_map(query.as_deref());
    let (page, asked, page_size) = paging(&q, v)?;
    let search = q.get("search").map(|s| s.to_lowercase());
    let now = Utc::now();
    let st = lock(&api.state);
    let matching: Vec<&Snap> = st
        .snaps
        .values()
        .filter(|s| {
            search
                .as_ref()
                .is_none_or(|q| s.id.to_string() == *q || s.name.to_lowercase().contains(q))
        })
        .collect();
    let skip = usize::try_from((page - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
    let take = usize::try_from(page_size).unwrap_or(usize::MAX);
    let items: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(take)
        .map(|s| api.fields(&st, s, now))
        .collect();
    Ok(Json(json!({
        "status": true,
        "message": "Getting snapshots successful",
        "snapshots": items,
        "count": if v.flag(COUNT_IS_PAGE) { items.len() } else { matching.len() },
        "page": page,
        "page_size": if v.flag(PAGE_SIZE_ECHOES_ASKED) { asked } else { page_size },
    }))
    .into_response())
}

async fn get_one(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let st = lock(&api.state);
    let s = snapshot(&st, &id, v)?;
    Ok(Json(json!({
        "status": true,
        "message": format!("Retrieved snapshot {}", s.id),
        "snapshot": api.retrieve(&st, s, Utc::now()),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct CreateReq {
    name: Option<String>,
    description: Option<String>,
    labels: Option<Vec<String>>,
}

async fn create(
    State(api): ApiState,
    Path(raw): Path<String>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
    Extension(ref v): Extension<Variants>,
    body: Bytes,
) -> Reply {
    let now = Utc::now();
    let mut st = lock(&api.state);
    let vm_id: i64 = raw
        .parse()
        .map_err(|_| not_found("Virtual machine", &raw))?;
    let vm = st
        .vms
        .get(&vm_id)
        .ok_or_else(|| not_found("Virtual machine", &raw))?;
    let req: CreateReq = json_body(&body).map_err(|e| bad(&e))?;
    let name = name(req.name, "Snapshot name")?;
    if !matches!(api.vm_status(vm, now), "ACTIVE" | "SHUTOFF") {
        return Err(bad(
            "Virtual machine must be ACTIVE or SHUTOFF to be snapshotted",
        ));
    }
    if st.snaps.values().any(|s| s.name == name) {
        return Err(bad(&format!("Snapshot name {name} is already taken")));
    }
    let busy = |s: &&Snap| s.vm_id == vm_id && api.status(s, now) == "CREATING";
    if st.snaps.values().any(|s| busy(&s)) {
        return Err(bad(
            "Another snapshot of this virtual machine is in progress",
        ));
    }
    let id = st.next_snapshot;
    st.next_snapshot += 1;
    let snap = Snap {
        id,
        name,
        description: req.description.unwrap_or_default(),
        vm_id,
        labels: req.labels.unwrap_or_default(),
        created_at: now,
        fails,
        failed_as: if v.flag(UNDOCUMENTED_STATUS) {
            "SUSPENDED"
        } else if v.flag(CREATE_FAILED_STATUS) {
            "CREATE_FAILED"
        } else {
            "ERROR"
        },
        is_image: false,
    };
    let body = json!({
        "status": true,
        "message": "Snapshot creation is scheduled.",
        "snapshot": api.fields(&st, &snap, now),
    });
    st.snaps.insert(id, snap);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn delete(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
) -> Reply {
    let mut st = lock(&api.state);
    let snap = snapshot(&st, &id, v)?;
    if api.status(snap, Utc::now()) == "CREATING" {
        let conflict = error(
            StatusCode::CONFLICT,
            "Snapshot is in use and cannot be deleted",
        );
        return Err(conflict.into());
    }
    let id = snap.id;
    st.snaps.remove(&id);
    let mut message = format!("Snapshot {id} deleted successfully");
    st.images.retain(|image, snapshot| {
        if *snapshot == id {
            message.push_str(&format!("; linked image {image} deleted"));
        }
        *snapshot != id
    });
    Ok(Json(json!({ "status": true, "message": message })).into_response())
}

#[derive(Deserialize)]
struct RestoreReq {
    new_vm_name: Option<String>,
}

async fn restore(
    State(api): ApiState,
    Path(id): Path<String>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
    Extension(ref v): Extension<Variants>,
    body: Bytes,
) -> Reply {
    let now = Utc::now();
    let mut st = lock(&api.state);
    let snap = snapshot(&st, &id, v)?;
    // `contract_id` is accepted and ignored: contracts are not simulated.
    let req: RestoreReq = json_body(&body).map_err(|e| bad(&e))?;
    let name = name(req.new_vm_name, "new_vm_name")?;
    if api.status(snap, now) != "COMPLETE" {
        return Err(bad("Snapshot must be in COMPLETE state to be restored"));
    }
    if st.vms.values().any(|vm| vm.name == name) {
        return Err(bad(&format!(
            "A virtual machine named {name} already exists"
        )));
    }
    let source = st
        .vms
        .get(&snap.vm_id)
        .ok_or_else(|| bad("The snapshot's virtual machine no longer exists"))?;
    let image_name = snap.name.clone();
    let vm = Vm {
        name: name.clone(),
        created_at: now,
        shutoff: false,
        fails: fails || v.flag(super::variants::RESTORE_NEW_RESOURCE_FAILS),
        odd: v.flag(super::variants::RESTORE_NEW_RESOURCE_UNKNOWN),
        ..*source
    };
    let vm_id = st.next_vm;
    st.next_vm += 1;
    let instance = json!({
        "id": vm_id, "name": name, "status": "CREATING", "vm_state": "building",
        "power_state": "NOSTATE", "os": vm.image,
        "environment": {
            "id": vm.env_id, "name": format!("default-{}", vm.region), "org_id": ORG_ID,
            "region": vm.region,
            "features": { "green_status": "GREEN", "network_optimised": true },
        },
        "image": { "name": image_name },
        "flavor": flavor(vm.flavor).1,
        "keypair": { "name": "ops-key" },
        "fixed_ip": "", "floating_ip": "", "floating_ip_status": "NOT_ATTACHED",
        "volume_attachments": [], "security_rules": [], "labels": [], "locked": false,
        "features": {}, "requires_public_ip": false, "port_randomization": false,
        "port_randomization_status": "DISABLED", "created_at": ts(now),
    });
    st.vms.insert(vm_id, vm);
    let message = "VM is scheduled for creation.";
    Ok(Json(json!({ "status": true, "message": message, "instance": instance })).into_response())
}

/// `GET /core/virtual-machines/{id}`: the VM (`CREATING` → `ACTIVE`, or `ERROR` when its build
/// fails), so a restore's new VM can be followed.
async fn get_vm(State(api): ApiState, Path(raw): Path<String>) -> Reply {
    let st = lock(&api.state);
    let id: i64 = raw
        .parse()
        .map_err(|_| not_found("Virtual machine", &raw))?;
    let vm = st
        .vms
        .get(&id)
        .ok_or_else(|| not_found("Virtual machine", &raw))?;
    let instance = api.vm_fields(id, vm, Utc::now());
    let message = "Getting virtual machine details successful";
    Ok(Json(json!({ "status": true, "message": message, "instance": instance })).into_response())
}

/// `GET /core/virtual-machines`: paged as the snapshot list is (`page`, `pageSize`, the
/// `page_cap` variant).
async fn list_vms(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    RawQuery(query): RawQuery,
) -> Reply {
    let q = query_map(query.as_deref());
    let (page, _, page_size) = paging(&q, v)?;
    let now = Utc::now();
    let st = lock(&api.state);
    let skip = usize::try_from((page - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
    let items: Vec<Value> = st
        .vms
        .iter()
        .skip(skip)
        .take(usize::try_from(page_size).unwrap_or(usize::MAX))
        .map(|(id, vm)| api.vm_fields(*id, vm, now))
        .collect();
    Ok(Json(json!({
        "status": true,
        "message": "Getting virtual machines successful",
        "count": st.vms.len(),
        "instances": items,
        "page": page,
        "page_size": page_size,
    }))
    .into_response())
}

async fn name_availability(State(api): ApiState, Path(name): Path<String>) -> Response {
    let taken = lock(&api.state).snaps.values().any(|s| s.name == name);
    let message = if taken {
        "Name is already taken"
    } else {
        "Name is available"
    };
    Json(json!({ "available": !taken, "message": message, "name": name })).into_response()
}

#[derive(Deserialize)]
struct ImageReq {
    name: Option<String>,
}

async fn create_image(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let mut st = lock(&api.state);
    let snap = snapshot(&st, &id, v)?;
    // `labels` is accepted and ignored: images are not listed.
    let req: ImageReq = json_body(&body).map_err(|e| bad(&e))?;
    name(req.name, "Image name")?;
    if api.status(snap, Utc::now()) != "COMPLETE" {
        return Err(bad("Snapshot must be in COMPLETE state to create an image"));
    }
    let snapshot_id = snap.id;
    let image_id = st.next_image;
    st.next_image += 1;
    st.images.insert(image_id, snapshot_id);
    if let Some(s) = st.snaps.get_mut(&snapshot_id) {
        s.is_image = true;
    }
    let message = "Image added successfully.";
    Ok(Json(json!({ "status": true, "message": message, "id": image_id })).into_response())
}

/// Variant: caps `pageSize` at n (the reply's `page_size` says so)
const PAGE_CAP: &str = "hyperstack.page_cap";
/// Variant: the reply's `page_size` is the size asked for, not the one applied
const PAGE_SIZE_ECHOES_ASKED: &str = "hyperstack.page_size_echoes_asked";
/// Variant: `count` is the page's count, not the total
const COUNT_IS_PAGE: &str = "hyperstack.count_is_page";
/// Variant: answers 400, not 404, for a snapshot that does not exist
const NOT_FOUND_400: &str = "hyperstack.not_found_400";
/// Variant: a failed snapshot reads `CREATE_FAILED`, not `ERROR`
const CREATE_FAILED_STATUS: &str = "hyperstack.create_failed_status";
/// Variant: a failed snapshot reads `SUSPENDED`, a status no page names
const UNDOCUMENTED_STATUS: &str = "hyperstack.undocumented_status";

/// The readings of undocumented behaviour this vendor can play (see [`super::variants`]).
static VARIANTS: &[VariantSpec] = &[
    VariantSpec::number(
        PAGE_CAP,
        1,
        10000,
        "caps `pageSize` at n (the reply's `page_size` says so)",
    ),
    VariantSpec::flag(
        PAGE_SIZE_ECHOES_ASKED,
        "the reply's `page_size` is the size asked for, not the one applied",
    ),
    VariantSpec::flag(COUNT_IS_PAGE, "`count` is the page's count, not the total"),
    VariantSpec::flag(
        NOT_FOUND_400,
        "answers 400, not 404, for a snapshot that does not exist",
    ),
    VariantSpec::flag(
        CREATE_FAILED_STATUS,
        "a failed snapshot reads `CREATE_FAILED`, not `ERROR`",
    ),
    VariantSpec::flag(
        UNDOCUMENTED_STATUS,
        "a failed snapshot reads `SUSPENDED`, a status no page names",
    ),
];

/// The simulator's entry for this vendor.
pub(super) static SPEC: super::Spec = super::Spec {
    name: "hyperstack",
    prefix: "/hyperstack/v1",
    credentials: &[("api_key", super::HYPERSTACK_API_KEY)],
    source_ids,
    error,
    routers: |b| vec![(SPEC.prefix, false, router(b.delay, b.seed, b.now))],
    gateway_settings: |_| Vec::new(),
    variants: VARIANTS,
};
