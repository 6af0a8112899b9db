//! The one vendor HTTP path every adapter calls through: the vendor's base URL, its auth
//! scheme and its error-body reader. [`Upstream`] below it sends (breaker, concurrency cap,
//! retries, timeouts, body cap); adapters above it describe only paths, queries and bodies.

use std::hash::{Hash, Hasher};

use reqwest::{
    header::{HeaderName, HeaderValue},
    Method,
};

use super::{wire, CallContext, ProviderError};
use crate::upstream::{Reply, Upstream};

/// How a vendor authenticates a call, from one credential field of the account.
#[derive(Clone, Copy, Debug)]
pub enum Auth {
    /// A header carrying the credential as it is (Hyperstack's `api_key`).
    Header {
        name: &'static str,
        credential: &'static str,
    },
    /// `Authorization: {scheme} {credential}`, the scheme spelled exactly as the vendor
    /// documents it (`Bearer`; Syminet's lower-case `bearer`). A credential pasted with the
    /// scheme in front (`Bearer abc`) is sent with it once.
    Scheme {
        scheme: &'static str,
        credential: &'static str,
    },
    /// A bearer token the adapter obtains itself and passes to [`VendorHttp::send`]
    /// (Oktawave's OAuth tokens).
    Obtained,
}

/// One vendor's HTTP endpoint as its adapter calls it.
#[derive(Clone, Debug)]
pub struct VendorHttp {
    vendor: crate::upstream::Vendor,
    base_url: String,
    auth: Auth,
    /// Reads the vendor's message out of an error body.
    message: fn(&[u8]) -> Option<String>,
    /// Headers the vendor expects on every call.
    fixed_headers: &'static [(&'static str, &'static str)],
    upstream: Upstream,
}

/// One vendor request: what the adapter decides.
#[derive(Debug)]
pub struct Request<'a> {
    /// What the call is for, for metrics and logs (`list`, `get`, `create`, …).
    pub operation: &'static str,
    pub method: Method,
    /// Under the base URL.
    pub path: &'a str,
    pub query: &'a [(&'a str, String)],
    pub body: Option<serde_json::Value>,
}

impl VendorHttp {
    /// The vendor's endpoint at `base_url`, called as its declaration says (auth, limits).
    pub fn new(info: &'static super::ProviderInfo, base_url: String, upstream: Upstream) -> Self {
        Self {
            vendor: info.vendor(),
            base_url,
            auth: info.auth,
            message: wire::error_message,
            fixed_headers: &[],
            upstream,
        }
    }

    /// Reads error bodies with the vendor's own reader instead of the common one.
    pub fn with_error_reader(mut self, message: fn(&[u8]) -> Option<String>) -> Self {
        self.message = message;
        self
    }

    /// Sends these headers on every call.
    pub fn with_headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Self {
        self.fixed_headers = headers;
        self
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The vendor as the HTTP layer knows it.
    pub fn vendor(&self) -> crate::upstream::Vendor {
        self.vendor
    }

    /// Calls the vendor for the account, authenticated by its credential.
    pub async fn call(
        &self,
        ctx: &CallContext<'_>,
        operation: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<Reply, ProviderError> {
        let auth = self.credential_header(ctx)?;
        let request = Request {
            operation,
            method,
            path,
            query,
            body,
        };
        self.send(ctx, &self.base_url, auth, request).await
    }

    /// Sends `request` under `base_url` with the given auth header: for adapters whose base
    /// URL depends on the account (a region) or whose credential is obtained per call.
    pub async fn send(
        &self,
        ctx: &CallContext<'_>,
        base_url: &str,
        auth: Option<(HeaderName, HeaderValue)>,
        request: Request<'_>,
    ) -> Result<Reply, ProviderError> {
        let mut rb = self
            .upstream
            .request(request.method, wire::url(base_url, request.path));
        if let Some((name, value)) = auth {
            rb = rb.header(name, value);
        }
        for (name, value) in self.fixed_headers {
            rb = rb.header(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        rb = rb.query(request.query);
        if let Some(body) = &request.body {
            rb = rb.json(body);
        }
        self.upstream
            .send(
                self.vendor,
                request.operation,
                identity(ctx),
                rb,
                self.message,
            )
            .await
    }

    /// The header that authenticates the account under [`Auth`] (none for [`Auth::Obtained`]).
    fn credential_header(
        &self,
        ctx: &CallContext<'_>,
    ) -> Result<Option<(HeaderName, HeaderValue)>, ProviderError> {
        let (name, field, value) = match self.auth {
            Auth::Header { name, credential } => (
                HeaderName::from_static(name),
                credential,
                ctx.secret(credential)?.to_owned(),
            ),
            Auth::Scheme { scheme, credential } => (
                reqwest::header::AUTHORIZATION,
                credential,
                with_scheme(scheme, ctx.secret(credential)?),
            ),
            Auth::Obtained => return Ok(None),
        };
        let value = sensitive(value).ok_or_else(|| ProviderError::Invalid {
            field: "credentials",
            message: format!(
                "the stored {} {field} contains characters no HTTP header can carry; replace it with PATCH",
                super::display_name(self.vendor.kind)
            ),
        })?;
        Ok(Some((name, value)))
    }
}

/// `{scheme} {token}`, with a scheme the token already carries (any case) removed first.
fn with_scheme(scheme: &str, token: &str) -> String {
    let token = token.trim();
    let bare = match token.get(..scheme.len() + 1) {
        Some(prefix)
            if prefix[..scheme.len()].eq_ignore_ascii_case(scheme) && prefix.ends_with(' ') =>
        {
            token[scheme.len() + 1..].trim_start()
        }
        _ => token,
    };
    format!("{scheme} {bare}")
}

/// `Authorization: Bearer {token}`, marked sensitive.
pub fn bearer(token: &str) -> Result<(HeaderName, HeaderValue), ProviderError> {
    sensitive(format!("Bearer {token}"))
        .map(|v| (reqwest::header::AUTHORIZATION, v))
        .ok_or_else(|| ProviderError::Upstream {
            status: None,
            message: "the provider issued a token no HTTP header can carry".to_owned(),
        })
}

fn sensitive(value: String) -> Option<HeaderValue> {
    // From the `String` itself: the secret is not copied again.
    let mut value = HeaderValue::try_from(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The account's identity at the vendor, keying its breaker and concurrency cap: a hash of
/// every credential value, so accounts sharing credentials share the vendor's limits and a
/// rotated credential starts afresh. It lives in memory only.
pub fn identity(ctx: &CallContext<'_>) -> u64 {
    use secrecy::ExposeSecret;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ctx.account.provider.hash(&mut h);
    for (field, value) in ctx.credentials.iter() {
        field.hash(&mut h);
        value.expose_secret().hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::with_scheme;

    #[test]
    fn the_scheme_is_sent_once_as_the_vendor_spells_it() {
        assert_eq!(with_scheme("Bearer", "abc"), "Bearer abc");
        assert_eq!(with_scheme("Bearer", "Bearer abc"), "Bearer abc");
        assert_eq!(with_scheme("Bearer", "bearer  abc "), "Bearer abc");
        assert_eq!(with_scheme("bearer", "Bearer abc"), "bearer abc");
        assert_eq!(with_scheme("Bearer", "Bearerabc"), "Bearer Bearerabc");
        assert_eq!(with_scheme("Bearer", "é"), "Bearer é");
    }
}
