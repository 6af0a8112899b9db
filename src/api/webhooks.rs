//! `/v1/webhooks`: a tenant's endpoints for events, signed per Standard Webhooks, and their
//! delivery logs.

use std::sync::LazyLock;

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    extract::{Json, Path, Query},
    problem::{ApiError, Problem, Refusal},
    AppState,
};
use crate::{
    auth::{Caller, Scope},
    domain::{Delivery, EventType, Webhook},
    service::{NewWebhook, ServiceError, WebhookChanges},
};

/// An endpoint as the API shows it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// `wh_…`, assigned at creation.
    #[schema(example = "wh_0192f8a4c3d27b1e9f6a5b4c3d2e1f00")]
    pub id: String,
    #[schema(example = "https://hooks.example.com/snapgate")]
    pub url: String,
    pub description: Option<String>,
    /// Event types delivered; empty: every type.
    pub event_types: Vec<EventType>,
    /// Whether events are delivered. The gateway disables an endpoint whose delivery failed
    /// every attempt of the retry schedule (`disabled_reason` says which); `PATCH` with
    /// `enabled: true` resumes it, pending deliveries included.
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// After a secret rotation: until when deliveries carry the previous secret's signature
    /// too.
    #[serde(serialize_with = "crate::domain::time::rfc3339_opt")]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> Self {
        Self {
            id: w.id,
            url: w.url,
            description: w.description,
            event_types: w.event_types,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            previous_secret_expires_at: w.previous_secret_until,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// An endpoint with its signing secret: shown when created or rotated, never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_…`: verifies the `webhook-signature` of each delivery (any Standard Webhooks
    /// library takes it as it is).
    #[schema(value_type = String, example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    #[serde(serialize_with = "expose")]
    pub secret: SecretString,
}

/// Writes the secret into the one answer that shows it (its `Debug` stays redacted).
fn expose<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

/// The tenant's endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first.
    pub items: Vec<WebhookView>,
    /// Pass as `page_token` for the next page; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// Body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where deliveries are POSTed: `https://` (plain `http://` only where the operator allows
    /// private targets) and a host name or address; addresses in
    /// loopback, private, link-local or metadata ranges are refused unless the operator
    /// allows them (`webhooks.allow_private_targets`).
    #[schema(example = "https://hooks.example.com/snapgate")]
    pub url: String,
    /// Event types to deliver; absent or empty: every type.
    #[serde(default)]
    pub event_types: Vec<EventType>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Body of `PATCH /v1/webhooks/{webhook}`; absent members stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    /// Replaces the filter; empty: every type.
    pub event_types: Option<Vec<EventType>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// `true` resumes a disabled endpoint; `false` pauses deliveries (they wait).
    pub enabled: Option<bool>,
}

/// Path of an endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WebhookPath {
    /// Webhook id.
    pub webhook: String,
}

/// Path of a delivery.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DeliveryPath {
    /// Webhook id.
    pub webhook: String,
    /// Delivery id.
    pub delivery: String,
}

/// Query of `GET /v1/webhooks/{webhook}/deliveries`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// Items per page: default 50, max 200.
    pub page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// A page of an endpoint's delivery log.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// Newest first.
    pub items: Vec<Delivery>,
    /// Pass as `page_token` for older deliveries; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// Longest description.
pub(crate) const MAX_DESCRIPTION: usize = 500;
/// Longest URL.
pub(crate) const MAX_URL: usize = 2048;

/// An IPv6 address in its text forms without an embedded IPv4 part or zone.
const IPV6: &str = "(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))";
const IPV4: &str = "((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
/// Host names whose last label starts with a letter (so none reads as an IPv4 number).
const HOSTNAME: &str =
    "([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const PORT: &str =
    "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";

/// The URLs an endpoint may have, exactly as the server checks them (addresses aside).
pub static URL_PATTERN: LazyLock<String> =
    LazyLock::new(|| format!("^https?://({HOSTNAME}|{IPV4}|\\[{IPV6}\\])(:{PORT})?(/[!-~]*)?$"));
static URL_REGEX: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(&URL_PATTERN).unwrap_or_else(|e| unreachable!("URL pattern: {e}"))
});

