//! Syminet: slice snapshots, lowercase `authorization: bearer`, bare 202 answers.
//!
//! Quirks: no get-by-id (search the paged `/images` list); a shorter item in the per-slice
//! list; create, rename, delete and restore answer 202 with no body and no id, so progress is
//! read from the lists; `created` is `YYYY-MM-DD HH:MM:SS.ffffff` in UTC; an empty list
//! reports `page: 0, pages: 0`; `/images/snapshots/{ID}` takes a slice id for GET and
//! create but a snapshot id for rename, delete and restore.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
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
        Capabilities, FieldSpec, OperationKind, OperationState, ProviderKind, SnapshotStatus,
        Source, SourceKind, VendorRef, VendorRefKind, VendorSnapshot,
    },
    upstream::Upstream,
};

mod progress;

use progress::{create_progress, list_progress, lost, restore_progress, timed_out, LIST_TIMEOUT};

const KIND: ProviderKind = ProviderKind::Syminet;
/// Snapshot names: required by the vendor; no documented limit, so a generous sanity cap.
const MAX_NAME: usize = 255;

pub(super) static INFO: ProviderInfo = ProviderInfo {
    kind: KIND,
    display_name: "Syminet",
    source_kind: SourceKind::Slice,
    credential_fields: &[FieldSpec::required(
        "token",
        "Panel API token (sent as `authorization: bearer`)",
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
        restore_to_new_resource: false,
        restore_to_other_target: true,
        restore_in_place: true,
        create_image: false,
        name_availability: false,
        list_sources: false,
    },
    // Exactly the documented form: lower-case `bearer`.
    auth: Auth::Scheme {
        scheme: "bearer",
        credential: "token",
    },
    rate_limits: RateLimits::PER_ACCOUNT,
};

/// `providers.syminet`: the API, and how long an accepted restore is assumed to take (Syminet
/// has no way to tell when a restore has finished).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    base_url: String,
    /// The least time, in seconds, after which an accepted restore is reported done
    /// (`completion: assumed`).
    restore_settle_secs: u64,
    /// How fast a restore is assumed to write the slice, in GB per minute (the panel's own
    /// "pessimistic assumption" is 2): a restore of a snapshot of known size is reported
    /// done no earlier than its size at this rate.
    restore_gb_per_minute: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            base_url: "https://cloud.syminet.com/api/v1".to_owned(),
            restore_settle_secs: 600,
            restore_gb_per_minute: 2.0,
        }
    }
}

/// The Syminet adapter.
pub struct Syminet {
    http: VendorHttp,
    /// The least time after it was accepted a restore is reported done (it cannot be seen).
    restore_settle: std::time::Duration,
    /// GB per minute a restore is assumed to write.
    restore_rate: f64,
}

impl Syminet {
    pub fn new(config: &ProvidersConfig, http: Upstream) -> Result<Self, ProviderConfigError> {
        let settings: Settings = config.of(KIND)?;
        Ok(Self {
            http: VendorHttp::new(&INFO, settings.base_url, http),
            restore_settle: std::time::Duration::from_secs(settings.restore_settle_secs),
            restore_rate: if settings.restore_gb_per_minute > 0.0 {
                settings.restore_gb_per_minute
            } else {
                return Err(ProviderConfigError::new(
                    KIND,
                    "restore_gb_per_minute must be above 0",
                ));
            },
        })
    }

    async fn page(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        page: u32,
    ) -> Result<ListPage, ProviderError> {
        self.http
            .call(
                ctx,
                operation,
                Method::GET,
                "/images",
                &[("page", page.to_string())],
                None,
            )
            .await?
            .json(KIND)
    }

