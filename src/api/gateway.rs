//! Plumbing shared by the snapshot and operation handlers: resolving an account to an
//! adapter call, recording operations, advancing them from the vendor, idempotency.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::{accounts::account_not_found, intent::Journal, problem::ApiError, AppState};
use crate::scrub::Scrubber;
use crate::{
    domain::{
        Account, AccountId, Capability, Completion, Credentials, Operation, OperationKind,
        OperationState, ProviderKind, Snapshot, SnapshotStatus, VendorRefKind,
    },
    providers::{CallContext, ProviderAdapter, ProviderError, Registry, Submitted},
    store::{IdempotencyBegin, OperationFilter},
};

/// An account with its credentials opened, as cached between requests.
pub struct Opened {
    account: Account,
    credentials: Credentials,
    loaded: Instant,
}

/// Opened accounts by (tenant, id): saves a store read and a decryption per vendor call.
///
/// Writes through this process invalidate at once; the TTL bounds staleness should another
/// process change an account in a shared store.
#[derive(Default)]
pub struct AccountCache {
    map: Mutex<HashMap<(String, AccountId), Arc<Opened>>>,
}

const ACCOUNT_TTL: Duration = Duration::from_secs(30);
const ACCOUNT_CACHE_MAX: usize = 10_000;

impl AccountCache {
    fn get(&self, tenant: &str, id: &AccountId) -> Option<Arc<Opened>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(tenant.to_owned(), id.clone()))
            .filter(|o| o.loaded.elapsed() < ACCOUNT_TTL)
            .cloned()
    }

    fn put(&self, tenant: &str, opened: Arc<Opened>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= ACCOUNT_CACHE_MAX {
            map.retain(|_, o| o.loaded.elapsed() < ACCOUNT_TTL);
            if map.len() >= ACCOUNT_CACHE_MAX {
                map.clear();
            }
        }
        map.insert((tenant.to_owned(), opened.account.id.clone()), opened);
    }

    /// Forgets an account after it changed or was deleted.
    pub fn invalidate(&self, tenant: &str, id: &AccountId) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(tenant.to_owned(), id.clone()));
    }
}

impl std::fmt::Debug for AccountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCache").finish_non_exhaustive()
    }
}

/// An account opened for a provider call.
pub struct Resolved {
    opened: Arc<Opened>,
    pub adapter: Arc<dyn ProviderAdapter>,
    registry: Registry,
}

impl Resolved {
    pub fn account(&self) -> &Account {
        &self.opened.account
    }

    pub fn ctx(&self) -> CallContext<'_> {
        CallContext {
            account: &self.opened.account,
            credentials: &self.opened.credentials,
        }
    }

    /// Maps a provider failure to a problem naming the account, with any echoed secret removed.
    pub fn fail(&self, e: ProviderError) -> ApiError {
        let mut secrets = Scrubber::new();
        for (_, v) in self.opened.credentials.iter() {
            secrets.add(v.expose_secret());
        }
        let err = match e {
            ProviderError::Unsupported { capability } => unsupported(&self.registry, capability),
            other => ApiError::from(other),
        };
        err.with_account(
            self.opened.account.provider,
            self.opened.account.id.as_str(),
        )
        .scrubbed(&secrets)
    }

    /// `501` unless the adapter declares the capability.
    pub fn require(&self, capability: Capability) -> Result<(), ApiError> {
        if self.adapter.info().capabilities.has(capability) {
            Ok(())
        } else {
            Err(unsupported(&self.registry, capability).with_account(
                self.opened.account.provider,
                self.opened.account.id.as_str(),
            ))
        }
    }
}

/// The `501 unsupported_operation` problem, naming the providers that do support it.
fn unsupported(registry: &Registry, capability: Capability) -> ApiError {
    let supported: Vec<ProviderKind> = registry
        .all()
        .map(|a| a.info())
        .filter(|i| i.capabilities.has(capability))
        .map(|i| i.kind)
        .collect();
    let names: Vec<&str> = supported.iter().map(|p| p.as_str()).collect();
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "unsupported_operation",
        format!(
            "{capability} is not supported by this provider; supported by: {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ),
    )
    .with_supported_by(supported)
}

