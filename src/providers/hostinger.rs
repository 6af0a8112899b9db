//! Hostinger VPS: one snapshot per VM, Bearer token auth, actions.
//!
//! Quirks: every snapshot path is addressed by the VM id (so the VM id is the snapshot's
//! native id); no list endpoint (list VMs, then each VM's snapshot); no name, description,
//! size or status on a snapshot; create has no body and overwrites the VM's snapshot; what
//! `GET …/snapshot` answers for a VM without one is undocumented (404 or an empty 200 body).

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{stream, StreamExt};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, value::RawValue};

use super::{
    check,
    http::{Auth, VendorHttp},
    wire::{self, Id},
    CallContext, CreateRequest, ListFilter, Listed, PollRequest, Progress, ProviderAdapter,
    ProviderError, ProviderInfo, RateLimits, RestoreRequest, SourceFailure, Submitted,
};
use crate::{
    config::{ProviderConfigError, ProvidersConfig},
    domain::{
        AccountSource, Capabilities, FieldSpec, OperationState, ProviderKind, SnapshotStatus,
        Source, SourceKind, VendorRef, VendorRefKind, VendorSnapshot,
    },
    upstream::{Reply, Upstream},
};

const KIND: ProviderKind = ProviderKind::Hostinger;
const API: &str = "/api/vps/v1";
/// VM snapshot reads in flight at once while listing (the vendor blocks abusive IPs).
const LIST_CONCURRENCY: usize = 4;

pub(super) static INFO: ProviderInfo = ProviderInfo {
    kind: KIND,
    display_name: "Hostinger VPS",
    source_kind: SourceKind::Vm,
    credential_fields: &[FieldSpec::required(
        "token",
        "hPanel API token (sent as `Authorization: Bearer`)",
    )
    .sent_in_header()],
    setting_fields: &[],
    capabilities: Capabilities {
        list: true,
        get: true,
        create: true,
        create_replaces_existing: true,
        rename: false,
        describe: false,
        delete: true,
        restore: true,
        restore_to_new_resource: false,
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
        // Repeated violations block the caller's address for every account behind it.
        window_secs: Some(60),
        by_address: true,
        headers: None,
    },
};

/// The Hostinger adapter.
pub struct Hostinger {
    http: VendorHttp,
    /// `data_center_id` → data-centre name (the snapshot's region).
    regions: wire::RegionNames,
}

impl Hostinger {
    pub fn new(config: &ProvidersConfig, http: Upstream) -> Result<Self, ProviderConfigError> {
        Ok(Self {
            // No snapshot call takes a body, but Hostinger requires the JSON content type on
            // every request. `User-Agent` is set by [`Upstream`].
            http: VendorHttp::new(
                &INFO,
                wire::url(
                    &super::Endpoint::base_url(config, KIND, "https://developers.hostinger.com")?,
                    API,
                ),
                http,
            )
            .with_headers(&[("content-type", "application/json")]),
            regions: wire::RegionNames::default(),
        })
    }

