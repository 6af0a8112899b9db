//! What a vendor's answer means: its body read within the cap, its status classified into the
//! gateway's errors (rate limits and their `Retry-After`, the vendor's spent-limit headers), and
//! the labels a call's outcome is logged and counted under.

use std::time::Duration;

use bytes::Bytes;

use reqwest::{header::HeaderMap, StatusCode};

use super::{guard::Guard, Reply, Vendor, MAX_BODY};
use crate::domain::{ProviderError, ProviderKind};

/// A vendor's rate-limit headers, as its documentation names them.
#[derive(Clone, Copy, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RateLimitHeaders {
    /// Requests left (`RateLimit-Remaining`).
    pub remaining: &'static str,
    /// Unix time of the reset it documents (`RateLimit-Reset`).
    pub reset: &'static str,
    /// Where the limit refills gradually: seconds until the next request is allowed once none
    /// is left (the reset then being the time of a *full* refill). `None`: the reset is when
    /// the next request is allowed.
    pub refill_secs: Option<u64>,
}

impl RateLimitHeaders {
    /// How long to hold the account after a reply saying none of the limit is left.
    pub fn exhausted_for(&self, headers: &HeaderMap) -> Option<u64> {
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<i64>().ok();
        if number(self.remaining)? > 0 {
            return None;
        }
        let until_reset = number(self.reset)
            .map(|at| at.saturating_sub(chrono::Utc::now().timestamp()).max(1))
            .map(|secs| secs as u64);
        Some(match (self.refill_secs, until_reset) {
            (Some(refill), Some(reset)) => refill.min(reset),
            (Some(refill), None) => refill,
            (None, Some(reset)) => reset,
            (None, None) => 1,
        })
    }
}

/// The status, headers and whole body of a vendor's answer (at most [`MAX_BODY`] bytes).
pub(super) async fn read_answer(
    vendor: ProviderKind,
    response: http::Response<hyper::body::Incoming>,
) -> Result<(StatusCode, HeaderMap, Bytes), ProviderError> {
    let (parts, mut incoming) = response.into_parts();
    // The headers outlive the body read: owned, they let hyper reuse its read buffer for the
    // connection's next read instead of allocating another (see `crate::head`).
    let (status, mut headers) = (parts.status, parts.headers);
    drop(parts.extensions);
    crate::head::own_values(&mut headers);
    // Sized once from the declared length (within the cap): no regrowth while reading.
    let declared = headers
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    let mut body = Body::default();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut incoming).await {
        let frame = frame.map_err(|_| ProviderError::Upstream {
            status: None,
            message: format!("the connection to {vendor} failed"),
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ProviderError::Upstream {
                status: Some(status.as_u16()),
                message: format!("{vendor} answered with a body over {MAX_BODY} bytes"),
            });
        }
        body.push(chunk, declared);
    }
    Ok((status, headers, body.into_bytes()))
}

/// A body being read: a body that comes in one chunk (the usual case) is kept as it came, not
/// copied; chunks after the first are gathered in one buffer.
#[derive(Default)]
struct Body {
    first: Option<Bytes>,
    rest: Vec<u8>,
}

impl Body {
    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.rest.len()
    }

    fn push(&mut self, chunk: Bytes, declared: usize) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(chunk);
            return;
        }
        if let Some(first) = self.first.take() {
            self.rest.reserve(declared.max(first.len() + chunk.len()));
            self.rest.extend_from_slice(&first);
        }
        self.rest.extend_from_slice(&chunk);
    }

    fn into_bytes(self) -> Bytes {
        self.first.unwrap_or_else(|| self.rest.into())
    }
}

/// The vendor's HTTP status in a failure, for logs (0 when there was none).
pub(super) fn upstream_status(e: &ProviderError) -> u16 {
    match e {
        ProviderError::Rejected { status, .. } | ProviderError::Auth { status } => *status,
        ProviderError::Upstream { status, .. } => status.unwrap_or(0),
        ProviderError::Forbidden { .. } => 403,
        ProviderError::NotFound | ProviderError::SourceNotFound { .. } => 404,
        ProviderError::Conflict { .. } => 409,
        ProviderError::RateLimited { .. } => 429,
        _ => 0,
    }
}

