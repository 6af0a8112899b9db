//! DigitalOcean: droplet and volume snapshots (contract: `docs/vendors/digitalocean.md`).
//!
//! Quirks: one snapshot list for both kinds (`/snapshots`, `links.pages` and `meta.total`),
//! ids as strings there (numeric for droplet snapshots, UUIDs for volume snapshots); a droplet
//! snapshot is a droplet action (`type: snapshot`) whose answer never names the snapshot — it is
//! found once the action completes, in the droplet's own snapshot list, by its name and a time
//! no earlier than the action's start; a volume snapshot is made at once (`201` with the
//! snapshot). Only droplet snapshots (images) can be renamed. Restore: a droplet snapshot as a
//! new droplet like the source (default) or by rebuilding the source (`in_place`, destructive);
//! a volume snapshot as a new volume. A source id's shape says its kind: an integer is a
//! droplet, a UUID a volume.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, value::RawValue};

use super::{
    check,
    http::{Auth, VendorHttp},
    wire::{self, Id},
    CallContext, CreateRequest, ListFilter, Listed, PollRequest, Progress, ProviderAdapter,
    ProviderError, ProviderInfo, RateLimits, RestoreRequest, Submitted, UpdateRequest,
};
use crate::{
    config::{ProviderConfigError, ProvidersConfig},
    domain::{
        AccountSource, Capabilities, FieldSpec, OperationKind, OperationState, ProviderKind,
        SnapshotStatus, Source, SourceKind, VendorRef, VendorRefKind, VendorSnapshot,
    },
    upstream::{RateLimitHeaders, Upstream},
};

const KIND: ProviderKind = ProviderKind::Digitalocean;
/// The largest page the API serves.
const PER_PAGE: usize = 200;
/// Snapshot and resource names.
const MAX_NAME: usize = 255;
/// How far the vendor's clock may be behind the action's start when a droplet snapshot is
/// matched to the action that made it.
const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(2);

pub(super) static INFO: ProviderInfo = ProviderInfo {
    kind: KIND,
    display_name: "DigitalOcean",
    source_kind: SourceKind::Vm,
    credential_fields: &[FieldSpec::required(
        "token",
        "Personal access token with read and write scope (sent as `Authorization: Bearer`)",
    )
    .sent_in_header()],
    setting_fields: &[],
    capabilities: Capabilities {
        list: true,
        get: true,
        create: true,
        create_replaces_existing: false,
        rename: true,
        describe: false,
        delete: true,
        restore: true,
        restore_to_new_resource: true,
        restore_to_other_target: false,
        restore_in_place: true,
        create_image: false,
        name_availability: false,
        list_sources: true,
    },
    auth: Auth::Scheme {
        scheme: "Bearer",
        credential: "token",
    },
    rate_limits: RateLimits {
        // 5,000 requests an hour and 250 a minute per token; `ratelimit-reset` is when the
        // oldest request leaves the window.
        window_secs: Some(60),
        by_address: false,
        headers: Some(RateLimitHeaders {
            remaining: "ratelimit-remaining",
            reset: "ratelimit-reset",
            refill_secs: None,
        }),
    },
};

/// The DigitalOcean adapter.
pub struct Digitalocean {
    http: VendorHttp,
}

/// What a source id names.
enum Resource<'a> {
    Droplet(&'a str),
    Volume(&'a str),
}

/// A droplet id is an integer; a volume id a UUID.
fn resource(id: &str) -> Option<Resource<'_>> {
    if check::numeric(id).is_ok() {
        return Some(Resource::Droplet(id));
    }
    uuid::Uuid::parse_str(id)
        .ok()
        .filter(|u| u.hyphenated().to_string() == id.to_ascii_lowercase())
        .map(|_| Resource::Volume(id))
}

