//! Vendor URLs turned into the URI hyper sends, cheaply: the origin is parsed once per thread,
//! then a call's path and query are only checked. Anything out of the ordinary (a dot segment,
//! a character the URL standard would escape, user info) goes through `Url::parse`, so the URI
//! sent is always the one the WHATWG parser gives.

use http::{
    uri::{Authority, Parts, PathAndQuery, Scheme},
    HeaderValue, Uri,
};

/// A parsed vendor origin: what a URI needs of it, and the `Host` header hyper would send.
#[derive(Clone)]
struct Origin {
    scheme: Scheme,
    authority: Authority,
    host: HeaderValue,
}

thread_local! {
    /// Vendor origins (`scheme://host:port`) already parsed: a call then costs a path check,
    /// not a host parse with IDNA processing. Origins come from configuration, so the cache stays
    /// small (and is bounded anyway).
    static ORIGINS: std::cell::RefCell<std::collections::HashMap<String, Option<Origin>>> =
        std::cell::RefCell::default();
}

/// What hyper is given for a vendor URL: the URI, and its `Host` header when known ahead.
pub(super) struct Target {
    pub uri: Uri,
    pub host: Option<HeaderValue>,
}

/// The URI of `url` exactly as `Url::parse` serialises it; `None` for what is no URL.
pub(super) fn target(url: &str) -> Option<Target> {
    let after_scheme = url.find("://")? + 3;
    let path_at = url[after_scheme..]
        .find(['/', '?', '#', '\\'])
        .map_or(url.len(), |i| after_scheme + i);
    let (origin, rest) = url.split_at(path_at);
    let fast = plain(rest)
        .then(|| {
            ORIGINS.with(|origins| {
                let mut origins = origins.borrow_mut();
                if let Some(known) = origins.get(origin) {
                    return known.clone();
                }
                if origins.len() >= 64 {
                    origins.clear();
                }
                let parsed = parse_origin(origin);
                origins.insert(origin.to_owned(), parsed.clone());
                parsed
            })
        })
        .flatten();
    match fast {
        Some(origin) => {
            let path = if rest.starts_with('/') {
                PathAndQuery::try_from(rest)
            } else {
                PathAndQuery::try_from(format!("/{rest}"))
            }
            .ok()?;
            let mut parts = Parts::default();
            parts.scheme = Some(origin.scheme);
            parts.authority = Some(origin.authority);
            parts.path_and_query = Some(path);
            Some(Target {
                uri: Uri::from_parts(parts).ok()?,
                host: Some(origin.host),
            })
        }
        None => {
            let parsed = reqwest::Url::parse(url).ok()?;
            Some(Target {
                uri: Uri::try_from(parsed.as_str()).ok()?,
                host: None,
            })
        }
    }
}

/// An origin the fast path can serve: http(s), a host, no user info.
fn parse_origin(origin: &str) -> Option<Origin> {
    let parsed = reqwest::Url::parse(origin).ok()?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.cannot_be_a_base()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return None;
    }
    let host = parsed.host_str()?;
    // As hyper writes `Host`: the port only where it is not the scheme's default (which the
    // URL parser has already dropped).
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Some(Origin {
        scheme: Scheme::try_from(parsed.scheme()).ok()?,
        host: HeaderValue::from_str(&authority).ok()?,
        authority: Authority::try_from(authority).ok()?,
    })
}

/// A path and query the URL parser would leave exactly as they are: only characters it never
/// escapes, percent signs that start an escape, and no `.` or `..` segment (which it removes).
fn plain(rest: &str) -> bool {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let bytes = rest.as_bytes();
    let escapes_ok = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    escapes_ok
        && !path.split('/').any(dot_segment)
        && path.bytes().all(|b| allowed(b, false))
        && query.bytes().all(|b| allowed(b, true))
}

/// `.` or `..`, each dot written as it is or as `%2e`.
fn dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while let Some(&first) = rest.first() {
        if first == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

/// Bytes the URL parser keeps as they are in a path (`'` too) or in a query (`'` not: the
/// special-query set escapes it).
fn allowed(b: u8, in_query: bool) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'%'
                | b'?'
        )
        || (b == b'\'' && !in_query)
}

#[cfg(test)]
mod tests {
    use super::target;

    /// The `Host` value hyper's client would derive from the URI.
    fn hyper_host(uri: &http::Uri) -> String {
        let host = uri.host().unwrap();
        match (uri.scheme_str(), uri.port_u16()) {
            (Some("http"), Some(80)) | (Some("https"), Some(443)) | (_, None) => host.to_owned(),
            (_, Some(port)) => format!("{host}:{port}"),
        }
    }

    #[test]
    fn vendor_urls_become_the_uri_url_parse_gives() {
        for url in [
            "https://infrahub-api.nexgencloud.com/v1/core/snapshots/1402",
            "http://127.0.0.1:8080/vendor/v1/snapshots/5e0f3c2a?limit=100&offset=0",
            "https://cloud.example.com/api/v1/images/snapshots/3911/create",
            "https://developers.example.com/api/vps/v1/virtual-machines/1268054/snapshot",
            "http://127.0.0.1:8080/v1/x?name=a+b&q=%C3%A9&f=it's",
            "http://127.0.0.1:8080/v1/it's/x",
            "http://[::1]:9090/a%20b/c d/%2E%2E/x?q=a b&r=%zz",
            "http://h/a/./b/{up}/c",
            "http://h/a/%2e/b",
            "http://h/a/.%2E/b?x=1",
            "http://h/a/%2e%2e",
            "http://h/a/.../b/.x/x./%2e%2e%2e",
            "http://h/a\\b",
            "http://h/a?b#frag",
            "https://Bücher.example/path/./x",
            "HTTP://EXAMPLE.com:80/Upper",
            "http://host",
            "http://host?only=query",
            "https://host:443/default-port",
            "https://user:pw@host/with-userinfo",
            "ftp://host/file",
        ] {
            // `{up}` stands for a parent segment (written out, it reads as a path elsewhere).
            let url = &url.replace("{up}", "..");
            let mut want = reqwest::Url::parse(url).unwrap();
            // A fragment is never sent.
            want.set_fragment(None);
            for _ in 0..2 {
                // The second round reads the cached origin.
                let got = target(url).unwrap();
                assert_eq!(got.uri.to_string(), want.as_str(), "{url}");
                if let Some(host) = got.host {
                    assert_eq!(host.to_str().unwrap(), hyper_host(&got.uri), "{url}");
                }
            }
        }
        assert!(target("not a url").is_none());
    }

    #[test]
    fn ordinary_calls_take_the_fast_path() {
        for url in [
            "https://api.example.com/v1/snapshots/5e0f3c2a?limit=100&offset=0",
            "http://127.0.0.1:8080/v1/snapshots",
            "http://127.0.0.1:8080",
        ] {
            assert!(target(url).unwrap().host.is_some(), "{url}");
        }
        for url in [
            "http://h/a/{up}/b",
            "http://h/a/%2E",
            "http://h/a b",
            "http://u:p@h/x",
        ] {
            let url = &url.replace("{up}", "..");
            assert!(target(url).unwrap().host.is_none(), "{url}");
        }
    }
}