/// Opens the caller's account, or `404` (`not_found` decides the code: an account route or a
/// snapshot whose account part is unknown).
pub async fn resolve(
    state: &AppState,
    tenant: &str,
    id: &AccountId,
    not_found: fn(&AccountId) -> ApiError,
) -> Result<Resolved, ApiError> {
    let opened = match state.accounts.get(tenant, id) {
        Some(opened) => opened,
        None => {
            let (account, sealed) = state
                .store
                .get_account_sealed(tenant, id)
                .await?
                .ok_or_else(|| not_found(id))?;
            let credentials = state
                .sealer
                .open(&sealed, &format!("{tenant}/{id}"))
                .map_err(|e| ApiError::internal("cannot open sealed credentials", &e))?;
            let opened = Arc::new(Opened {
                account,
                credentials,
                loaded: Instant::now(),
            });
            state.accounts.put(tenant, opened.clone());
            opened
        }
    };
    Ok(Resolved {
        adapter: state.registry.get(opened.account.provider).clone(),
        registry: state.registry.clone(),
        opened,
    })
}

pub fn account_404(id: &AccountId) -> ApiError {
    account_not_found(id)
}

pub fn snapshot_404(_: &AccountId) -> ApiError {
    ApiError::not_found("snapshot_not_found", "the snapshot does not exist")
}

