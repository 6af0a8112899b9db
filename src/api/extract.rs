//! Extractors that answer bad input with our problem format instead of axum's plain text.

use axum::{
    body::Bytes,
    extract::{
        rejection::{BytesRejection, PathRejection},
        FromRequest, FromRequestParts, Request,
    },
    http::{header, request::Parts, StatusCode},
};
use serde::de::DeserializeOwned;

use super::{
    problem::{ApiError, Refusal},
    AppState,
};
use crate::auth::Caller;

/// A JSON body: `415` without a JSON content type, `413` over the limit, `400` when it is not
/// JSON, `422` when it is JSON of the wrong shape (naming the field).
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json"
            && !(mime.starts_with("application/") && mime.ends_with("+json"))
        {
            return Err(ApiError::refuse(
                Refusal::UnsupportedMediaType,
                "the request body must be JSON: send `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        let value = parse_json(&bytes)?;
        // Every body is an object: serde would also fill a struct from an array of its fields
        // (`[null, null]`), which the document does not allow.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::refuse(
                Refusal::InvalidBody,
                "the request body must be a JSON object",
            ));
        }
        Ok(Json(value))
    }
}

/// Parses JSON, classifying syntax errors (`400`) apart from shape errors (`422`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = redact_values(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = (path != ".").then_some(path);
                let detail = match &field {
                    Some(f) => format!("invalid request body at `{f}`: {message}"),
                    None => format!("invalid request body: {message}"),
                };
                let e = ApiError::refuse(Refusal::InvalidBody, detail);
                match field {
                    Some(f) => e.with_field(f),
                    None => e,
                }
            }
            _ => ApiError::refuse(
                Refusal::MalformedJson,
                format!("the body is not valid JSON: {message}"),
            ),
        }
    })?;
    // One JSON value, then only white space: `{…}}}garbage` is not the `{…}` it starts with.
    de.end().map_err(|e| {
        ApiError::refuse(
            Refusal::MalformedJson,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

/// serde echoes rejected string values (`invalid type: string "…"`); a value may be a secret.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        let (head, tail) = rest.split_at(start + "string ".len());
        out.push_str(head);
        // Skip the quoted value (Debug-escaped: `\"` and `\\` do not end it).
        let after = &tail[1..];
        out.push_str("(value hidden)");
        let mut escaped = false;
        let end = after.char_indices().find_map(|(i, c)| match (escaped, c) {
            (false, '\\') => {
                escaped = true;
                None
            }
            (false, '"') => Some(i),
            _ => {
                escaped = false;
                None
            }
        });
        rest = end.map_or("", |end| &after[end + 1..]);
    }
    out.push_str(rest);
    out
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::refuse(
            Refusal::PayloadTooLarge,
            "the request body exceeds the size limit",
        )
    } else {
        ApiError::refuse(
            Refusal::UnreadableBody,
            "the request body could not be read",
        )
    }
}

/// Path parameters: a `400` problem when they do not parse.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e: PathRejection| ApiError::refuse(Refusal::InvalidPath, e.body_text()))
    }
}

/// Query parameters: a `400` problem when they do not parse. A parameter that takes several
/// values repeats (`?type=a&type=b`), as every list filter does.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        // An empty value is no value: refused, not read as absent.
        if let Some((key, _)) =
            url::form_urlencoded::parse(raw.as_bytes()).find(|(_, value)| value.is_empty())
        {
            let key: String = key.chars().take(40).collect();
            return Err(ApiError::refuse(
                Refusal::InvalidQuery,
                format!("query parameter `{key}` is empty"),
            )
            .with_field(key));
        }
        let form = serde_html_form::Deserializer::new(url::form_urlencoded::parse(raw.as_bytes()));
        serde_path_to_error::deserialize(form)
            .map(Query)
            .map_err(|e| {
                // The parameter at fault (`type`, not `type[1]`), where one is.
                let path = e.path().to_string();
                let name = path.split('[').next().unwrap_or_default().to_owned();
                let message = redact_values(&e.into_inner().to_string());
                match name.as_str() {
                    "." | "" => {
                        ApiError::refuse(Refusal::InvalidQuery, format!("invalid query: {message}"))
                    }
                    _ => ApiError::refuse(
                        Refusal::InvalidQuery,
                        format!("invalid value for `{name}`: {message}"),
                    )
                    .with_field(name),
                }
            })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Verified once per request: the tenant-quota layer leaves the caller it found here.
        let caller = match parts.extensions.remove::<Caller>() {
            Some(caller) => caller,
            None => {
                let header = parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                state.auth.authenticate(header).await?
            }
        };
        // What this request changes is recorded as done by its caller (events' `actor`).
        let actor = caller
            .subject
            .clone()
            .unwrap_or_else(|| format!("tenant:{}", caller.tenant).into());
        crate::telemetry::set_actor(actor);
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::redact_values;

    #[test]
    fn escaped_quotes_do_not_end_the_hidden_value() {
        let m = redact_values(r#"invalid type: string "ab\"cd\\", expected a map"#);
        assert!(!m.contains("cd"), "{m}");
        assert!(m.ends_with(", expected a map"), "{m}");
    }

    #[test]
    fn rejected_string_values_are_not_echoed() {
        let m = redact_values("invalid type: string \"s3cret\", expected a map at line 1");
        assert!(!m.contains("s3cret"));
        assert!(m.contains("expected a map"));
    }
}
