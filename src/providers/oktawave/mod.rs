//! Oktawave (OCI services API): instance snapshots, OAuth2 password-grant tokens, tickets.
//!
//! Quirks: PascalCase JSON but camelCase query parameters; the region is chosen by base URL;
//! snapshots have no status or size; create, delete and restore answer a ticket
//! (`GET /tickets/{id}`: done once `EndDate` is set, `Status.Id` 136 = succeeded) and a
//! create's snapshot id is found in the instance's list (already while the ticket runs if
//! Oktawave lists it early: it is then `creating` until the ticket ends); update is a synchronous
//! full replace (`Name` is required); whether `pageNumber` counts from 0 or 1 is undocumented,
//! so the list starts with an unnumbered page and skips pages that bring nothing new.

use async_trait::async_trait;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{json, value::RawValue};

use super::{
    check,
    http::{self, Auth, Request, VendorHttp},
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
    upstream::{Reply, Upstream},
};

const KIND: ProviderKind = ProviderKind::Oktawave;
const PAGE_SIZE: usize = 100;
/// `CreateUpdateSnapshotCommand.Name` is 1 to 500 characters.
const MAX_NAME: usize = 500;
/// Characters `Name` must not contain (`^[^/\\|<>%]*$`).
const NAME_FORBIDDEN: &[char] = &['/', '\\', '|', '<', '>', '%'];
/// Ticket status dictionary (#40): 134 new, 135 running, 136 succeeded, 137 error.
const TICKET_SUCCEEDED: &str = "136";

pub(super) static INFO: ProviderInfo = ProviderInfo {
    kind: KIND,
    display_name: "Oktawave",
    source_kind: SourceKind::Instance,
    credential_fields: &[
        FieldSpec::required("client_id", "OAuth2 API client id"),
        FieldSpec::required("client_secret", "OAuth2 API client secret"),
        FieldSpec::required("username", "Oktawave login"),
        FieldSpec::required("password", "Oktawave password"),
    ],
    setting_fields: &[FieldSpec::required(
        "region",
        "Region, chosen by base URL: pl1 (Warsaw) or pl2 (Kraków)",
    )
    .one_of(&["pl1", "pl2"])],
    capabilities: Capabilities {
        list: true,
        get: true,
        create: true,
        create_replaces_existing: false,
        rename: true,
        describe: true,
        delete: true,
        restore: true,
        restore_to_new_resource: false,
        restore_to_other_target: false,
        restore_in_place: true,
        create_image: false,
        name_availability: false,
        list_sources: true,
    },
    auth: Auth::Obtained,
    rate_limits: RateLimits::PER_ACCOUNT,
};

/// `providers.oktawave`: Oktawave picks the region by base URL and issues tokens from a
/// separate identity server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Endpoints {
    /// Serves every region unless a region-specific URL is set.
    base_url: Option<String>,
    pl1_base_url: Option<String>,
    pl2_base_url: Option<String>,
    /// OAuth2 token endpoint (password grant).
    token_url: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            base_url: None,
            pl1_base_url: None,
            pl2_base_url: None,
            token_url: "https://id.oktawave.com/core/connect/token".to_owned(),
        }
    }
}

impl Endpoints {
    /// The services URL for a region (`pl1` or `pl2`).
    fn base_url_for(&self, region: &str) -> String {
        let specific = match region {
            "pl2" => self.pl2_base_url.as_ref(),
            _ => self.pl1_base_url.as_ref(),
        };
        specific
            .or(self.base_url.as_ref())
            .cloned()
            .unwrap_or_else(|| format!("https://{region}-api.oktawave.com/services"))
    }
}

/// The Oktawave adapter.
pub struct Oktawave {
    endpoints: Endpoints,
    /// Its base URL is the account region's ([`Endpoints::base_url_for`]).
    http: VendorHttp,
    tokens: token::TokenCache,
}

impl Oktawave {
    pub fn new(config: &ProvidersConfig, http: Upstream) -> Result<Self, ProviderConfigError> {
        let endpoints: Endpoints = config.of(KIND)?;
        Ok(Self {
            http: VendorHttp::new(&INFO, endpoints.base_url_for("pl1"), http),
            endpoints,
            tokens: token::TokenCache::default(),
        })
    }

