//! `/v1/policies`: snapshot schedules with retention that the gateway runs, across every cloud,
//! on any replica; their runs, and a preview of the next one.

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
    problem::ApiError,
    AppState,
};
use crate::{
    auth::{Caller, Scope},
    domain::{Policy, PolicyRun, PolicySpec, Retention, Schedule},
    service::{PolicyChanges, Preview, ServiceError},
};

/// A policy as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    /// `pol_…`, assigned at creation.
    #[schema(example = "pol_0192f8a4c3d27b1e9f6a5b4c3d2e1f00")]
    pub id: String,
    pub description: Option<String>,
    #[schema(example = "prod-eu")]
    pub account: String,
    pub source_ids: Vec<String>,
    /// Every source of the account, listed at each run.
    pub all_sources: bool,
    pub schedule: Schedule,
    pub name_template: String,
    pub retention: Retention,
    /// `false`: paused.
    pub enabled: bool,
    /// The next scheduled slot (`null` while disabled).
    #[serde(serialize_with = "crate::domain::time::rfc3339_opt")]
    pub next_slot: Option<DateTime<Utc>>,
    /// When the next run starts: its slot plus the policy's jitter (`policies.jitter_secs`).
    #[serde(serialize_with = "crate::domain::time::rfc3339_opt")]
    pub next_run_at: Option<DateTime<Utc>>,
    /// The last runs, newest first (all of them: `GET /v1/policies/{policy}/runs`).
    pub last_runs: Vec<RunSummary>,
    /// What the account's provider changes about the policy.
    pub notes: Vec<String>,
    #[serde(serialize_with = "crate::domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// A run in brief.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunSummary {
    pub id: String,
    #[serde(serialize_with = "crate::domain::time::rfc3339")]
    pub slot: DateTime<Utc>,
    pub state: crate::domain::RunState,
    /// Snapshots it made.
    pub created: usize,
    /// Snapshots it pruned.
    pub pruned: usize,
    /// Sources whose snapshot failed.
    pub failed: usize,
}

impl From<&PolicyRun> for RunSummary {
    fn from(run: &PolicyRun) -> Self {
        use crate::domain::TargetState;
        let count = |s: TargetState| run.targets.iter().filter(|t| t.state == s).count();
        Self {
            id: run.id.clone(),
            slot: run.slot,
            state: run.state,
            created: count(TargetState::Succeeded),
            pruned: run.pruned.iter().filter(|p| p.error.is_none()).count(),
            failed: count(TargetState::Failed),
        }
    }
}

fn view(policy: Policy, runs: &[PolicyRun], notes: Vec<String>) -> PolicyView {
    let spec = policy.spec;
    PolicyView {
        id: policy.id,
        description: spec.description,
        account: spec.account,
        source_ids: spec.source_ids,
        all_sources: spec.all_sources,
        schedule: spec.schedule,
        name_template: spec.name_template,
        retention: spec.retention,
        enabled: spec.enabled,
        next_slot: policy.next_slot,
        next_run_at: policy.next_due_at,
        last_runs: runs.iter().map(RunSummary::from).collect(),
        notes,
        created_at: policy.created_at,
        updated_at: policy.updated_at,
    }
}

/// The tenant's policies.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyList {
    /// Oldest first.
    pub items: Vec<PolicyView>,
    /// Pass as `page_token` for the next page; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// A page of a policy's runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunPage {
    /// Newest slot first.
    pub items: Vec<PolicyRun>,
    /// Pass as `page_token` for older runs; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// Body of `PATCH /v1/policies/{policy}`; absent members stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    /// `null` clears it.
    #[serde(default, deserialize_with = "super::webhooks::present")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    /// The sources to snapshot from now on; without `all_sources`, setting them turns
    /// `all_sources` off.
    #[schema(min_items = 1, max_items = 100)]
    pub source_ids: Option<Vec<String>>,
    /// `true`: every source of the account (`source_ids` are then cleared unless given).
    pub all_sources: Option<bool>,
    /// A new schedule starts from its next slot after now.
    pub schedule: Option<Schedule>,
    #[schema(min_length = 1, max_length = 100)]
    pub name_template: Option<String>,
    pub retention: Option<Retention>,
    /// `false` pauses the policy; `true` resumes it from the next slot after now.
    pub enabled: Option<bool>,
}

/// Path of a policy.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PolicyPath {
    /// Policy id.
    pub policy: String,
}

/// Policy ids, as assigned.
pub const POLICY_ID_PATTERN: &str = "^pol_[0-9a-f]{32}$";

/// An id that cannot exist is answered like one that does not.
fn policy_id(path: &str) -> Result<&str, ApiError> {
    let known = path.strip_prefix("pol_").is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if known {
        Ok(path)
    } else {
        Err(ServiceError::PolicyNotFound(path.chars().take(60).collect()).into())
    }
}

/// Lists the caller's policies.
#[utoipa::path(
    get, path = "/v1/policies", tag = "policies", operation_id = "listPolicies",
    params(super::paging::PageQuery),
    security(("bearer" = ["policies:read"])),
    responses((status = 200, description = "The tenant's policies, oldest first", body = PolicyList))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<super::paging::PageQuery>,
) -> Result<axum::Json<PolicyList>, ApiError> {
    caller.require(Scope::PoliciesRead)?;
    let size = super::paging::page_size(query.page_size)?;
    let paging = super::paging::query_id(&caller.tenant, "policies", &());
    let after = query
        .page_token
        .as_deref()
        .map(|t| super::paging::open::<(DateTime<Utc>, String)>(&state, &paging, t))
        .transpose()?;
    let all = state.service.policies(&caller.tenant).await?;
    let (items, next) =
        super::paging::page_of(all, |p| (p.created_at, p.id.clone()), after.as_ref(), size);
    let mut views = Vec::with_capacity(items.len());
    for policy in items {
        let runs = state.service.last_runs(&policy).await?;
        let notes = state
            .service
            .policy_notes(&caller.tenant, &policy.spec)
            .await;
        views.push(view(policy, &runs, notes));
    }
    Ok(axum::Json(PolicyList {
        items: views,
        next_page_token: next.map(|position| super::paging::seal(&state, &paging, position)),
    }))
}