    /// Walks `/images` from page 1 to `pages`, handing each raw item to `visit` until it
    /// answers `true` (found) or the pages run out.
    async fn scan(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        mut visit: impl FnMut(Box<RawValue>) -> Result<bool, ProviderError> + Send,
    ) -> Result<(), ProviderError> {
        // The page size is fixed and undocumented: the largest page seen stands for it. The
        // walk ends as every adapter's does (`ListWalk`): at an empty page (an empty list is
        // `page: 0, pages: 0`), when `results` agrees with what was read, or at a short page
        // that `pages` agrees is the last.
        let mut walk = super::ListWalk::new(KIND);
        let mut size = 0;
        for page in 1.. {
            let reply = self.page(ctx, operation, page).await?;
            let n = reply.data.len();
            size = size.max(n);
            for raw in reply.data {
                if visit(raw)? {
                    return Ok(());
                }
            }
            let signals = super::PageSignals {
                items: n,
                new: n,
                total: reply.results,
                more: Some(page < reply.pages),
                asked: size,
            };
            if !walk.next(signals)? {
                break;
            }
        }
        Ok(())
    }

    /// The item with this id, searched in the account-wide list (no get endpoint).
    async fn find(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        id: &str,
    ) -> Result<(WireImage, Box<RawValue>), ProviderError> {
        let mut found = None;
        self.scan(ctx, operation, |raw| {
            let item = decode(&raw)?;
            if item.id.0 == id {
                found = Some((item, raw));
                return Ok(true);
            }
            Ok(false)
        })
        .await?;
        found.ok_or(ProviderError::NotFound)
    }

    /// A create the per-slice list shows as done is done only when the account-wide list agrees:
    /// the per-slice item has no `in_progress`, so whether that list hides unfinished snapshots
    /// is undocumented (`syminet.slice_list_shows_in_progress` plays the other reading).
    async fn confirm_created(
        &self,
        ctx: &CallContext<'_>,
        progress: Progress,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Progress, ProviderError> {
        let (OperationState::Succeeded, Some(id)) = (progress.state, progress.native_id.clone())
        else {
            return Ok(progress);
        };
        let running = Progress {
            native_id: Some(id.clone()),
            ..Progress::running()
        };
        match self.find(ctx, "poll", &id).await {
            Ok((item, _)) if item.busy().is_some() => Ok(running),
            Ok(_) => Ok(progress),
            Err(ProviderError::NotFound) if timed_out(created_at, now, LIST_TIMEOUT) => {
                Ok(Progress::failed(ProviderError::Upstream {
                    status: None,
                    message: format!(
                        "Syminet listed snapshot {id} on its slice but never in its image list"
                    ),
                }))
            }
            Err(ProviderError::NotFound) => Ok(running),
            Err(e) => Err(e),
        }
    }

    /// The per-slice list (unpaginated, shorter items).
    async fn slice_items(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        slice: &str,
    ) -> Result<Vec<(WireImage, Box<RawValue>)>, ProviderError> {
        let path = format!("/images/snapshots/{slice}");
        let reply: SliceList = self
            .http
            .call(ctx, operation, Method::GET, &path, &[], None)
            .await?
            .json(KIND)?;
        reply
            .data
            .into_iter()
            .map(|raw| decode(&raw).map(|item| (item, raw)))
            .collect()
    }
}

impl Syminet {
    /// How long a restore of a snapshot of `size_gb` is assumed to take, and why: its size at
    /// `restore_gb_per_minute`, never less than `restore_settle_secs`.
    fn restore_settle_for(&self, size_gb: Option<f64>) -> (std::time::Duration, String) {
        let floor = self.restore_settle;
        let settings = "providers.syminet.restore_settle_secs and restore_gb_per_minute";
        match size_gb.filter(|s| s.is_finite() && *s > 0.0) {
            Some(size) => {
                let secs = (size / self.restore_rate * 60.0).ceil();
                let by_size = std::time::Duration::from_secs_f64(secs.min(7.0 * 86_400.0));
                (
                    floor.max(by_size),
                    format!(
                        "the snapshot's {size} GB at an assumed {} GB per minute, at least {} s; \
                         {settings}",
                        self.restore_rate,
                        floor.as_secs()
                    ),
                )
            }
            None => (
                floor,
                format!(
                    "Syminet states no size for this snapshot, so only the least time; {settings}"
                ),
            ),
        }
    }
}

fn slice_id(field: &'static str, id: &str) -> Result<String, ProviderError> {
    check::numeric(id)
        .map(str::to_owned)
        .map_err(|_| ProviderError::Invalid {
            field,
            message: format!("{field} must be a Syminet slice id (an integer)"),
        })
}

#[async_trait]
impl ProviderAdapter for Syminet {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    async fn verify(&self, ctx: &CallContext<'_>) -> Result<(), ProviderError> {
        self.page(ctx, "verify", 1).await.map(|_| ())
    }

