//! Koyeb: volume snapshots, Bearer token auth.
//!
//! Quirks: update (rename) is `POST /v1/snapshots/{id}`; the list has no total, `has_next`
//! may be left out (paged until an empty page, as Koyeb's CLI does) and no per-volume filter
//! (filtered here); enum values are long prefixed strings; `deleted_at` may
//! be absent, null or the zero time; restore has no endpoint: it creates a new volume from
//! `snapshot_id` (`POST /v1/volumes`) in the snapshot's region, done when the volume reads
//! `DETACHED`/`ATTACHED` (failed at `DELETING`/`DELETED` or gone); `MIGRATING` (data moving to cold
//! storage) is `available`, and `status=available` asks Koyeb for both values, but a create is
//! done only at `AVAILABLE`.

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, value::RawValue};

use super::{
    check,
    http::{Auth, VendorHttp},
    new_resource_progress, wire, CallContext, CreateRequest, ListFilter, Listed, PollRequest,
    Progress, ProviderAdapter, ProviderError, ProviderInfo, RateLimits, RestoreRequest, Submitted,
    UpdateRequest,
};
use crate::{
    config::{ProviderConfigError, ProvidersConfig},
    domain::{
        AccountSource, Capabilities, FieldSpec, OperationKind, OperationState, ProviderKind,
        SnapshotStatus, Source, SourceKind, VendorRef, VendorRefKind, VendorSnapshot,
    },
    upstream::Upstream,
};

const KIND: ProviderKind = ProviderKind::Koyeb;
/// The largest `limit` Koyeb accepts.
const PAGE_SIZE: usize = 100;
/// The only backing store a volume can have (`PersistentVolumeBackingStore`).
const VOLUME_TYPE: &str = "PERSISTENT_VOLUME_BACKING_STORE_LOCAL_BLK";
/// Koyeb documents no name limit; keep names to what its console accepts comfortably.
const MAX_NAME: usize = 255;

pub(super) static INFO: ProviderInfo = ProviderInfo {
    kind: KIND,
    display_name: "Koyeb",
    source_kind: SourceKind::Volume,
    credential_fields: &[FieldSpec::required(
        "token",
        "Koyeb API credential (sent as `Authorization: Bearer`)",
    )
    .sent_in_header()],
    setting_fields: &[FieldSpec::optional(
        "organization_id",
        "Only list snapshots of this organization",
    )],
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
        restore_in_place: false,
        create_image: false,
        name_availability: false,
        list_sources: true,
    },
    auth: Auth::Scheme {
        scheme: "Bearer",
        credential: "token",
    },
    rate_limits: RateLimits::PER_ACCOUNT,
};

/// The Koyeb adapter.
pub struct Koyeb {
    http: VendorHttp,
}

impl Koyeb {
    pub fn new(config: &ProvidersConfig, http: Upstream) -> Result<Self, ProviderConfigError> {
        Ok(Self {
            http: VendorHttp::new(
                &INFO,
                super::Endpoint::base_url(config, KIND, "https://app.koyeb.com")?,
                http,
            )
            .with_error_reader(error_message),
        })
    }

    async fn page(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        offset: Option<usize>,
        limit: usize,
        statuses: &[SnapshotStatus],
    ) -> Result<ListPage, ProviderError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(offset) = offset {
            query.push(("offset", offset.to_string()));
        }
        if let Some(org) = ctx.setting("organization_id").filter(|o| !o.is_empty()) {
            query.push(("organization_id", org.to_owned()));
        }
        // `statuses` repeats its key (collectionFormat multi). Pushed down only when every
        // requested status has an exact Koyeb value; otherwise the gateway filters alone.
        let wire: Option<Vec<&[&str]>> = statuses.iter().map(|s| wire_statuses(*s)).collect();
        for status in wire.unwrap_or_default().into_iter().flatten() {
            query.push(("statuses", (*status).to_owned()));
        }
        self.http
            .call(ctx, operation, Method::GET, "/v1/snapshots", &query, None)
            .await?
            .json(KIND)
    }

    async fn fetch(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        native_id: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        let path = format!("/v1/snapshots/{}", uuid(native_id)?);
        let reply: Envelope = self
            .http
            .call(ctx, operation, Method::GET, &path, &[], None)
            .await?
            .json(KIND)?;
        to_domain(reply.snapshot)
    }

    /// The status of a volume (a restore's new volume).
    async fn volume_status(
        &self,
        ctx: &CallContext<'_>,
        volume: &str,
    ) -> Result<Option<String>, ProviderError> {
        let path = format!("/v1/volumes/{}", uuid(volume)?);
        let reply: VolumeReply = self
            .http
            .call(ctx, "poll", Method::GET, &path, &[], None)
            .await?
            .json(KIND)?;
        Ok(reply.volume.and_then(|v| v.status))
    }
}

