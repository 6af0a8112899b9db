//! `/v1/snapshots`: get, create, rename, delete, restore, image; name availability.

use axum::{extract::State, http::HeaderMap, response::Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    extract::{Json, Path, Query},
    problem::{ApiError, Problem, Refusal},
    respond::{idempotency_key, outcome, JsonBody},
    AppState,
};
use crate::{
    auth::{Caller, Scope},
    domain::{Accepted, AccountId, Snapshot, SnapshotId},
    providers::{CreateRequest, ImageRequest, RestoreRequest, UpdateRequest},
    service::SnapshotAction,
};

/// Path of snapshot routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SnapshotPath {
    /// Snapshot id, `{account}:{native_id}`.
    #[param(value_type = String, example = crate::domain::examples::snapshot_id)]
    pub snapshot: SnapshotId,
}

/// `?include=vendor` adds the raw vendor object.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IncludeQuery {
    /// `vendor` to include the vendor's raw object.
    pub include: Option<Include>,
}

/// What `include` may add.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Include {
    Vendor,
}

/// Body of `POST /v1/snapshots`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    /// Account to create the snapshot in.
    #[schema(value_type = String, example = crate::domain::examples::account_id)]
    pub account: AccountId,
    /// The VM, volume, instance or slice to snapshot (vendor id).
    #[schema(example = "2058")]
    pub source_id: String,
    #[schema(example = "pre-upgrade")]
    pub name: String,
    pub description: Option<String>,
    /// For a provider that keeps one snapshot per source (`create_replaces_existing` in its
    /// capabilities): set `true` to replace the existing one.
    #[serde(default)]
    pub replace_existing: bool,
}

/// Body of `PATCH /v1/snapshots/{snapshot}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSnapshot {
    /// New name; omit to keep it (`null` is refused: it would say nothing).
    #[serde(default, deserialize_with = "string_if_present")]
    pub name: Option<String>,
    /// New description; omit to keep it.
    #[serde(default, deserialize_with = "string_if_present")]
    pub description: Option<String>,
}

/// A member that, when present, must be a string (absent stays `None`; `null` is an error).
fn string_if_present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// Body of `POST /v1/snapshots/{snapshot}/restore`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreSnapshot {
    /// Restore onto this resource, where the provider can (`restore_to_other_target`).
    /// Default: in place, or a new resource.
    pub target_id: Option<String>,
    /// Name of the new resource, where the restore makes one (`restore_to_new_resource`);
    /// some providers require it.
    pub new_name: Option<String>,
    /// `true`: roll the snapshot's own source back, **replacing its disk** (destructive), where
    /// the provider can (`restore_in_place`). A provider that can also restore to a new
    /// resource does that unless this is `true`.
    #[serde(default)]
    pub in_place: bool,
}

/// Body of `POST /v1/snapshots/{snapshot}/image`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateImage {
    pub name: String,
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Name availability answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct NameAvailability {
    pub name: String,
    pub available: bool,
}

/// Path of the name-availability route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NamePath {
    #[param(value_type = String)]
    pub account: AccountId,
    pub name: String,
}

pub(crate) const MAX_NAME: usize = 500;

fn check_text(field: &'static str, value: &str, required: bool) -> Result<(), ApiError> {
    if required && value.trim().is_empty() {
        return Err(
            ApiError::refuse(Refusal::InvalidField, format!("{field} must not be empty"))
                .with_field(field),
        );
    }
    if value.chars().count() > MAX_NAME {
        return Err(ApiError::refuse(
            Refusal::InvalidField,
            format!("{field} must be at most {MAX_NAME} characters"),
        )
        .with_field(field));
    }
    Ok(())
}

/// A snapshot or image name: [`check_text`], and no path separator or control character
/// (`NAME_PATTERN` in the document): vendors put names in URL paths.
fn check_name(field: &'static str, value: &str) -> Result<(), ApiError> {
    check_text(field, value, true)?;
    let bad = value
        .chars()
        .find(|c| matches!(c, '/' | '\\') || c.is_control());
    match bad {
        Some(c) => Err(ApiError::refuse(
            Refusal::InvalidField,
            format!("{field} must not contain `/`, `\\` or control characters (found {c:?})"),
        )
        .with_field(field)),
        None => Ok(()),
    }
}

