//! Answers of mutating routes: the `Idempotency-Key` header in, JSON (with `Location` for an
//! operation) or a replayed answer out.

use axum::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use super::{
    problem::{ApiError, Refusal},
    request_id,
};
use crate::service::{Answer, Outcome};

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
            ApiError::refuse(
                Refusal::InvalidIdempotencyKey,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })
}

/// A JSON answer; a `202` carrying an operation gets `Location` pointing at it.
pub fn respond(status: StatusCode, body: serde_json::Value) -> Response {
    let location = body["operation"]["id"]
        .as_str()
        .and_then(|id| HeaderValue::from_str(&format!("/v1/operations/{id}")).ok());
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// An answer the work gave now, or the one a key replays (marked `Idempotency-Replayed`; a
/// replayed problem names this request, like its `x-request-id` header).
pub fn outcome(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Done(Answer { status, body }) => respond(status_of(status), body),
        Outcome::Replayed(Answer { status, mut body }) => {
            let status = status_of(status);
            if body.get("request_id").is_some() {
                body["request_id"] = request_id::current().into();
            }
            let mut response = respond(status, body);
            if status.is_client_error() || status.is_server_error() {
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
            }
            response
                .headers_mut()
                .insert("idempotency-replayed", HeaderValue::from_static("true"));
            response
        }
    }
}

fn status_of(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

/// A JSON answer serialised into one buffer sized for a typical body up front (axum's `Json`
/// starts at 128 bytes and regrows: four copies for a snapshot). For the hot routes.
pub struct JsonBody<T>(pub T);

/// Room for a snapshot (~400 bytes, up to ~900 with long names and a description) without
/// regrowth, and under the 1 KB above which glibc's allocator takes its slower path.
const TYPICAL_BODY: usize = 1024;

impl<T: serde::Serialize> IntoResponse for JsonBody<T> {
    fn into_response(self) -> Response {
        let mut buf = Vec::with_capacity(TYPICAL_BODY);
        match serde_json::to_writer(&mut buf, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                buf,
            )
                .into_response(),
            Err(e) => {
                super::problem::ApiError::internal("serialising a response", &e).into_response()
            }
        }
    }
}