    async fn list(
        &self,
        ctx: &CallContext<'_>,
        filter: &ListFilter<'_>,
    ) -> Result<Listed, ProviderError> {
        let source_id = filter.source_id;
        if let Some(source) = source_id {
            // A slice id that cannot exist has no snapshots.
            let Ok(slice) = check::numeric(source) else {
                return Ok(Listed::default());
            };
            // The account-wide list, not the per-slice one: only its items say whether a
            // snapshot is still being taken (the per-slice item has no `in_progress`).
            let mut out = Vec::new();
            self.scan(ctx, "list", |raw| {
                let item = decode(&raw)?;
                if item.vm_id.as_ref().is_some_and(|id| id.0 == slice) {
                    out.push(to_domain(item, raw, Some(slice)));
                }
                Ok(false)
            })
            .await?;
            return Ok(out.into());
        }
        let mut out = Vec::new();
        self.scan(ctx, "list", |raw| {
            out.push(to_domain(decode(&raw)?, raw, None));
            Ok(false)
        })
        .await?;
        Ok(out.into())
    }

    async fn get(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        let (item, raw) = self.find(ctx, "get", check::numeric(native_id)?).await?;
        Ok(to_domain(item, raw, None))
    }

    async fn create(
        &self,
        ctx: &CallContext<'_>,
        request: &CreateRequest,
    ) -> Result<Submitted, ProviderError> {
        let slice = slice_id("source_id", &request.source_id)?;
        check::name(KIND, "name", &request.name, MAX_NAME)?;
        check::no_description(KIND, request.description.as_deref())?;
        let path = format!("/images/snapshots/{slice}/create");
        let body = json!({ "snapshot_name": request.name });
        self.http
            .call(ctx, "create", Method::POST, &path, &[], Some(body))
            .await?;
        let tracking = CreateTracking {
            slice_id: slice,
            name: request.name.clone(),
            submitted_at: Utc::now(),
        };
        Ok(accepted(None, json!(tracking), None))
    }

    async fn update(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        request: &UpdateRequest,
    ) -> Result<Submitted, ProviderError> {
        let id = check::numeric(native_id)?;
        check::no_description(KIND, request.description.as_deref())?;
        let name = request
            .name
            .as_deref()
            .ok_or_else(|| ProviderError::Invalid {
                field: "name",
                message: "Syminet can only rename a snapshot: name is required".to_owned(),
            })?;
        check::name(KIND, "name", name, MAX_NAME)?;
        let path = format!("/images/snapshots/{id}/rename");
        let body = json!({ "snapshot_name": name });
        self.http
            .call(ctx, "rename", Method::POST, &path, &[], Some(body))
            .await?;
        Ok(accepted(Some(id), json!({ "name": name }), None))
    }