/// A metrics label for how a vendor call ended.
pub(super) fn outcome(result: &Result<Reply, ProviderError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ProviderError::Rejected { .. }) => "rejected",
        Err(ProviderError::Auth { .. }) => "auth_failed",
        Err(ProviderError::Forbidden { .. }) => "forbidden",
        Err(ProviderError::NotFound) => "not_found",
        Err(ProviderError::Conflict { .. }) => "conflict",
        Err(ProviderError::RateLimited { .. }) => "rate_limited",
        Err(ProviderError::Timeout) => "timeout",
        Err(ProviderError::CircuitOpen { .. }) => "circuit_open",
        Err(_) => "error",
    }
}

/// A reply saying the vendor's limit is spent holds the account now, not after a 429.
pub(super) fn hold_if_spent(
    policy: &Vendor,
    operation: &'static str,
    result: &Result<Reply, ProviderError>,
    guard: &Guard,
) {
    let exhausted = match (result, &policy.rate_limit_headers) {
        (Ok(reply), Some(headers)) => headers.exhausted_for(&reply.headers),
        _ => None,
    };
    if let Some(secs) = exhausted {
        let vendor = policy.kind;
        tracing::info!(%vendor, operation, secs, "rate limit spent: holding the account");
        guard.rate_limited(secs);
    }
}

/// A failure to exchange with the vendor: a connect timeout is a timeout (`504`), anything
/// else a failed connection (`502`, retried for GETs).
pub(super) fn transport_error(
    vendor: ProviderKind,
    e: &hyper_util::client::legacy::Error,
) -> ProviderError {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return ProviderError::Timeout;
            }
        }
        source = s.source();
    }
    ProviderError::Upstream {
        status: None,
        message: if e.is_connect() {
            format!("could not connect to {vendor}")
        } else {
            format!("the connection to {vendor} failed")
        },
    }
}

/// The wait a `Retry-After` asks for (delta-seconds or an HTTP date), or `default` without one;
/// between 1 s and an hour.
pub fn retry_after(headers: &HeaderMap, default: u64) -> u64 {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let secs = value.and_then(|v| {
        v.parse::<u64>().ok().or_else(|| {
            chrono::DateTime::parse_from_rfc2822(v)
                .ok()
                .map(|at| (at.timestamp() - chrono::Utc::now().timestamp()).max(1) as u64)
        })
    });
    secs.unwrap_or(default).clamp(1, 3600)
}

/// The generic vendor-status mapping (the README's error table), written once for every
/// adapter.
pub fn classify(
    vendor: ProviderKind,
    status: StatusCode,
    headers: &HeaderMap,
    message: Option<String>,
    rate_limit_hold: u64,
) -> ProviderError {
    let message = message
        // Generous here: the API edge scrubs secrets first, then shortens to 500 characters.
        .map(|m| m.chars().take(4000).collect::<String>())
        .unwrap_or_else(|| format!("{vendor} answered {status}"));
    match status.as_u16() {
        400 | 422 => ProviderError::Rejected {
            status: status.as_u16(),
            message,
        },
        401 => ProviderError::Auth { status: 401 },
        403 => ProviderError::Forbidden { message },
        404 => ProviderError::NotFound,
        409 => ProviderError::Conflict { message },
        429 => ProviderError::RateLimited {
            retry_after: retry_after(headers, rate_limit_hold),
        },
        _ => ProviderError::Upstream {
            status: Some(status.as_u16()),
            message,
        },
    }
}

thread_local! {
    /// The call counter and duration histogram of each (vendor, operation, outcome) this
    /// thread has seen.
    static HANDLES: crate::telemetry::HandleCache<
        (ProviderKind, &'static str, &'static str),
        (metrics::Counter, metrics::Histogram),
    > = Default::default();
}