/// Creates a policy. Its first run is at the schedule's next slot after now (plus jitter).
#[utoipa::path(
    post, path = "/v1/policies", tag = "policies", operation_id = "createPolicy",
    request_body = PolicySpec,
    security(("bearer" = ["policies:write"])),
    responses(
        (status = 201, description = "Created", body = PolicyView,
         headers(("Location" = String, description = "URL of the new policy"))),
        (status = 422, description = "A rule of the policy does not hold (the `field` says which), its account does not exist, or the account's provider cannot create snapshots", body = super::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(spec): Json<PolicySpec>,
) -> Result<Response, ApiError> {
    caller.require(Scope::PoliciesWrite)?;
    let policy = state.service.create_policy(&caller.tenant, spec).await?;
    let notes = state
        .service
        .policy_notes(&caller.tenant, &policy.spec)
        .await;
    let location = format!("/v1/policies/{}", policy.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(view(policy, &[], notes)),
    )
        .into_response())
}

/// Reads one policy with its next run and its last runs.
#[utoipa::path(
    get, path = "/v1/policies/{policy}", tag = "policies", operation_id = "getPolicy",
    params(PolicyPath),
    security(("bearer" = ["policies:read"])),
    responses((status = 200, description = "The policy", body = PolicyView))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<PolicyPath>,
) -> Result<axum::Json<PolicyView>, ApiError> {
    caller.require(Scope::PoliciesRead)?;
    let id = policy_id(&path.policy)?;
    let (policy, runs) = state.service.policy_with_runs(&caller.tenant, id).await?;
    let notes = state
        .service
        .policy_notes(&caller.tenant, &policy.spec)
        .await;
    Ok(axum::Json(view(policy, &runs, notes)))
}

/// Changes a policy: its sources, schedule, names, retention, or whether it runs.
#[utoipa::path(
    patch, path = "/v1/policies/{policy}", tag = "policies", operation_id = "updatePolicy",
    params(PolicyPath),
    request_body = UpdatePolicy,
    security(("bearer" = ["policies:write"])),
    responses(
        (status = 200, description = "The policy as changed", body = PolicyView),
        (status = 422, description = "A rule of the policy does not hold (the `field` says which)", body = super::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<PolicyPath>,
    Json(body): Json<UpdatePolicy>,
) -> Result<axum::Json<PolicyView>, ApiError> {
    caller.require(Scope::PoliciesWrite)?;
    let id = policy_id(&path.policy)?;
    let changes = PolicyChanges {
        description: body.description,
        source_ids: body.source_ids,
        all_sources: body.all_sources,
        schedule: body.schedule,
        name_template: body.name_template,
        retention: body.retention,
        enabled: body.enabled,
    };
    state
        .service
        .update_policy(&caller.tenant, id, changes)
        .await?;
    get(State(state), caller, Path(path)).await
}

/// Deletes a policy and its runs. The snapshots it made stay at the provider.
#[utoipa::path(
    delete, path = "/v1/policies/{policy}", tag = "policies", operation_id = "deletePolicy",
    params(PolicyPath),
    security(("bearer" = ["policies:write"])),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<PolicyPath>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::PoliciesWrite)?;
    let id = policy_id(&path.policy)?;
    state.service.delete_policy(&caller.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A policy's runs: what each created, pruned and failed, newest first.
#[utoipa::path(
    get, path = "/v1/policies/{policy}/runs", tag = "policies", operation_id = "listPolicyRuns",
    params(PolicyPath, super::paging::PageQuery),
    security(("bearer" = ["policies:read"])),
    responses((status = 200, description = "The runs, newest slot first", body = RunPage))
)]
pub async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<PolicyPath>,
    Query(query): Query<super::paging::PageQuery>,
) -> Result<axum::Json<RunPage>, ApiError> {
    caller.require(Scope::PoliciesRead)?;
    let id = policy_id(&path.policy)?;
    let size = super::paging::page_size(query.page_size)?;
    let paging = super::paging::query_id(&caller.tenant, "policy-runs", &id);
    let before = query
        .page_token
        .as_deref()
        .map(|t| super::paging::open::<DateTime<Utc>>(&state, &paging, t))
        .transpose()?;
    let mut items = state
        .service
        .policy_runs(&caller.tenant, id, before, size + 1)
        .await?;
    let more = items.len() > size as usize;
    items.truncate(size as usize);
    let next = more
        .then(|| {
            items
                .last()
                .map(|r| super::paging::seal(&state, &paging, r.slot))
        })
        .flatten();
    Ok(axum::Json(RunPage {
        items,
        next_page_token: next,
    }))
}

/// What the next run would create, and what retention would prune once it succeeds, without
/// doing either.
#[utoipa::path(
    post, path = "/v1/policies/{policy}/preview", tag = "policies", operation_id = "previewPolicy",
    params(PolicyPath),
    security(("bearer" = ["policies:read"])),
    responses((status = 200, description = "The next run, planned", body = Preview))
)]
pub async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<PolicyPath>,
) -> Result<axum::Json<Preview>, ApiError> {
    caller.require(Scope::PoliciesRead)?;
    let id = policy_id(&path.policy)?;
    Ok(axum::Json(
        state.service.preview_policy(&caller.tenant, id).await?,
    ))
}