/// A restore's new volume (`PersistentVolumeStatus`): done when free to use or already in
/// use, failed when Koyeb removes it; the zero value and `ARCHIVING` are read as not built yet.
const VOLUME_STATUSES: super::ResourceStatuses = super::ResourceStatuses {
    ready: &[
        "PERSISTENT_VOLUME_STATUS_DETACHED",
        "PERSISTENT_VOLUME_STATUS_ATTACHED",
    ],
    building: &[
        "PERSISTENT_VOLUME_STATUS_INVALID",
        "PERSISTENT_VOLUME_STATUS_ARCHIVING",
    ],
    failed: &[
        "PERSISTENT_VOLUME_STATUS_DELETING",
        "PERSISTENT_VOLUME_STATUS_DELETED",
    ],
};

/// Koyeb ids are UUIDs (short ids are a CLI feature): anything else cannot exist there.
fn uuid(id: &str) -> Result<&str, ProviderError> {
    let b = id.as_bytes();
    let shaped = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if shaped {
        Ok(id)
    } else {
        Err(ProviderError::NotFound)
    }
}

#[async_trait]
impl ProviderAdapter for Koyeb {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    async fn verify(&self, ctx: &CallContext<'_>) -> Result<(), ProviderError> {
        self.page(ctx, "verify", None, 1, &[]).await.map(|_| ())
    }

    async fn list(
        &self,
        ctx: &CallContext<'_>,
        filter: &ListFilter<'_>,
    ) -> Result<Listed, ProviderError> {
        let source_id = filter.source_id;
        let mut out = Vec::new();
        let mut offset = 0;
        // No total, and `has_next` may be absent: like Koyeb's CLI, page until an empty page
        // (or a short page that `has_next: false` agrees with).
        let mut walk = super::ListWalk::new(KIND);
        loop {
            let page = self
                .page(ctx, "list", Some(offset), PAGE_SIZE, filter.statuses)
                .await?;
            let n = page.snapshots.len();
            let signals = super::PageSignals {
                items: n,
                new: n,
                total: None,
                more: page.has_next,
                asked: PAGE_SIZE,
            };
            for raw in page.snapshots {
                let snapshot = to_domain(raw)?;
                let wanted = source_id
                    .is_none_or(|s| snapshot.source.as_ref().is_some_and(|src| src.id == s));
                if wanted {
                    out.push(snapshot);
                }
            }
            if !walk.next(signals)? {
                return Ok(out.into());
            }
            offset += n;
        }
    }

    async fn get(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        self.fetch(ctx, "get", native_id).await
    }

    async fn create(
        &self,
        ctx: &CallContext<'_>,
        request: &CreateRequest,
    ) -> Result<Submitted, ProviderError> {
        check::name(KIND, "name", &request.name, MAX_NAME)?;
        check::no_description(KIND, request.description.as_deref())?;
        if request.replace_existing {
            return Err(ProviderError::Invalid {
                field: "replace_existing",
                message: "Koyeb keeps any number of snapshots per volume; nothing is replaced"
                    .to_owned(),
            });
        }
        let volume = uuid(&request.source_id).map_err(|_| ProviderError::Invalid {
            field: "source_id",
            message: "source_id must be a Koyeb volume id (a UUID)".to_owned(),
        })?;
        let body = json!({ "parent_volume_id": volume, "name": request.name });
        let reply: Envelope = self
            .http
            .call(
                ctx,
                "create",
                Method::POST,
                "/v1/snapshots",
                &[],
                Some(body),
            )
            .await?
            .json(KIND)?;
        let snapshot = to_domain(reply.snapshot)?;
        let state = if settled(&snapshot) {
            OperationState::of_snapshot(snapshot.status)
        } else {
            OperationState::Running
        };
        Ok(Submitted::by_status(snapshot, state))
    }

