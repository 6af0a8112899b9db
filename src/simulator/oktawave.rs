//! Simulated Oktawave OCI "services" snapshot API: PascalCase JSON, create/delete/restore answered
//! with tickets whose `Status.Id` goes 134 → 135 → 136 (137 on failure; `EndDate` set when
//! finished), synchronous rename by `PUT`, `ApiCollection` lists `{Items, Meta: {Total}}`.
//!
//! A snapshot appears only when its create ticket succeeds; restore is in place (the snapshot
//! becomes the instance's `IsCurrent`). Errors are `{Message}` (the assumed ASP.NET default).
//! Tokens come from `oktawave_id`. Owns only Oktawave services wire shapes and state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::FailAsync;
use super::oktawave_id::{self, Tokens};
use super::variants::{VariantSpec, Variants};
use super::OKTAWAVE_USERNAME;
use super::{json_body, lock, phase, query_int, query_map, Phase, Refusal, Reply};

/// id, name, age in days
const SEED_INSTANCES: [(i64, &str, i64); 3] = [
    (130455, "web-01", 400),
    (130471, "db-01", 310),
    (130502, "worker-01", 45),
];
/// id, name, description, instance, parent snapshot, age in minutes
type SeedSnap = (i64, &'static str, &'static str, i64, Option<i64>, i64);
#[rustfmt::skip]
const SEED_SNAPSHOTS: [SeedSnap; 3] = [
    (48211, "web-01-before-upgrade", "Snapshot before PHP upgrade", 130455, Some(48102), 12_977),
    (48230, "web-01-weekly", "", 130455, Some(48211), 7_203),
    (48244, "db-01-nightly", "Nightly snapshot", 130471, None, 1_481),
];

struct Snap {
    id: i64,
    name: String,
    description: String,
    instance_id: i64,
    created: DateTime<Utc>,
    changed: DateTime<Utc>,
    parent: Option<i64>,
}

#[derive(Clone)]
enum Op {
    Create { name: String, description: String },
    Delete(Vec<i64>),
    Restore(i64),
}

struct Ticket {
    id: i64,
    created: DateTime<Utc>,
    op: Op,
    instance_id: i64,
    fails: bool,
    applied: bool,
    /// The snapshot a create listed before its ticket ended (`oktawave.snapshot_before_ticket`).
    early: Option<i64>,
    /// How long after the ticket ends a create's snapshot is listed (`oktawave.listing_lag`).
    lag: TimeDelta,
}

struct OkState {
    instances: BTreeMap<i64, (String, DateTime<Utc>)>,
    snaps: BTreeMap<i64, Snap>,
    /// instance → the snapshot it currently sits on (`IsCurrent`)
    current: HashMap<i64, i64>,
    tickets: BTreeMap<i64, Ticket>,
    next_snapshot: i64,
    next_ticket: i64,
}

struct Api {
    delay: TimeDelta,
    state: Mutex<OkState>,
}

type ApiState = State<Arc<Api>>;

pub(super) fn source_ids() -> Vec<String> {
    SEED_INSTANCES.iter().map(|i| i.0.to_string()).collect()
}

/// The services API router and the identity-server router (`/connect/token`).
pub(super) fn routers(
    delay: TimeDelta,
    token_ttl: Duration,
    seed: bool,
    now: DateTime<Utc>,
) -> (Router, Router) {
    let api = Arc::new(Api {
        delay,
        state: Mutex::new(seeded(seed, now)),
    });
    let tokens = Tokens::new(token_ttl);
    let services = Router::new()
        .route("/snapshots", get(list))
        .route("/snapshots/ids", delete(delete_many))
        .route(
            "/snapshots/{id}",
            get(get_one).put(update).delete(delete_one),
        )
        .route("/snapshots/{id}/restore_ticket", post(restore))
        .route("/instances", get(list_instances))
        .route("/instances/{id}", get(get_instance))
        .route(
            "/instances/{id}/snapshots",
            get(list_for_instance).post(create),
        )
        .route("/tickets", get(list_tickets))
        .route("/tickets/{id}", get(get_ticket))
        .fallback(|| async {
            let message = "No HTTP resource was found that matches the request URI.";
            error(StatusCode::NOT_FOUND, message)
        })
        .layer(middleware::from_fn_with_state(
            tokens.clone(),
            oktawave_id::require_token,
        ))
        .with_state(api);
    (services, oktawave_id::router(tokens))
}

