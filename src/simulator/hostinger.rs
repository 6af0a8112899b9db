//! Simulated Hostinger VPS (`/api/vps/v1`) snapshot API: one snapshot per VM, create overwrites it,
//! create/delete/restore answered with actions (`created` → `sent` → `success` | `error`), VM and
//! data-center lists, snapshots that expire 20 days after creation.
//!
//! Auth: `Authorization: Bearer sim-hostinger-token`; a request without a `User-Agent` is refused
//! the way Cloudflare in front of the API does it (403, plain text `error code: 1010`) before auth.
//! Errors `{message, correlation_id}`; a VM with a pending action is locked (422).
//! Owns only Hostinger wire shapes and state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use super::faults::FailAsync;
use super::variants::{VariantSpec, Variants};
use super::{bearer, lock, phase, query_int, query_map, Phase, Refusal, Reply, HOSTINGER_TOKEN};

/// id, data center, state, created_at (the vendor's 5-digit fraction)
type SeedVm = (i64, i64, &'static str, &'static str);
const SEED_VMS: [SeedVm; 3] = [
    (1268054, 17, "running", "2024-09-05T07:25:36.00000Z"),
    (1268311, 21, "stopped", "2024-11-18T14:02:11.00000Z"),
    (1268502, 17, "running", "2025-01-27T09:41:52.00000Z"),
];
const RETENTION_DAYS: i64 = 20;
const RESTORE_TIME: i64 = 1800;
const PER_PAGE: usize = 15;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Delete,
    Restore,
}

struct Snap {
    id: i64,
    created: DateTime<Utc>,
}

struct Action {
    id: i64,
    vm_id: i64,
    kind: Kind,
    created: DateTime<Utc>,
    fails: bool,
    applied: bool,
}

struct HState {
    /// VM id → its snapshot, if any
    snaps: HashMap<i64, Snap>,
    actions: BTreeMap<i64, Action>,
    next_action: i64,
    next_snapshot: i64,
}

struct Api {
    delay: TimeDelta,
    state: Mutex<HState>,
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
    let vm = "/api/vps/v1/virtual-machines/{vm}";
    Router::new()
        .route("/api/vps/v1/virtual-machines", get(list_vms))
        .route("/api/vps/v1/data-centers", get(data_centers))
        .route(vm, get(get_vm))
        .route(
            &format!("{vm}/snapshot"),
            get(get_snapshot).post(create).delete(delete),
        )
        .route(&format!("{vm}/snapshot/restore"), post(restore))
        .route(&format!("{vm}/actions"), get(list_actions))
        .route(&format!("{vm}/actions/{{action}}"), get(get_action))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not found") })
        .layer(middleware::from_fn(auth))
        .with_state(api)
}

fn seeded(seed: bool, now: DateTime<Utc>) -> HState {
    let mut st = HState {
        snaps: HashMap::new(),
        actions: BTreeMap::new(),
        next_action: 8_125_000,
        next_snapshot: 327_000,
    };
    if seed {
        let seeds = [
            (
                1268054,
                325871,
                8123712,
                TimeDelta::days(6) + TimeDelta::seconds(1_642),
            ),
            (
                1268311,
                326004,
                8123790,
                TimeDelta::days(2) + TimeDelta::seconds(3_603),
            ),
        ];
        for (vm_id, id, action, age) in seeds {
            let created = now - age;
            st.snaps.insert(vm_id, Snap { id, created });
            st.actions.insert(
                action,
                Action {
                    id: action,
                    vm_id,
                    kind: Kind::Create,
                    created: created - TimeDelta::seconds(2),
                    fails: false,
                    applied: true,
                },
            );
        }
    }
    st
}

/// `Common.Response.ErrorResponse` (also the 401 body, with `Unauthenticated`).
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({ "message": message, "correlation_id": uuid::Uuid::new_v4().to_string() });
    (status, Json(body)).into_response()
}

fn not_found(what: &str) -> Refusal {
    error(StatusCode::NOT_FOUND, &format!("{what} not found")).into()
}

/// 422 for a VM that already runs an action.
fn locked() -> Refusal {
    let body = json!({
        "message": "The virtual machine is locked. (and 1 more error)",
        "errors": { "virtual_machine": ["The virtual machine is locked.", "Another action is in progress."] },
        "correlation_id": uuid::Uuid::new_v4().to_string(),
    });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body))
        .into_response()
        .into()
}