    fn base_url(&self, ctx: &CallContext<'_>) -> String {
        self.endpoints.base_url_for(region(ctx))
    }

    /// Sends an authenticated call; a 401 means the token died early: refresh once and retry.
    async fn call(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&SnapshotCommand<'_>>,
    ) -> Result<Reply, ProviderError> {
        let base_url = self.base_url(ctx);
        let body =
            body.map(serde_json::to_value)
                .transpose()
                .map_err(|e| ProviderError::Upstream {
                    status: None,
                    message: format!("could not encode the Oktawave request ({e})"),
                })?;
        let request = || Request {
            operation,
            method: method.clone(),
            path,
            query,
            body: body.clone(),
        };
        let token = self.token(ctx, None).await?;
        let auth = Some(http::bearer(token.expose_secret())?);
        match self.http.send(ctx, &base_url, auth, request()).await {
            Err(ProviderError::Auth { status: 401 }) => {
                let fresh = self.token(ctx, Some(&token)).await?;
                let auth = Some(http::bearer(fresh.expose_secret())?);
                self.http.send(ctx, &base_url, auth, request()).await
            }
            other => other,
        }
    }

    async fn page(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        instance: Option<i32>,
        number: Option<usize>,
        size: usize,
    ) -> Result<Collection, ProviderError> {
        let mut query = Vec::with_capacity(3);
        if let Some(instance) = instance {
            query.push(("instanceId", instance.to_string()));
        }
        query.push(("pageSize", size.to_string()));
        if let Some(number) = number {
            query.push(("pageNumber", number.to_string()));
        }
        self.call(ctx, operation, Method::GET, "/snapshots", &query, None)
            .await?
            .json(KIND)
    }

    async fn ticket(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<&SnapshotCommand<'_>>,
    ) -> Result<WireTicket, ProviderError> {
        self.call(ctx, operation, method, path, &[], body)
            .await?
            .json(KIND)
    }

