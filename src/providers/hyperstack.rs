//! Hyperstack (NexGen Cloud Infrahub): VM snapshots, `api_key` header auth.
//!
//! Quirks: request `pageSize` but response `page_size`; `labels` is an array in lists and a
//! string in get; zone-less timestamps; restore makes a new VM and answers `instance` or
//! `instances[]` (the restore is done when that VM, read from the VM API, is `ACTIVE`/`SHUTOFF`,
//! failed at `ERROR`); create-image answers `id` or `image{}`; a missing snapshot may answer 400 or
//! 404 (the page documents no 404), so both read as gone (a create's poll confirms a gone
//! snapshot with a second read before failing); the list may cap `pageSize` below the 100
//! asked for (echoing either size) and `count` may be the page's or the total, so pages are
//! walked until empty or until a total agrees; statuses have no published enum: the three
//! documented ones and the SUMMARY's readings map exactly, failure words win over progress
//! words, anything else is `unknown`; a 429 without `Retry-After` holds the whole address
//! (Hyperstack limits per source IP) for the documented one-minute window.

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, value::RawValue};

use super::{
    check,
    http::{Auth, VendorHttp},
    new_resource_progress,
    wire::{self, Id},
    CallContext, CreateRequest, ImageRequest, ListFilter, Listed, PollRequest, Progress,
    ProviderAdapter, ProviderError, ProviderInfo, RateLimits, RestoreRequest, Submitted,
};
use crate::{
    config::{ProviderConfigError, ProvidersConfig},
    domain::{
        AccountSource, Capabilities, FieldSpec, OperationKind, OperationState, ProviderKind,
        SnapshotStatus, Source, SourceKind, VendorSnapshot,
    },
    upstream::Upstream,
};

const KIND: ProviderKind = ProviderKind::Hyperstack;
const PAGE_SIZE: usize = 100;
/// Names (snapshot, new VM) are limited to 50 characters.
const MAX_NAME: usize = 50;

pub(super) static INFO: ProviderInfo = ProviderInfo {
    kind: KIND,
    display_name: "Hyperstack",
    source_kind: SourceKind::Vm,
    credential_fields: &[FieldSpec::required(
        "api_key",
        "API key from the Hyperstack console (sent as the `api_key` header)",
    )
    .sent_in_header()],
    setting_fields: &[],
    capabilities: Capabilities {
        list: true,
        get: true,
        create: true,
        create_replaces_existing: false,
        rename: false,
        describe: false,
        delete: true,
        restore: true,
        restore_to_new_resource: true,
        restore_to_other_target: false,
        restore_in_place: false,
        create_image: true,
        name_availability: true,
        list_sources: true,
    },
    auth: Auth::Header {
        name: "api_key",
        credential: "api_key",
    },
    rate_limits: RateLimits {
        // Documented per source IP, over a one-minute window.
        window_secs: Some(60),
        by_address: true,
        headers: None,
    },
};

/// The Hyperstack adapter.
pub struct Hyperstack {
    http: VendorHttp,
    /// Region names by `region_id`, learned from get answers: list items carry only the id.
    regions: wire::RegionNames,
}

impl Hyperstack {
    pub fn new(config: &ProvidersConfig, http: Upstream) -> Result<Self, ProviderConfigError> {
        Ok(Self {
            http: VendorHttp::new(
                &INFO,
                super::Endpoint::base_url(config, KIND, "https://infrahub-api.nexgencloud.com/v1")?,
                http,
            ),
            regions: wire::RegionNames::default(),
        })
    }

    async fn page(
        &self,
        ctx: &CallContext<'_>,
        page: usize,
        size: usize,
    ) -> Result<ListPage, ProviderError> {
        let query = [("page", page.to_string()), ("pageSize", size.to_string())];
        self.http
            .call(ctx, "list", Method::GET, "/core/snapshots", &query, None)
            .await?
            .json(KIND)
    }

    /// The status of a VM (a restore's new VM), from Hyperstack's VM API.
    async fn vm_status(
        &self,
        ctx: &CallContext<'_>,
        vm: &str,
    ) -> Result<Option<String>, ProviderError> {
        let path = format!("/core/virtual-machines/{}", check::numeric(vm)?);
        let reply: VmReply = self
            .http
            .call(ctx, "poll", Method::GET, &path, &[], None)
            .await
            .map_err(gone_if_rejected)?
            .json(KIND)?;
        Ok(reply.instance.and_then(|vm| vm.status))
    }
}

