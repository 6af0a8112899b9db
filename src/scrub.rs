//! Removes secrets from text a vendor wrote, in every form a secret takes on the wire.
//!
//! A vendor may echo what it received into an error message: the token as sent (after the
//! adapter trimmed it or stripped a `Bearer ` prefix), inside a JSON string (`"` and `\`
//! escaped), URL-encoded from a form body, base64 inside `Basic` auth, or a token derived from
//! the credentials (Oktawave's OAuth access token). A [`Scrubber`] is built from the exact
//! header and body values of a call ([`Scrubber::of_request`]) and from an account's stored
//! credentials, and knows each of those forms.

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD},
    Engine,
};

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed: they would match ordinary words.
const MIN_LEN: usize = 4;

/// Headers whose values are credentials.
const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "api_key",
    "x-api-key",
    "proxy-authorization",
    "cookie",
];

/// The set of strings to remove, longest first.
#[derive(Clone, Default)]
pub struct Scrubber {
    needles: Vec<String>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} forms, redacted)", self.needles.len())
    }
}

impl Scrubber {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret in every form it may be echoed in.
    pub fn add(&mut self, secret: &str) {
        let trimmed = secret.trim();
        let mut bases = vec![secret, trimmed];
        for prefix in ["Bearer ", "bearer ", "BEARER ", "Basic ", "basic "] {
            if let Some(rest) = trimmed.strip_prefix(prefix) {
                bases.push(rest.trim());
            }
        }
        for base in bases {
            if base.chars().count() < MIN_LEN {
                continue;
            }
            self.push(base.to_owned());
            // Inside a JSON string, and inside JSON that was itself put in a JSON string (a
            // vendor's nested message passed on as text): quotes and backslashes escaped twice.
            let once = json_escaped(base);
            let twice = json_escaped(&once);
            self.push(once);
            self.push(twice);
            // URL-encoded, as a form body or query carries it (`+` or `%20` for spaces).
            let form: String = url::form_urlencoded::byte_serialize(base.as_bytes()).collect();
            // ... and encoded again, as a form value that is itself put in a URL.
            let twice: String = url::form_urlencoded::byte_serialize(form.as_bytes()).collect();
            self.push(twice);
            self.push(form.replace('+', "%20"));
            self.push(form.to_ascii_lowercase());
            self.push(form);
            // base64, as `Basic` auth or a vendor's own encoding carries it.
            for encoded in [
                STANDARD.encode(base),
                URL_SAFE.encode(base),
                URL_SAFE_NO_PAD.encode(base),
            ] {
                self.push(encoded);
            }
        }
    }

    fn push(&mut self, needle: String) {
        if needle.chars().count() >= MIN_LEN && !self.needles.contains(&needle) {
            self.needles.push(needle);
            // Longest first, so a secret inside a longer secret form goes as a whole.
            self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        }
    }

    /// The secrets of one outgoing request (see [`Sent`]).
    pub fn of_request(request: &reqwest::Request) -> Self {
        Sent::of(request).scrubber()
    }

    fn add_basic(&mut self, encoded: &str) {
        let Some(decoded) = STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return;
        };
        self.add(&decoded);
        if let Some((user, password)) = decoded.split_once(':') {
            self.add(user);
            self.add(password);
        }
    }

    /// Adds every secret of another scrubber.
    pub fn extend(&mut self, other: &Scrubber) {
        for needle in &other.needles {
            self.push(needle.clone());
        }
    }

    /// `text` with every known form of every secret replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), REDACTED);
            }
        }
        out
    }
}

/// `s` as it appears between the quotes of a JSON string.
fn json_escaped(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_default();
    json.get(1..json.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

/// What an outgoing request carried that may be secret — its credential headers and a
/// form-encoded body — kept as sent (a few cheap clones). The [`Scrubber`], with every encoded
/// form, is only built when a vendor's words come back, not on every call.
pub struct Sent {
    headers: Vec<reqwest::header::HeaderValue>,
    form: Option<Vec<u8>>,
}

impl Sent {
    pub fn of(request: &reqwest::Request) -> Self {
        let headers = SECRET_HEADERS
            .iter()
            .flat_map(|name| request.headers().get_all(*name).iter().cloned())
            .collect();
        let form = request
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let form = request
            .body()
            .and_then(|b| b.as_bytes())
            .filter(|_| form)
            .map(<[u8]>::to_vec);
        Self { headers, form }
    }

    /// Every form of every secret the request carried: each credential header (the whole
    /// value, the part after the scheme, and for `Basic` the decoded user and password), and a
    /// form body as a whole and value by value (OAuth password grants).
    pub fn scrubber(&self) -> Scrubber {
        let mut s = Scrubber::new();
        for value in &self.headers {
            let Ok(value) = value.to_str() else { continue };
            s.add(value);
            if let Some((scheme, rest)) = value.trim().split_once(' ') {
                if scheme.eq_ignore_ascii_case("basic") {
                    s.add_basic(rest.trim());
                }
            }
        }
        if let Some(body) = &self.form {
            // The body as a whole (a vendor may echo all of it, in any encoding), then each value.
            s.add(&String::from_utf8_lossy(body));
            for (key, value) in url::form_urlencoded::parse(body) {
                if !matches!(key.as_ref(), "grant_type" | "scope") {
                    s.add(&value);
                }
            }
        }
        s
    }
}

impl std::fmt::Debug for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sent({} headers, redacted)", self.headers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "  Bearer CAN\"ARY\\tok+en/1  ";

    fn forms() -> Vec<String> {
        let core = "CAN\"ARY\\tok+en/1";
        let json = serde_json::to_string(core).unwrap();
        vec![
            CANARY.to_owned(),
            core.to_owned(),
            json[1..json.len() - 1].to_owned(),
            url::form_urlencoded::byte_serialize(core.as_bytes()).collect(),
            STANDARD.encode(core),
            URL_SAFE_NO_PAD.encode(core),
        ]
    }

    #[test]
    fn every_form_of_a_stored_secret_is_removed() {
        let mut s = Scrubber::new();
        s.add(CANARY);
        for form in forms() {
            let text = format!("vendor says: invalid credential <{form}> rejected");
            let clean = s.scrub(&text);
            assert!(!clean.contains("ARY"), "{form:?} survived: {clean}");
            assert!(clean.contains(REDACTED));
        }
    }

    #[test]
    fn a_requests_headers_basic_auth_and_form_body_are_known() {
        let client = reqwest::Client::new();
        let request = client
            .post("http://127.0.0.1:9/token")
            .basic_auth("client-id-77", Some("client-secret-88"))
            .header("api_key", "hs-key-99")
            .form(&[
                ("grant_type", "password"),
                ("username", "user@example.com"),
                ("password", "pa ss&word"),
            ])
            .build()
            .unwrap();
        let s = Scrubber::of_request(&request);
        let text = "client-id-77 client-secret-88 hs-key-99 user@example.com pa ss&word \
                    pa+ss%26word grant_type password";
        let clean = s.scrub(text);
        for secret in [
            "client-id-77",
            "client-secret-88",
            "hs-key-99",
            "user@example.com",
            "ss&word",
            "ss%26",
        ] {
            assert!(!clean.contains(secret), "{secret} survived: {clean}");
        }
        assert!(clean.contains("grant_type password"), "{clean}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let mut s = Scrubber::new();
        s.add("top-secret-value");
        assert!(!format!("{s:?}").contains("secret-value"));
    }
}