/// Webhook ids, as assigned.
pub const WEBHOOK_ID_PATTERN: &str = "^wh_[0-9a-f]{32}$";
/// Delivery ids, as assigned.
pub const DELIVERY_ID_PATTERN: &str = "^dlv_[0-9a-f]{32}$";

fn check_url(url: &str) -> Result<(), ApiError> {
    if url.len() > MAX_URL || !URL_REGEX.is_match(url) {
        return Err(ApiError::refuse(
            Refusal::InvalidField,
            format!("url must be an http:// or https:// URL with a host name or address (at most {MAX_URL} characters)"),
        )
        .with_field("url"));
    }
    Ok(())
}

fn check_description(description: Option<&String>) -> Result<(), ApiError> {
    match description {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(ApiError::refuse(
            Refusal::InvalidField,
            format!("description must be at most {MAX_DESCRIPTION} characters"),
        )
        .with_field("description")),
        _ => Ok(()),
    }
}

/// An id that cannot exist is answered like one that does not.
fn known_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn webhook_id(path: &str) -> Result<&str, ApiError> {
    known_id(path, "wh_")
        .then_some(path)
        .ok_or_else(|| ServiceError::WebhookNotFound(short(path)).into())
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

fn with_secret(webhook: Webhook, secret: SecretString) -> WebhookWithSecret {
    WebhookWithSecret {
        webhook: webhook.into(),
        secret,
    }
}

/// Lists the caller's webhook endpoints.
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks", operation_id = "listWebhooks",
    params(super::paging::PageQuery),
    security(("bearer" = ["webhooks:read"])),
    responses((status = 200, description = "The tenant's endpoints, oldest first", body = WebhookList))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<super::paging::PageQuery>,
) -> Result<axum::Json<WebhookList>, ApiError> {
    caller.require(Scope::WebhooksRead)?;
    let size = super::paging::page_size(query.page_size)?;
    let paging = super::paging::query_id(&caller.tenant, "webhooks", &());
    let after = query
        .page_token
        .as_deref()
        .map(|t| super::paging::open::<(DateTime<Utc>, String)>(&state, &paging, t))
        .transpose()?;
    let all = state.service.webhooks(&caller.tenant).await?;
    let (items, next) =
        super::paging::page_of(all, |w| (w.created_at, w.id.clone()), after.as_ref(), size);
    Ok(axum::Json(WebhookList {
        items: items.into_iter().map(WebhookView::from).collect(),
        next_page_token: next.map(|position| super::paging::seal(&state, &paging, position)),
    }))
}

/// Creates an endpoint. Its `secret` is in this answer only: keep it to verify deliveries.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "webhooks", operation_id = "createWebhook",
    request_body = CreateWebhook,
    security(("bearer" = ["webhooks:write"])),
    responses(
        (status = 201, description = "Created; the secret is shown this once", body = WebhookWithSecret,
         headers(("Location" = String, description = "URL of the new endpoint"))),
        (status = 409, description = "`webhook_limit_reached`: the tenant has `webhooks.max_endpoints_per_tenant` endpoints", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The URL is not one a webhook may have, or reaches a refused address", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateWebhook>,
) -> Result<Response, ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    check_url(&body.url)?;
    check_description(body.description.as_ref())?;
    let event_types = deliverable(&caller, &body.event_types)?;
    let (webhook, secret) = state
        .service
        .create_webhook(
            &caller.tenant,
            NewWebhook {
                url: body.url,
                event_types,
                description: body.description,
            },
        )
        .await?;
    let location = format!("/v1/webhooks/{}", webhook.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(with_secret(webhook, secret)),
    )
        .into_response())
}

/// The event types an endpoint may deliver when `caller` creates or points it: only what the
/// caller may read itself (`auth::event_scope`), so `webhooks:write` alone never receives what
/// `snapshots:read` protects. Asking for a type the caller cannot read is a `403`; asking for
/// all (`[]`) gives all the caller can read, listed when that is not every type.
fn deliverable(caller: &Caller, requested: &[EventType]) -> Result<Vec<EventType>, ApiError> {
    let readable = caller.readable_events();
    let Some(readable) = readable else {
        return Ok(requested.to_vec());
    };
    if requested.is_empty() {
        if readable.is_empty() {
            return Err(ApiError::missing_scope(
                Scope::SnapshotsRead,
                "a webhook delivers events, and this token may read none: it needs \
                 snapshots:read (operations and snapshots) or accounts:read (account health)",
            ));
        }
        return Ok(readable);
    }
    match requested.iter().find(|k| !readable.contains(k)) {
        Some(kind) => {
            let scope = crate::auth::event_scope(*kind);
            Err(ApiError::missing_scope(
                scope,
                format!(
                    "event type `{}` needs {}: a webhook delivers only events whoever points \
                     it may read",
                    kind.as_str(),
                    scope.as_str()
                ),
            ))
        }
        None => Ok(requested.to_vec()),
    }
}