/// A new operation of `resolved`'s account, running, with no vendor handle yet.
pub fn new_operation(
    resolved: &Resolved,
    kind: OperationKind,
    native_id: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> Operation {
    let account = resolved.account();
    Operation {
        id: format!("op_{}", uuid::Uuid::now_v7().simple()),
        kind,
        state: OperationState::Running,
        account: account.id.clone(),
        provider: account.provider,
        snapshot_id: native_id.map(|n| format!("{}:{n}", account.id)),
        result: None,
        vendor_ref: crate::domain::VendorRef {
            kind: VendorRefKind::None,
            id: None,
        },
        created_at: now,
        updated_at: now,
        finished_at: None,
        error: None,
        tracking: serde_json::Value::Null,
        completion: Completion::Observed,
        completion_note: None,
    }
}

/// Records the operation a vendor call started: completes the one its intent stored (same id,
/// so a replay of the key names it), or stores a new one.
pub async fn record(
    state: &AppState,
    tenant: &str,
    resolved: &Resolved,
    kind: OperationKind,
    known_native_id: Option<&str>,
    submitted: &Submitted,
    intended: Option<Operation>,
) -> Result<Operation, ApiError> {
    let now = Utc::now();
    let native = submitted.native_id.as_deref().or(known_native_id);
    let mut op = match &intended {
        Some(o) => o.clone(),
        None => new_operation(resolved, kind, native, now),
    };
    op.state = submitted.state;
    op.snapshot_id = native.map(|n| format!("{}:{n}", resolved.account().id));
    op.result = submitted.result.clone();
    op.vendor_ref = submitted.vendor_ref.clone();
    op.updated_at = now;
    op.finished_at = submitted.state.is_terminal().then_some(now);
    op.error = None;
    op.tracking = submitted.tracking.clone();
    op.completion = Completion::of_note(submitted.assumed.as_deref());
    op.completion_note = submitted.assumed.clone();
    match intended {
        Some(_) => {
            if !state.store.update_operation(tenant, &op).await? {
                // Settled from the vendor while the call was in flight: that answer stands.
                if let Some(stored) = state.store.get_operation(tenant, &op.id).await? {
                    return Ok(stored);
                }
            }
        }
        None => state.store.insert_operation(tenant, &op).await?,
    }
    Ok(op)
}

/// Advances an unfinished operation from the vendor's truth and saves it. A vendor that
/// cannot be reached leaves the stored state as it was.
pub async fn refresh(
    state: &AppState,
    tenant: &str,
    mut op: Operation,
) -> Result<Operation, ApiError> {
    if op.state.is_terminal() {
        return Ok(op);
    }
    let resolved = match resolve(state, tenant, &op.account, account_404).await {
        // Only the account that started the work may report on it: a later account that
        // reuses the id (perhaps for another provider) knows nothing of it.
        Ok(r) if r.account().provider == op.provider && r.account().created_at <= op.created_at => {
            r
        }
        Ok(_) => return abandon(state, tenant, op).await,
        Err(e) if e.code() == "account_not_found" => return abandon(state, tenant, op).await,
        Err(_) => return Ok(op),
    };
    if let Some(intent) = super::intent::interrupted(&op) {
        let before = (op.state, op.snapshot_id.clone());
        let settled = match super::intent::settle(
            &resolved,
            op.clone(),
            intent,
            idempotency_lease(state),
        )
        .await
        {
            Ok(settled) => settled,
            Err(e) => {
                tracing::info!(operation = %op.id, failure = e.kind(), "settling an interrupted operation failed");
                return Ok(op);
            }
        };
        if (settled.state, settled.snapshot_id.clone()) == before {
            return Ok(settled);
        }
        if !state.store.update_operation(tenant, &settled).await? {
            if let Some(stored) = state.store.get_operation(tenant, &settled.id).await? {
                return Ok(stored);
            }
        }
        return Ok(settled);
    }
    let progress = match resolved.adapter.poll(&resolved.ctx(), &op).await {
        Ok(p) => p,
        Err(e) => {
            // The kind of failure only: a vendor's words may echo what it was sent.
            tracing::info!(operation = %op.id, failure = e.kind(), "operation poll failed");
            return Ok(op);
        }
    };
    let now = Utc::now();
    let changed = progress.state != op.state
        || progress.native_id.is_some()
        || progress.result.is_some()
        || progress.error.is_some();
    if !changed {
        return Ok(op);
    }
    op.state = progress.state;
    if let Some(native) = progress.native_id {
        op.snapshot_id = Some(format!("{}:{native}", op.account));
    }
    if progress.result.is_some() {
        op.result = progress.result;
    }
    if let Some(error) = progress.error {
        op.error = Some(resolved.fail(error).to_json());
    }
    op.updated_at = now;
    if op.state.is_terminal() {
        op.finished_at = Some(now);
    }
    if !state.store.update_operation(tenant, &op).await? {
        // Another refresh finished it first: its answer stands.
        if let Some(stored) = state.store.get_operation(tenant, &op.id).await? {
            return Ok(stored);
        }
    }
    Ok(op)
}

/// Fails an operation whose account was deleted: nobody can follow the work any more.
async fn abandon(state: &AppState, tenant: &str, mut op: Operation) -> Result<Operation, ApiError> {
    let now = Utc::now();
    op.state = OperationState::Failed;
    op.error = Some(
        ApiError::not_found(
            "account_not_found",
            format!(
                "account `{}` was deleted while this operation ran; its outcome at the provider is unknown",
                op.account
            ),
        )
        .to_json(),
    );
    op.updated_at = now;
    op.finished_at = Some(now);
    state.store.update_operation(tenant, &op).await?;
    Ok(op)
}

/// Vendors without a snapshot status get it from the gateway's unfinished operations.
pub async fn overlay(
    state: &AppState,
    tenant: &str,
    snapshot: &mut Snapshot,
) -> Result<(), ApiError> {
    let id = snapshot.id.to_string();
    if !state.store.has_unfinished_operation(tenant, &id).await? {
        return Ok(());
    }
    let filter = OperationFilter {
        snapshot_id: Some(id),
        unfinished_only: true,
        limit: 10,
        ..Default::default()
    };
    for op in state.store.list_operations(tenant, &filter).await? {
        let op = refresh(state, tenant, op).await?;
        if op.state.is_terminal() {
            continue;
        }
        let status = match op.kind {
            OperationKind::Create => SnapshotStatus::Creating,
            OperationKind::Delete => SnapshotStatus::Deleting,
            OperationKind::Restore => SnapshotStatus::Restoring,
            OperationKind::Rename | OperationKind::Image => continue,
        };
        // A vendor's own transitional status is the truth; only settled ones are overridden.
        if matches!(
            snapshot.status,
            SnapshotStatus::Available | SnapshotStatus::Unknown
        ) {
            snapshot.status = status;
            if snapshot.vendor_status.is_none() {
                let source = match op.vendor_ref.kind {
                    VendorRefKind::Ticket => "ticket",
                    VendorRefKind::Action => "action",
                    VendorRefKind::List => "list",
                    VendorRefKind::Resource => "resource",
                    VendorRefKind::SnapshotStatus | VendorRefKind::None => "operation",
                };
                let id = op.vendor_ref.id.as_deref().unwrap_or(&op.id);
                snapshot.vendor_status = Some(format!("{source}:{id}:{}", op.kind.as_str()));
            }
        }
    }
    Ok(())
}

/// The `Idempotency-Key` of a request, if any (1–255 visible ASCII characters).
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(|s| Some(s.to_owned()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })
}