/// A restore's new VM: done when it runs or comes up powered off, failed at `ERROR` or once
/// it is being removed; `CREATING` is the documented build status (`BUILD` is OpenStack's).
const VM_STATUSES: super::ResourceStatuses = super::ResourceStatuses {
    ready: &["ACTIVE", "SHUTOFF"],
    building: &["CREATING", "BUILD", "BUILDING"],
    failed: &["ERROR", "DELETING", "DELETED"],
};

#[async_trait]
impl ProviderAdapter for Hyperstack {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    async fn verify(&self, ctx: &CallContext<'_>) -> Result<(), ProviderError> {
        self.page(ctx, 1, 1).await.map(|_| ())
    }

    async fn list(
        &self,
        ctx: &CallContext<'_>,
        filter: &ListFilter<'_>,
    ) -> Result<Listed, ProviderError> {
        let source_id = filter.source_id;
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // Hyperstack may cap `pageSize` below what was asked, and its reply's `page_size` may
        // echo the size asked rather than the one applied; `count` may be the page's count or
        // the total. So a short page ends nothing: the walk ends on an empty page, or once
        // `count` shows itself a total (larger than its page) that the ids read agree with.
        let mut walk = super::ListWalk::new(KIND);
        let mut count_is_total = false;
        for page in 1.. {
            let reply = self.page(ctx, page, PAGE_SIZE).await?;
            let n = reply.snapshots.len();
            count_is_total |= reply.count.is_some_and(|c| c > n);
            let mut new = 0;
            for raw in reply.snapshots {
                let snapshot = to_domain(raw, &self.regions)?;
                if !seen.insert(snapshot.native_id.clone()) {
                    continue;
                }
                new += 1;
                let wanted = source_id
                    .is_none_or(|s| snapshot.source.as_ref().is_some_and(|src| src.id == s));
                if wanted {
                    out.push(snapshot);
                }
            }
            let signals = super::PageSignals {
                items: n,
                new,
                total: reply.count.filter(|_| count_is_total),
                more: None,
                asked: PAGE_SIZE,
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
        let path = format!("/core/snapshots/{}", check::numeric(native_id)?);
        let reply: Envelope = self
            .http
            .call(ctx, "get", Method::GET, &path, &[], None)
            .await
            .map_err(gone_if_rejected)?
            .json(KIND)?;
        to_domain(reply.snapshot, &self.regions)
    }

    async fn create(
        &self,
        ctx: &CallContext<'_>,
        request: &CreateRequest,
    ) -> Result<Submitted, ProviderError> {
        check::name(KIND, "name", &request.name, MAX_NAME)?;
        let vm = check::numeric(&request.source_id).map_err(|_| ProviderError::Invalid {
            field: "source_id",
            message: "source_id must be a Hyperstack VM id (an integer)".to_owned(),
        })?;
        // The spec requires `description`; send it, empty when the caller gave none.
        let body = json!({
            "name": request.name,
            "description": request.description.clone().unwrap_or_default(),
        });
        let path = format!("/core/virtual-machines/{vm}/snapshots");
        let reply: Envelope = self
            .http
            .call(ctx, "create", Method::POST, &path, &[], Some(body))
            .await?
            .json(KIND)?;
        let snapshot = to_domain(reply.snapshot, &self.regions)?;
        let state = OperationState::of_snapshot(snapshot.status);
        Ok(Submitted::by_status(snapshot, state))
    }

    async fn delete(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<Submitted, ProviderError> {
        let path = format!("/core/snapshots/{}", check::numeric(native_id)?);
        let reply: Message = self
            .http
            .call(ctx, "delete", Method::DELETE, &path, &[], None)
            .await?
            .json(KIND)?;
        Ok(Submitted::finished(
            None,
            Some(json!({ "message": reply.message })),
        ))
    }

    async fn restore(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        request: &RestoreRequest,
    ) -> Result<Submitted, ProviderError> {
        let name = request
            .new_name
            .as_deref()
            .ok_or_else(|| ProviderError::Invalid {
                field: "new_name",
                message: "Hyperstack restores to a new VM: new_name is required".to_owned(),
            })?;
        check::name(KIND, "new_name", name, MAX_NAME)?;
        let path = format!("/core/snapshots/{}/restore", check::numeric(native_id)?);
        let body = json!({ "new_vm_name": name });
        let reply: RestoreReply = self
            .http
            .call(ctx, "restore", Method::POST, &path, &[], Some(body))
            .await?
            .json(KIND)?;
        let vm = reply
            .instance
            .or_else(|| reply.instances.into_iter().next());
        // The new VM is built after the answer: the restore is done when the VM is.
        Ok(match vm {
            Some(vm) => {
                let result = json!({ "vm_id": vm.id.0, "vm_name": vm.name });
                Submitted::building(vm.id.0, result)
            }
            None => Submitted::finished(None, None),
        })
    }

    async fn create_image(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        request: &ImageRequest,
    ) -> Result<Submitted, ProviderError> {
        check::name(KIND, "name", &request.name, MAX_NAME)?;
        let path = format!("/core/snapshots/{}/image", check::numeric(native_id)?);
        let body = json!({ "name": request.name, "labels": request.labels });
        let reply: ImageReply = self
            .http
            .call(ctx, "image", Method::POST, &path, &[], Some(body))
            .await?
            .json(KIND)?;
        let image_id = reply.id.or(reply.image.map(|i| i.id));
        Ok(Submitted::finished(
            None,
            image_id.map(|id| json!({ "image_id": id.0 })),
        ))
    }

    async fn name_available(
        &self,
        ctx: &CallContext<'_>,
        name: &str,
    ) -> Result<bool, ProviderError> {
        check::name(KIND, "name", name, MAX_NAME)?;
        if is_dot_segment(name) {
            return Err(ProviderError::Invalid {
                field: "name",
                message: "name must not be `.` or `..`: it would change the vendor's URL path"
                    .to_owned(),
            });
        }
        let path = format!("/core/snapshots/name-availability/{}", urlencode(name));
        let reply: NameReply = self
            .http
            .call(ctx, "name_availability", Method::GET, &path, &[], None)
            .await?
            .json(KIND)?;
        Ok(reply.available)
    }

    /// `GET /core/virtual-machines`, page by page to an empty one (Hyperstack documents no
    /// page-size cap, no next-page signal and not what `count` counts); VMs being deleted are
    /// left out.
    async fn list_sources(
        &self,
        ctx: &CallContext<'_>,
    ) -> Result<Vec<AccountSource>, ProviderError> {
        super::walk_sources(KIND, |page| async move {
            let query = [
                ("page", page.to_string()),
                ("pageSize", PAGE_SIZE.to_string()),
            ];
            let reply: VmPage = self
                .http
                .call(
                    ctx,
                    "sources",
                    Method::GET,
                    "/core/virtual-machines",
                    &query,
                    None,
                )
                .await?
                .json(KIND)?;
            let listed = reply
                .instances
                .into_iter()
                .map(|vm| AccountSource {
                    id: vm.id.0,
                    name: vm.name,
                    kind: SourceKind::Vm,
                    status: vm.status,
                })
                .collect();
            Ok(super::SourcePage::of(
                listed,
                &["DELETING", "DELETED"],
                PAGE_SIZE,
            ))
        })
        .await
    }

    async fn poll(
        &self,
        ctx: &CallContext<'_>,
        operation: &PollRequest<'_>,
    ) -> Result<Progress, ProviderError> {
        if operation.vendor_ref.kind == crate::domain::VendorRefKind::Resource {
            let vm = operation.vendor_ref.id.as_deref().unwrap_or_default();
            let status = self.vm_status(ctx, vm).await;
            return new_resource_progress(KIND, "VM", vm, status, &VM_STATUSES);
        }
        let Some(native_id) = operation.native_id else {
            return Ok(Progress::succeeded());
        };
        match (operation.kind, self.get(ctx, native_id).await) {
            (OperationKind::Create, Ok(s)) => Ok(super::create_progress(KIND, &s)),
            // A 400 may be a one-off refusal rather than "gone" (both read as not found):
            // a create fails only when a second read agrees.
            (OperationKind::Create, Err(ProviderError::NotFound)) => {
                Ok(match self.get(ctx, native_id).await {
                    Ok(s) => super::create_progress(KIND, &s),
                    Err(ProviderError::NotFound) => Progress::failed(ProviderError::NotFound),
                    Err(e) => return Err(e),
                })
            }
            (_, Ok(_)) | (_, Err(ProviderError::NotFound)) => Ok(Progress::succeeded()),
            (_, Err(e)) => Err(e),
        }
    }
}

/// The snapshot page documents 200/400/401/500 and no 404: for an id sent as a valid integer,
/// a 400 can only mean the snapshot is not there. Read both as gone, whichever Hyperstack uses.
fn gone_if_rejected(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::Rejected { status: 400, .. } => ProviderError::NotFound,
        other => other,
    }
}

/// Whether a path segment is `.` or `..` (percent-encoded dots count too): URL parsers resolve
/// those as directory steps however they are encoded.
fn is_dot_segment(s: &str) -> bool {
    let dots = s.to_ascii_lowercase().replace("%2e", ".");
    dots == "." || dots == ".."
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

// ---- wire types (private) ----

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    snapshots: Vec<Box<RawValue>>,
    /// The page's count or the total: undocumented.
    #[serde(default)]
    count: Option<usize>,
}

/// `GET /core/virtual-machines`: `{status, message, instances, count, page, page_size}`.
#[derive(Deserialize)]
struct VmPage {
    #[serde(default)]
    instances: Vec<ListedVm>,
}

#[derive(Deserialize)]
struct ListedVm {
    id: wire::Id,
    name: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    snapshot: Box<RawValue>,
}

#[derive(Deserialize)]
struct WireSnapshot {
    id: Id,
    name: Option<String>,
    description: Option<String>,
    vm_id: Option<Id>,
    region: Option<String>,
    region_id: Option<Id>,
    status: Option<String>,
    #[serde(default, deserialize_with = "wire::lenient_f64")]
    size: Option<f64>,
    #[serde(default, deserialize_with = "wire::time")]
    created_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct RestoreReply {
    instance: Option<WireVm>,
    #[serde(default)]
    instances: Vec<WireVm>,
}

#[derive(Deserialize)]
struct WireVm {
    id: Id,
    name: Option<String>,
    status: Option<String>,
}

/// `GET /core/virtual-machines/{id}`: `{status, message, instance}`.
#[derive(Deserialize)]
struct VmReply {
    instance: Option<WireVm>,
}

#[derive(Deserialize)]
struct ImageReply {
    id: Option<Id>,
    image: Option<WireImage>,
}

#[derive(Deserialize)]
struct WireImage {
    id: Id,
}

#[derive(Deserialize)]
struct NameReply {
    available: bool,
}

// ---- conversions ----

fn to_domain(
    raw: Box<RawValue>,
    regions: &wire::RegionNames,
) -> Result<VendorSnapshot, ProviderError> {
    let w: WireSnapshot = check::decode(KIND, &raw)?;
    let vendor_status = w.status.filter(|s| !s.is_empty());
    Ok(VendorSnapshot {
        native_id: w.id.0,
        name: w.name,
        description: w.description.filter(|d| !d.is_empty()),
        status: vendor_status
            .as_deref()
            .map_or(SnapshotStatus::Unknown, map_status),
        vendor_status,
        // `size` is 0 while creating: unknown, not empty.
        size_gb: w.size.filter(|s| *s > 0.0),
        created_at: w.created_at,
        expires_at: None,
        source: w.vm_id.map(|id| Source {
            kind: SourceKind::Vm,
            id: id.0,
        }),
        // Get answers name the region; list items only number it (looked up once learned).
        region: match (w.region.filter(|r| !r.is_empty()), w.region_id) {
            (Some(name), Some(id)) => {
                regions.learn(&id.0, &name);
                Some(name)
            }
            (Some(name), None) => Some(name),
            (None, Some(id)) => regions.name(&id.0),
            (None, None) => None,
        },
        vendor: Some(raw),
    })
}

/// Hyperstack's status is a free string with no published enum. The documented values
/// (`CREATING`, `COMPLETE`, `SUCCESSFUL`) and the readings the vendor summary proposes map
/// exactly; a value naming a failure is `error` whatever else it says (`CREATE_FAILED`);
/// anything else is `unknown`, shown with its `vendor_status` and never taken for progress.
fn map_status(s: &str) -> SnapshotStatus {
    let s = s.trim().to_ascii_uppercase();
    if super::names_failure(&s) {
        return SnapshotStatus::Error;
    }
    match s.as_str() {
        "CREATING" | "PENDING" | "SNAPSHOTTING" => SnapshotStatus::Creating,
        "COMPLETE" | "SUCCESSFUL" | "SUCCESS" | "AVAILABLE" | "ACTIVE" => SnapshotStatus::Available,
        "DELETING" => SnapshotStatus::Deleting,
        "DELETED" => SnapshotStatus::Deleted,
        _ => SnapshotStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_per_the_summary_table() {
        assert_eq!(map_status("CREATING"), SnapshotStatus::Creating);
        assert_eq!(map_status("COMPLETE"), SnapshotStatus::Available);
        assert_eq!(map_status("SUCCESSFUL"), SnapshotStatus::Available);
        assert_eq!(map_status("snapshot_failed"), SnapshotStatus::Error);
        assert_eq!(map_status("WEIRD"), SnapshotStatus::Unknown);
        // Failure words win over progress words; unlisted progress-like words are unknown.
        assert_eq!(map_status("CREATE_FAILED"), SnapshotStatus::Error);
        assert_eq!(map_status("CREATING_ERROR"), SnapshotStatus::Error);
        assert_eq!(map_status("RECREATING"), SnapshotStatus::Unknown);
    }
}