async fn auth(req: Request, next: Next) -> Response {
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    if agent.is_none_or(|a| a.trim().is_empty()) {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
            "error code: 1010",
        )
            .into_response();
    }
    if bearer(req.headers().get(header::AUTHORIZATION)) != Some(HOSTINGER_TOKEN) {
        return error(StatusCode::UNAUTHORIZED, "Unauthenticated");
    }
    next.run(req).await
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Api {
    /// Locks the state after applying finished actions and dropping expired snapshots.
    fn settled(&self, now: DateTime<Utc>) -> MutexGuard<'_, HState> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        for a in st.actions.values_mut() {
            if a.applied || phase(a.created, self.delay, now) != Phase::Done {
                continue;
            }
            a.applied = true;
            if a.fails {
                continue;
            }
            match a.kind {
                Kind::Create => {
                    let id = st.next_snapshot;
                    st.next_snapshot += 1;
                    let created = a.created + self.delay;
                    st.snaps.insert(a.vm_id, Snap { id, created });
                }
                Kind::Delete => {
                    st.snaps.remove(&a.vm_id);
                }
                Kind::Restore => {}
            }
        }
        st.snaps
            .retain(|_, s| s.created + TimeDelta::days(RETENTION_DAYS) > now);
        guard
    }

    fn action(&self, a: &Action, now: DateTime<Utc>) -> Value {
        let (state, updated) = match phase(a.created, self.delay, now) {
            Phase::Queued => ("created", a.created),
            Phase::Running(_) => ("sent", a.created + self.delay / 4),
            Phase::Done if a.fails => ("error", a.created + self.delay),
            Phase::Done => ("success", a.created + self.delay),
        };
        let name = match a.kind {
            Kind::Create => "snapshot_create",
            Kind::Delete => "snapshot_delete",
            Kind::Restore => "snapshot_restore",
        };
        json!({
            "id": a.id,
            "name": name,
            "state": state,
            "created_at": ts(a.created),
            "updated_at": ts(updated),
        })
    }

    fn locked(&self, st: &HState, vm_id: i64, now: DateTime<Utc>) -> bool {
        st.actions
            .values()
            .any(|a| a.vm_id == vm_id && phase(a.created, self.delay, now) != Phase::Done)
    }

    fn vm(&self, st: &HState, seed: &SeedVm, now: DateTime<Utc>) -> Value {
        let (id, dc, state, created) = *seed;
        let last = id % 1000;
        json!({
            "id": id,
            "firewall_group_id": null,
            "subscription_id": "Azz353Uhl1xC54pR0",
            "data_center_id": dc,
            "plan": "KVM 2",
            "hostname": format!("srv{id}.hstgr.cloud"),
            "state": state,
            "actions_lock": if self.locked(st, id, now) { "locked" } else { "unlocked" },
            "cpus": 2,
            "memory": 8192,
            "disk": 102400,
            "bandwidth": 8388608,
            "ns1": "1.1.1.1",
            "ns2": "8.8.8.8",
            "ipv4": [{ "id": 52000 + last, "address": format!("203.0.113.{}", last % 250 + 1), "ptr": null }],
            "ipv6": null,
            "template": {
                "id": 1077,
                "name": "Ubuntu 24.04 LTS",
                "description": "Ubuntu 24.04 LTS",
                "documentation": null,
            },
            "created_at": created,
        })
    }

    /// Opens an action on a VM and answers with it.
    fn open(
        &self,
        st: &mut HState,
        vm_id: i64,
        kind: Kind,
        fails: bool,
        now: DateTime<Utc>,
    ) -> Response {
        let id = st.next_action;
        st.next_action += 1;
        let a = Action {
            id,
            vm_id,
            kind,
            created: now,
            fails,
            applied: false,
        };
        let body = self.action(&a, now);
        st.actions.insert(id, a);
        Json(body).into_response()
    }
}

/// The seeded VM a path segment names.
fn find_vm(raw: &str) -> Result<&'static SeedVm, Refusal> {
    let id: Option<i64> = raw.parse().ok();
    SEED_VMS
        .iter()
        .find(|vm| Some(vm.0) == id)
        .ok_or_else(|| not_found("Virtual machine"))
}

async fn list_vms(State(api): ApiState) -> Response {
    let now = Utc::now();
    let st = api.settled(now);
    let vms: Vec<Value> = SEED_VMS.iter().map(|vm| api.vm(&st, vm, now)).collect();
    Json(vms).into_response()
}

async fn get_vm(State(api): ApiState, Path(vm): Path<String>) -> Reply {
    let seed = find_vm(&vm)?;
    let now = Utc::now();
    Ok(Json(api.vm(&api.settled(now), seed, now)).into_response())
}

