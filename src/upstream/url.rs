//! Vendor URLs parsed cheaply: the origin once per thread, then only path and query.

thread_local! {
    /// Vendor origins (`scheme://host:port`) already parsed: a vendor URL then costs a path
    /// parse, not a host parse with IDNA processing, on every call.
    static ORIGINS: std::cell::RefCell<std::collections::HashMap<String, reqwest::Url>> =
        std::cell::RefCell::default();
}

/// Parses a vendor URL as `Url::parse` would, reusing the parsed origin. Vendor origins come from
/// configuration, so the cache stays small (and is bounded anyway).
pub(super) fn parse_url(url: &str) -> Option<reqwest::Url> {
    let after_scheme = url.find("://")? + 3;
    let path_at = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    let (origin, rest) = url.split_at(path_at);
    if rest.contains('#') {
        return reqwest::Url::parse(url).ok();
    }
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let mut parsed = ORIGINS.with(|origins| {
        let mut origins = origins.borrow_mut();
        if let Some(known) = origins.get(origin) {
            return Some(known.clone());
        }
        let fresh = reqwest::Url::parse(origin).ok()?;
        if origins.len() >= 64 {
            origins.clear();
        }
        origins.insert(origin.to_owned(), fresh.clone());
        Some(fresh)
    })?;
    if parsed.cannot_be_a_base() {
        return reqwest::Url::parse(url).ok();
    }
    parsed.set_path(if path.is_empty() { "/" } else { path });
    parsed.set_query(query);
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn vendor_urls_parse_as_url_parse_does() {
        for url in [
            "https://infrahub-api.nexgencloud.com/v1/core/snapshots/1402",
            "http://127.0.0.1:8080/vendor/v1/snapshots/5e0f3c2a?limit=100&offset=0",
            "https://cloud.example.com/api/v1/images/snapshots/3911/create",
            "https://developers.example.com/api/vps/v1/virtual-machines/1268054/snapshot",
            "http://[::1]:9090/a%20b/c d/%2E%2E/x?q=a b&r=%zz",
            "https://Bücher.example/path/./x",
            "http://host",
            "http://host?only=query",
            "https://host:443/default-port",
            "https://user:pw@host/with-userinfo",
        ] {
            for _ in 0..2 {
                // The second round reads the cached origin.
                assert_eq!(parse_url(url), reqwest::Url::parse(url).ok(), "{url}");
            }
        }
        assert_eq!(parse_url("not a url"), None);
    }
}