    async fn delete(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<Submitted, ProviderError> {
        let id = check::numeric(native_id)?;
        let path = format!("/images/snapshots/{id}/delete");
        self.http
            .call(ctx, "delete", Method::DELETE, &path, &[], None)
            .await?;
        Ok(accepted(Some(id), serde_json::Value::Null, None))
    }

    async fn restore(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        request: &RestoreRequest,
    ) -> Result<Submitted, ProviderError> {
        let id = check::numeric(native_id)?;
        let target = request
            .target_id
            .as_deref()
            .map(|t| slice_id("target_id", t))
            .transpose()?;
        // The snapshot first: it must exist (so a 404 from the restore names the slice), and
        // its size sets how long the restore is assumed to take.
        let (snapshot, _) = self.find(ctx, "restore", id).await?;
        let slice = match target {
            Some(slice) => slice,
            None => source_slice(&snapshot)?,
        };
        let path = format!("/images/snapshots/{id}/restore/{slice}");
        self.http
            .call(ctx, "restore", Method::POST, &path, &[], None)
            .await
            .map_err(|e| match e {
                ProviderError::NotFound => ProviderError::SourceNotFound {
                    field: "target_id",
                    what: "slice",
                    id: slice.clone(),
                },
                other => other,
            })?;
        let (settle, why) = self.restore_settle_for(snapshot.snapshot_size);
        let result = json!({ "slice_id": slice });
        let tracking = json!({ "slice_id": slice, "settle_secs": settle.as_secs() });
        let mut submitted = accepted(Some(id), tracking, Some(result));
        submitted.assumed = Some(format!(
            "Syminet cannot tell when a restore has finished; it is reported done {} s after \
             Syminet accepted it ({why})",
            settle.as_secs()
        ));
        Ok(submitted)
    }

    async fn poll(
        &self,
        ctx: &CallContext<'_>,
        operation: &PollRequest<'_>,
    ) -> Result<Progress, ProviderError> {
        let now = Utc::now();
        let native_id = operation.native_id;
        match operation.kind {
            OperationKind::Create => {
                let Some(tracking) = operation.tracking::<CreateTracking>() else {
                    return Ok(Progress::failed(lost("create")));
                };
                // A slice that is gone lists nothing: the create then times out.
                let items = match self.slice_items(ctx, "poll", &tracking.slice_id).await {
                    Ok(items) => items,
                    Err(ProviderError::NotFound) => Vec::new(),
                    Err(e) => return Err(e),
                };
                let progress = create_progress(
                    &tracking,
                    items.into_iter().map(|(item, _)| item),
                    operation.created_at,
                    now,
                );
                self.confirm_created(ctx, progress, operation.created_at, now)
                    .await
            }
            OperationKind::Restore => {
                let settle = operation
                    .tracking::<RestoreTracking>()
                    .map_or(self.restore_settle, |t| {
                        std::time::Duration::from_secs(t.settle_secs)
                    });
                Ok(restore_progress(operation.created_at, now, settle))
            }
            OperationKind::Rename | OperationKind::Delete => {
                let Some(id) = native_id else {
                    return Ok(Progress::failed(lost(operation.kind.as_str())));
                };
                let found = match self.find(ctx, "poll", id).await {
                    Ok((item, _)) => Some(item),
                    Err(ProviderError::NotFound) => None,
                    Err(e) => return Err(e),
                };
                let name = operation
                    .tracking::<RenameTracking>()
                    .map(|t| t.name)
                    .unwrap_or_default();
                Ok(list_progress(
                    operation.kind,
                    found.as_ref(),
                    &name,
                    operation.created_at,
                    now,
                ))
            }
            OperationKind::Image => Ok(Progress::failed(ProviderError::Unsupported {
                capability: crate::domain::Capability::CreateImage,
            })),
        }
    }
}

/// A 202 with no body: the work is running and the lists will tell when it is done.
fn accepted(
    native_id: Option<&str>,
    tracking: serde_json::Value,
    result: Option<serde_json::Value>,
) -> Submitted {
    Submitted {
        state: OperationState::Running,
        snapshot: None,
        native_id: native_id.map(str::to_owned),
        vendor_ref: VendorRef {
            kind: VendorRefKind::List,
            id: None,
        },
        result,
        tracking,
        assumed: None,
    }
}

/// The slice a snapshot was taken of, as the restore target when none was given.
fn source_slice(item: &WireImage) -> Result<String, ProviderError> {
    let deleted = item.vm_deleted.as_deref().is_some_and(truthy);
    match &item.vm_id {
        Some(slice) if !deleted => Ok(slice.0.clone()),
        Some(slice) => Err(ProviderError::Invalid {
            field: "target_id",
            message: format!("the snapshot's slice {slice} was deleted; send target_id"),
        }),
        None => Err(ProviderError::Invalid {
            field: "target_id",
            message: "Syminet does not name this snapshot's slice; send target_id".to_owned(),
        }),
    }
}

// ---- wire types (private) ----

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    data: Vec<Box<RawValue>>,
    #[serde(default)]
    pages: u32,
    /// The whole list's size.
    #[serde(default)]
    results: Option<usize>,
}

#[derive(Deserialize)]
struct SliceList {
    #[serde(default)]
    data: Vec<Box<RawValue>>,
}

/// A list item: the `/images` item, or the shorter per-slice one (only `id`, `name`,
/// `created` then).
#[derive(Deserialize)]
struct WireImage {
    id: Id,
    name: Option<String>,
    #[serde(default, deserialize_with = "wire::time")]
    created: Option<DateTime<Utc>>,
    #[serde(default)]
    in_progress: Option<Box<RawValue>>,
    /// Undocumented beside `in_progress` (null in every example): a percentage below 100
    /// while the snapshot is taken, read as busy even when `in_progress` is unset.
    #[serde(default)]
    progress: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "wire::lenient_f64")]
    snapshot_size: Option<f64>,
    region: Option<String>,
    vm_id: Option<Id>,
    #[serde(default)]
    vm_deleted: Option<Box<RawValue>>,
}

