//! A vendor request as adapters describe it, assembled straight into what hyper sends: the URI
//! (origin parsed once per thread), the headers and the body. Each attempt sends a clone of the
//! parts; nothing is converted per call.

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use bytes::Bytes;
use http::{
    header::{self, HeaderName},
    HeaderMap, HeaderValue, Method, Uri,
};
use serde::Serialize;

use super::url::target;

/// Headers a vendor call carries: `Accept`, `User-Agent`, `x-request-id`, auth and `Host`, and
/// room for one more (a body's `Content-Type`). Six keep the map's entries under 1 KB (a
/// larger allocation takes glibc's slower path); more headers grow it.
const TYPICAL_HEADERS: usize = 6;

/// A vendor request being described ([`super::Upstream::request`]). A URL or body that cannot
/// be sent is reported when the request is sent, as a `502 upstream_error`.
#[derive(Debug)]
pub struct Outbound {
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
    timeout: Option<Duration>,
    error: Option<String>,
}

/// A request ready to send: one clone of its parts per attempt.
#[derive(Debug)]
pub(super) struct Ready {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    timeout: Option<Duration>,
}

impl Outbound {
    pub(super) fn new(method: Method, url: String) -> Self {
        let mut headers = HeaderMap::with_capacity(TYPICAL_HEADERS);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        Self {
            method,
            url,
            headers,
            body: Bytes::new(),
            timeout: None,
            error: None,
        }
    }

    /// Adds a header (a second value of the same name is sent too).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Appends form-encoded query pairs, as `Url::query_pairs_mut` does.
    pub fn query<V: AsRef<str>>(mut self, pairs: &[(&str, V)]) -> Self {
        if pairs.is_empty() {
            return self;
        }
        let start = match self.url.find('?') {
            Some(at) => at + 1,
            None => {
                self.url.push('?');
                self.url.len()
            }
        };
        let mut query = url::form_urlencoded::Serializer::for_suffix(&mut self.url, start);
        for (name, value) in pairs {
            query.append_pair(name, value.as_ref());
        }
        query.finish();
        self
    }

    /// A JSON body, with its `Content-Type`.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.body = bytes.into();
                self.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            Err(e) => self.error = Some(format!("the body cannot be written as JSON ({e})")),
        }
        self
    }

    /// A form-encoded body, with its `Content-Type`.
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.body = body.into();
        self.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        self
    }

    /// HTTP Basic authentication (RFC 7617), the header marked sensitive.
    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        let encoded = STANDARD.encode(format!("{user}:{password}"));
        match HeaderValue::try_from(format!("Basic {encoded}")) {
            Ok(mut value) => {
                value.set_sensitive(true);
                self.headers.append(header::AUTHORIZATION, value);
            }
            Err(_) => self.error = Some("the Basic credentials cannot be sent".to_owned()),
        }
        self
    }

    /// The request as hyper will send it; why not, if it cannot be.
    pub(super) fn ready(mut self) -> Result<Ready, String> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let target = target(&self.url).ok_or_else(|| "not a URL it can call".to_owned())?;
        if let Some(host) = target.host {
            self.headers.insert(header::HOST, host);
        }
        Ok(Ready {
            method: self.method,
            uri: target.uri,
            headers: self.headers,
            body: self.body,
            timeout: self.timeout,
        })
    }
}

impl Ready {
    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = Some(timeout);
    }

    /// One attempt's request: clones of the parts (reference counts, and the header map).
    pub fn attempt(&self) -> http::Request<http_body_util::Full<Bytes>> {
        let mut request = http::Request::new(http_body_util::Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

pub(super) const USER_AGENT: &str = concat!("snapgate/", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_form_encoded_after_any_in_the_url() {
        let uri = |url: &str, pairs: &[(&str, &str)]| {
            let r = Outbound::new(Method::GET, url.to_owned()).query(pairs);
            r.ready().unwrap().uri().to_string()
        };
        assert_eq!(
            uri(
                "http://127.0.0.1:9/v1/x",
                &[("name", "a b&c"), ("page", "2")]
            ),
            "http://127.0.0.1:9/v1/x?name=a+b%26c&page=2"
        );
        assert_eq!(
            uri("http://127.0.0.1:9/v1/x?fixed=1", &[("q", "é")]),
            "http://127.0.0.1:9/v1/x?fixed=1&q=%C3%A9"
        );
        assert_eq!(
            uri("http://127.0.0.1:9/v1/x", &[]),
            "http://127.0.0.1:9/v1/x"
        );
    }

    #[test]
    fn bodies_and_auth_carry_their_headers() {
        let r = Outbound::new(Method::POST, "http://127.0.0.1:9/token".into())
            .basic_auth("client id", "s3cret:x")
            .form(&[("grant_type", "password"), ("password", "pa ss&word")])
            .ready()
            .unwrap();
        let auth = &r.headers()[header::AUTHORIZATION];
        assert!(auth.is_sensitive());
        // base64("client id:s3cret:x")
        assert_eq!(auth, "Basic Y2xpZW50IGlkOnMzY3JldDp4");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(r.body(), b"grant_type=password&password=pa+ss%26word");
        assert_eq!(r.headers()[header::HOST], "127.0.0.1:9");

        let r = Outbound::new(Method::POST, "https://api.example.com/v1/s".into())
            .json(&serde_json::json!({"name": "n"}))
            .ready()
            .unwrap();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[header::HOST], "api.example.com");
        assert_eq!(r.body(), br#"{"name":"n"}"#);
        let sent = r.attempt();
        assert_eq!(sent.method(), Method::POST);
        assert_eq!(sent.uri(), "https://api.example.com/v1/s");
        assert_eq!(sent.headers()[header::ACCEPT], "application/json");
        assert!(sent.headers()[header::USER_AGENT]
            .to_str()
            .unwrap()
            .starts_with("snapgate/"));
    }

    #[test]
    fn what_cannot_be_sent_is_an_error_at_send() {
        let r = Outbound::new(Method::GET, "not a url".into()).ready();
        assert!(r.is_err());
    }
}