fn seeded(seed: bool, now: DateTime<Utc>) -> OkState {
    let instances = SEED_INSTANCES
        .iter()
        .map(|&(id, name, days)| (id, (name.to_owned(), now - TimeDelta::days(days))))
        .collect();
    let mut st = OkState {
        instances,
        snaps: BTreeMap::new(),
        current: HashMap::new(),
        tickets: BTreeMap::new(),
        next_snapshot: 48300,
        next_ticket: 9_123_700,
    };
    for (id, name, description, instance_id, parent, minutes) in SEED_SNAPSHOTS {
        if !seed {
            break;
        }
        let created = now - TimeDelta::minutes(minutes) - TimeDelta::milliseconds(877);
        let snap = Snap {
            id,
            name: name.to_owned(),
            description: description.to_owned(),
            instance_id,
            created,
            changed: created + TimeDelta::seconds(203),
            parent,
        };
        st.snaps.insert(id, snap);
        st.current.insert(instance_id, id);
    }
    st
}

/// The (assumed, ASP.NET Web API default) error body `{Message}`.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "Message": message }))).into_response()
}

fn not_found(what: &str, id: &str) -> Refusal {
    error(StatusCode::NOT_FOUND, &format!("{what} {id} not found")).into()
}

fn invalid(why: &str) -> Refusal {
    let message = format!("The request is invalid. {why}");
    error(StatusCode::BAD_REQUEST, &message).into()
}

/// RFC 3339 with milliseconds and the Warsaw winter offset, as the Go client expects.
fn ts(t: DateTime<Utc>) -> String {
    const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3f%:z";
    match FixedOffset::east_opt(3600) {
        Some(warsaw) => t.with_timezone(&warsaw).format(FORMAT).to_string(),
        None => t.format(FORMAT).to_string(),
    }
}

fn dictionary(id: i64, label: &str, dictionary: i64) -> Value {
    json!({ "Id": id, "Label": label, "Dictionary": { "Id": dictionary } })
}

fn user() -> Value {
    json!({ "Id": 22017, "Login": OKTAWAVE_USERNAME, "FirstName": "Sim", "LastName": "User" })
}

impl Api {
    /// Locks the state after applying every ticket that has finished by `now`, in ticket order.
    fn settled(&self, now: DateTime<Utc>) -> MutexGuard<'_, OkState> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        for t in st.tickets.values_mut() {
            if t.applied || phase(t.created, self.delay, now) != Phase::Done {
                continue;
            }
            let listed_at = t.created + self.delay + t.lag;
            if matches!(t.op, Op::Create { .. }) && !t.fails && now < listed_at {
                continue;
            }
            t.applied = true;
            if t.fails {
                if let Some(id) = t.early {
                    st.snaps.remove(&id);
                }
                continue;
            }
            let done = t.created + self.delay;
            match t.op.clone() {
                Op::Create { .. } if t.early.is_some() => {}
                Op::Create { name, description } => {
                    let id = st.next_snapshot;
                    st.next_snapshot += 1;
                    let parent = st.current.insert(t.instance_id, id);
                    let snap = Snap {
                        id,
                        name,
                        description,
                        instance_id: t.instance_id,
                        created: done,
                        changed: done,
                        parent,
                    };
                    st.snaps.insert(id, snap);
                }
                Op::Delete(ids) => {
                    for id in ids {
                        let Some(s) = st.snaps.remove(&id) else {
                            continue;
                        };
                        if st.current.get(&s.instance_id) == Some(&id) {
                            st.current.remove(&s.instance_id);
                        }
                    }
                }
                Op::Restore(id) if st.snaps.contains_key(&id) => {
                    st.current.insert(t.instance_id, id);
                }
                Op::Restore(_) => {}
            }
        }
        guard
    }

    fn ticket(&self, st: &OkState, t: &Ticket, now: DateTime<Utc>) -> Value {
        let end = ts(t.created + self.delay);
        let (status, progress, end) = match phase(t.created, self.delay, now) {
            Phase::Queued => (dictionary(134, "New", 40), 0, None),
            Phase::Running(p) => (dictionary(135, "Running", 40), i64::from(p), None),
            Phase::Done if t.fails => (dictionary(137, "Error", 40), 60, Some(end)),
            Phase::Done => (dictionary(136, "Succeeded", 40), 100, Some(end)),
        };
        let operation = match t.op {
            Op::Create { .. } => dictionary(301, "Create snapshot", 41),
            Op::Delete(_) => dictionary(302, "Delete snapshot", 41),
            Op::Restore(_) => dictionary(303, "Restore snapshot", 41),
        };
        json!({
            "Id": t.id,
            "CreationDate": ts(t.created),
            "CreationUser": user(),
            "EndDate": end,
            "Status": status,
            "OperationType": operation,
            "ObjectId": t.instance_id,
            "ObjectType": dictionary(138, "Instance", 42),
            "ObjectName": st.instances.get(&t.instance_id).map(|(n, _)| n.as_str()),
            "Progress": progress,
        })
    }

    /// Opens a ticket on an instance and answers with it; `early` lists a create's snapshot at
    /// once instead of when the ticket succeeds.
    fn open(&self, st: &mut OkState, op: Op, instance_id: i64, fails: bool, v: &Variants) -> Reply {
        let early = v.flag(SNAPSHOT_BEFORE_TICKET);
        let now = Utc::now();
        let id = st.next_ticket;
        st.next_ticket += 1;
        let early = match &op {
            Op::Create { name, description } if early => {
                let snapshot = st.next_snapshot;
                st.next_snapshot += 1;
                let parent = st.current.insert(instance_id, snapshot);
                let snap = Snap {
                    id: snapshot,
                    name: name.clone(),
                    description: description.clone(),
                    instance_id,
                    created: now,
                    changed: now,
                    parent,
                };
                st.snaps.insert(snapshot, snap);
                Some(snapshot)
            }
            _ => None,
        };
        let t = Ticket {
            id,
            created: now,
            op,
            instance_id,
            fails,
            applied: false,
            early,
            lag: TimeDelta::seconds(v.number(LISTING_LAG).unwrap_or(0)),
        };
        let body = self.ticket(st, &t, now);
        st.tickets.insert(id, t);
        Ok(Json(body).into_response())
    }
}

