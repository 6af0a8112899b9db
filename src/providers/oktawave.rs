//! Oktawave (OCI services API): instance snapshots, OAuth2 password-grant tokens, tickets.
//!
//! Quirks: PascalCase JSON but camelCase query parameters; the region is chosen by base URL;
//! snapshots have no status or size; create, delete and restore answer a ticket
//! (`GET /tickets/{id}`: done once `EndDate` is set, `Status.Id` 136 = succeeded) and a
//! create's snapshot id is found afterwards in the instance's list; update is a synchronous
//! full replace (`Name` is required).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, value::RawValue};
use sha2::{Digest, Sha256};

use super::{
    wire::{self, Id},
    CallContext, CreateRequest, ListFilter, Progress, ProviderAdapter, ProviderError, ProviderInfo,
    RestoreRequest, Submitted, UpdateRequest,
};
use crate::{
    config::{OktawaveEndpoint, ProvidersConfig},
    domain::{
        Capabilities, FieldSpec, Operation, OperationKind, OperationState, ProviderKind,
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
/// Read/write API access (`oktawave.api.readonly` would make every change a 403).
const SCOPE: &str = "oktawave.api";
/// A token is replaced this long before its stated expiry, so no call carries a dying one.
const REFRESH_EARLY: Duration = Duration::from_secs(30);
/// Lifetime assumed when the identity server does not say (`expires_in` absent).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Ticket status dictionary (#40): 134 new, 135 running, 136 succeeded, 137 error.
const TICKET_SUCCEEDED: &str = "136";

static INFO: ProviderInfo = ProviderInfo {
    kind: KIND,
    display_name: "Oktawave",
    source_kind: "instance",
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
        create_image: false,
        name_availability: false,
    },
};

/// The Oktawave adapter.
pub struct Oktawave {
    endpoints: OktawaveEndpoint,
    http: Upstream,
    tokens: TokenCache,
}

/// Access tokens by credential set; each set has its own lock so one refresh serves every
/// concurrent caller (single flight) while other accounts proceed.
#[derive(Default)]
struct TokenCache {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>>,
}

struct Token {
    access: SecretString,
    fresh_until: Instant,
}

impl Token {
    fn fresh(&self) -> bool {
        Instant::now() < self.fresh_until
    }
}

impl TokenCache {
    fn slot(&self, key: String) -> Arc<tokio::sync::Mutex<Option<Token>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if !slots.contains_key(&key) {
            // Credentials rotate: drop idle slots whose token has expired (or never came).
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot
                        .try_lock()
                        .map_or(true, |t| t.as_ref().is_some_and(Token::fresh))
            });
        }
        slots.entry(key).or_default().clone()
    }
}

impl Oktawave {
    pub fn new(config: &ProvidersConfig, http: Upstream) -> Self {
        Self {
            endpoints: config.oktawave.clone(),
            http,
            tokens: TokenCache::default(),
        }
    }

    /// A valid access token for the account: the cached one, or a new one when there is
    /// none, it is about to expire, or it is `stale` (the API just refused it).
    async fn token(
        &self,
        ctx: &CallContext<'_>,
        stale: Option<&SecretString>,
    ) -> Result<SecretString, ProviderError> {
        let slot = self.tokens.slot(cache_key(ctx));
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref() {
            let refused = stale.is_some_and(|s| s.expose_secret() == token.access.expose_secret());
            if token.fresh() && !refused {
                return Ok(token.access.clone());
            }
        }
        *cached = None;
        let token = self.fetch_token(ctx).await?;
        let access = token.access.clone();
        *cached = Some(token);
        Ok(access)
    }