/// Deletes, restores, images or updates a snapshot through the service; the answer.
async fn change(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: &SnapshotId,
    request: String,
    action: SnapshotAction,
) -> Result<Response, ApiError> {
    caller.require(Scope::SnapshotsWrite)?;
    let key = idempotency_key(headers)?;
    let done = state
        .service
        .change(&caller.tenant, key.as_deref(), &request, id, action)
        .await?;
    Ok(outcome(done))
}

fn fingerprint<T: Serialize>(route: &str, body: &T) -> String {
    format!(
        "{route}\n{}",
        serde_json::to_string(body).unwrap_or_default()
    )
}

/// Shows one snapshot, its status advanced from any operation the gateway is tracking.
#[utoipa::path(
    get, path = "/v1/snapshots/{snapshot}", tag = "snapshots", operation_id = "getSnapshot",
    params(SnapshotPath, IncludeQuery),
    security(("bearer" = ["snapshots:read"])),
    responses(
        (status = 200, description = "The snapshot", body = Snapshot),
        (status = 404, description = "No such snapshot (or account) for the caller", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The provider is rate limiting (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed or refused the stored credentials", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The provider did not answer in time", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<SnapshotPath>,
    Query(query): Query<IncludeQuery>,
) -> Result<JsonBody<Snapshot>, ApiError> {
    caller.require(Scope::SnapshotsRead)?;
    let include = query.include == Some(Include::Vendor);
    let snapshot = state
        .service
        .snapshot(&caller.tenant, &path.snapshot, include)
        .await?;
    Ok(JsonBody(snapshot))
}

/// Starts a snapshot of a VM, volume, instance or slice.
#[utoipa::path(
    post, path = "/v1/snapshots", tag = "snapshots", operation_id = "createSnapshot",
    request_body = CreateSnapshot,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first answer")),
    security(("bearer" = ["snapshots:write"])),
    responses(
        (status = 202, description = "Accepted; poll the operation", body = Accepted,
         headers(("Location" = String, description = "URL of the operation"))),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`snapshot_exists` (a provider that keeps one snapshot per source already has one), idempotency key in flight, or vendor conflict", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The provider is rate limiting (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "The provider cannot do this", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed or refused the stored credentials", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The provider did not answer in time", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<CreateSnapshot>,
) -> Result<Response, ApiError> {
    caller.require(Scope::SnapshotsWrite)?;
    check_name("name", &body.name)?;
    check_text("source_id", &body.source_id, true)?;
    if let Some(d) = &body.description {
        check_text("description", d, false)?;
    }
    let key = idempotency_key(&headers)?;
    let request = fingerprint("POST /v1/snapshots", &body);
    let create = CreateRequest {
        source_id: body.source_id,
        name: body.name,
        description: body.description,
        replace_existing: body.replace_existing,
    };
    let done = state
        .service
        .create(
            &caller.tenant,
            key.as_deref(),
            &request,
            &body.account,
            create,
        )
        .await?;
    Ok(outcome(done))
}

/// Renames a snapshot or changes its description.
#[utoipa::path(
    patch, path = "/v1/snapshots/{snapshot}", tag = "snapshots", operation_id = "updateSnapshot",
    params(SnapshotPath, ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first answer")),
    request_body = UpdateSnapshot,
    security(("bearer" = ["snapshots:write"])),
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 404, description = "No such snapshot", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "The provider cannot rename or describe", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(path): Path<SnapshotPath>,
    Json(body): Json<UpdateSnapshot>,
) -> Result<Response, ApiError> {
    caller.require(Scope::SnapshotsWrite)?;
    if body.name.is_none() && body.description.is_none() {
        return Err(ApiError::refuse(
            Refusal::InvalidBody,
            "give name and/or description",
        ));
    }
    if let Some(n) = &body.name {
        check_name("name", n)?;
    }
    if let Some(d) = &body.description {
        check_text("description", d, false)?;
    }
    let request = fingerprint(&format!("PATCH /v1/snapshots/{}", path.snapshot), &body);
    let update = SnapshotAction::Update(UpdateRequest {
        name: body.name,
        description: body.description,
    });
    change(&state, &caller, &headers, &path.snapshot, request, update).await
}

/// Deletes a snapshot (at some providers, also the images made from it).
#[utoipa::path(
    delete, path = "/v1/snapshots/{snapshot}", tag = "snapshots", operation_id = "deleteSnapshot",
    params(SnapshotPath, ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    security(("bearer" = ["snapshots:write"])),
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 404, description = "No such snapshot", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Vendor conflict or idempotency key in flight", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(path): Path<SnapshotPath>,
) -> Result<Response, ApiError> {
    let request = format!("DELETE /v1/snapshots/{}", path.snapshot);
    change(
        &state,
        &caller,
        &headers,
        &path.snapshot,
        request,
        SnapshotAction::Delete,
    )
    .await
}

/// Restores a snapshot: in place, onto a target, or to a new VM / volume, per provider.
#[utoipa::path(
    post, path = "/v1/snapshots/{snapshot}/restore", tag = "snapshots", operation_id = "restoreSnapshot",
    params(SnapshotPath, ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    request_body = RestoreSnapshot,
    security(("bearer" = ["snapshots:write"])),
    responses(
        (status = 202, description = "Accepted; the operation's result names a new VM / volume where one is made", body = Accepted),
        (status = 404, description = "No such snapshot", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(path): Path<SnapshotPath>,
    Json(body): Json<RestoreSnapshot>,
) -> Result<Response, ApiError> {
    caller.require(Scope::SnapshotsWrite)?;
    if let Some(n) = &body.new_name {
        check_name("new_name", n)?;
    }
    let request = fingerprint(
        &format!("POST /v1/snapshots/{}/restore", path.snapshot),
        &body,
    );
    let restore = RestoreRequest {
        target_id: body.target_id,
        new_name: body.new_name,
        in_place: body.in_place,
    };
    change(
        &state,
        &caller,
        &headers,
        &path.snapshot,
        request,
        SnapshotAction::Restore(restore),
    )
    .await
}

/// Creates a custom image from a snapshot.
#[utoipa::path(
    post, path = "/v1/snapshots/{snapshot}/image", tag = "snapshots", operation_id = "createImageFromSnapshot",
    params(SnapshotPath, ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    request_body = CreateImage,
    security(("bearer" = ["snapshots:write"])),
    responses(
        (status = 202, description = "Accepted; the operation's result names the image", body = Accepted),
        (status = 404, description = "No such snapshot", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "The provider cannot make images from snapshots", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn image(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(path): Path<SnapshotPath>,
    Json(body): Json<CreateImage>,
) -> Result<Response, ApiError> {
    caller.require(Scope::SnapshotsWrite)?;
    check_name("name", &body.name)?;
    let request = fingerprint(
        &format!("POST /v1/snapshots/{}/image", path.snapshot),
        &body,
    );
    let image = ImageRequest {
        name: body.name,
        labels: body.labels,
    };
    change(
        &state,
        &caller,
        &headers,
        &path.snapshot,
        request,
        SnapshotAction::Image(image),
    )
    .await
}

/// Whether a snapshot name is free in an account.
#[utoipa::path(
    get, path = "/v1/accounts/{account}/snapshot-names/{name}", tag = "snapshots", operation_id = "checkSnapshotName",
    params(NamePath),
    security(("bearer" = ["snapshots:read"])),
    responses(
        (status = 200, description = "Availability", body = NameAvailability),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "The provider cannot check names", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn name_availability(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<NamePath>,
) -> Result<axum::Json<NameAvailability>, ApiError> {
    caller.require(Scope::SnapshotsRead)?;
    check_name("name", &path.name)?;
    let available = state
        .service
        .name_available(&caller.tenant, &path.account, &path.name)
        .await?;
    Ok(axum::Json(NameAvailability {
        name: path.name,
        available,
    }))
}