    async fn update(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        request: &UpdateRequest,
    ) -> Result<Submitted, ProviderError> {
        check::no_description(KIND, request.description.as_deref())?;
        let name = request
            .name
            .as_deref()
            .ok_or_else(|| ProviderError::Invalid {
                field: "name",
                message: "Koyeb can only rename a snapshot: name is required".to_owned(),
            })?;
        check::name(KIND, "name", name, MAX_NAME)?;
        let path = format!("/v1/snapshots/{}", uuid(native_id)?);
        let body = json!({ "name": name });
        let reply: Envelope = self
            .http
            .call(ctx, "rename", Method::POST, &path, &[], Some(body))
            .await?
            .json(KIND)?;
        let snapshot = to_domain(reply.snapshot)?;
        Ok(Submitted::finished(Some(snapshot), None))
    }

    async fn delete(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<Submitted, ProviderError> {
        let path = format!("/v1/snapshots/{}", uuid(native_id)?);
        let reply: Envelope = self
            .http
            .call(ctx, "delete", Method::DELETE, &path, &[], None)
            .await?
            .json(KIND)?;
        let snapshot = to_domain(reply.snapshot)?;
        let (state, kind) = if snapshot.status == SnapshotStatus::Deleted {
            (OperationState::Succeeded, VendorRefKind::None)
        } else {
            (OperationState::Running, VendorRefKind::SnapshotStatus)
        };
        Ok(Submitted {
            state,
            native_id: Some(native_id.to_owned()),
            snapshot: Some(snapshot),
            vendor_ref: VendorRef { kind, id: None },
            result: None,
            tracking: serde_json::Value::Null,
            assumed: None,
        })
    }

    async fn restore(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        request: &RestoreRequest,
    ) -> Result<Submitted, ProviderError> {
        if let Some(name) = request.new_name.as_deref() {
            check::name(KIND, "new_name", name, MAX_NAME)?;
        }
        // The volume must be made in the snapshot's region, which only the snapshot knows.
        let snapshot = self.fetch(ctx, "restore", native_id).await?;
        if matches!(
            snapshot.status,
            SnapshotStatus::Deleted | SnapshotStatus::Deleting
        ) {
            return Err(ProviderError::NotFound);
        }
        let name = match request.new_name.clone() {
            Some(name) => name,
            None => default_volume_name(snapshot.name.as_deref(), native_id),
        };
        let body = json!({
            "name": name,
            "region": snapshot.region,
            "snapshot_id": snapshot.native_id,
            "volume_type": VOLUME_TYPE,
            "read_only": false,
        });
        let reply: VolumeReply = self
            .http
            .call(ctx, "restore", Method::POST, "/v1/volumes", &[], Some(body))
            .await?
            .json(KIND)?;
        // The volume is filled after the answer: the restore is done when the volume is usable.
        Ok(match reply.volume {
            Some(v) => {
                let result = json!({ "volume_id": v.id, "volume_name": v.name.unwrap_or(name) });
                Submitted::building(v.id, result)
            }
            None => Submitted::finished(None, None),
        })
    }

    /// `GET /v1/volumes`, 100 a page by `offset` (advanced by what each page held, so a
    /// silently smaller page skips nothing), until an empty page or a short one `has_next:
    /// false` agrees with; volumes being deleted are left out.
    async fn list_sources(
        &self,
        ctx: &CallContext<'_>,
    ) -> Result<Vec<AccountSource>, ProviderError> {
        let offset = std::sync::atomic::AtomicUsize::new(0);
        let offset = &offset;
        super::walk_sources(KIND, |_| async move {
            let at = offset.load(std::sync::atomic::Ordering::Relaxed);
            let query = [("limit", PAGE_SIZE.to_string()), ("offset", at.to_string())];
            let reply: VolumePage = self
                .http
                .call(ctx, "sources", Method::GET, "/v1/volumes", &query, None)
                .await?
                .json(KIND)?;
            offset.store(
                at + reply.volumes.len(),
                std::sync::atomic::Ordering::Relaxed,
            );
            let listed = reply
                .volumes
                .into_iter()
                .map(|v| AccountSource {
                    id: v.id,
                    name: v.name,
                    kind: SourceKind::Volume,
                    status: v.status,
                })
                .collect();
            let gone = [
                "PERSISTENT_VOLUME_STATUS_DELETING",
                "PERSISTENT_VOLUME_STATUS_DELETED",
            ];
            Ok(super::SourcePage {
                more: reply.has_next,
                ..super::SourcePage::of(listed, &gone, PAGE_SIZE)
            })
        })
        .await
    }

    async fn poll(
        &self,
        ctx: &CallContext<'_>,
        operation: &PollRequest<'_>,
    ) -> Result<Progress, ProviderError> {
        if operation.vendor_ref.kind == VendorRefKind::Resource {
            let volume = operation.vendor_ref.id.as_deref().unwrap_or_default();
            let status = self.volume_status(ctx, volume).await;
            return new_resource_progress(KIND, "volume", volume, status, &VOLUME_STATUSES);
        }
        let Some(native_id) = operation.native_id else {
            return Ok(Progress::succeeded());
        };
        let found = self.fetch(ctx, "poll", native_id).await;
        match (operation.kind, found) {
            // Done only at `AVAILABLE`, not while migrating.
            (OperationKind::Create, Ok(s)) if s.status == SnapshotStatus::Available => {
                Ok(if settled(&s) {
                    super::create_progress(KIND, &s)
                } else {
                    Progress::running()
                })
            }
            (OperationKind::Create, Ok(s)) => Ok(super::create_progress(KIND, &s)),
            (OperationKind::Create, Err(ProviderError::NotFound)) => {
                Ok(Progress::failed(ProviderError::NotFound))
            }
            (OperationKind::Delete, Ok(s)) if s.status != SnapshotStatus::Deleted => {
                Ok(Progress::running())
            }
            (_, Ok(_)) | (_, Err(ProviderError::NotFound)) => Ok(Progress::succeeded()),
            (_, Err(e)) => Err(e),
        }
    }
}

/// Whether a snapshot is settled enough to call a create done: `AVAILABLE`, not migrating.
fn settled(s: &VendorSnapshot) -> bool {
    s.status == SnapshotStatus::Available && s.vendor_status.as_deref() != Some(MIGRATING)
}

/// The new volume's name when the caller gives none: `{snapshot name}-restore`.
fn default_volume_name(snapshot_name: Option<&str>, native_id: &str) -> String {
    let base = snapshot_name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(native_id);
    let base: String = base.chars().take(MAX_NAME - "-restore".len()).collect();
    format!("{base}-restore")
}

/// Reads Koyeb's `Error` / `ErrorWithFields` / `google.rpc.Status` bodies: the message, plus
/// the per-field reasons of a validation error.
fn error_message(body: &[u8]) -> Option<String> {
    let Ok(e) = serde_json::from_slice::<WireError>(body) else {
        return wire::error_message(body);
    };
    let mut message = e.message.filter(|m| !m.is_empty())?;
    if let Some(serde_json::Value::String(code)) = e.code.filter(|c| c.is_string()) {
        message = format!("{message} ({code})");
    }
    let fields: Vec<String> = e
        .fields
        .into_iter()
        .filter_map(|f| match (f.field, f.description) {
            (Some(field), Some(d)) => Some(format!("{field} {d}")),
            (Some(field), None) => Some(field),
            (None, d) => d,
        })
        .collect();
    Some(if fields.is_empty() {
        message
    } else {
        format!("{message}: {}", fields.join("; "))
    })
}

// ---- wire types (private) ----

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    snapshots: Vec<Box<RawValue>>,
    /// Absent in some replies: then only an empty page ends the walk.
    #[serde(default)]
    has_next: Option<bool>,
}