    async fn fetch_token(&self, ctx: &CallContext<'_>) -> Result<Token, ProviderError> {
        let form = [
            ("grant_type", "password"),
            ("username", ctx.secret("username")),
            ("password", ctx.secret("password")),
            ("scope", SCOPE),
        ];
        let rb = self
            .http
            .request(Method::POST, &self.endpoints.token_url)
            .basic_auth(ctx.secret("client_id"), Some(ctx.secret("client_secret")))
            .form(&form);
        let requested = Instant::now();
        let reply: TokenReply = self
            .http
            .send(KIND, "token", rb, wire::error_message)
            .await
            // The identity server answers 400 (`invalid_grant`, `invalid_client`) for bad credentials.
            .map_err(|e| match e {
                ProviderError::Rejected { status, .. } => ProviderError::Auth { status },
                other => other,
            })?
            .json(KIND)?;
        if reply.access_token.is_empty() {
            return Err(ProviderError::Upstream {
                status: None,
                message: "Oktawave's identity server answered without an access token".to_owned(),
            });
        }
        Ok(Token {
            access: reply.access_token.into(),
            fresh_until: requested + usable_for(reply.expires_in),
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
        let url = wire::url(&self.base_url(ctx), path);
        let send = |token: SecretString| {
            let mut rb = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose_secret());
            if !query.is_empty() {
                rb = rb.query(query);
            }
            if let Some(body) = body {
                rb = rb.json(body);
            }
            self.http.send(KIND, operation, rb, wire::error_message)
        };
        let token = self.token(ctx, None).await?;
        match send(token.clone()).await {
            Err(ProviderError::Auth { status: 401 }) => {
                let fresh = self.token(ctx, Some(&token)).await?;
                send(fresh).await
            }
            other => other,
        }
    }

    async fn page(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        instance: Option<i32>,
        number: usize,
        size: usize,
    ) -> Result<Collection, ProviderError> {
        let mut query = Vec::with_capacity(3);
        if let Some(instance) = instance {
            query.push(("instanceId", instance.to_string()));
        }
        query.push(("pageSize", size.to_string()));
        query.push(("pageNumber", number.to_string()));
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
    async fn resolve_created(
        &self,
        ctx: &CallContext<'_>,
        ticket: &str,
        tracking: &Tracking,
    ) -> Result<Progress, ProviderError> {
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
            if w.name.as_deref() == Some(tracking.name.as_str()) && better {
                newest = Some(w);
            }
        }
        Ok(match newest {
            Some(w) => Progress {
                native_id: Some(w.id.0),
                ..Progress::succeeded()
            },
            None => Progress::failed(ProviderError::Upstream {
                status: None,
                message: format!(
                    "Oktawave ticket {ticket} succeeded but instance {} has no snapshot named `{}`",
                    tracking.instance_id, tracking.name
                ),
            }),
        })
    }
}

/// Keys the token cache by tenant, account and every credential value, hashed: a rotated
/// secret gets a new token, and no secret is kept in the key.
fn cache_key(ctx: &CallContext<'_>) -> String {
    let mut h = Sha256::new();
    let parts = [
        ctx.account.tenant.as_str(),
        ctx.account.id.as_str(),
        ctx.secret("client_id"),
        ctx.secret("client_secret"),
        ctx.secret("username"),
        ctx.secret("password"),
    ];
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// How long a token may be used: its lifetime less the early-refresh margin (at most half).
fn usable_for(expires_in: Option<f64>) -> Duration {
    let lifetime = expires_in
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_LIFETIME, |s| Duration::from_secs_f64(s.min(1e9)));
    lifetime - REFRESH_EARLY.min(lifetime / 2)
}

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
    let n = name.chars().count();
    if name.trim().is_empty() || n > MAX_NAME {
        return Err(ProviderError::Invalid {
            field: "name",
            message: format!("name must be 1 to {MAX_NAME} characters for Oktawave"),
        });
    }
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
        self.page(ctx, "verify", None, 1, 1).await.map(|_| ())
    }

    async fn list(
        &self,
        ctx: &CallContext<'_>,
        filter: &ListFilter<'_>,
    ) -> Result<Vec<VendorSnapshot>, ProviderError> {
        let source_id = filter.source_id;
        let instance = match source_id {
            // No instance has that id: nothing to list.
            Some(s) => match int32(s) {
                Some(id) => Some(id),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let region = region(ctx);
        let mut out = Vec::new();
        let mut seen = 0;
        // Page numbers start at 1; `Meta.Total` says when to stop (a short page, if it is absent).
        for number in 1.. {
            let page = self.page(ctx, "list", instance, number, PAGE_SIZE).await?;
            let n = page.items.len();
            seen += n;
            for raw in page.items {
                out.push(to_domain(raw, region)?);
            }
            let total = page.meta.and_then(|m| m.total);
            if n == 0 || total.map_or(n < PAGE_SIZE, |t| seen as u64 >= t) {
                break;
            }
        }
        Ok(out)
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
        request: &RestoreRequest,
    ) -> Result<Submitted, ProviderError> {
        if request.target_id.is_some() {
            return Err(ProviderError::Invalid {
                field: "target_id",
                message:
                    "Oktawave restores a snapshot onto its own instance; target_id is not accepted"
                        .to_owned(),
            });
        }
        if request.new_name.is_some() {
            return Err(ProviderError::Invalid {
                field: "new_name",
                message: "Oktawave restores in place; new_name is not accepted".to_owned(),
            });
        }
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

    async fn poll(
        &self,
        ctx: &CallContext<'_>,
        operation: &Operation,
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
            return Ok(Progress::running());
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
        match Tracking::deserialize(&operation.tracking) {
            Ok(tracking) => self.resolve_created(ctx, ticket_id, &tracking).await,
            Err(_) => Ok(Progress::failed(ProviderError::Upstream {
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
    }
}

// ---- wire types (private) ----

/// `CreateUpdateSnapshotCommand`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SnapshotCommand<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

/// RFC 6749 §5.1 token response.
#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default, deserialize_with = "wire::lenient_f64")]
    expires_in: Option<f64>,
}

/// `ApiCollection[T]`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Collection {
    #[serde(default)]
    items: Vec<Box<RawValue>>,
    meta: Option<Meta>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Meta {
    total: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireSnapshot {
    id: Id,
    name: Option<String>,
    description: Option<String>,
    instance: Option<WireRef>,
    #[serde(default, deserialize_with = "wire::time")]
    creation_date: Option<chrono::DateTime<chrono::Utc>>,
}

/// `BaseResource`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireRef {
    id: Option<Id>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireTicket {
    id: Id,
    #[serde(default, deserialize_with = "wire::time")]
    end_date: Option<chrono::DateTime<chrono::Utc>>,
    status: Option<DictionaryItem>,
}

/// `DictionaryItem`: keyed on `Id` only, the `Label` is localized.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DictionaryItem {
    id: Option<Id>,
}

/// What a create operation remembers to find its snapshot once the ticket ends.
#[derive(Deserialize)]
struct Tracking {
    instance_id: String,
    name: String,
}

// ---- conversions ----

fn decode(raw: &RawValue) -> Result<WireSnapshot, ProviderError> {
    serde_json::from_str(raw.get()).map_err(|e| ProviderError::Upstream {
        status: None,
        message: format!("Oktawave sent a snapshot snapgate could not read ({e})"),
    })
}

/// Oktawave snapshots carry no status: one that exists is available (the gateway overlays
/// the state of any ticket it is tracking), and the region is the account's.
fn to_domain(raw: Box<RawValue>, region: &str) -> Result<VendorSnapshot, ProviderError> {
    let w = decode(&raw)?;
    Ok(VendorSnapshot {
        native_id: w.id.0,
        name: w.name.filter(|n| !n.is_empty()),
        description: w.description.filter(|d| !d.is_empty()),
        status: SnapshotStatus::Available,
        vendor_status: None,
        size_gb: None,
        created_at: w.creation_date,
        expires_at: None,
        source: w.instance.and_then(|i| i.id).map(|id| Source {
            kind: SourceKind::Instance,
            id: id.0,
        }),
        region: Some(region.to_ascii_uppercase()),
        vendor: Some(raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAPSHOT: &str = r#"{"Id":48211,"Name":"web-01-before-upgrade","Description":"Snapshot before PHP upgrade","Instance":{"Id":130455},"CreationDate":"2025-03-11T10:15:42.123+01:00","LastChangeDate":"2025-03-11T10:19:05.87+01:00","CreationUser":{"Id":22017,"Login":"jan.kowalski@example.com","FirstName":"Jan","LastName":"Kowalski"},"IsSystem":false,"IsCurrent":false,"SnapshotParent":{"Id":48102}}"#;

    fn ticket(end: &str, status: u32) -> String {
        format!(
            r#"{{"Id":9123451,"CreationDate":"2025-03-11T10:15:40.003+01:00","CreationUser":{{"Id":22017,"Login":"jan.kowalski@example.com"}},"EndDate":{end},"Status":{{"Id":{status},"Label":"x","Dictionary":{{"Id":40}}}},"OperationType":{{"Id":301,"Label":"Create snapshot","Dictionary":{{"Id":41}}}},"ObjectId":130455,"ObjectType":{{"Id":138,"Label":"Instance","Dictionary":{{"Id":42}}}},"ObjectName":"web-01","Progress":45}}"#
        )
    }

    #[test]
    fn the_get_fixture_maps_to_an_available_snapshot_in_the_account_region() {
        let s = to_domain(RawValue::from_string(SNAPSHOT.to_owned()).unwrap(), "pl2").unwrap();
        assert_eq!(s.native_id, "48211");
        assert_eq!(s.name.as_deref(), Some("web-01-before-upgrade"));
        assert_eq!(
            s.description.as_deref(),
            Some("Snapshot before PHP upgrade")
        );
        assert_eq!(s.status, SnapshotStatus::Available);
        assert_eq!(s.vendor_status, None);
        assert_eq!(s.size_gb, None);
        assert_eq!(
            s.created_at.unwrap().to_rfc3339(),
            "2025-03-11T09:15:42.123+00:00"
        );
        let src = s.source.unwrap();
        assert_eq!(
            (src.kind, src.id.as_str()),
            (SourceKind::Instance, "130455")
        );
        assert_eq!(s.region.as_deref(), Some("PL2"));
        assert!(s.vendor.unwrap().get().contains("SnapshotParent"));
    }

    #[test]
    fn sparse_snapshots_with_nulls_decode() {
        let raw = r#"{"Id":"7","Name":"a","Description":null,"Instance":null,"CreationDate":null,"CreationUser":null,"SnapshotParent":null}"#;
        let s = to_domain(RawValue::from_string(raw.to_owned()).unwrap(), "pl1").unwrap();
        assert_eq!(
            (s.native_id.as_str(), s.description, s.source, s.created_at),
            ("7", None, None, None)
        );
    }

    #[test]
    fn list_and_empty_list_fixtures_decode_with_their_totals() {
        let list = format!(r#"{{"Items":[{SNAPSHOT},{SNAPSHOT}],"Meta":{{"Total":2}}}}"#);
        let c: Collection = serde_json::from_str(&list).unwrap();
        assert_eq!((c.items.len(), c.meta.unwrap().total), (2, Some(2)));
        let c: Collection = serde_json::from_str(r#"{"Items":[],"Meta":{"Total":0}}"#).unwrap();
        assert_eq!((c.items.len(), c.meta.unwrap().total), (0, Some(0)));
        let c: Collection = serde_json::from_str("{}").unwrap();
        assert!(c.items.is_empty() && c.meta.is_none());
    }

    #[test]
    fn tickets_are_running_until_they_have_an_end_date() {
        let t: WireTicket = serde_json::from_str(&ticket("null", 134)).unwrap();
        assert_eq!(t.id.0, "9123451");
        assert!(t.end_date.is_none());
        let t: WireTicket = serde_json::from_str(&ticket(r#""0001-01-01T00:00:00""#, 135)).unwrap();
        assert!(t.end_date.is_none(), "Go's zero time is no end date");
        let t: WireTicket =
            serde_json::from_str(&ticket(r#""2025-03-11T10:19:05.87+01:00""#, 136)).unwrap();
        assert!(t.end_date.is_some());
        assert_eq!(t.status.unwrap().id.unwrap().0, TICKET_SUCCEEDED);
        let bare: WireTicket = serde_json::from_str(r#"{"Id":1}"#).unwrap();
        assert!(bare.end_date.is_none() && bare.status.is_none());
    }

    #[test]
    fn the_token_fixture_decodes_and_is_refreshed_thirty_seconds_early() {
        let raw = r#"{"access_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.c2ln","expires_in":3600,"token_type":"Bearer"}"#;
        let t: TokenReply = serde_json::from_str(raw).unwrap();
        assert_eq!(t.expires_in, Some(3600.0));
        assert_eq!(usable_for(t.expires_in), Duration::from_secs(3570));
        assert_eq!(usable_for(Some(40.0)), Duration::from_secs(20));
        assert_eq!(usable_for(None), DEFAULT_LIFETIME - REFRESH_EARLY);
        assert_eq!(usable_for(Some(-1.0)), DEFAULT_LIFETIME - REFRESH_EARLY);
    }

    #[test]
    fn names_and_descriptions_are_checked_against_the_vendor_rules() {
        assert!(check_name("web-01 before upgrade (ok)").is_ok());
        assert!(check_name(&"x".repeat(MAX_NAME)).is_ok());
        for bad in ["", "  ", "a/b", "a\\b", "a|b", "a<b", "a>b", "100%"] {
            assert!(
                matches!(
                    check_name(bad),
                    Err(ProviderError::Invalid { field: "name", .. })
                ),
                "{bad}"
            );
        }
        assert!(check_name(&"x".repeat(MAX_NAME + 1)).is_err());
        assert!(check_description("a | b <c> 100%").is_ok());
        assert!(matches!(
            check_description("a/b"),
            Err(ProviderError::Invalid {
                field: "description",
                ..
            })
        ));
    }

    #[test]
    fn only_int32_ids_can_exist() {
        assert_eq!(int32("48211"), Some(48211));
        assert_eq!(int32("2147483647"), Some(i32::MAX));
        for bad in ["", "2147483648", "-1", "+1", "abc", "1.5"] {
            assert_eq!(int32(bad), None, "{bad}");
        }
        assert_eq!(snapshot_id("x"), Err(ProviderError::NotFound));
    }

    #[test]
    fn the_command_body_is_pascal_case_and_omits_a_missing_description() {
        let both = SnapshotCommand {
            name: "n",
            description: Some("d"),
        };
        assert_eq!(
            serde_json::to_string(&both).unwrap(),
            r#"{"Name":"n","Description":"d"}"#
        );
        let name_only = SnapshotCommand {
            name: "n",
            description: None,
        };
        assert_eq!(
            serde_json::to_string(&name_only).unwrap(),
            r#"{"Name":"n"}"#
        );
    }

    #[test]
    fn idle_expired_token_slots_are_dropped_when_a_new_key_arrives() {
        let cache = TokenCache::default();
        let held = cache.slot("held".to_owned());
        drop(cache.slot("idle-empty".to_owned()));
        let fresh = cache.slot("fresh".to_owned());
        *fresh.try_lock().unwrap() = Some(Token {
            access: "t".to_owned().into(),
            fresh_until: Instant::now() + Duration::from_secs(60),
        });
        drop(fresh);
        drop(cache.slot("new".to_owned()));
        let keys: std::collections::BTreeSet<_> =
            cache.slots.lock().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["fresh", "held", "new"].map(String::from).into());
        drop(held);
    }
}