    /// After a create ticket succeeds: the instance's newest snapshot with the tracked name.
    /// The newest snapshot of the instance with the create's name (taken after `not_before`,
    /// when given).
    async fn find_created(
        &self,
        ctx: &CallContext<'_>,
        tracking: &Tracking,
        not_before: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Option<WireSnapshot>, ProviderError> {
        let path = format!("/instances/{}/snapshots", tracking.instance_id);
        let reply: Collection = self
            .call(ctx, "poll", Method::GET, &path, &[], None)
            .await?
            .json(KIND)?;
        let mut newest: Option<WireSnapshot> = None;
        for raw in &reply.items {
            let w = decode(raw)?;
            let better = newest
                .as_ref()
                .is_none_or(|n| w.creation_date >= n.creation_date);
            let recent = not_before.is_none_or(|t| w.creation_date.is_some_and(|c| c >= t));
            if w.name.as_deref() == Some(tracking.name.as_str()) && better && recent {
                newest = Some(w);
            }
        }
        Ok(newest)
    }

    /// After a create ticket succeeded: its snapshot, which must have appeared after the
    /// request — the one named while the ticket ran, or the newest of that name taken since.
    /// An older snapshot of the same name is never the answer: while none is listed yet
    /// (Oktawave's listing may lag the ticket) the create keeps running, for at most
    /// [`LISTING_LAG`] after the ticket ended, then fails saying so.
    async fn resolve_created(
        &self,
        ctx: &CallContext<'_>,
        operation: &PollRequest<'_>,
        ticket: &str,
        ended: Option<chrono::DateTime<chrono::Utc>>,
        tracking: &Tracking,
    ) -> Result<Progress, ProviderError> {
        if let Some(id) = operation.native_id {
            return Ok(Progress {
                native_id: Some(id.to_owned()),
                ..Progress::succeeded()
            });
        }
        let not_before = operation.created_at - CLOCK_SKEW;
        if let Some(w) = self.find_created(ctx, tracking, Some(not_before)).await? {
            return Ok(Progress {
                native_id: Some(w.id.0),
                ..Progress::succeeded()
            });
        }
        let waited_since = ended.unwrap_or(operation.created_at);
        if chrono::Utc::now() - waited_since < LISTING_LAG {
            return Ok(Progress::running());
        }
        Ok(Progress::failed(ProviderError::Upstream {
            status: None,
            message: format!(
                "Oktawave ticket {ticket} succeeded but instance {} lists no snapshot named `{}` \
                 taken after the request, {} minutes after the ticket ended",
                tracking.instance_id,
                tracking.name,
                LISTING_LAG.num_minutes()
            ),
        }))
    }
}

impl Oktawave {
    /// A create whose snapshot is already listed while its ticket runs names it (so the
    /// snapshot shows as `creating`, not `available`, until the ticket ends); nothing is done
    /// before the ticket says so.
    async fn while_ticket_runs(
        &self,
        ctx: &CallContext<'_>,
        operation: &PollRequest<'_>,
    ) -> Result<Progress, ProviderError> {
        let tracking = match operation.tracking::<Tracking>() {
            Some(t) if operation.kind == OperationKind::Create && operation.native_id.is_none() => {
                t
            }
            _ => return Ok(Progress::running()),
        };
        let not_before = operation.created_at - CLOCK_SKEW;
        let early = self.find_created(ctx, &tracking, Some(not_before)).await?;
        Ok(Progress {
            native_id: early.map(|w| w.id.0),
            ..Progress::running()
        })
    }
}

/// A snapshot's `CreationDate` may precede our submit time by the vendor's clock skew.
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// How long after a create ticket ends its snapshot may take to be listed.
const LISTING_LAG: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

fn region<'a>(ctx: &'a CallContext<'_>) -> &'a str {
    ctx.setting("region").unwrap_or("pl1")
}

/// Snapshot and instance ids are int32: anything else cannot exist there.
fn int32(id: &str) -> Option<i32> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

fn snapshot_id(id: &str) -> Result<i32, ProviderError> {
    int32(id).ok_or(ProviderError::NotFound)
}

fn check_name(name: &str) -> Result<(), ProviderError> {
    check::name(KIND, "name", name, MAX_NAME)?;
    if name.contains(NAME_FORBIDDEN) {
        return Err(ProviderError::Invalid {
            field: "name",
            message: "an Oktawave snapshot name must not contain / \\ | < > %".to_owned(),
        });
    }
    Ok(())
}

fn check_description(description: &str) -> Result<(), ProviderError> {
    if description.contains('/') {
        return Err(ProviderError::Invalid {
            field: "description",
            message: "an Oktawave snapshot description must not contain /".to_owned(),
        });
    }
    Ok(())
}

#[async_trait]
impl ProviderAdapter for Oktawave {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    async fn verify(&self, ctx: &CallContext<'_>) -> Result<(), ProviderError> {
        self.page(ctx, "verify", None, Some(1), 1).await.map(|_| ())
    }