fn snapshot(st: &OkState, s: &Snap) -> Value {
    json!({
        "Id": s.id,
        "Name": s.name,
        "Description": s.description,
        "Instance": { "Id": s.instance_id },
        "CreationDate": ts(s.created),
        "LastChangeDate": ts(s.changed),
        "CreationUser": user(),
        "IsSystem": false,
        "IsCurrent": st.current.get(&s.instance_id) == Some(&s.id),
        "SnapshotParent": s.parent.map(|id| json!({ "Id": id })),
    })
}

/// `ApiCollection`: one page of items and the total before paging.
fn collection(items: impl Iterator<Item = Value>, skip: usize, size: usize) -> Reply {
    let items: Vec<Value> = items.collect();
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(skip).take(size).collect();
    Ok(Json(json!({ "Items": page, "Meta": { "Total": total } })).into_response())
}

/// `(skip, size)` from `pageSize` (default 20) and `pageNumber`, counted from 1 (or from 0 under
/// `oktawave.page_base=0`); no `pageNumber` is the first page.
fn page_of(q: &HashMap<String, String>, base: u8) -> Result<(usize, usize), Refusal> {
    let bad = || invalid("pageSize and pageNumber must be positive integers.");
    let (Ok(size), Ok(number)) = (query_int(q, "pageSize"), query_int(q, "pageNumber")) else {
        return Err(bad());
    };
    let size = usize::try_from(size.unwrap_or(20)).map_err(|_| bad())?;
    let base = usize::from(base);
    let number = usize::try_from(number.unwrap_or(base as i64)).map_err(|_| bad())?;
    if size == 0 || number < base {
        return Err(bad());
    }
    Ok(((number - base).saturating_mul(size), size))
}

fn find<'a, T>(map: &'a BTreeMap<i64, T>, raw: &str, what: &str) -> Result<&'a T, Refusal> {
    let id: Option<i64> = raw.parse().ok();
    id.and_then(|id| map.get(&id))
        .ok_or_else(|| not_found(what, raw))
}

