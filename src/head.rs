//! Request and response heads that own their bytes instead of sharing a connection's read
//! buffer.
//!
//! hyper parses a head's URI and header values as slices of the connection's 8 KB read buffer.
//! While a request is in flight, hyper keeps a read pending on the connection (to notice a peer
//! that hangs up), and since the head still shares the buffer it has to allocate a fresh 8 KB
//! one for that read. That is one 8 KB allocation and free per message, and two read buffers per
//! busy connection: at 1,000 connections, 8 MB more resident. Copying the head's few hundred
//! bytes into one allocation of its own lets hyper reuse its buffer in place. Both sides do
//! it: the server for each caller's request before routing ([`owned`]), the vendor client for
//! each vendor answer's headers ([`own_values`]), which the gateway keeps while it reads the
//! body and decides on rate limits.

use bytes::{Bytes, BytesMut};
use http::{uri::PathAndQuery, HeaderMap, HeaderValue, Request, Uri};

/// `request` with its path, query and header values copied into one buffer of their own.
/// Anything that cannot be rebuilt as it was (it never happens for what hyper parsed) is
/// left as it is: the copy is an optimisation, never a change to the request.
pub fn owned<B>(request: Request<B>) -> Request<B> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("", PathAndQuery::as_str);
    let (buffer, at) = copied(path.as_bytes(), &parts.headers);
    if at > 0 {
        parts.uri = with_path(&parts.uri, buffer.slice(..at));
    }
    replace_values(&mut parts.headers, &buffer, at);
    Request::from_parts(parts, body)
}

/// `headers` with their values copied into one buffer of their own (names never share the
/// read buffer: `http` copies them).
pub fn own_values(headers: &mut HeaderMap) {
    let (buffer, at) = copied(&[], headers);
    replace_values(headers, &buffer, at);
}

/// `prefix` and then every header value, in one buffer; and where the values start.
fn copied(prefix: &[u8], headers: &HeaderMap) -> (Bytes, usize) {
    let values: usize = headers.values().map(HeaderValue::len).sum();
    let mut buffer = BytesMut::with_capacity(prefix.len() + values);
    buffer.extend_from_slice(prefix);
    for value in headers.values() {
        buffer.extend_from_slice(value.as_bytes());
    }
    (buffer.freeze(), prefix.len())
}

/// Each value of `headers` replaced by its copy in `buffer` (from `at` on, in order).
fn replace_values(headers: &mut HeaderMap, buffer: &Bytes, mut at: usize) {
    for value in headers.values_mut() {
        let end = at + value.len();
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(buffer.slice(at..end)) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
        at = end;
    }
}

/// `uri` with its path and query read from `path` (the same text).
fn with_path(uri: &Uri, path: Bytes) -> Uri {
    let Ok(path) = PathAndQuery::from_maybe_shared(path) else {
        return uri.clone();
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path);
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` bytes of `wire` starting where `text` starts in it.
    fn slice_at(wire: &Bytes, text: &str, skip: usize, len: usize) -> Bytes {
        let at = std::str::from_utf8(wire).unwrap().find(text).unwrap() + skip;
        wire.slice(at..at + len)
    }

    /// Headers whose values are slices of their `name: value` lines in `wire`, as hyper
    /// builds them (`authorization` marked sensitive).
    fn headers_from(wire: &Bytes, pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            let line = format!("{name}: {value}");
            let bytes = slice_at(wire, &line, name.len() + 2, value.len());
            let name = http::HeaderName::from_static(name);
            let mut value = HeaderValue::from_maybe_shared(bytes).unwrap();
            value.set_sensitive(name == http::header::AUTHORIZATION);
            headers.append(name, value);
        }
        headers
    }

    /// A request whose URI and header values are slices of `wire`, as hyper builds them.
    fn parsed_from(wire: &Bytes) -> Request<()> {
        let uri = "/v1/snapshots/k1:abc?include=vendor";
        let mut request = Request::builder()
            .uri(Uri::from_maybe_shared(slice_at(wire, uri, 0, uri.len())).unwrap())
            .body(())
            .unwrap();
        *request.headers_mut() = headers_from(
            wire,
            &[
                ("authorization", "Bearer eyJ.secret.sig"),
                ("accept", "application/json"),
                ("accept", "text/plain"),
                ("x-custom", "héllo"),
            ],
        );
        request
    }

    #[test]
    fn the_copy_is_the_same_request_and_frees_the_read_buffer() {
        let wire = Bytes::from(
            String::from("GET /v1/snapshots/k1:abc?include=vendor HTTP/1.1\r\nauthorization: Bearer eyJ.secret.sig\r\n\
             accept: application/json\r\naccept: text/plain\r\nx-custom: héllo\r\n\r\n")
            .into_bytes(),
        );
        let request = parsed_from(&wire);
        let before = (request.uri().clone(), request.headers().clone());
        let copy = owned(request);
        assert_eq!(copy.uri(), &before.0);
        assert_eq!(copy.uri().query(), Some("include=vendor"));
        assert_eq!(copy.headers(), &before.1);
        let accepts: Vec<_> = copy.headers().get_all("accept").iter().collect();
        assert_eq!(accepts, ["application/json", "text/plain"]);
        assert!(copy.headers()["authorization"].is_sensitive());
        assert!(!copy.headers()["accept"].is_sensitive());
        drop(before);
        // Nothing of the copy refers to the buffer any more: it is the only owner.
        assert!(
            wire.try_into_mut().is_ok(),
            "the head still shares the buffer"
        );
    }

    #[test]
    fn owned_response_headers_are_the_same_and_free_the_read_buffer() {
        let wire = Bytes::from(
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 30\r\n\
              x-ratelimit-remaining: 0\r\nvary: a\r\nvary: b\r\n\r\n"
                .to_vec(),
        );
        let mut headers = headers_from(
            &wire,
            &[
                ("retry-after", "30"),
                ("x-ratelimit-remaining", "0"),
                ("vary", "a"),
                ("vary", "b"),
            ],
        );
        let before = headers.clone();
        own_values(&mut headers);
        assert_eq!(headers, before);
        let varies: Vec<_> = headers.get_all("vary").iter().collect();
        assert_eq!(varies, ["a", "b"]);
        drop(before);
        assert!(
            wire.try_into_mut().is_ok(),
            "the headers still share the buffer"
        );
    }

    #[test]
    fn an_absolute_uri_keeps_its_scheme_and_authority() {
        let request = Request::builder()
            .uri("http://127.0.0.1:8080/healthz?x=1")
            .body(())
            .unwrap();
        let copy = owned(request);
        assert_eq!(copy.uri(), "http://127.0.0.1:8080/healthz?x=1");
        let star = owned(Request::builder().uri("*").body(()).unwrap());
        assert_eq!(star.uri(), "*");
    }
}