    async fn list(
        &self,
        ctx: &CallContext<'_>,
        filter: &ListFilter<'_>,
    ) -> Result<Listed, ProviderError> {
        let source_id = filter.source_id;
        let instance = match source_id {
            // No instance has that id: nothing to list.
            Some(s) => match int32(s) {
                Some(id) => Some(id),
                None => return Ok(Listed::default()),
            },
            None => None,
        };
        let region = region(ctx);
        let mut out = Vec::new();
        let mut ids = std::collections::HashSet::new();
        // Nothing documents whether `pageNumber` starts at 0 or 1. The first request names no
        // number (the vendor's own first page either way); then numbers count from 1, where a
        // 1-based API repeats the first page once (nothing new, tolerated) and a 0-based one
        // goes on. The walk ends as every adapter's does (`ListWalk`): at an empty page or
        // when `Meta.Total` agrees with what was read — never at a short page alone.
        let mut walk = super::ListWalk::new(KIND);
        for number in std::iter::once(None).chain((1..).map(Some)) {
            let page = self.page(ctx, "list", instance, number, PAGE_SIZE).await?;
            let n = page.items.len();
            let mut new = 0;
            for raw in page.items {
                let snapshot = to_domain(raw, region)?;
                if ids.insert(snapshot.native_id.clone()) {
                    new += 1;
                    out.push(snapshot);
                }
            }
            let signals = super::PageSignals {
                items: n,
                new,
                total: page
                    .meta
                    .and_then(|m| m.total)
                    .and_then(|t| usize::try_from(t).ok()),
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
        let path = format!("/snapshots/{}", snapshot_id(native_id)?);
        let reply: Box<RawValue> = self
            .call(ctx, "get", Method::GET, &path, &[], None)
            .await?
            .json(KIND)?;
        to_domain(reply, region(ctx))
    }

    async fn create(
        &self,
        ctx: &CallContext<'_>,
        request: &CreateRequest,
    ) -> Result<Submitted, ProviderError> {
        check_name(&request.name)?;
        if let Some(d) = request.description.as_deref() {
            check_description(d)?;
        }
        if request.replace_existing {
            return Err(ProviderError::Invalid {
                field: "replace_existing",
                message: "Oktawave keeps any number of snapshots per instance; nothing is replaced"
                    .to_owned(),
            });
        }
        let instance = int32(&request.source_id).ok_or_else(|| ProviderError::Invalid {
            field: "source_id",
            message: "source_id must be an Oktawave instance id (an integer)".to_owned(),
        })?;
        let body = SnapshotCommand {
            name: &request.name,
            description: request.description.as_deref(),
        };
        let path = format!("/instances/{instance}/snapshots");
        let ticket = self
            .ticket(ctx, "create", Method::POST, &path, Some(&body))
            .await?;
        // The ticket does not name the new snapshot: poll finds it by name on the instance.
        let tracking = json!({ "instance_id": instance.to_string(), "name": request.name });
        Ok(submitted(ticket, None, tracking))
    }

    async fn update(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        request: &UpdateRequest,
    ) -> Result<Submitted, ProviderError> {
        let id = snapshot_id(native_id)?;
        if request.name.is_none() && request.description.is_none() {
            return Err(ProviderError::Invalid {
                field: "name",
                message: "give a name, a description or both".to_owned(),
            });
        }
        if let Some(name) = request.name.as_deref() {
            check_name(name)?;
        }
        if let Some(d) = request.description.as_deref() {
            check_description(d)?;
        }
        // PUT replaces both fields and `Name` is required: fill what the caller left out.
        let (name, description) = match (&request.name, &request.description) {
            (Some(n), Some(d)) => (Some(n.clone()), Some(d.clone())),
            (n, d) => {
                let current = self.get(ctx, native_id).await?;
                (
                    n.clone().or(current.name),
                    d.clone().or(current.description),
                )
            }
        };
        let name = name.ok_or_else(|| ProviderError::Invalid {
            field: "name",
            message: "the snapshot has no name at Oktawave: give one".to_owned(),
        })?;
        let body = SnapshotCommand {
            name: &name,
            description: Some(description.as_deref().unwrap_or_default()),
        };
        let path = format!("/snapshots/{id}");
        let reply: Box<RawValue> = self
            .call(ctx, "rename", Method::PUT, &path, &[], Some(&body))
            .await?
            .json(KIND)?;
        let snapshot = to_domain(reply, region(ctx))?;
        Ok(Submitted::finished(Some(snapshot), None))
    }

    async fn delete(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<Submitted, ProviderError> {
        let path = format!("/snapshots/{}", snapshot_id(native_id)?);
        let ticket = self
            .ticket(ctx, "delete", Method::DELETE, &path, None)
            .await?;
        Ok(submitted(
            ticket,
            Some(native_id.to_owned()),
            serde_json::Value::Null,
        ))
    }

    async fn restore(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        _request: &RestoreRequest,
    ) -> Result<Submitted, ProviderError> {
        let path = format!("/snapshots/{}/restore_ticket", snapshot_id(native_id)?);
        let ticket = self
            .ticket(ctx, "restore", Method::POST, &path, None)
            .await?;
        Ok(submitted(
            ticket,
            Some(native_id.to_owned()),
            serde_json::Value::Null,
        ))
    }

    /// `GET /instances`, numbered as the snapshot list is (the first page unnumbered, then
    /// from 1), until an empty page or `Meta.Total` agrees; deleted instances (status 126)
    /// are left out.
    async fn list_sources(
        &self,
        ctx: &CallContext<'_>,
    ) -> Result<Vec<AccountSource>, ProviderError> {
        super::walk_sources(KIND, |n| async move {
            let mut query = vec![("pageSize", PAGE_SIZE.to_string())];
            if n > 1 {
                query.push(("pageNumber", (n - 1).to_string()));
            }
            let page: Instances = self
                .call(ctx, "sources", Method::GET, "/instances", &query, None)
                .await?
                .json(KIND)?;
            let (deleted, live): (Vec<ListedInstance>, Vec<ListedInstance>) = page
                .items
                .into_iter()
                .partition(|i| i.status.as_ref().and_then(|s| s.id) == Some(INSTANCE_DELETED));
            let sources = live
                .into_iter()
                .map(|i| AccountSource {
                    id: i.id.0,
                    name: i.name,
                    kind: SourceKind::Instance,
                    status: i.status.and_then(|s| s.label),
                })
                .collect();
            Ok(super::SourcePage {
                gone: deleted.into_iter().map(|i| i.id.0).collect(),
                sources,
                total: page.meta.and_then(|m| usize::try_from(m.total?).ok()),
                more: None,
                asked: PAGE_SIZE,
            })
        })
        .await
    }

    async fn poll(
        &self,
        ctx: &CallContext<'_>,
        operation: &PollRequest<'_>,
    ) -> Result<Progress, ProviderError> {
        if operation.vendor_ref.kind != VendorRefKind::Ticket {
            // Only update is synchronous, and it finished when it answered.
            return Ok(Progress::succeeded());
        }
        let Some(ticket_id) = operation
            .vendor_ref
            .id
            .as_deref()
            .filter(|id| id.parse::<i64>().is_ok_and(|n| n > 0))
        else {
            return Ok(Progress::failed(ProviderError::Upstream {
                status: None,
                message: "the operation holds no Oktawave ticket id".to_owned(),
            }));
        };
        let path = format!("/tickets/{ticket_id}");
        let ticket: WireTicket = self
            .call(ctx, "poll", Method::GET, &path, &[], None)
            .await?
            .json(KIND)?;
        if ticket.end_date.is_none() {
            return self.while_ticket_runs(ctx, operation).await;
        }
        let succeeded = ticket
            .status
            .and_then(|s| s.id)
            .is_some_and(|id| id.0 == TICKET_SUCCEEDED);
        if !succeeded {
            return Ok(Progress::failed(ProviderError::Upstream {
                status: None,
                message: format!("Oktawave ticket {ticket_id} failed"),
            }));
        }
        if operation.kind != OperationKind::Create {
            return Ok(Progress::succeeded());
        }
        match operation.tracking::<Tracking>() {
            Some(tracking) => {
                self.resolve_created(ctx, operation, ticket_id, ticket.end_date, &tracking)
                    .await
            }
            None => Ok(Progress::failed(ProviderError::Upstream {
                status: None,
                message: format!(
                    "Oktawave ticket {ticket_id} succeeded but the new snapshot cannot be identified"
                ),
            })),
        }
    }
}

/// Work the vendor took as a ticket: running until `GET /tickets/{id}` says otherwise.
fn submitted(
    ticket: WireTicket,
    native_id: Option<String>,
    tracking: serde_json::Value,
) -> Submitted {
    Submitted {
        state: OperationState::Running,
        snapshot: None,
        native_id,
        vendor_ref: VendorRef {
            kind: VendorRefKind::Ticket,
            id: Some(ticket.id.0),
        },
        result: None,
        tracking,
        assumed: None,
    }
}

mod types;
use types::*;

mod token;

#[cfg(test)]
mod tests;
