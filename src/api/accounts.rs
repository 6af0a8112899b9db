//! `/v1/accounts`: a tenant's provider accounts, with write-only credentials.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    extract::{Json, Path, Query},
    problem::{ApiError, Problem, Refusal},
    AppState,
};
use crate::{
    auth::{Caller, Scope},
    domain::{Account, AccountHealth, AccountId, AccountSource, ProviderKind},
    service::{AccountChanges, AccountRequest},
};

/// An account as the API shows it: never its credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// Slug chosen at creation, immutable.
    #[schema(value_type = String, example = crate::domain::examples::account_id)]
    pub id: AccountId,
    pub provider: ProviderKind,
    pub display_name: Option<String>,
    /// Non-secret provider settings (e.g. a `region`), as the provider declares them.
    #[schema(value_type = Object)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub credentials: CredentialsView,
    pub health: AccountHealth,
    #[serde(serialize_with = "crate::domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// What can be shown of stored credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialsView {
    /// Names of the stored fields.
    pub fields: Vec<String>,
    /// Keyed, non-reversible fingerprint: changes when the credentials change.
    #[schema(example = "hmac-sha256:1f2e3d4c5b6a7980")]
    pub fingerprint: String,
    #[serde(serialize_with = "crate::domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        Self {
            id: a.id,
            provider: a.provider,
            display_name: a.display_name,
            settings: a.settings,
            credentials: CredentialsView {
                fields: a.credential_fields,
                fingerprint: a.credential_fingerprint,
                updated_at: a.credentials_updated_at,
            },
            health: a.health,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// A page of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    /// By id.
    pub items: Vec<AccountView>,
    /// Pass as `page_token` for the next page; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// Body of `POST /v1/accounts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// Slug `[a-z0-9][a-z0-9-]{0,62}`, unique within the tenant.
    #[schema(value_type = String, example = crate::domain::examples::new_account_id)]
    pub id: AccountId,
    pub provider: ProviderKind,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Provider credential fields (see `GET /v1/providers`); write-only.
    #[schema(value_type = Object, example = json!({"api_key": "…"}))]
    pub credentials: serde_json::Map<String, serde_json::Value>,
    /// Provider settings (see `GET /v1/providers`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// Body of `PATCH /v1/accounts/{account}`; absent members stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    /// New display name; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    /// Replaces all credentials (every required field must be given).
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<serde_json::Map<String, serde_json::Value>>,
    /// Replaces all settings.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Filters of `GET /v1/accounts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccountFilter {
    /// Only accounts of these providers (repeatable).
    #[serde(default)]
    #[param(value_type = Option<Vec<ProviderKind>>)]
    pub provider: Vec<ProviderKind>,
    /// Items per page: default 50, max 200.
    pub page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// Path of account routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AccountPath {
    /// Account id.
    #[param(value_type = String)]
    pub account: AccountId,
}

/// Tells a member set to `null` (`Some(None)`) apart from an absent one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub(crate) const MAX_DISPLAY_NAME: usize = 200;

fn check_display_name(name: &Option<String>) -> Result<(), ApiError> {
    match name {
        Some(n) if n.chars().count() > MAX_DISPLAY_NAME => Err(ApiError::refuse(
            Refusal::InvalidBody,
            format!("display_name must be at most {MAX_DISPLAY_NAME} characters"),
        )
        .with_field("display_name")),
        _ => Ok(()),
    }
}

/// Lists the caller's accounts.
#[utoipa::path(
    get, path = "/v1/accounts", tag = "accounts", operation_id = "listAccounts",
    params(AccountFilter),
    security(("bearer" = ["accounts:read"])),
    responses((status = 200, description = "The tenant's accounts, by id", body = AccountList))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<AccountFilter>,
) -> Result<axum::Json<AccountList>, ApiError> {
    caller.require(Scope::AccountsRead)?;
    let size = super::paging::page_size(filter.page_size)?;
    let mut providers: Vec<&str> = filter.provider.iter().map(|p| p.as_str()).collect();
    providers.sort_unstable();
    let paging = super::paging::query_id(&caller.tenant, "accounts", &providers);
    let after = filter
        .page_token
        .as_deref()
        .map(|t| super::paging::open::<String>(&state, &paging, t))
        .transpose()?;
    let mut accounts = state.service.list_accounts(&caller.tenant).await?;
    accounts.retain(|a| filter.provider.is_empty() || filter.provider.contains(&a.provider));
    accounts.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let (items, next) =
        super::paging::page_of(accounts, |a| a.id.as_str().to_owned(), after.as_ref(), size);
    Ok(axum::Json(AccountList {
        items: items.into_iter().map(AccountView::from).collect(),
        next_page_token: next.map(|position| super::paging::seal(&state, &paging, position)),
    }))
}