async fn list(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    RawQuery(query): RawQuery,
) -> Reply {
    let q = query_map(query.as_deref());
    let (skip, size) = page_of(&q, v.number(PAGE_BASE).unwrap_or(1) as u8)?;
    let instance =
        query_int(&q, "instanceId").map_err(|_| invalid("instanceId must be an integer."))?;
    let text = q.get("query").map(|s| s.to_lowercase()).unwrap_or_default();
    let st = api.settled(Utc::now());
    let matches = |s: &&Snap| {
        instance.is_none_or(|i| s.instance_id == i)
            && (s.name.to_lowercase().contains(&text)
                || s.description.to_lowercase().contains(&text))
    };
    let mut snaps: Vec<&Snap> = st.snaps.values().filter(matches).collect();
    match q.get("orderBy").map(String::as_str) {
        None | Some("") => {}
        Some("CreationDate") => snaps.sort_by_key(|s| s.created),
        Some("Name") => snaps.sort_by_key(|s| s.name.as_str()),
        Some("Description") => snaps.sort_by_key(|s| s.description.as_str()),
        Some("IsCurrent") => snaps.sort_by_key(|s| st.current.get(&s.instance_id) == Some(&s.id)),
        Some("Instance") => snaps.sort_by_key(|s| s.instance_id),
        Some(other) => return Err(invalid(&format!("Unknown orderBy {other}."))),
    }
    collection(snaps.into_iter().map(|s| snapshot(&st, s)), skip, size)
}

async fn list_for_instance(State(api): ApiState, Path(id): Path<String>) -> Reply {
    let st = api.settled(Utc::now());
    find(&st.instances, &id, "Instance")?;
    let instance_id: i64 = id.parse().unwrap_or_default();
    let of_instance = st.snaps.values().filter(|s| s.instance_id == instance_id);
    collection(of_instance.map(|s| snapshot(&st, s)), 0, usize::MAX)
}