#[derive(Deserialize)]
struct Envelope {
    snapshot: Box<RawValue>,
}

#[derive(Deserialize)]
struct WireSnapshot {
    id: String,
    name: Option<String>,
    /// The parent volume's size in GB (int64; tolerated as a string).
    #[serde(default, deserialize_with = "wire::lenient_f64")]
    size: Option<f64>,
    #[serde(default, deserialize_with = "wire::time")]
    created_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, deserialize_with = "wire::time")]
    deleted_at: Option<chrono::DateTime<chrono::Utc>>,
    parent_volume_id: Option<String>,
    region: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct VolumeReply {
    volume: Option<WireVolume>,
}

#[derive(Deserialize)]
struct WireVolume {
    id: String,
    name: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    message: Option<String>,
    /// `invalid_argument`, `authorization_required`, … (a number in `google.rpc.Status`).
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    fields: Vec<WireField>,
}

#[derive(Deserialize)]
struct WireField {
    field: Option<String>,
    description: Option<String>,
}

// ---- conversions ----

fn to_domain(raw: Box<RawValue>) -> Result<VendorSnapshot, ProviderError> {
    let w: WireSnapshot = check::decode(KIND, &raw)?;
    let vendor_status = w.status.filter(|s| !s.is_empty());
    let mut status = vendor_status
        .as_deref()
        .map_or(SnapshotStatus::Unknown, map_status);
    // A set `deleted_at` settles a status Koyeb left at its zero value (or one we do not know).
    if status == SnapshotStatus::Unknown && w.deleted_at.is_some() {
        status = SnapshotStatus::Deleted;
    }
    Ok(VendorSnapshot {
        native_id: w.id,
        name: w.name.filter(|n| !n.is_empty()),
        description: None,
        status,
        vendor_status,
        // proto3 zero value: unknown, not empty.
        size_gb: w.size.filter(|s| *s > 0.0),
        created_at: w.created_at,
        expires_at: None,
        source: w
            .parent_volume_id
            .filter(|id| !id.is_empty())
            .map(|id| Source {
                kind: SourceKind::Volume,
                id,
            }),
        region: w.region.filter(|r| !r.is_empty()),
        vendor: Some(raw),
    })
}