async fn data_centers() -> Response {
    Json(json!([
        { "id": 17, "name": "fra", "location": "de", "city": "Frankfurt", "continent": "Europe" },
        { "id": 21, "name": "phx", "location": "us", "city": "Phoenix", "continent": "North America" },
    ]))
    .into_response()
}

async fn get_snapshot(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    Path(vm): Path<String>,
) -> Reply {
    let vm_id = find_vm(&vm)?.0;
    if v.number(VM_READ_FAILS) == Some(vm_id) {
        let message = "Failed to read the snapshot of this virtual machine";
        return Err(error(StatusCode::INTERNAL_SERVER_ERROR, message).into());
    }
    let st = api.settled(Utc::now());
    let s = st.snaps.get(&vm_id).ok_or_else(|| not_found("Snapshot"))?;
    Ok(Json(json!({
        "id": s.id,
        "restore_time": RESTORE_TIME,
        "created_at": ts(s.created),
        "expires_at": ts(s.created + TimeDelta::days(RETENTION_DAYS)),
    }))
    .into_response())
}

/// Starts a snapshot action after the checks the kind needs.
fn start(api: &Api, vm: &str, kind: Kind, fails: bool) -> Reply {
    let vm_id = find_vm(vm)?.0;
    let now = Utc::now();
    let mut st = api.settled(now);
    if api.locked(&st, vm_id, now) {
        return Err(locked());
    }
    if kind != Kind::Create && !st.snaps.contains_key(&vm_id) {
        return Err(not_found("Snapshot"));
    }
    Ok(api.open(&mut st, vm_id, kind, fails, now))
}

async fn create(
    State(api): ApiState,
    Path(vm): Path<String>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
) -> Reply {
    start(&api, &vm, Kind::Create, fails)
}

async fn delete(
    State(api): ApiState,
    Path(vm): Path<String>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
) -> Reply {
    start(&api, &vm, Kind::Delete, fails)
}

async fn restore(
    State(api): ApiState,
    Path(vm): Path<String>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
) -> Reply {
    start(&api, &vm, Kind::Restore, fails)
}

async fn list_actions(
    State(api): ApiState,
    Path(vm): Path<String>,
    RawQuery(query): RawQuery,
) -> Reply {
    let vm_id = find_vm(&vm)?.0;
    let page = query_int(&query_map(query.as_deref()), "page").map_err(|_| {
        Refusal::from(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The page field must be an integer.",
        ))
    })?;
    let page = page.unwrap_or(1).max(1);
    let now = Utc::now();
    let st = api.settled(now);
    let all: Vec<&Action> = st
        .actions
        .values()
        .rev()
        .filter(|a| a.vm_id == vm_id)
        .collect();
    let skip = usize::try_from(page - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(PER_PAGE);
    let data: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(PER_PAGE)
        .map(|a| api.action(a, now))
        .collect();
    Ok(Json(json!({
        "data": data,
        "meta": { "current_page": page, "per_page": PER_PAGE, "total": all.len() },
    }))
    .into_response())
}

async fn get_action(State(api): ApiState, Path((vm, action)): Path<(String, String)>) -> Reply {
    let vm_id = find_vm(&vm)?.0;
    let now = Utc::now();
    let st = api.settled(now);
    let a = action
        .parse::<i64>()
        .ok()
        .and_then(|id| st.actions.get(&id))
        .filter(|a| a.vm_id == vm_id)
        .ok_or_else(|| not_found("Action"))?;
    Ok(Json(api.action(a, now)).into_response())
}

/// Variant: `GET …/{vm}/snapshot` of that VM answers 500
const VM_READ_FAILS: &str = "hostinger.vm_read_fails";

/// The readings of undocumented behaviour this vendor can play (see [`super::variants`]).
static VARIANTS: &[VariantSpec] = &[VariantSpec::number(
    VM_READ_FAILS,
    1,
    i64::MAX,
    "`GET …/{vm}/snapshot` of that VM answers 500",
)];

/// The simulator's entry for this vendor.
pub(super) static SPEC: super::Spec = super::Spec {
    name: "hostinger",
    prefix: "/hostinger",
    credentials: &[("token", super::HOSTINGER_TOKEN)],
    source_ids,
    error,
    routers: |b| vec![(SPEC.prefix, false, router(b.delay, b.seed, b.now))],
    gateway_settings: |_| Vec::new(),
    variants: VARIANTS,
};