async fn get_one(State(api): ApiState, Path(id): Path<String>) -> Reply {
    let st = api.settled(Utc::now());
    let s = find(&st.snaps, &id, "Snapshot")?;
    Ok(Json(snapshot(&st, s)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Command {
    name: Option<String>,
    description: Option<String>,
}

/// Validates `CreateUpdateSnapshotCommand` as the generated clients do.
fn command(body: &[u8]) -> Result<(String, String), Refusal> {
    let c: Command = json_body(body).map_err(|e| invalid(&e))?;
    let name = c.name.unwrap_or_default();
    if name.is_empty() || name.chars().count() > 500 {
        return Err(invalid("Name must be 1 to 500 characters long."));
    }
    if name.contains(['/', '\\', '|', '<', '>', '%']) {
        return Err(invalid("Name must not contain / \\ | < > %."));
    }
    let description = c.description.unwrap_or_default();
    if description.contains('/') {
        return Err(invalid("Description must not contain /."));
    }
    Ok((name, description))
}

async fn create(
    State(api): ApiState,
    Path(id): Path<String>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
    Extension(ref v): Extension<Variants>,
    body: Bytes,
) -> Reply {
    let mut st = api.settled(Utc::now());
    find(&st.instances, &id, "Instance")?;
    let (name, description) = command(&body)?;
    let instance_id = id.parse().unwrap_or_default();
    api.open(
        &mut st,
        Op::Create { name, description },
        instance_id,
        fails,
        v,
    )
}

async fn update(State(api): ApiState, Path(id): Path<String>, body: Bytes) -> Reply {
    let now = Utc::now();
    let mut st = api.settled(now);
    let sid = find(&st.snaps, &id, "Snapshot")?.id;
    let (name, description) = command(&body)?;
    if let Some(s) = st.snaps.get_mut(&sid) {
        (s.name, s.description, s.changed) = (name, description, now);
    }
    let s = find(&st.snaps, &id, "Snapshot")?;
    Ok(Json(snapshot(&st, s)).into_response())
}

/// Opens one delete ticket for snapshots that must all exist.
fn delete_ids(api: &Api, ids: Vec<i64>, fails: bool) -> Reply {
    let mut st = api.settled(Utc::now());
    if let Some(missing) = ids.iter().find(|id| !st.snaps.contains_key(id)) {
        return Err(not_found("Snapshot", &missing.to_string()));
    }
    let first = ids.first().and_then(|id| st.snaps.get(id));
    let instance_id = first
        .ok_or_else(|| invalid("Ids must not be empty."))?
        .instance_id;
    api.open(
        &mut st,
        Op::Delete(ids),
        instance_id,
        fails,
        &Variants::default(),
    )
}

async fn delete_one(
    State(api): ApiState,
    Path(id): Path<String>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
) -> Reply {
    let id = id.parse().map_err(|_| not_found("Snapshot", &id))?;
    delete_ids(&api, vec![id], fails)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteMany {
    ids: Vec<i64>,
}

async fn delete_many(
    State(api): ApiState,
    Extension(FailAsync(fails)): Extension<FailAsync>,
    body: Bytes,
) -> Reply {
    let command: DeleteMany = json_body(&body).map_err(|e| invalid(&e))?;
    delete_ids(&api, command.ids, fails)
}

async fn restore(
    State(api): ApiState,
    Path(id): Path<String>,
    Extension(FailAsync(fails)): Extension<FailAsync>,
) -> Reply {
    let mut st = api.settled(Utc::now());
    let s = find(&st.snaps, &id, "Snapshot")?;
    let (sid, instance_id) = (s.id, s.instance_id);
    api.open(
        &mut st,
        Op::Restore(sid),
        instance_id,
        fails,
        &Variants::default(),
    )
}

fn instance(id: i64, (name, created): &(String, DateTime<Utc>)) -> Value {
    json!({
        "Id": id, "Name": name, "CreationDate": ts(*created),
        "Status": { "Id": 86, "Label": "Powered on" },
    })
}

/// Paged as the snapshot list is (`pageSize`, `pageNumber` from the variant's base).
async fn list_instances(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    RawQuery(query): RawQuery,
) -> Reply {
    let q = query_map(query.as_deref());
    let (skip, size) = page_of(&q, v.number(PAGE_BASE).unwrap_or(1) as u8)?;
    let st = api.settled(Utc::now());
    let items = st.instances.iter().map(|(id, i)| instance(*id, i));
    collection(items, skip, size)
}

async fn get_instance(State(api): ApiState, Path(id): Path<String>) -> Reply {
    let st = api.settled(Utc::now());
    let i = find(&st.instances, &id, "Instance")?;
    Ok(Json(instance(id.parse().unwrap_or_default(), i)).into_response())
}

async fn list_tickets(
    State(api): ApiState,
    Extension(ref v): Extension<Variants>,
    RawQuery(query): RawQuery,
) -> Reply {
    let q = query_map(query.as_deref());
    let (skip, size) = page_of(&q, v.number(PAGE_BASE).unwrap_or(1) as u8)?;
    let status = query_int(&q, "statusId").map_err(|_| invalid("statusId must be an integer."))?;
    let now = Utc::now();
    let st = api.settled(now);
    let tickets = st.tickets.values().rev().map(|t| api.ticket(&st, t, now));
    let tickets = tickets.filter(|t| status.is_none_or(|s| t["Status"]["Id"] == s));
    collection(tickets, skip, size)
}

async fn get_ticket(State(api): ApiState, Path(id): Path<String>) -> Reply {
    let now = Utc::now();
    let st = api.settled(now);
    let t = find(&st.tickets, &id, "Ticket")?;
    Ok(Json(api.ticket(&st, t, now)).into_response())
}

/// Variant: `pageNumber` counts from this (default 1)
const PAGE_BASE: &str = "oktawave.page_base";
/// Variant: a new snapshot is listed while its ticket still runs
const SNAPSHOT_BEFORE_TICKET: &str = "oktawave.snapshot_before_ticket";
/// Variant: a new snapshot is listed only n seconds after its ticket ended
const LISTING_LAG: &str = "oktawave.listing_lag";

/// The readings of undocumented behaviour this vendor can play (see [`super::variants`]).
static VARIANTS: &[VariantSpec] = &[
    VariantSpec::number(PAGE_BASE, 0, 1, "`pageNumber` counts from this (default 1)"),
    VariantSpec::flag(
        SNAPSHOT_BEFORE_TICKET,
        "a new snapshot is listed while its ticket still runs",
    ),
    VariantSpec::number(
        LISTING_LAG,
        0,
        86400,
        "a new snapshot is listed only n seconds after its ticket ended",
    ),
];

/// The simulator's entry for this vendor.
pub(super) static SPEC: super::Spec = super::Spec {
    name: "oktawave",
    prefix: "/oktawave/services",
    credentials: &[
        ("client_id", super::OKTAWAVE_CLIENT_ID),
        ("client_secret", super::OKTAWAVE_CLIENT_SECRET),
        ("username", super::OKTAWAVE_USERNAME),
        ("password", super::OKTAWAVE_PASSWORD),
    ],
    source_ids,
    error,
    routers: |b| {
        let (api, token) = routers(b.delay, b.token_ttl, b.seed, b.now);
        // The identity server answers at `/oktawave/connect/token`.
        vec![(SPEC.prefix, false, api), ("/oktawave", true, token)]
    },
    gateway_settings: |root| vec![("token_url", format!("{root}/oktawave/connect/token").into())],
    variants: VARIANTS,
};
