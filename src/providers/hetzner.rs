//! Hetzner Cloud: server snapshots are images of type `snapshot` (contract:
//! `docs/vendors/hetzner.md`).
//!
//! Quirks: a snapshot has no name — its `description` is the only label, so it is the gateway's
//! `name` (and there is no separate description); `bound_to` is null on snapshots, so the server
//! a snapshot came from is `created_from.id`, and a server's snapshots are found by listing all
//! and filtering on it; create is a server action answered with the image (`creating`) and the
//! action to follow; delete is synchronous (204); restore is a new server from the image (the
//! default) or a destructive rebuild of the source server (`in_place`); `locked` and
//! `protected` are both HTTP 423, told apart by `error.code`; a rebuild or new server may
//! answer a `root_password`, which is never kept.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
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

const KIND: ProviderKind = ProviderKind::Hetzner;
/// The largest page the API serves.
const PER_PAGE: usize = 50;
/// Snapshot descriptions (the gateway's names): the API documents no limit; this keeps them
/// to what the console shows.
const MAX_NAME: usize = 255;
/// Server names are RFC 1123 host names.
const MAX_SERVER_NAME: usize = 63;

pub(super) static INFO: ProviderInfo = ProviderInfo {
    kind: KIND,
    display_name: "Hetzner Cloud",
    source_kind: SourceKind::Vm,
    credential_fields: &[FieldSpec::required(
        "token",
        "API token of the Hetzner Cloud project (Console → Security → API tokens; sent as \
         `Authorization: Bearer`)",
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
        // 3,600 requests an hour per project, one coming back every second; `RateLimit-Reset`
        // is when the whole allowance is back.
        window_secs: Some(1),
        by_address: false,
        headers: Some(RateLimitHeaders {
            remaining: "ratelimit-remaining",
            reset: "ratelimit-reset",
            refill_secs: Some(1),
        }),
    },
};

/// The Hetzner Cloud adapter.
pub struct Hetzner {
    http: VendorHttp,
}

impl Hetzner {
    pub fn new(config: &ProvidersConfig, http: Upstream) -> Result<Self, ProviderConfigError> {
        let base = super::Endpoint::base_url(config, KIND, "https://api.hetzner.cloud/v1")?;
        Ok(Self {
            http: VendorHttp::new(&INFO, base, http).with_error_reader(error_message),
        })
    }

    async fn page(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        page: usize,
        per_page: usize,
    ) -> Result<WireImages, ProviderError> {
        let query = [
            ("type", "snapshot".to_owned()),
            ("page", page.to_string()),
            ("per_page", per_page.to_string()),
        ];
        self.http
            .call(ctx, operation, Method::GET, "/images", &query, None)
            .await?
            .json(KIND)
    }

    async fn image(&self, ctx: &CallContext<'_>, id: &str) -> Result<WireImage, ProviderError> {
        let path = format!("/images/{}", check::numeric(id)?);
        let reply: ImageEnvelope = self
            .http
            .call(ctx, "get", Method::GET, &path, &[], None)
            .await?
            .json(KIND)?;
        let image: WireImage = check::decode(KIND, &reply.image)?;
        // Another kind of image (a system image, a backup) is not a snapshot.
        if image.kind.as_deref() != Some("snapshot") {
            return Err(ProviderError::NotFound);
        }
        Ok(WireImage {
            raw: Some(reply.image),
            ..image
        })
    }

    /// The server a snapshot was taken of, which a restore needs.
    fn source_server(image: &WireImage) -> Result<String, ProviderError> {
        image
            .created_from
            .as_ref()
            .map(|s| s.id.0.clone())
            .ok_or_else(|| ProviderError::Invalid {
                field: "snapshot",
                message: "Hetzner Cloud does not say which server this snapshot was taken of, so \
                          it cannot be restored through the gateway"
                    .to_owned(),
            })
    }

    /// A new server from the snapshot, with the source server's type and location.
    async fn restore_to_new_server(
        &self,
        ctx: &CallContext<'_>,
        image: &WireImage,
        name: &str,
    ) -> Result<Submitted, ProviderError> {
        let source = Self::source_server(image)?;
        let path = format!("/servers/{source}");
        let server: ServerEnvelope = match self
            .http
            .call(ctx, "restore", Method::GET, &path, &[], None)
            .await
        {
            Ok(reply) => reply.json(KIND)?,
            Err(ProviderError::NotFound) => {
                return Err(ProviderError::Invalid {
                    field: "snapshot",
                    message: format!(
                        "server {source}, which this snapshot was taken of, no longer exists: its \
                         server type and location are unknown, so a new server cannot be sized \
                         from it"
                    ),
                })
            }
            Err(e) => return Err(e),
        };
        let body = json!({
            "name": name,
            "server_type": server.server.server_type.name,
            "image": image.id.0.parse::<i64>().unwrap_or_default(),
            "location": server.server.location.map(|l| l.name),
            "start_after_create": true,
        });
        let reply: NewServer = self
            .http
            .call(ctx, "restore", Method::POST, "/servers", &[], Some(body))
            .await?
            .json(KIND)?;
        // `root_password` (when the server has no SSH key) is not read, so never kept.
        let server_id = reply.server.id.0;
        submitted(
            &reply.action,
            None,
            Some(json!({ "vm_id": server_id, "vm_name": name })),
        )
    }
}

#[async_trait]
impl ProviderAdapter for Hetzner {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    async fn verify(&self, ctx: &CallContext<'_>) -> Result<(), ProviderError> {
        self.page(ctx, "verify", 1, 1).await.map(|_| ())
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
            let reply = self.page(ctx, "list", page, PER_PAGE).await?;
            let pagination = reply.meta.and_then(|m| m.pagination);
            let n = reply.images.len();
            let mut new = 0;
            for raw in reply.images {
                let image: WireImage = check::decode(KIND, &raw)?;
                if !seen.insert(image.id.0.clone()) {
                    continue;
                }
                new += 1;
                let snapshot = to_domain(WireImage {
                    raw: Some(raw),
                    ..image
                });
                // No vendor filter finds a server's snapshots (`bound_to` is for backups).
                let wanted = filter
                    .source_id
                    .is_none_or(|s| snapshot.source.as_ref().is_some_and(|src| src.id == s));
                if wanted {
                    out.push(snapshot);
                }
            }
            let signals = super::PageSignals {
                items: n,
                new,
                total: pagination
                    .as_ref()
                    .and_then(|p| p.total_entries)
                    .and_then(|t| usize::try_from(t).ok()),
                more: pagination.as_ref().map(|p| p.next_page.is_some()),
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
        self.image(ctx, native_id).await.map(to_domain)
    }

    async fn create(
        &self,
        ctx: &CallContext<'_>,
        request: &CreateRequest,
    ) -> Result<Submitted, ProviderError> {
        let server = check::numeric(&request.source_id).map_err(|_| ProviderError::Invalid {
            field: "source_id",
            message: "source_id must be a Hetzner Cloud server id (an integer)".to_owned(),
        })?;
        check::name(KIND, "name", &request.name, MAX_NAME)?;
        check::no_description(KIND, request.description.as_deref())?;
        let path = format!("/servers/{server}/actions/create_image");
        let body = json!({ "description": request.name, "type": "snapshot" });
        let reply: CreatedImage = self
            .http
            .call(ctx, "create", Method::POST, &path, &[], Some(body))
            .await
            .map_err(locked_is_conflict)?
            .json(KIND)?;
        let image: WireImage = check::decode(KIND, &reply.image)?;
        let snapshot = to_domain(WireImage {
            raw: Some(reply.image),
            ..image
        });
        let mut done = submitted(&reply.action, Some(snapshot.native_id.clone()), None)?;
        done.snapshot = Some(snapshot);
        done.tracking = json!({ "server_id": server });
        Ok(done)
    }

    async fn update(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        request: &UpdateRequest,
    ) -> Result<Submitted, ProviderError> {
        let path = format!("/images/{}", check::numeric(native_id)?);
        let Some(name) = &request.name else {
            return Err(ProviderError::Invalid {
                field: "description",
                message: "Hetzner Cloud snapshots have one label, their name".to_owned(),
            });
        };
        check::name(KIND, "name", name, MAX_NAME)?;
        // The image must be a snapshot: `PUT` would also rename a backup.
        self.image(ctx, native_id).await?;
        let reply: ImageEnvelope = self
            .http
            .call(
                ctx,
                "update",
                Method::PUT,
                &path,
                &[],
                Some(json!({ "description": name })),
            )
            .await?
            .json(KIND)?;
        let image: WireImage = check::decode(KIND, &reply.image)?;
        Ok(Submitted {
            state: OperationState::Succeeded,
            snapshot: Some(to_domain(WireImage {
                raw: Some(reply.image),
                ..image
            })),
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
        // Only a snapshot is deleted through this API, never a backup or a system image.
        self.image(ctx, native_id).await?;
        let path = format!("/images/{native_id}");
        self.http
            .call(ctx, "delete", Method::DELETE, &path, &[], None)
            .await
            .map_err(locked_is_conflict)?;
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
        let image = self.image(ctx, native_id).await?;
        if !request.in_place {
            let Some(name) = request.new_name.as_deref() else {
                return Err(ProviderError::Invalid {
                    field: "new_name",
                    message: "new_name is required: Hetzner Cloud restores a snapshot as a new \
                              server, named so (or send in_place: true to rebuild the server it \
                              was taken of, replacing its disk)"
                        .to_owned(),
                });
            };
            check::name(KIND, "new_name", name, MAX_SERVER_NAME)?;
            return self
                .restore_to_new_server(ctx, &image, name)
                .await
                .map_err(locked_is_conflict);
        }
        let server = Self::source_server(&image)?;
        let path = format!("/servers/{server}/actions/rebuild");
        let body = json!({ "image": native_id.parse::<i64>().unwrap_or_default() });
        let reply: Rebuilt = self
            .http
            .call(ctx, "restore", Method::POST, &path, &[], Some(body))
            .await
            .map_err(locked_is_conflict)?
            .json(KIND)?;
        // `root_password` is not read, so never kept.
        submitted(&reply.action, None, Some(json!({ "vm_id": server })))
    }

    /// `GET /servers`, 50 a page (Hetzner's largest), until `next_page` is null and the total
    /// agrees; servers being deleted are left out.
    async fn list_sources(
        &self,
        ctx: &CallContext<'_>,
    ) -> Result<Vec<AccountSource>, ProviderError> {
        super::walk_sources(KIND, |page| async move {
            let query = [
                ("page", page.to_string()),
                ("per_page", PER_PAGE.to_string()),
            ];
            let reply: WireServers = self
                .http
                .call(ctx, "sources", Method::GET, "/servers", &query, None)
                .await?
                .json(KIND)?;
            let listed = reply
                .servers
                .into_iter()
                .map(|s| AccountSource {
                    id: s.id.0,
                    name: s.name,
                    kind: SourceKind::Vm,
                    status: s.status,
                })
                .collect();
            let pagination = reply.meta.and_then(|m| m.pagination);
            Ok(super::SourcePage {
                total: pagination
                    .as_ref()
                    .and_then(|p| usize::try_from(p.total_entries?).ok()),
                more: pagination.map(|p| p.next_page.is_some()),
                ..super::SourcePage::of(listed, &["deleting"], PER_PAGE)
            })
        })
        .await
    }

    async fn poll(
        &self,
        ctx: &CallContext<'_>,
        operation: &PollRequest<'_>,
    ) -> Result<Progress, ProviderError> {
        let Some(action) = operation.vendor_ref.id.as_deref() else {
            return Ok(Progress::failed(ProviderError::Upstream {
                status: None,
                message: "the operation has no Hetzner Cloud action to follow".to_owned(),
            }));
        };
        let Ok(action) = check::numeric(action) else {
            return Ok(Progress::failed(ProviderError::NotFound));
        };
        let path = format!("/actions/{action}");
        let reply: ActionEnvelope = match self
            .http
            .call(ctx, "poll", Method::GET, &path, &[], None)
            .await
        {
            Ok(reply) => reply.json(KIND)?,
            Err(ProviderError::NotFound) => return Ok(Progress::failed(ProviderError::NotFound)),
            Err(e) => return Err(e),
        };
        let a = reply.action;
        Ok(match action_state(&a.status) {
            OperationState::Failed => Progress::failed(action_failed(&a)),
            OperationState::Succeeded => Progress {
                native_id: (operation.kind == OperationKind::Create)
                    .then(|| operation.native_id.map(str::to_owned))
                    .flatten(),
                ..Progress::succeeded()
            },
            _ if !["running", "success", "error"].contains(&a.status.as_str()) => {
                Progress::unknown(format!("the action {} as {}", a.id, a.status))
            }
            _ => Progress::running(),
        })
    }
}

/// What an action-answered call started.
fn submitted(
    action: &WireAction,
    native_id: Option<String>,
    result: Option<serde_json::Value>,
) -> Result<Submitted, ProviderError> {
    let state = match action_state(&action.status) {
        OperationState::Failed => return Err(action_failed(action)),
        state => state,
    };
    Ok(Submitted {
        state,
        snapshot: None,
        native_id,
        vendor_ref: VendorRef {
            kind: VendorRefKind::Action,
            id: Some(action.id.0.clone()),
        },
        result,
        tracking: json!({}),
        assumed: None,
    })
}

/// `locked` (an action already runs on the server) and `protected` (delete or rebuild
/// protection is on) are both HTTP 423: a conflict with the resource's state, not a vendor
/// failure.
fn locked_is_conflict(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::Upstream {
            status: Some(423),
            message,
        } => ProviderError::Conflict { message },
        other => other,
    }
}

fn action_failed(action: &WireAction) -> ProviderError {
    let why = action
        .error
        .as_ref()
        .map(|e| format!(": {} ({})", e.message, e.code))
        .unwrap_or_default();
    ProviderError::Upstream {
        status: None,
        message: format!("Hetzner Cloud action {} failed{why}", action.id),
    }
}

/// Action `status` → operation state: `success` and `error` end it; `running` and anything
/// undocumented keep it running.
fn action_state(status: &str) -> OperationState {
    match status {
        "success" => OperationState::Succeeded,
        "error" => OperationState::Failed,
        _ => OperationState::Running,
    }
}

/// Reads Hetzner's error body `{"error": {"code", "message", "details"}}`: the message, its
/// code, and the fields `invalid_input` names.
fn error_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Body {
        error: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        code: Option<String>,
        message: Option<String>,
        details: Option<serde_json::Value>,
    }
    let Ok(Body { error: Some(e) }) = serde_json::from_slice::<Body>(body) else {
        return wire::error_message(body);
    };
    let mut out = e.message.unwrap_or_default();
    if let Some(code) = e.code.filter(|c| !c.is_empty()) {
        out = if out.is_empty() {
            code
        } else {
            format!("{out} ({code})")
        };
    }
    let fields = e
        .details
        .as_ref()
        .and_then(|d| d.get("fields"))
        .and_then(|f| f.as_array());
    for field in fields.into_iter().flatten() {
        let name = field.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        let messages: Vec<&str> = field
            .get("messages")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str())
            .collect();
        out += &format!("; {name}: {}", messages.join(", "));
    }
    (!out.is_empty()).then_some(out)
}

// ---- wire types (private) ----

#[derive(Deserialize)]
struct WireImages {
    #[serde(default)]
    images: Vec<Box<RawValue>>,
    meta: Option<WireMeta>,
}

/// `GET /servers`: `{servers: [Server], meta: {pagination}}`.
#[derive(Deserialize)]
struct WireServers {
    #[serde(default)]
    servers: Vec<ListedServer>,
    meta: Option<WireMeta>,
}

#[derive(Deserialize)]
struct ListedServer {
    id: Id,
    name: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct WireMeta {
    pagination: Option<WirePagination>,
}

#[derive(Deserialize)]
struct WirePagination {
    next_page: Option<i64>,
    total_entries: Option<i64>,
}

#[derive(Deserialize)]
struct ImageEnvelope {
    image: Box<RawValue>,
}

#[derive(Deserialize)]
struct WireImage {
    id: Id,
    #[serde(rename = "type")]
    kind: Option<String>,
    status: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "wire::lenient_f64")]
    image_size: Option<f64>,
    #[serde(default, deserialize_with = "wire::time")]
    created: Option<DateTime<Utc>>,
    created_from: Option<CreatedFrom>,
    #[serde(skip)]
    raw: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct CreatedFrom {
    id: Id,
}

#[derive(Deserialize)]
struct CreatedImage {
    image: Box<RawValue>,
    action: WireAction,
}

#[derive(Deserialize)]
struct WireAction {
    id: Id,
    #[serde(default)]
    status: String,
    error: Option<WireActionError>,
}

#[derive(Deserialize)]
struct WireActionError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ActionEnvelope {
    action: WireAction,
}

#[derive(Deserialize)]
struct Rebuilt {
    action: WireAction,
}

#[derive(Deserialize)]
struct ServerEnvelope {
    server: WireServer,
}

#[derive(Deserialize)]
struct WireServer {
    server_type: Named,
    location: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct NewServer {
    server: NewServerId,
    action: WireAction,
}

#[derive(Deserialize)]
struct NewServerId {
    id: Id,
}

// ---- conversions ----

fn to_domain(w: WireImage) -> VendorSnapshot {
    let vendor_status = w.status.clone();
    let status = match w.status.as_deref() {
        Some("available") => SnapshotStatus::Available,
        Some("creating") => SnapshotStatus::Creating,
        // `unavailable` (added to the API in 2025) cannot be used: an error, said so.
        Some("unavailable") => SnapshotStatus::Error,
        // Anything else is shown as the vendor says it, counted as unknown when served.
        _ => SnapshotStatus::Unknown,
    };
    VendorSnapshot {
        native_id: w.id.0,
        name: w.description,
        description: None,
        status,
        vendor_status,
        size_gb: w.image_size,
        created_at: w.created,
        expires_at: None,
        source: w.created_from.map(|s| Source {
            kind: SourceKind::Vm,
            id: s.id.0,
        }),
        region: None,
        vendor: w.raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_image_is_named_by_its_description_and_sourced_from_its_server() {
        let raw: Box<RawValue> = serde_json::from_str(
            r#"{"id": 4711, "type": "snapshot", "status": "available", "name": null,
                "description": "my image", "image_size": 2.3, "disk_size": 10,
                "created": "2016-01-30T23:50:00+00:00", "created_from": {"id": 42, "name": "web"},
                "bound_to": null, "protection": {"delete": false}, "labels": {}}"#,
        )
        .unwrap();
        let image: WireImage = check::decode(KIND, &raw).unwrap();
        let s = to_domain(image);
        assert_eq!(s.native_id, "4711");
        assert_eq!(s.name.as_deref(), Some("my image"));
        assert_eq!(s.status, SnapshotStatus::Available);
        assert_eq!(s.size_gb, Some(2.3));
        assert_eq!(s.source.unwrap().id, "42");
        assert_eq!(
            s.created_at.unwrap().to_rfc3339(),
            "2016-01-30T23:50:00+00:00"
        );
    }

    #[test]
    fn action_statuses_and_error_bodies_read_as_documented() {
        assert_eq!(action_state("running"), OperationState::Running);
        assert_eq!(action_state("success"), OperationState::Succeeded);
        assert_eq!(action_state("error"), OperationState::Failed);
        let body = br#"{"error": {"code": "invalid_input", "message": "invalid input in field 'description'",
            "details": {"fields": [{"name": "description", "messages": ["is too long"]}]}}}"#;
        assert_eq!(
            error_message(body).unwrap(),
            "invalid input in field 'description' (invalid_input); description: is too long"
        );
        let protected =
            br#"{"error": {"code": "protected", "message": "image deletion is protected", "details": {}}}"#;
        assert_eq!(
            error_message(protected).unwrap(),
            "image deletion is protected (protected)"
        );
    }
}