/// Reads one endpoint.
#[utoipa::path(
    get, path = "/v1/webhooks/{webhook}", tag = "webhooks", operation_id = "getWebhook",
    params(WebhookPath),
    security(("bearer" = ["webhooks:read"])),
    responses((status = 200, description = "The endpoint", body = WebhookView))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<WebhookPath>,
) -> Result<axum::Json<WebhookView>, ApiError> {
    caller.require(Scope::WebhooksRead)?;
    let id = webhook_id(&path.webhook)?;
    Ok(axum::Json(
        state.service.webhook(&caller.tenant, id).await?.into(),
    ))
}

/// Changes an endpoint's URL, filter, description, or whether it is enabled.
#[utoipa::path(
    patch, path = "/v1/webhooks/{webhook}", tag = "webhooks", operation_id = "updateWebhook",
    params(WebhookPath),
    request_body = UpdateWebhook,
    security(("bearer" = ["webhooks:write"])),
    responses(
        (status = 200, description = "The endpoint as changed", body = WebhookView),
        (status = 422, description = "The URL is not one a webhook may have, or reaches a refused address", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<WebhookPath>,
    Json(body): Json<UpdateWebhook>,
) -> Result<axum::Json<WebhookView>, ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    let id = webhook_id(&path.webhook)?;
    if let Some(url) = &body.url {
        check_url(url)?;
    }
    check_description(body.description.as_ref().and_then(Option::as_ref))?;
    let event_types = match &body.event_types {
        Some(types) => Some(deliverable(&caller, types)?),
        // Pointing an endpoint somewhere (or turning it back on) sends it what it delivers:
        // the caller must be able to read all of that itself.
        None if body.url.is_some() || body.enabled == Some(true) => {
            let current = state.service.webhook(&caller.tenant, id).await?;
            let delivered = match current.event_types.is_empty() {
                true => EventType::ALL.to_vec(),
                false => current.event_types,
            };
            deliverable(&caller, &delivered)?;
            None
        }
        None => None,
    };
    let changes = WebhookChanges {
        url: body.url,
        event_types,
        description: body.description,
        enabled: body.enabled,
    };
    let webhook = state
        .service
        .update_webhook(&caller.tenant, id, changes)
        .await?;
    Ok(axum::Json(webhook.into()))
}

/// Deletes an endpoint and its delivery log; nothing more is sent to it.
#[utoipa::path(
    delete, path = "/v1/webhooks/{webhook}", tag = "webhooks", operation_id = "deleteWebhook",
    params(WebhookPath),
    security(("bearer" = ["webhooks:write"])),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<WebhookPath>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    let id = webhook_id(&path.webhook)?;
    state.service.delete_webhook(&caller.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a signed `webhook.test` event to the endpoint now (also when it is disabled: the
/// way to check a repaired receiver before enabling it again).
#[utoipa::path(
    post, path = "/v1/webhooks/{webhook}/test", tag = "webhooks", operation_id = "testWebhook",
    params(WebhookPath),
    security(("bearer" = ["webhooks:write"])),
    responses((status = 202, description = "Queued; its attempts show in the delivery log", body = Delivery))
)]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<WebhookPath>,
) -> Result<(StatusCode, axum::Json<Delivery>), ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    let id = webhook_id(&path.webhook)?;
    let delivery = state.service.test_webhook(&caller.tenant, id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery)))
}

