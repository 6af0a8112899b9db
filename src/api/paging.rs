//! One paging convention for every collection: `page_size` (default 50, 1 to 200) and an
//! opaque `page_token` → `next_page_token` (`null` on the last page). A token holds where the
//! previous page ended, bound by a keyed tag to the tenant, the collection and the filters that
//! produced it: a token that was changed, or is used with other filters, is refused with `400
//! invalid_page_token` instead of silently starting over.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    problem::{ApiError, Refusal},
    AppState,
};

pub(crate) const DEFAULT_PAGE_SIZE: u32 = 50;
pub(crate) const MAX_PAGE_SIZE: u32 = 200;

/// The page size a request asks for, or a `400` naming `page_size`.
pub(crate) fn page_size(asked: Option<u32>) -> Result<u32, ApiError> {
    let size = asked.unwrap_or(DEFAULT_PAGE_SIZE);
    if (1..=MAX_PAGE_SIZE).contains(&size) {
        Ok(size)
    } else {
        Err(ApiError::refuse(
            Refusal::InvalidQuery,
            format!("page_size must be between 1 and {MAX_PAGE_SIZE}"),
        )
        .with_field("page_size"))
    }
}

/// What a token is bound to: the tenant, the collection and its filters, hashed.
pub(crate) fn query_id(tenant: &str, collection: &str, filters: &impl Serialize) -> String {
    let canonical = serde_json::json!([tenant, collection, filters]);
    hex::encode(&Sha256::digest(canonical.to_string().as_bytes())[..12])
}

#[derive(Serialize, Deserialize)]
struct Token<P> {
    /// [`query_id`] of the query that made it.
    f: String,
    /// Where the page ended.
    p: P,
}

/// A `next_page_token` for the page that ended at `position`.
pub(crate) fn seal<P: Serialize>(state: &AppState, query: &str, position: P) -> String {
    let payload = serde_json::to_vec(&Token {
        f: query.to_owned(),
        p: position,
    })
    .unwrap_or_default();
    let tag = state.service.page_tag(&payload);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(&tag[..16])
    )
}

/// The position a `page_token` holds, when this API made it for this same query.
pub(crate) fn open<P: DeserializeOwned>(
    state: &AppState,
    query: &str,
    token: &str,
) -> Result<P, ApiError> {
    let invalid = |why: &str| {
        ApiError::refuse(
            Refusal::InvalidPageToken,
            format!("page_token is not valid: {why}"),
        )
        .with_field("page_token")
    };
    let (payload, tag) = token.split_once('.').ok_or_else(|| invalid("malformed"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| invalid("malformed"))?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| invalid("malformed"))?;
    let expected = state.service.page_tag(&payload);
    // A fixed-time compare of the 16-byte tag.
    if tag.len() != 16
        || tag
            .iter()
            .zip(&expected[..16])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
    {
        return Err(invalid("it was modified"));
    }
    let token: Token<P> = serde_json::from_slice(&payload).map_err(|_| invalid("malformed"))?;
    if token.f != query {
        return Err(invalid(
            "it belongs to a different query; keep the same filters while paging",
        ));
    }
    Ok(token.p)
}

/// The page of `items` (already in the collection's order) after `after`, at most `size` long,
/// and the position to continue from when more follow. For collections the store returns whole
/// (a tenant's accounts and webhooks, which are bounded).
pub(crate) fn page_of<T, K: PartialOrd>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    after: Option<&K>,
    size: u32,
) -> (Vec<T>, Option<K>) {
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|item| after.is_none_or(|a| key(item) > *a))
        .collect();
    let more = rest.len() > size as usize;
    rest.truncate(size as usize);
    let next = more.then(|| rest.last().map(&key)).flatten();
    (rest, next)
}

/// Query of a collection with no filters of its own.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page: default 50, max 200.
    pub page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}