    /// The VM's snapshot, `None` when it has none (404 or an empty 200 body).
    async fn snapshot_of(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        vm: &str,
    ) -> Result<Option<VendorSnapshot>, ProviderError> {
        let path = format!("/virtual-machines/{vm}/snapshot");
        match self
            .http
            .call(ctx, operation, Method::GET, &path, &[], None)
            .await
        {
            Ok(reply) => decode_snapshot(vm, &reply),
            Err(ProviderError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Learns data-centre names for VMs whose centre is not yet known (one call; a failure
    /// only leaves regions unnamed).
    async fn learn_data_centres(&self, ctx: &CallContext<'_>, vms: &[WireVm]) {
        let unknown = vms.iter().any(|vm| {
            vm.data_center_id
                .as_ref()
                .is_some_and(|dc| self.regions.name(&dc.0).is_none())
        });
        if !unknown {
            return;
        }
        let centres = match self
            .http
            .call(ctx, "list", Method::GET, "/data-centers", &[], None)
            .await
        {
            Ok(reply) => reply.json::<Vec<WireDataCentre>>(KIND),
            Err(e) => Err(e),
        };
        match centres {
            Ok(centres) => {
                for dc in centres {
                    if let Some(name) = dc.name {
                        self.regions.learn(&dc.id.0, &name);
                    }
                }
            }
            Err(e) => tracing::info!(failure = e.kind(), "Hostinger data centres unread"),
        }
    }

    async fn vms(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
    ) -> Result<Vec<WireVm>, ProviderError> {
        self.http
            .call(ctx, operation, Method::GET, "/virtual-machines", &[], None)
            .await?
            .json(KIND)
    }

    /// Sends a snapshot action (create, delete, restore) and reads the action it starts.
    async fn act(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        method: Method,
        vm: &str,
        path: &str,
    ) -> Result<Submitted, ProviderError> {
        let action: WireAction = self
            .http
            .call(ctx, operation, method, path, &[], None)
            .await?
            .json(KIND)?;
        let state = match action_state(&action.state) {
            OperationState::Failed => return Err(action_failed(&action.id)),
            state => state,
        };
        Ok(Submitted {
            state,
            snapshot: None,
            native_id: Some(vm.to_owned()),
            vendor_ref: VendorRef {
                kind: VendorRefKind::Action,
                id: Some(action.id.0),
            },
            result: None,
            tracking: json!({ "vm_id": vm }),
            assumed: None,
        })
    }
}

#[async_trait]
impl ProviderAdapter for Hostinger {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    async fn verify(&self, ctx: &CallContext<'_>) -> Result<(), ProviderError> {
        self.vms(ctx, "verify").await.map(|_| ())
    }

    async fn list(
        &self,
        ctx: &CallContext<'_>,
        filter: &ListFilter<'_>,
    ) -> Result<Listed, ProviderError> {
        let vms: Vec<(String, Option<String>)> = match filter.source_id {
            // A VM id that cannot exist has no snapshot.
            Some(vm) => match check::numeric(vm) {
                Ok(vm) => vec![(vm.to_owned(), None)],
                Err(_) => return Ok(Listed::default()),
            },
            None => {
                let vms = self.vms(ctx, "list").await?;
                self.learn_data_centres(ctx, &vms).await;
                vms.into_iter()
                    .map(|vm| {
                        let region = vm.data_center_id.and_then(|dc| self.regions.name(&dc.0));
                        (vm.id.0, region)
                    })
                    .collect()
            }
        };
        // `buffered` keeps the VM order, so the list is stable between calls.
        let found: Vec<(
            String,
            Option<String>,
            Result<Option<VendorSnapshot>, ProviderError>,
        )> = stream::iter(vms)
            .map(|(vm, region)| async move {
                let found = self.snapshot_of(ctx, "list", &vm).await;
                (vm, region, found)
            })
            .buffered(LIST_CONCURRENCY)
            .collect()
            .await;
        let mut listed = Listed::default();
        for (vm, region, found) in found {
            match found {
                Ok(Some(snapshot)) => listed.snapshots.push(VendorSnapshot { region, ..snapshot }),
                Ok(None) => {}
                // The account's credentials or limits: every VM would say the same.
                Err(
                    e @ (ProviderError::Auth { .. }
                    | ProviderError::Forbidden { .. }
                    | ProviderError::RateLimited { .. }
                    | ProviderError::CircuitOpen { .. }),
                ) => return Err(e),
                // One VM's snapshot could not be read: the others still list.
                Err(error) => listed.failures.push(SourceFailure {
                    source_id: vm,
                    error,
                }),
            }
        }
        Ok(listed)
    }

    async fn get(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        self.snapshot_of(ctx, "get", check::numeric(native_id)?)
            .await?
            .ok_or(ProviderError::NotFound)
    }

    async fn create(
        &self,
        ctx: &CallContext<'_>,
        request: &CreateRequest,
    ) -> Result<Submitted, ProviderError> {
        let vm = check::numeric(&request.source_id).map_err(|_| ProviderError::Invalid {
            field: "source_id",
            message: "source_id must be a Hostinger VM id (an integer)".to_owned(),
        })?;
        if request
            .description
            .as_deref()
            .is_some_and(|d| !d.trim().is_empty())
        {
            return Err(ProviderError::Invalid {
                field: "description",
                message: "Hostinger snapshots have no description".to_owned(),
            });
        }
        // Hostinger snapshots have no name: `request.name` is not sent.
        if !request.replace_existing {
            if let Some(existing) = self.snapshot_of(ctx, "create", vm).await? {
                let created = existing.created_at.map_or_else(
                    || "at an unknown time".to_owned(),
                    |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
                );
                return Err(ProviderError::SnapshotExists {
                    message: format!(
                        "VM {vm} already has a snapshot (created {created}); creating replaces it \
                         — send replace_existing: true"
                    ),
                });
            }
        }
        let path = format!("/virtual-machines/{vm}/snapshot");
        self.act(ctx, "create", Method::POST, vm, &path).await
    }

    async fn delete(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<Submitted, ProviderError> {
        let vm = check::numeric(native_id)?;
        let path = format!("/virtual-machines/{vm}/snapshot");
        self.act(ctx, "delete", Method::DELETE, vm, &path).await
    }

    async fn restore(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        _request: &RestoreRequest,
    ) -> Result<Submitted, ProviderError> {
        let vm = check::numeric(native_id)?;
        let path = format!("/virtual-machines/{vm}/snapshot/restore");
        self.act(ctx, "restore", Method::POST, vm, &path).await
    }

    /// `GET /virtual-machines`: one bare array, no paging; VMs being destroyed are left out.
    async fn list_sources(
        &self,
        ctx: &CallContext<'_>,
    ) -> Result<Vec<AccountSource>, ProviderError> {
        let vms = self.vms(ctx, "sources").await?;
        let listed = vms
            .into_iter()
            .map(|vm| AccountSource {
                id: vm.id.0,
                name: vm.hostname,
                kind: SourceKind::Vm,
                status: vm.state,
            })
            .collect();
        Ok(super::SourcePage::of(listed, &["destroying", "destroyed"], 0).sources)
    }

    async fn poll(
        &self,
        ctx: &CallContext<'_>,
        operation: &PollRequest<'_>,
    ) -> Result<Progress, ProviderError> {
        let vm = operation
            .tracking::<Tracking>()
            .map(|t| t.vm_id.0)
            .or_else(|| operation.native_id.map(str::to_owned));
        let (Some(vm), Some(action)) = (vm, operation.vendor_ref.id.as_deref()) else {
            return Ok(Progress::failed(ProviderError::Upstream {
                status: None,
                message: "the operation has no Hostinger action to follow".to_owned(),
            }));
        };
        let (Ok(vm), Ok(action)) = (check::numeric(&vm), check::numeric(action)) else {
            return Ok(Progress::failed(ProviderError::NotFound));
        };
        let path = format!("/virtual-machines/{vm}/actions/{action}");
        let reply: WireAction = match self
            .http
            .call(ctx, "poll", Method::GET, &path, &[], None)
            .await
        {
            Ok(reply) => reply.json(KIND)?,
            Err(ProviderError::NotFound) => return Ok(Progress::failed(ProviderError::NotFound)),
            Err(e) => return Err(e),
        };
        Ok(match action_state(&reply.state) {
            OperationState::Failed => Progress::failed(action_failed(&reply.id)),
            OperationState::Succeeded => Progress {
                native_id: Some(vm.to_owned()),
                ..Progress::succeeded()
            },
            _ => Progress::running(),
        })
    }
}

fn action_failed(id: &Id) -> ProviderError {
    ProviderError::Upstream {
        status: None,
        message: format!("Hostinger action {id} failed"),
    }
}

// ---- wire types (private) ----

#[derive(Deserialize)]
struct WireVm {
    id: Id,
    data_center_id: Option<Id>,
    hostname: Option<String>,
    state: Option<String>,
}

/// `GET /data-centers` item: `{id, name, location, city, continent}`.
#[derive(Deserialize)]
struct WireDataCentre {
    id: Id,
    name: Option<String>,
}

#[derive(Deserialize)]
struct WireSnapshot {
    id: Option<Id>,
    #[serde(default, deserialize_with = "wire::time")]
    created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::time")]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct WireAction {
    id: Id,
    #[serde(default)]
    state: String,
}

/// What `Submitted.tracking` holds for every Hostinger operation.
#[derive(Deserialize)]
struct Tracking {
    vm_id: Id,
}

// ---- conversions ----

/// Reads `GET …/snapshot`: an empty, `null`, `{}` or `[]` body means the VM has none.
fn decode_snapshot(vm: &str, reply: &Reply) -> Result<Option<VendorSnapshot>, ProviderError> {
    let body = reply.body.trim_ascii();
    if body.is_empty() || body == b"[]" {
        return Ok(None);
    }
    match reply.json::<Option<Box<RawValue>>>(KIND)? {
        Some(raw) => to_domain(vm, raw),
        None => Ok(None),
    }
}

fn to_domain(vm: &str, raw: Box<RawValue>) -> Result<Option<VendorSnapshot>, ProviderError> {
    let w: WireSnapshot = check::decode(KIND, &raw)?;
    if w.id.is_none() && w.created_at.is_none() {
        return Ok(None);
    }
    Ok(Some(VendorSnapshot {
        // Every snapshot path is VM-scoped: the VM id is the snapshot's id (its own `id`
        // stays in the raw vendor object).
        native_id: vm.to_owned(),
        name: None,
        description: None,
        // A snapshot the vendor returns exists and is usable; pending work is the
        // gateway's operations overlay.
        status: SnapshotStatus::Available,
        vendor_status: None,
        size_gb: None,
        created_at: w.created_at,
        expires_at: w.expires_at,
        source: Some(Source {
            kind: SourceKind::Vm,
            id: vm.to_owned(),
        }),
        region: None,
        vendor: Some(raw),
    }))
}

/// Action `state` → operation state: `success` and `error` end it; `created`, `sent`,
/// `delayed` and unknown values keep it running.
fn action_state(state: &str) -> OperationState {
    match state.to_ascii_lowercase().as_str() {
        "success" => OperationState::Succeeded,
        "error" => OperationState::Failed,
        // `created`, `sent`, `delayed`, and anything new.
        _ => OperationState::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &str) -> Reply {
        Reply {
            status: reqwest::StatusCode::OK,
            headers: Default::default(),
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn action_states_map_per_the_summary_table() {
        assert_eq!(action_state("created"), OperationState::Running);
        assert_eq!(action_state("sent"), OperationState::Running);
        assert_eq!(action_state("delayed"), OperationState::Running);
        assert_eq!(action_state("success"), OperationState::Succeeded);
        assert_eq!(action_state("error"), OperationState::Failed);
        assert_eq!(action_state("something_new"), OperationState::Running);
    }

    #[test]
    fn a_snapshot_is_keyed_by_its_vm_and_keeps_the_raw_object() {
        let body = r#"{"id": 325871, "restore_time": 1800,
            "created_at": "2025-03-11T09:15:42Z", "expires_at": "2025-03-31T09:15:42Z"}"#;
        let s = decode_snapshot("1268054", &reply(body)).unwrap().unwrap();
        assert_eq!(s.native_id, "1268054");
        assert_eq!(s.name, None);
        assert_eq!(s.status, SnapshotStatus::Available);
        assert_eq!(
            s.source,
            Some(Source {
                kind: SourceKind::Vm,
                id: "1268054".to_owned()
            })
        );
        assert_eq!(
            s.created_at.unwrap().to_rfc3339(),
            "2025-03-11T09:15:42+00:00"
        );
        assert_eq!(
            s.expires_at.unwrap().to_rfc3339(),
            "2025-03-31T09:15:42+00:00"
        );
        assert!(s.vendor.unwrap().get().contains("325871"));
    }

    #[test]
    fn every_empty_answer_means_the_vm_has_no_snapshot() {
        for body in ["", "  \n", "null", "{}", "[]"] {
            assert!(
                decode_snapshot("1", &reply(body)).unwrap().is_none(),
                "{body:?}"
            );
        }
        assert!(matches!(
            decode_snapshot("1", &reply("<html>")),
            Err(ProviderError::Upstream { .. })
        ));
    }

    #[test]
    fn actions_and_vm_lists_decode_from_the_documented_shapes() {
        let a: WireAction = serde_json::from_str(
            r#"{"id": 8123712, "name": "snapshot_create", "state": "sent",
                "created_at": "2025-03-11T09:15:40Z", "updated_at": "2025-03-11T09:15:44Z"}"#,
        )
        .unwrap();
        assert_eq!((a.id.0.as_str(), a.state.as_str()), ("8123712", "sent"));
        let vms: Vec<WireVm> = serde_json::from_str(
            r#"[{"id": 1268054, "data_center_id": 17, "hostname": "srv1268054.hstgr.cloud",
                 "ipv4": [{"id": 52347, "address": "203.0.113.10", "ptr": null}], "ipv6": null},
                {"id": 1268311, "data_center_id": 21, "state": "stopped"}]"#,
        )
        .unwrap();
        assert_eq!(
            vms.iter().map(|v| v.id.0.as_str()).collect::<Vec<_>>(),
            ["1268054", "1268311"]
        );
    }

    #[test]
    fn error_bodies_give_the_vendor_message() {
        let unprocessable = br#"{"message": "The virtual machine is locked. (and 1 more error)",
            "errors": {"virtual_machine": ["The virtual machine is locked."]},
            "correlation_id": "5f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}"#;
        assert_eq!(
            wire::error_message(unprocessable).unwrap(),
            "The virtual machine is locked. (and 1 more error): virtual_machine: The virtual \
             machine is locked. [correlation_id 5f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d]"
        );
        let unauthorized = br#"{"message": "Unauthenticated", "correlation_id": "26a9"}"#;
        assert_eq!(
            wire::error_message(unauthorized).unwrap(),
            "Unauthenticated [correlation_id 26a9]"
        );
    }
}