/// Koyeb moving a snapshot's data to cold storage.
const MIGRATING: &str = "SNAPSHOT_STATUS_MIGRATING";

/// The Koyeb values that select exactly the snapshots mapped to `status`, where there are.
/// (`deleted` has none: a zero status with `deleted_at` set also maps to deleted.)
fn wire_statuses(status: SnapshotStatus) -> Option<&'static [&'static str]> {
    match status {
        SnapshotStatus::Available => Some(&["SNAPSHOT_STATUS_AVAILABLE", MIGRATING]),
        _ => None,
    }
}

/// Koyeb's `SnapshotStatus` normalized, with one reasoned change: `MIGRATING` is a snapshot
/// whose data exists and is moving to cold storage ("being migrated"), so it is `available` in
/// lists and gets (`vendor_status` says `SNAPSHOT_STATUS_MIGRATING`). A create is only reported
/// done at `AVAILABLE` ([`settled`]), in case Koyeb migrates fresh snapshots before they settle.
fn map_status(s: &str) -> SnapshotStatus {
    match s {
        "SNAPSHOT_STATUS_CREATING" => SnapshotStatus::Creating,
        "SNAPSHOT_STATUS_AVAILABLE" | MIGRATING => SnapshotStatus::Available,
        "SNAPSHOT_STATUS_DELETING" => SnapshotStatus::Deleting,
        "SNAPSHOT_STATUS_DELETED" => SnapshotStatus::Deleted,
        _ => SnapshotStatus::Unknown,
    }
}

#[cfg(test)]
mod tests;

/// `GET /v1/volumes`: `{volumes, limit, offset, has_next}` (no total).
#[derive(serde::Deserialize)]
struct VolumePage {
    #[serde(default)]
    volumes: Vec<ListedVolume>,
    has_next: Option<bool>,
}

#[derive(serde::Deserialize)]
struct ListedVolume {
    id: String,
    name: Option<String>,
    status: Option<String>,
}