/// What a create's `Submitted.tracking` holds.
#[derive(Deserialize, Serialize)]
struct CreateTracking {
    slice_id: String,
    name: String,
    submitted_at: DateTime<Utc>,
}

/// What a restore's `Submitted.tracking` holds: how long it is assumed to take.
#[derive(Deserialize)]
struct RestoreTracking {
    settle_secs: u64,
}

/// What a rename's `Submitted.tracking` holds.
#[derive(Deserialize)]
struct RenameTracking {
    name: String,
}

// ---- conversions ----

fn decode(raw: &RawValue) -> Result<WireImage, ProviderError> {
    check::decode(KIND, raw)
}

/// `slice` names the source when the item came from that slice's list (which omits `vm_id`).
fn to_domain(w: WireImage, raw: Box<RawValue>, slice: Option<&str>) -> VendorSnapshot {
    let busy = w.busy();
    VendorSnapshot {
        native_id: w.id.0,
        name: w.name,
        description: None,
        status: if busy.is_some() {
            SnapshotStatus::Creating
        } else {
            SnapshotStatus::Available
        },
        vendor_status: busy,
        // Only `/images` has `snapshot_size`; the per-slice `backup_full_size` is not known to
        // be the same quantity, so it is left in the raw object.
        size_gb: w.snapshot_size,
        created_at: w.created,
        expires_at: None,
        source: w
            .vm_id
            .map(|id| id.0)
            .or(slice.map(str::to_owned))
            .map(|id| Source {
                kind: SourceKind::Slice,
                id,
            }),
        region: w.region.filter(|r| !r.is_empty()),
        vendor: Some(raw),
    }
}

impl WireImage {
    /// What says the snapshot is still being taken, as its `vendor_status`
    /// (`in_progress:true`, `progress:40`); `None` when nothing does. Either field counts:
    /// `in_progress` set, or `progress` a number below 100 (or any other set value, which
    /// cannot be read as finished).
    fn busy(&self) -> Option<String> {
        if let Some(p) = self.in_progress.as_deref().filter(|p| truthy(p)) {
            return Some(format!("in_progress:{}", p.get()));
        }
        let p = self.progress.as_deref().filter(|p| p.get() != "null")?;
        let percent = p
            .get()
            .trim_matches('"')
            .trim_end_matches('%')
            .parse::<f64>();
        match percent {
            // 0 % is work just begun, not "unset".
            Ok(done) if done < 100.0 => Some(format!("progress:{}", p.get())),
            Ok(_) => None,
            Err(_) => truthy(p).then(|| format!("progress:{}", p.get())),
        }
    }
}

/// Whether a loosely typed flag (`in_progress`, `vm_deleted`) is set: JSON truthiness, with
/// `null`, `false`, `0`, `""`, `[]` and `{}` unset.
fn truthy(raw: &RawValue) -> bool {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Number(f64),
        Text(String),
        List(Vec<serde::de::IgnoredAny>),
        Object(std::collections::BTreeMap<String, serde::de::IgnoredAny>),
    }
    match serde_json::from_str::<Option<Flag>>(raw.get()) {
        Ok(None) => false,
        Ok(Some(Flag::Bool(b))) => b,
        Ok(Some(Flag::Number(n))) => n != 0.0,
        Ok(Some(Flag::Text(s))) => !s.trim().is_empty(),
        Ok(Some(Flag::List(l))) => !l.is_empty(),
        Ok(Some(Flag::Object(o))) => !o.is_empty(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests;