/// Runs `work` at most once per (tenant, key): a replay returns the first response without
/// calling the vendor again; another body under the same key is `422`; a concurrent retry `409`.
pub async fn idempotent(
    state: &AppState,
    tenant: &str,
    key: Option<String>,
    request: &str,
    work: impl AsyncFnOnce(&Journal<'_>) -> Result<(StatusCode, serde_json::Value), ApiError>,
) -> Result<Response, ApiError> {
    let Some(key) = key else {
        let journal = Journal::new(state, tenant, None);
        return match work(&journal).await {
            Ok((status, body)) => Ok(respond(status, body)),
            Err(e) => {
                journal.failed(&e).await?;
                Err(e)
            }
        };
    };
    let fingerprint = hex::encode(Sha256::digest(request.as_bytes()));
    match state
        .store
        .begin_idempotent(
            tenant,
            &key,
            &fingerprint,
            Utc::now(),
            idempotency_lease(state),
        )
        .await?
    {
        IdempotencyBegin::Started => {}
        IdempotencyBegin::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if body.get("request_id").is_some() {
                // A replayed problem names this request, like its x-request-id header.
                body["request_id"] = super::request_id::current().into();
            }
            let mut response = respond(status, body);
            if status.is_client_error() || status.is_server_error() {
                response.headers_mut().insert(
                    axum::http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
            }
            response
                .headers_mut()
                .insert("idempotency-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        IdempotencyBegin::Mismatch => {
            return Err(ApiError::unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            ))
        }
        IdempotencyBegin::InFlight => {
            return Err(ApiError::conflict(
                "idempotency_in_flight",
                "a request with this Idempotency-Key is still being processed",
            )
            .with_retry_after(1))
        }
    }
    // If this future is dropped from here on (deadline, disconnect), the key keeps what the
    // journal stored before the vendor call: the intended operation's `202`.
    let journal = Journal::new(state, tenant, Some(&key));
    match work(&journal).await {
        Ok((status, body)) => {
            state
                .store
                .finish_idempotent(tenant, &key, status.as_u16(), &body.to_string())
                .await?;
            Ok(respond(status, body))
        }
        Err(e) if e.outcome_uncertain() => {
            // The vendor may have done the work (timeout, reset, 5xx mid-way): a retry with
            // this key must not do it again. With an intended operation the key already answers
            // its `202` (the operation is settled from the vendor); otherwise the failure is the
            // recorded answer.
            if journal.intended().is_none() {
                let body = e.to_json().to_string();
                state
                    .store
                    .finish_idempotent(tenant, &key, e.status().as_u16(), &body)
                    .await?;
            }
            Err(e)
        }
        Err(e) => {
            // Refused with nothing done at the vendor: a retry may run again.
            journal.failed(&e).await?;
            state.store.abandon_idempotent(tenant, &key).await?;
            Err(e)
        }
    }
}

/// How long an in-flight idempotency record is honoured: past it, its request is dead.
fn idempotency_lease(state: &AppState) -> std::time::Duration {
    state.config.server.request_timeout() * 2
}

/// A JSON answer; a `202` carrying an operation gets `Location` pointing at it.
pub fn respond(status: StatusCode, body: serde_json::Value) -> Response {
    let location = body["operation"]["id"]
        .as_str()
        .and_then(|id| HeaderValue::from_str(&format!("/v1/operations/{id}")).ok());
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(location) = location {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, location);
    }
    response
}