/// Replaces the endpoint's secret. The new one is in this answer only; for the grace period
/// (`previous_secret_expires_at`) deliveries carry both signatures, space-separated, so the
/// receiver can switch without missing one.
#[utoipa::path(
    post, path = "/v1/webhooks/{webhook}/rotate-secret", tag = "webhooks", operation_id = "rotateWebhookSecret",
    params(WebhookPath),
    security(("bearer" = ["webhooks:write"])),
    responses((status = 200, description = "The endpoint with its new secret, shown this once", body = WebhookWithSecret))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<WebhookPath>,
) -> Result<axum::Json<WebhookWithSecret>, ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    let id = webhook_id(&path.webhook)?;
    let (webhook, secret) = state
        .service
        .rotate_webhook_secret(&caller.tenant, id)
        .await?;
    Ok(axum::Json(with_secret(webhook, secret)))
}

/// The endpoint's delivery log: each event sent to it, every attempt (status, latency,
/// error) and the next one.
#[utoipa::path(
    get, path = "/v1/webhooks/{webhook}/deliveries", tag = "webhooks", operation_id = "listWebhookDeliveries",
    params(WebhookPath, DeliveryQuery),
    security(("bearer" = ["webhooks:read"])),
    responses((status = 200, description = "Deliveries, newest first", body = DeliveryPage))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<WebhookPath>,
    Query(query): Query<DeliveryQuery>,
) -> Result<axum::Json<DeliveryPage>, ApiError> {
    caller.require(Scope::WebhooksRead)?;
    let id = webhook_id(&path.webhook)?;
    let size = super::paging::page_size(query.page_size)?;
    let paging = super::paging::query_id(&caller.tenant, "deliveries", &id.to_string());
    let before = query
        .page_token
        .as_deref()
        .map(|t| super::paging::open::<i64>(&state, &paging, t))
        .transpose()?;
    // One more than the page: whether another page follows.
    let mut page = state
        .service
        .deliveries(&caller.tenant, id, before, size + 1)
        .await?;
    let more = page.len() > size as usize;
    page.truncate(size as usize);
    let next_page_token = more
        .then(|| page.last())
        .flatten()
        .map(|(seq, _)| super::paging::seal(&state, &paging, *seq));
    Ok(axum::Json(DeliveryPage {
        items: page.into_iter().map(|(_, d)| d).collect(),
        next_page_token,
    }))
}

/// Sends a delivery's event again now, as a new delivery with the same `webhook-id` (so a
/// receiver that already has it can tell).
#[utoipa::path(
    post, path = "/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver", tag = "webhooks",
    operation_id = "redeliverWebhookDelivery",
    params(DeliveryPath),
    security(("bearer" = ["webhooks:write"])),
    responses((status = 202, description = "Queued as a new delivery", body = Delivery))
)]
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<DeliveryPath>,
) -> Result<(StatusCode, axum::Json<Delivery>), ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    let id = webhook_id(&path.webhook)?;
    if !known_id(&path.delivery, "dlv_") {
        return Err(ServiceError::DeliveryNotFound(short(&path.delivery)).into());
    }
    let delivery = state
        .service
        .redeliver(&caller.tenant, id, &path.delivery)
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery)))
}

/// Tells a member set to `null` (`Some(None)`) apart from an absent one (`None`).
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_in_the_answer_but_never_in_debug_output() {
        let now = Utc::now();
        let shown = with_secret(
            Webhook {
                id: "wh_1".into(),
                tenant: "t".into(),
                url: "https://example.com/h".into(),
                description: None,
                event_types: vec![],
                enabled: true,
                disabled_reason: None,
                previous_secret_until: None,
                created_at: now,
                updated_at: now,
            },
            SecretString::from("whsec_c2VjcmV0"),
        );
        assert!(!format!("{shown:?}").contains("c2VjcmV0"));
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(json["secret"], "whsec_c2VjcmV0");
        assert_eq!(json["id"], "wh_1");
    }

    #[test]
    fn every_url_the_pattern_takes_parses_and_the_rest_is_refused() {
        for ok in [
            "https://hooks.example.com/snapgate?x=1",
            "http://127.0.0.1:8080/hook",
            "http://[::1]:9000/",
            "http://localhost",
            "https://a-b.c1.example",
            "http://[fe80::1]/x",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
            assert!(crate::webhooks::target::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://example.com/",
            "https://",
            "https://exa mple.com/",
            "https://1.2.3.4.5/",
            "https://999/",
            "https://example.com:99999/",
            "HTTPS://example.com/",
            "https://u:p@example.com/",
            "https://[:::]/",
            "https://example.com/\u{7f}",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