/// Counts one vendor call and records how long it took.
pub(super) fn count(
    vendor: ProviderKind,
    operation: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    let make = || {
        let provider = vendor.as_str();
        (
            metrics::counter!(
                "snapgate_upstream_requests_total",
                "provider" => provider,
                "operation" => operation,
                "outcome" => outcome
            ),
            metrics::histogram!("snapgate_upstream_request_duration_seconds", "provider" => provider),
        )
    };
    crate::telemetry::with_handle(&HANDLES, (vendor, operation, outcome), make, |h| {
        h.0.increment(1);
        h.1.record(took.as_secs_f64());
    });
}

#[cfg(test)]
mod retry_after_tests {
    use super::retry_after;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn seconds_dates_and_absence_are_all_read() {
        assert_eq!(retry_after(&with("7"), 60), 7);
        assert_eq!(retry_after(&HeaderMap::new(), 60), 60);
        let in_two_minutes = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let secs = retry_after(&with(&in_two_minutes), 60);
        assert!((118..=121).contains(&secs), "{secs}");
        assert_eq!(retry_after(&with("soon"), 30), 30);
    }
}

#[cfg(test)]
mod rate_limit_header_tests {
    use super::RateLimitHeaders;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(remaining: &str, reset_in: i64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "ratelimit-remaining",
            HeaderValue::from_str(remaining).unwrap(),
        );
        let reset = (chrono::Utc::now().timestamp() + reset_in).to_string();
        h.insert("ratelimit-reset", HeaderValue::from_str(&reset).unwrap());
        h
    }

    const NEXT_SLOT: RateLimitHeaders = RateLimitHeaders {
        remaining: "ratelimit-remaining",
        reset: "ratelimit-reset",
        refill_secs: None,
    };

    #[test]
    fn a_spent_limit_holds_until_the_reset_or_the_next_refill() {
        assert_eq!(NEXT_SLOT.exhausted_for(&headers("3", 40)), None);
        let held = NEXT_SLOT.exhausted_for(&headers("0", 40)).unwrap();
        assert!((39..=41).contains(&held), "{held}");
        let gradual = RateLimitHeaders {
            refill_secs: Some(1),
            ..NEXT_SLOT
        };
        // A full refill an hour away, one request back every second: hold one second.
        assert_eq!(gradual.exhausted_for(&headers("0", 3600)), Some(1));
        // A reset already past still holds a moment; no headers, no hold.
        assert_eq!(NEXT_SLOT.exhausted_for(&headers("0", -5)), Some(1));
        assert_eq!(NEXT_SLOT.exhausted_for(&HeaderMap::new()), None);
    }
}

#[cfg(test)]
mod count_tests {
    use crate::domain::ProviderKind;
    use std::time::Duration;

    #[test]
    fn vendor_calls_are_counted_by_provider_operation_and_outcome() {
        let handle = crate::telemetry::metrics_handle().unwrap();
        let value = |series: &str| {
            let text = handle.render();
            text.lines()
                .find(|l| l.starts_with(series))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        };
        // An operation name only this test uses, so the series are its alone.
        let op = "count-test";
        let [one, other, ..] = ProviderKind::ALL;
        for _ in 0..2 {
            super::count(one, op, "ok", Duration::from_millis(1));
        }
        super::count(one, op, "timeout", Duration::ZERO);
        super::count(other, op, "ok", Duration::ZERO);
        let series = |provider: &str, outcome: &str| {
            format!(
                r#"snapgate_upstream_requests_total{{provider="{provider}",operation="{op}",outcome="{outcome}"}}"#
            )
        };
        assert_eq!(value(&series(one.as_str(), "ok")), Some(2.0));
        assert_eq!(value(&series(one.as_str(), "timeout")), Some(1.0));
        assert_eq!(value(&series(other.as_str(), "ok")), Some(1.0));
    }
}
