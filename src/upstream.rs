//! The one place that builds vendor HTTP clients and sends vendor requests: timeouts,
//! no redirects, capped bodies, request ids, tracing, and the generic status mapping.
//!
//! Adapters describe a request; this module sends it and turns every failure into a
//! [`ProviderError`]. It knows no vendor's wire format.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{header::HeaderMap, Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use crate::{domain::ProviderKind, providers::ProviderError, telemetry};

/// Largest vendor response body read, in bytes.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Timeouts for vendor calls.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A pooled HTTP client shared by every adapter and tenant.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: reqwest::Client,
}

/// A vendor's successful answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Decodes the body into a typed wire struct; garbage is a `502 upstream_error`.
    pub fn json<T: DeserializeOwned>(&self, vendor: ProviderKind) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| ProviderError::Upstream {
            status: Some(self.status.as_u16()),
            message: format!("{vendor} answered with a body snapgate could not read ({e})"),
        })
    }
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(concat!("snapgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { client }
    }

    /// Starts a request; the adapter adds auth, query and body.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let mut rb = self
            .client
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json");
        let id = telemetry::current_request_id();
        if !id.is_empty() {
            rb = rb.header("x-request-id", id);
        }
        rb
    }

    /// Sends a request; non-2xx answers become [`ProviderError`]s, with the vendor's message
    /// taken from the body by `message` (a vendor-specific reader).
    pub async fn send(
        &self,
        vendor: ProviderKind,
        operation: &'static str,
        request: RequestBuilder,
        message: fn(&[u8]) -> Option<String>,
    ) -> Result<Reply, ProviderError> {
        let started = Instant::now();
        let result = self.send_inner(vendor, request, message).await;
        let ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(reply) => tracing::debug!(%vendor, operation, status = reply.status.as_u16(), ms, "upstream call"),
            Err(e) => tracing::info!(%vendor, operation, error = %e, ms, "upstream call failed"),
        }
        result
    }

    async fn send_inner(
        &self,
        vendor: ProviderKind,
        request: RequestBuilder,
        message: fn(&[u8]) -> Option<String>,
    ) -> Result<Reply, ProviderError> {
        let mut response = request.send().await.map_err(|e| transport_error(vendor, &e))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(vendor, &e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ProviderError::Upstream {
                    status: Some(status.as_u16()),
                    message: format!("{vendor} answered with a body over {MAX_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(Reply {
                status,
                headers,
                body: body.into(),
            });
        }
        let text = message(&body);
        Err(classify(vendor, status, &headers, text))
    }
}

fn transport_error(vendor: ProviderKind, e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout
    } else {
        ProviderError::Upstream {
            status: None,
            message: if e.is_connect() {
                format!("could not connect to {vendor}")
            } else {
                format!("the connection to {vendor} failed")
            },
        }
    }
}

/// Seconds from a `Retry-After` header (delta-seconds form), default 1.
pub fn retry_after(headers: &HeaderMap) -> u64 {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1)
        .clamp(1, 3600)
}

/// The generic vendor-status mapping of DESIGN.md §3, written once for every adapter.
pub fn classify(
    vendor: ProviderKind,
    status: StatusCode,
    headers: &HeaderMap,
    message: Option<String>,
) -> ProviderError {
    let message = message
        .map(|m| m.chars().take(500).collect::<String>())
        .unwrap_or_else(|| format!("{vendor} answered {status}"));
    match status.as_u16() {
        400 | 422 => ProviderError::Rejected {
            status: status.as_u16(),
            message,
        },
        401 | 403 => ProviderError::Auth {
            status: status.as_u16(),
        },
        404 => ProviderError::NotFound,
        409 => ProviderError::Conflict { message },
        429 => ProviderError::RateLimited {
            retry_after: retry_after(headers),
        },
        _ => ProviderError::Upstream {
            status: Some(status.as_u16()),
            message,
        },
    }
}