impl Digitalocean {
    pub fn new(config: &ProvidersConfig, http: Upstream) -> Result<Self, ProviderConfigError> {
        let base = super::Endpoint::base_url(config, KIND, "https://api.digitalocean.com/v2")?;
        Ok(Self {
            http: VendorHttp::new(&INFO, base, http).with_error_reader(error_message),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ProviderError> {
        self.http
            .call(ctx, operation, Method::GET, path, query, None)
            .await?
            .json(KIND)
    }

    /// One walk of a droplet or volume list, 200 a page, to the page without a `next` link.
    async fn sources_of(
        &self,
        ctx: &CallContext<'_>,
        path: &'static str,
        filter: Option<(&'static str, &'static str)>,
        kind: SourceKind,
    ) -> Result<Vec<AccountSource>, ProviderError> {
        super::walk_sources(KIND, |page| async move {
            let mut query = vec![
                ("page", page.to_string()),
                ("per_page", PER_PAGE.to_string()),
            ];
            query.extend(filter.map(|(k, v)| (k, v.to_owned())));
            let reply: WireResources = self.get_json(ctx, "sources", path, &query).await?;
            let listed = reply
                .droplets
                .into_iter()
                .chain(reply.volumes)
                .map(|r| AccountSource {
                    id: r.id.0,
                    name: r.name,
                    kind,
                    status: r.status,
                })
                .collect();
            Ok(super::SourcePage {
                total: reply.meta.and_then(|m| usize::try_from(m.total?).ok()),
                more: Some(
                    reply
                        .links
                        .and_then(|l| l.pages)
                        .is_some_and(|p| p.next.is_some()),
                ),
                ..super::SourcePage::of(listed, &["archive"], PER_PAGE)
            })
        })
        .await
    }

    async fn snapshot(
        &self,
        ctx: &CallContext<'_>,
        id: &str,
    ) -> Result<WireSnapshot, ProviderError> {
        if resource(id).is_none() {
            return Err(ProviderError::NotFound);
        }
        let reply: SnapshotEnvelope = self
            .get_json(ctx, "get", &format!("/snapshots/{id}"), &[])
            .await
            // A backup or custom image id is `400 bad_request`: not a snapshot.
            .map_err(|e| match e {
                ProviderError::Rejected { status: 400, .. } => ProviderError::NotFound,
                other => other,
            })?;
        let snapshot: WireSnapshot = check::decode(KIND, &reply.snapshot)?;
        Ok(WireSnapshot {
            raw: Some(reply.snapshot),
            ..snapshot
        })
    }

    /// The snapshot a completed droplet snapshot action made: in the droplet's own list, by
    /// its name, taken no earlier than the action started.
    async fn made_by(
        &self,
        ctx: &CallContext<'_>,
        droplet: &str,
        name: &str,
        started: DateTime<Utc>,
    ) -> Result<Option<String>, ProviderError> {
        let query = [("per_page", PER_PAGE.to_string())];
        let path = format!("/droplets/{droplet}/snapshots");
        let reply: DropletSnapshots = self.get_json(ctx, "poll", &path, &query).await?;
        Ok(reply
            .snapshots
            .into_iter()
            .filter(|s| s.name.as_deref() == Some(name))
            .filter(|s| s.created_at.is_some_and(|t| t >= started - CLOCK_SKEW))
            .max_by_key(|s| s.created_at)
            .map(|s| s.id.0))
    }

    /// A new droplet from a droplet snapshot, with the source droplet's size and region.
    async fn new_droplet(
        &self,
        ctx: &CallContext<'_>,
        snapshot: &WireSnapshot,
        name: &str,
    ) -> Result<Submitted, ProviderError> {
        let source = &snapshot.resource_id.0;
        let droplet: DropletEnvelope = match self
            .get_json(ctx, "restore", &format!("/droplets/{source}"), &[])
            .await
        {
            Ok(d) => d,
            Err(ProviderError::NotFound) => {
                return Err(ProviderError::Invalid {
                    field: "snapshot",
                    message: format!(
                        "droplet {source}, which this snapshot was taken of, no longer exists: \
                         its size and region are unknown, so a new droplet cannot be sized from it"
                    ),
                })
            }
            Err(e) => return Err(e),
        };
        // A droplet snapshot is an image, whose id is an integer; anything else is not one.
        let image: i64 = snapshot.id.0.parse().map_err(|_| ProviderError::Invalid {
            field: "snapshot",
            message: format!(
                "snapshot {} is not a droplet snapshot (its id is not an image id)",
                snapshot.id.0
            ),
        })?;
        let body = json!({
            "name": name,
            "size": droplet.droplet.size_slug,
            "region": droplet.droplet.region.slug,
            "image": image,
        });
        let reply: NewDroplet = self
            .http
            .call(ctx, "restore", Method::POST, "/droplets", &[], Some(body))
            .await?
            .json(KIND)?;
        let action = reply.links.actions.into_iter().next();
        Ok(Submitted {
            state: OperationState::Running,
            snapshot: None,
            native_id: None,
            vendor_ref: VendorRef {
                kind: VendorRefKind::Action,
                id: action.map(|a| a.id.0),
            },
            result: Some(json!({ "vm_id": reply.droplet.id.0, "vm_name": name })),
            tracking: json!({}),
            assumed: None,
        })
    }

    /// A new volume from a volume snapshot, in the snapshot's region, of its size.
    async fn new_volume(
        &self,
        ctx: &CallContext<'_>,
        snapshot: &WireSnapshot,
        name: &str,
    ) -> Result<Submitted, ProviderError> {
        let body = json!({
            "name": name,
            "size_gigabytes": snapshot.min_disk_size.unwrap_or(1),
            "snapshot_id": snapshot.id.0,
            "region": snapshot.regions.first(),
        });
        let reply: NewVolume = self
            .http
            .call(ctx, "restore", Method::POST, "/volumes", &[], Some(body))
            .await?
            .json(KIND)?;
        // A volume is made at once: it is there (volumes have no status to follow).
        Ok(Submitted {
            state: OperationState::Succeeded,
            snapshot: None,
            native_id: None,
            vendor_ref: VendorRef {
                kind: VendorRefKind::None,
                id: None,
            },
            result: Some(json!({ "volume_id": reply.volume.id.0, "volume_name": name })),
            tracking: json!({}),
            assumed: None,
        })
    }
}

#[async_trait]
impl ProviderAdapter for Digitalocean {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    async fn verify(&self, ctx: &CallContext<'_>) -> Result<(), ProviderError> {
        let query = [("per_page", "1".to_owned())];
        self.get_json::<WireSnapshots>(ctx, "verify", "/snapshots", &query)
            .await
            .map(|_| ())
    }

    async fn list(
        &self,
        ctx: &CallContext<'_>,
        filter: &ListFilter<'_>,
    ) -> Result<Listed, ProviderError> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut walk = super::ListWalk::new(KIND);
        for page in 1.. {
            let query = [
                ("page", page.to_string()),
                ("per_page", PER_PAGE.to_string()),
            ];
            let reply: WireSnapshots = self.get_json(ctx, "list", "/snapshots", &query).await?;
            let n = reply.snapshots.len();
            let mut new = 0;
            for raw in reply.snapshots {
                let snapshot: WireSnapshot = check::decode(KIND, &raw)?;
                if !seen.insert(snapshot.id.0.clone()) {
                    continue;
                }
                new += 1;
                if filter.source_id.is_none_or(|s| s == snapshot.resource_id.0) {
                    out.push(to_domain(WireSnapshot {
                        raw: Some(raw),
                        ..snapshot
                    }));
                }
            }
            let signals = super::PageSignals {
                items: n,
                new,
                total: reply
                    .meta
                    .and_then(|m| m.total)
                    .and_then(|t| usize::try_from(t).ok()),
                more: Some(
                    reply
                        .links
                        .and_then(|l| l.pages)
                        .is_some_and(|p| p.next.is_some()),
                ),
                asked: PER_PAGE,
            };
            if !walk.next(signals)? {
                break;
            }
        }
        Ok(out.into())
    }

    async fn get(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        self.snapshot(ctx, native_id).await.map(to_domain)
    }

    async fn create(
        &self,
        ctx: &CallContext<'_>,
        request: &CreateRequest,
    ) -> Result<Submitted, ProviderError> {
        let Some(source) = resource(&request.source_id) else {
            return Err(ProviderError::Invalid {
                field: "source_id",
                message: "source_id must be a DigitalOcean droplet id (an integer) or volume id \
                          (a UUID)"
                    .to_owned(),
            });
        };
        check::name(KIND, "name", &request.name, MAX_NAME)?;
        check::no_description(KIND, request.description.as_deref())?;
        match source {
            Resource::Droplet(droplet) => {
                let path = format!("/droplets/{droplet}/actions");
                let body = json!({ "type": "snapshot", "name": request.name });
                let reply: ActionEnvelope = self
                    .http
                    .call(ctx, "create", Method::POST, &path, &[], Some(body))
                    .await?
                    .json(KIND)?;
                let mut done = submitted(&reply.action)?;
                done.tracking = json!({
                    "droplet_id": droplet,
                    "name": request.name,
                    "started_at": reply.action.started_at,
                });
                Ok(done)
            }
            Resource::Volume(volume) => {
                let path = format!("/volumes/{volume}/snapshots");
                let body = json!({ "name": request.name });
                let reply: SnapshotEnvelope = self
                    .http
                    .call(ctx, "create", Method::POST, &path, &[], Some(body))
                    .await?
                    .json(KIND)?;
                let w: WireSnapshot = check::decode(KIND, &reply.snapshot)?;
                let snapshot = to_domain(WireSnapshot {
                    raw: Some(reply.snapshot),
                    ..w
                });
                Ok(Submitted {
                    state: OperationState::Succeeded,
                    native_id: Some(snapshot.native_id.clone()),
                    snapshot: Some(snapshot),
                    vendor_ref: VendorRef {
                        kind: VendorRefKind::None,
                        id: None,
                    },
                    result: None,
                    tracking: json!({}),
                    assumed: None,
                })
            }
        }
    }

    async fn update(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        request: &UpdateRequest,
    ) -> Result<Submitted, ProviderError> {
        let Some(name) = &request.name else {
            return Err(ProviderError::Invalid {
                field: "description",
                message: "DigitalOcean snapshots have no description".to_owned(),
            });
        };
        check::name(KIND, "name", name, MAX_NAME)?;
        let snapshot = self.snapshot(ctx, native_id).await?;
        if snapshot.resource_type.as_deref() != Some("droplet") {
            return Err(ProviderError::Invalid {
                field: "name",
                message: "DigitalOcean renames droplet snapshots only; a volume snapshot keeps \
                          its name"
                    .to_owned(),
            });
        }
        let path = format!("/images/{native_id}");
        self.http
            .call(
                ctx,
                "update",
                Method::PUT,
                &path,
                &[],
                Some(json!({ "name": name })),
            )
            .await?;
        let renamed = self.snapshot(ctx, native_id).await.map(to_domain).ok();
        Ok(Submitted {
            state: OperationState::Succeeded,
            snapshot: renamed,
            native_id: Some(native_id.to_owned()),
            vendor_ref: VendorRef {
                kind: VendorRefKind::None,
                id: None,
            },
            result: None,
            tracking: json!({}),
            assumed: None,
        })
    }

    async fn delete(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<Submitted, ProviderError> {
        // Only a snapshot is deleted through this path, never another image.
        self.snapshot(ctx, native_id).await?;
        let path = format!("/snapshots/{native_id}");
        self.http
            .call(ctx, "delete", Method::DELETE, &path, &[], None)
            .await?;
        Ok(Submitted {
            state: OperationState::Succeeded,
            snapshot: None,
            native_id: Some(native_id.to_owned()),
            vendor_ref: VendorRef {
                kind: VendorRefKind::None,
                id: None,
            },
            result: None,
            tracking: json!({}),
            assumed: None,
        })
    }

    async fn restore(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        request: &RestoreRequest,
    ) -> Result<Submitted, ProviderError> {
        let snapshot = self.snapshot(ctx, native_id).await?;
        let volume = snapshot.resource_type.as_deref() == Some("volume");
        if request.in_place {
            if volume {
                return Err(ProviderError::Invalid {
                    field: "in_place",
                    message: "DigitalOcean restores a volume snapshot as a new volume only; \
                              in_place is not accepted for it"
                        .to_owned(),
                });
            }
            let droplet = &snapshot.resource_id.0;
            let path = format!("/droplets/{droplet}/actions");
            let body =
                json!({ "type": "rebuild", "image": native_id.parse::<i64>().unwrap_or_default() });
            let reply: ActionEnvelope = self
                .http
                .call(ctx, "restore", Method::POST, &path, &[], Some(body))
                .await?
                .json(KIND)?;
            let mut done = submitted(&reply.action)?;
            done.result = Some(json!({ "vm_id": droplet }));
            return Ok(done);
        }
        let Some(name) = request.new_name.as_deref() else {
            return Err(ProviderError::Invalid {
                field: "new_name",
                message: "new_name is required: DigitalOcean restores a snapshot as a new droplet \
                          or volume, named so (or, for a droplet snapshot, send in_place: true to \
                          rebuild the droplet it was taken of, replacing its disk)"
                    .to_owned(),
            });
        };
        check::name(KIND, "new_name", name, MAX_NAME)?;
        if volume {
            self.new_volume(ctx, &snapshot, name).await
        } else {
            self.new_droplet(ctx, &snapshot, name).await
        }
    }

    /// Droplets (`GET /droplets`, then `?type=gpus`: GPU droplets are left out of the first)
    /// and volumes (`GET /volumes`); archived droplets are left out.
    async fn list_sources(
        &self,
        ctx: &CallContext<'_>,
    ) -> Result<Vec<AccountSource>, ProviderError> {
        let mut out = self
            .sources_of(ctx, "/droplets", None, SourceKind::Vm)
            .await?;
        let gpus = Some(("type", "gpus"));
        out.extend(
            self.sources_of(ctx, "/droplets", gpus, SourceKind::Vm)
                .await?,
        );
        out.extend(
            self.sources_of(ctx, "/volumes", None, SourceKind::Volume)
                .await?,
        );
        let mut seen = std::collections::HashSet::new();
        out.retain(|s| seen.insert(s.id.clone()));
        Ok(out)
    }

    async fn poll(
        &self,
        ctx: &CallContext<'_>,
        operation: &PollRequest<'_>,
    ) -> Result<Progress, ProviderError> {
        let Some(action) = operation.vendor_ref.id.as_deref() else {
            return Ok(Progress::failed(ProviderError::Upstream {
                status: None,
                message: "the operation has no DigitalOcean action to follow".to_owned(),
            }));
        };
        let Ok(action) = check::numeric(action) else {
            return Ok(Progress::failed(ProviderError::NotFound));
        };
        let reply: ActionEnvelope = match self
            .get_json(ctx, "poll", &format!("/actions/{action}"), &[])
            .await
        {
            Ok(reply) => reply,
            Err(ProviderError::NotFound) => return Ok(Progress::failed(ProviderError::NotFound)),
            Err(e) => return Err(e),
        };
        let a = reply.action;
        match action_state(&a.status) {
            OperationState::Failed => Ok(Progress::failed(action_failed(&a))),
            OperationState::Succeeded if operation.kind == OperationKind::Create => {
                self.created(ctx, operation, &a).await
            }
            OperationState::Succeeded => Ok(Progress::succeeded()),
            _ if a.status != "in-progress" => Ok(Progress::unknown(format!(
                "the action {} as {}",
                a.id, a.status
            ))),
            _ => Ok(Progress::running()),
        }
    }
}

impl Digitalocean {
    /// A completed droplet snapshot action: done once its snapshot is found. A snapshot not
    /// listed yet keeps it running, named so: the operation fails as unknown if it never is.
    async fn created(
        &self,
        ctx: &CallContext<'_>,
        operation: &PollRequest<'_>,
        action: &WireAction,
    ) -> Result<Progress, ProviderError> {
        let Some(t) = operation.tracking::<CreateTracking>() else {
            return Ok(Progress::succeeded());
        };
        let started = t.started_at.unwrap_or(operation.created_at);
        match self.made_by(ctx, &t.droplet_id, &t.name, started).await? {
            Some(id) => Ok(Progress {
                native_id: Some(id),
                ..Progress::succeeded()
            }),
            None => Ok(Progress::unknown(format!(
                "the snapshot action {} completed, but droplet {} lists no snapshot `{}` taken \
                 since",
                action.id, t.droplet_id, t.name
            ))),
        }
    }
}

/// What an action-answered call started.
fn submitted(action: &WireAction) -> Result<Submitted, ProviderError> {
    let state = match action_state(&action.status) {
        OperationState::Failed => return Err(action_failed(action)),
        // A completed snapshot action is not done until its snapshot is found.
        _ => OperationState::Running,
    };
    Ok(Submitted {
        state,
        snapshot: None,
        native_id: None,
        vendor_ref: VendorRef {
            kind: VendorRefKind::Action,
            id: Some(action.id.0.clone()),
        },
        result: None,
        tracking: json!({}),
        assumed: None,
    })
}

fn action_failed(action: &WireAction) -> ProviderError {
    ProviderError::Upstream {
        status: None,
        message: format!(
            "DigitalOcean action {} ({}) errored",
            action.id,
            action.kind.as_deref().unwrap_or("action")
        ),
    }
}

/// Action `status`: `completed` and `errored` end it; `in-progress` and anything undocumented
/// keep it running.
fn action_state(status: &str) -> OperationState {
    match status {
        "completed" => OperationState::Succeeded,
        "errored" => OperationState::Failed,
        _ => OperationState::Running,
    }
}

/// Reads DigitalOcean's error body `{"id", "message", "request_id"}`.
fn error_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Body {
        id: Option<String>,
        message: Option<String>,
        request_id: Option<String>,
    }
    let Ok(b) = serde_json::from_slice::<Body>(body) else {
        return wire::error_message(body);
    };
    let mut out = b.message.unwrap_or_default();
    if let Some(id) = b.id.filter(|i| !i.is_empty()) {
        out = if out.is_empty() {
            id
        } else {
            format!("{out} ({id})")
        };
    }
    if let Some(request) = b.request_id.filter(|r| !r.is_empty()) {
        out += &format!(" [request_id {request}]");
    }
    (!out.is_empty()).then_some(out)
}

// ---- wire types (private) ----

#[derive(Deserialize)]
struct WireSnapshots {
    #[serde(default)]
    snapshots: Vec<Box<RawValue>>,
    links: Option<WireLinks>,
    meta: Option<WireMeta>,
}

#[derive(Deserialize)]
struct WireLinks {
    pages: Option<WirePages>,
}

#[derive(Deserialize)]
struct WirePages {
    next: Option<String>,
}

/// `GET /droplets` or `GET /volumes`: `{droplets|volumes: [...], links, meta}`.
#[derive(Deserialize)]
struct WireResources {
    #[serde(default)]
    droplets: Vec<WireResource>,
    #[serde(default)]
    volumes: Vec<WireResource>,
    links: Option<WireLinks>,
    meta: Option<WireMeta>,
}

/// A droplet (integer id, `status`) or a volume (UUID, no status).
#[derive(Deserialize)]
struct WireResource {
    id: Id,
    name: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct WireMeta {
    total: Option<i64>,
}

#[derive(Deserialize)]
struct SnapshotEnvelope {
    snapshot: Box<RawValue>,
}

#[derive(Deserialize)]
struct WireSnapshot {
    id: Id,
    name: Option<String>,
    #[serde(default, deserialize_with = "wire::time")]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    regions: Vec<String>,
    resource_id: Id,
    resource_type: Option<String>,
    min_disk_size: Option<i64>,
    #[serde(default, deserialize_with = "wire::lenient_f64")]
    size_gigabytes: Option<f64>,
    #[serde(skip)]
    raw: Option<Box<RawValue>>,
}

/// `GET /droplets/{id}/snapshots` items: integer ids, no resource fields.
#[derive(Deserialize)]
struct DropletSnapshots {
    #[serde(default)]
    snapshots: Vec<DropletSnapshot>,
}

#[derive(Deserialize)]
struct DropletSnapshot {
    id: Id,
    name: Option<String>,
    #[serde(default, deserialize_with = "wire::time")]
    created_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct ActionEnvelope {
    action: WireAction,
}

#[derive(Deserialize)]
struct WireAction {
    id: Id,
    #[serde(default)]
    status: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    started_at: Option<String>,
}

#[derive(Deserialize)]
struct CreateTracking {
    droplet_id: String,
    name: String,
    #[serde(default, deserialize_with = "wire::time")]
    started_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct DropletEnvelope {
    droplet: WireDroplet,
}

#[derive(Deserialize)]
struct WireDroplet {
    size_slug: String,
    region: Slug,
}

#[derive(Deserialize)]
struct Slug {
    slug: String,
}

#[derive(Deserialize)]
struct NewDroplet {
    droplet: IdOnly,
    links: ActionLinks,
}

#[derive(Deserialize)]
struct ActionLinks {
    #[serde(default)]
    actions: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: Id,
}

#[derive(Deserialize)]
struct NewVolume {
    volume: IdOnly,
}

// ---- conversions ----

fn to_domain(w: WireSnapshot) -> VendorSnapshot {
    let kind = match w.resource_type.as_deref() {
        Some("volume") => SourceKind::Volume,
        _ => SourceKind::Vm,
    };
    VendorSnapshot {
        native_id: w.id.0,
        name: w.name,
        description: None,
        // A listed snapshot exists and can be used: DigitalOcean shows one only when it is.
        status: SnapshotStatus::Available,
        vendor_status: None,
        size_gb: w.size_gigabytes,
        created_at: w.created_at,
        expires_at: None,
        source: Some(Source {
            kind,
            id: w.resource_id.0,
        }),
        region: w.regions.into_iter().next(),
        vendor: w.raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_ids_shape_says_its_kind() {
        assert!(matches!(resource("3164444"), Some(Resource::Droplet(_))));
        assert!(matches!(
            resource("7724db7c-e098-11e5-b522-000f53304e51"),
            Some(Resource::Volume(_))
        ));
        assert!(resource("web-1").is_none());
        assert!(resource("7724db7ce09811e5b522000f53304e51").is_none());
    }

    #[test]
    fn snapshots_of_both_kinds_and_error_bodies_read_as_documented() {
        let raw: Box<RawValue> = serde_json::from_str(
            r#"{"id": "8fa70202-873f-11e6-8b68-000f533176b1", "name": "big-data",
                "created_at": "2020-09-30T18:56:14Z", "regions": ["nyc1"],
                "resource_id": "7724db7c-e098-11e5-b522-000f53304e51", "resource_type": "volume",
                "min_disk_size": 10, "size_gigabytes": 10, "tags": []}"#,
        )
        .unwrap();
        let w: WireSnapshot = check::decode(KIND, &raw).unwrap();
        let s = to_domain(w);
        assert_eq!(s.source.unwrap().kind, SourceKind::Volume);
        assert_eq!(s.region.as_deref(), Some("nyc1"));
        assert_eq!(action_state("in-progress"), OperationState::Running);
        assert_eq!(action_state("completed"), OperationState::Succeeded);
        assert_eq!(action_state("errored"), OperationState::Failed);
        let body =
            br#"{"id": "not_found", "message": "The resource you requested could not be found.",
            "request_id": "4d9d8375"}"#;
        assert_eq!(
            error_message(body).unwrap(),
            "The resource you requested could not be found. (not_found) [request_id 4d9d8375]"
        );
    }
}