/// Creates an account; its credentials are sealed and never shown again.
#[utoipa::path(
    post, path = "/v1/accounts", tag = "accounts", operation_id = "createAccount",
    request_body = CreateAccount,
    security(("bearer" = ["accounts:write"])),
    responses(
        (status = 201, description = "Created", body = AccountView,
         headers(("Location" = String, description = "URL of the new account"))),
        (status = 409, description = "An account with this id exists", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateAccount>,
) -> Result<Response, ApiError> {
    caller.require(Scope::AccountsWrite)?;
    check_display_name(&body.display_name)?;
    let request = AccountRequest {
        id: body.id,
        provider: body.provider,
        display_name: body.display_name,
        settings: body.settings,
        credentials: body.credentials,
    };
    let account = state
        .service
        .create_account(&caller.tenant, request)
        .await?;
    let location = format!("/v1/accounts/{}", account.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(AccountView::from(account)),
    )
        .into_response())
}

/// Shows one account.
#[utoipa::path(
    get, path = "/v1/accounts/{account}", tag = "accounts", operation_id = "getAccount",
    params(AccountPath),
    security(("bearer" = ["accounts:read"])),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 404, description = "No such account in the caller's tenant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<AccountPath>,
) -> Result<axum::Json<AccountView>, ApiError> {
    caller.require(Scope::AccountsRead)?;
    let account = state.service.account(&caller.tenant, &path.account).await?;
    Ok(axum::Json(account.into()))
}

/// Changes an account's display name, settings or credentials.
#[utoipa::path(
    patch, path = "/v1/accounts/{account}", tag = "accounts", operation_id = "updateAccount",
    params(AccountPath),
    request_body = UpdateAccount,
    security(("bearer" = ["accounts:write"])),
    responses(
        (status = 200, description = "The updated account", body = AccountView),
        (status = 404, description = "No such account in the caller's tenant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<AccountPath>,
    Json(body): Json<UpdateAccount>,
) -> Result<axum::Json<AccountView>, ApiError> {
    caller.require(Scope::AccountsWrite)?;
    if let Some(name) = &body.display_name {
        check_display_name(name)?;
    }
    let changes = AccountChanges {
        display_name: body.display_name,
        settings: body.settings,
        credentials: body.credentials,
    };
    let account = state
        .service
        .update_account(&caller.tenant, &path.account, changes)
        .await?;
    Ok(axum::Json(account.into()))
}

/// Deletes an account and its sealed credentials.
#[utoipa::path(
    delete, path = "/v1/accounts/{account}", tag = "accounts", operation_id = "deleteAccount",
    params(AccountPath),
    security(("bearer" = ["accounts:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such account in the caller's tenant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<AccountPath>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::AccountsWrite)?;
    state
        .service
        .delete_account(&caller.tenant, &path.account)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The outcome of a credential check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    pub status: crate::domain::HealthStatus,
    #[serde(serialize_with = "crate::domain::time::rfc3339")]
    pub checked_at: DateTime<Utc>,
    /// The problem met, when the check failed.
    #[schema(value_type = Option<Object>)]
    pub problem: Option<Problem>,
}

/// Checks the stored credentials with a cheap vendor call and records the account's health.
#[utoipa::path(
    post, path = "/v1/accounts/{account}/verify", tag = "accounts", operation_id = "verifyAccount",
    params(AccountPath),
    security(("bearer" = ["accounts:write"])),
    responses(
        (status = 200, description = "Checked: `ok`, or `failing` with the problem met", body = Verification),
        (status = 404, description = "No such account in the caller's tenant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<AccountPath>,
) -> Result<axum::Json<Verification>, ApiError> {
    caller.require(Scope::AccountsWrite)?;
    let health = state
        .service
        .verify_account(&caller.tenant, &path.account)
        .await?;
    Ok(axum::Json(Verification {
        status: health.status,
        checked_at: health.checked_at.unwrap_or_else(Utc::now),
        problem: health.problem,
    }))
}

/// The resources of an account that snapshots can be made of.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceList {
    /// Every source the provider lists now, in its order; each `id` is a `source_id` for
    /// `POST /v1/snapshots` and policies.
    pub data: Vec<AccountSource>,
}

/// Lists the account's snapshot sources (VMs, volumes, instances, servers, droplets) from its
/// provider: every vendor page, or an error — never a short list.
#[utoipa::path(
    get, path = "/v1/accounts/{account}/sources", tag = "accounts", operation_id = "listAccountSources",
    params(AccountPath),
    security(("bearer" = ["snapshots:read"])),
    responses(
        (status = 200, description = "Every source the provider lists", body = SourceList),
        (status = 404, description = "No such account in the caller's tenant", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "The provider cannot list its sources", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sources(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<AccountPath>,
) -> Result<axum::Json<SourceList>, ApiError> {
    caller.require(Scope::SnapshotsRead)?;
    let data = state
        .service
        .account_sources(&caller.tenant, &path.account)
        .await?;
    Ok(axum::Json(SourceList { data }))
}
