//! Removes secrets from text a vendor wrote, in every form a secret takes on the wire.
//!
//! A vendor may echo what it received into an error message: the token as sent (after the
//! adapter trimmed it or stripped a `Bearer ` prefix), inside a JSON string (`"` and `\`
//! escaped), URL-encoded from a form body, base64 inside `Basic` auth, or a token derived from
//! the credentials (Oktawave's OAuth access token). A [`Scrubber`] is built from the exact
//! header and body values of a call ([`Scrubber::of_request`]) and from an account's stored
//! credentials, and knows each of those forms.

use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::{
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
    Engine,
};

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed: they would match ordinary words.
const MIN_LEN: usize = 4;

/// In a vendor's *data* (a 2xx body: names, descriptions, statuses), only forms at least this
/// long are removed: a 4-letter user name must not turn a snapshot called `admin-nightly`
/// into `[redacted]-nightly`. Tokens, keys and passwords are longer.
const MIN_DATA_LEN: usize = 8;

/// A vendor that truncates what it echoes (`token abcd1234…`) shows a prefix: prefixes of a
/// secret this long or longer are removed from messages.
const MIN_PREFIX: usize = 8;

/// Headers whose values are credentials, whatever the vendor (a vendor's own credential
/// header is declared by its adapter and passed to [`Sent::of`]).
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "x-api-key",
    "proxy-authorization",
    "cookie",
];

/// The set of strings to remove, as one automaton each for messages and for data.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Every form of every secret, identifiers and prefixes included: for messages.
    needles: Vec<String>,
    /// Whole forms of real secrets, at least [`MIN_DATA_LEN`] long: for vendor data.
    data_needles: Vec<String>,
    messages: OnceLock<Option<AhoCorasick>>,
    data: OnceLock<Option<AhoCorasick>>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} forms, redacted)", self.needles.len())
    }
}

/// Whether a value is a secret (removed from data too) or an identifier that travels with
/// one (a Basic user, an OAuth user name: removed from messages only).
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Secret,
    Identifier,
}

impl Scrubber {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret in every form it may be echoed in.
    pub fn add(&mut self, secret: &str) {
        self.add_as(secret, Kind::Secret);
    }

    fn add_as(&mut self, secret: &str, kind: Kind) {
        self.add_forms(secret, kind, true);
    }

    /// Adds `secret`'s forms, and with `prefixes` its truncations (not for a whole form body,
    /// whose prefix is `grant_type=…`).
    fn add_forms(&mut self, secret: &str, kind: Kind, prefixes: bool) {
        let trimmed = secret.trim();
        let mut bases = vec![secret, trimmed];
        for prefix in [
            "Bearer ", "bearer ", "BEARER ", "Basic ", "basic ", "Token ",
        ] {
            if let Some(rest) = trimmed.strip_prefix(prefix) {
                bases.push(rest.trim());
            }
        }
        for base in bases {
            if base.chars().count() < MIN_LEN {
                continue;
            }
            for form in forms(base) {
                self.push(form, kind);
            }
            // A truncated echo: every prefix long enough not to be an ordinary word.
            let chars: Vec<(usize, char)> = base.char_indices().collect();
            if prefixes && chars.len() > MIN_PREFIX * 2 {
                for &(end, _) in &chars[MIN_PREFIX..] {
                    self.needles.push(base[..end].to_owned());
                }
            }
        }
        self.settle();
    }

    /// Each needle once, and the automatons rebuilt on next use.
    fn settle(&mut self) {
        self.needles.sort();
        self.needles.dedup();
        self.data_needles.sort();
        self.data_needles.dedup();
        self.messages = OnceLock::new();
        self.data = OnceLock::new();
    }

    fn push(&mut self, needle: String, kind: Kind) {
        let len = needle.chars().count();
        if len < MIN_LEN {
            return;
        }
        if kind == Kind::Secret && len >= MIN_DATA_LEN {
            self.data_needles.push(needle.clone());
        }
        self.needles.push(needle);
    }

    /// The secrets of one outgoing request (see [`Sent`]), `vendor_header` being the
    /// vendor's own credential header if it has one.
    pub fn of_request(headers: &http::HeaderMap, body: &[u8], vendor_header: Option<&str>) -> Self {
        Sent::of(headers, body, vendor_header).build()
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
            self.add_as(user, Kind::Identifier);
            self.add(password);
        }
    }

    /// Adds every secret of another scrubber.
    pub fn extend(&mut self, other: &Scrubber) {
        self.needles.extend(other.needles.iter().cloned());
        self.data_needles.extend(other.data_needles.iter().cloned());
        self.settle();
    }

    /// `text` with every known form of every secret replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        match automaton(&self.messages, &self.needles) {
            Some(ac) if ac.is_match(text) => {
                ac.replace_all(text, &vec![REDACTED; ac.patterns_len()])
            }
            _ => text.to_owned(),
        }
    }

    /// A vendor's data (a 2xx body) with every whole form of a secret replaced, or `None` when
    /// it holds none (the common case: no copy). Identifiers and prefixes stay: they may be
    /// ordinary words in a name.
    pub fn scrub_data(&self, body: &[u8]) -> Option<Vec<u8>> {
        let ac = automaton(&self.data, &self.data_needles)?;
        ac.is_match(body)
            .then(|| ac.replace_all_bytes(body, &vec![REDACTED.as_bytes(); ac.patterns_len()]))
    }
}

fn automaton<'a>(
    cell: &'a OnceLock<Option<AhoCorasick>>,
    needles: &[String],
) -> Option<&'a AhoCorasick> {
    cell.get_or_init(|| {
        (!needles.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(needles)
                    .ok()
            })
            .flatten()
    })
    .as_ref()
}

/// Every form `base` may be echoed in.
fn forms(base: &str) -> Vec<String> {
    let mut out = vec![base.to_owned()];
    // Inside a JSON string, and inside JSON that was itself put in a JSON string (a vendor's
    // nested message passed on as text); with `/` escaped (PHP), with `<>&'` and everything
    // past ASCII as `\uXXXX` (Go, Python's `ensure_ascii`), in either hex case.
    let once = json_escaped(base);
    out.push(json_escaped(&once));
    out.push(once.replace('/', "\\/"));
    for (set, upper_hex) in [
        (JsonEscapes::Html, false),
        (JsonEscapes::NonAscii, false),
        (JsonEscapes::All, false),
        (JsonEscapes::All, true),
    ] {
        out.push(json_unicode(&once, set, upper_hex));
    }
    out.push(once);
    // URL-encoded: as a form (`+` or `%20` for spaces), by RFC 3986 (`~` kept), by
    // JavaScript's `encodeURIComponent`, and encoded twice; each with upper- or lower-case hex.
    let form: String = url::form_urlencoded::byte_serialize(base.as_bytes()).collect();
    let percent = [
        url::form_urlencoded::byte_serialize(form.as_bytes()).collect(),
        form.replace('+', "%20"),
        percent_encoding::utf8_percent_encode(base, RFC3986).to_string(),
        percent_encoding::utf8_percent_encode(base, URI_COMPONENT).to_string(),
        form,
    ];
    for p in percent {
        out.push(lower_hex_escapes(&p));
        out.push(p);
    }
    // HTML: named entities, then decimal and hex character references.
    if base.contains(['&', '<', '>', '"', '\'']) {
        for style in [Html::Named, Html::Decimal, Html::Hex, Html::UpperHex] {
            out.push(html_escaped(base, style));
        }
    }
    // base64, as `Basic` auth or a vendor's own encoding carries it, padded or not; and the
    // part that is the same wherever the secret sits inside a longer encoded value.
    for engine in [&STANDARD, &URL_SAFE] {
        out.push(engine.encode(base));
        for shift in 1..3 {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(base.as_bytes());
            let encoded = engine.encode(&shifted);
            if let Some(core) = encoded.get(4..encoded.len().saturating_sub(4)) {
                if core.len() >= MIN_DATA_LEN {
                    out.push(core.to_owned());
                }
            }
        }
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(base));
    }
    out
}

/// The characters RFC 3986 leaves unreserved (`A-Z a-z 0-9 - . _ ~`) are kept; all else escaped.
const RFC3986: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `encodeURIComponent` also keeps `! ' ( ) *`.
const URI_COMPONENT: &percent_encoding::AsciiSet = &RFC3986
    .remove(b'!')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*');

/// `%2F` as `%2f`: only the escapes' hex digits change case, never the secret's own letters.
fn lower_hex_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut hex_left = 0;
    for c in s.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Html {
    Named,
    Decimal,
    Hex,
    UpperHex,
}

fn html_escaped(s: &str, style: Html) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match (c, style) {
            ('&' | '<' | '>' | '"' | '\'', Html::Decimal) => {
                out.push_str(&format!("&#{};", c as u32))
            }
            ('&' | '<' | '>' | '"' | '\'', Html::Hex) => {
                out.push_str(&format!("&#x{:x};", c as u32))
            }
            ('&' | '<' | '>' | '"' | '\'', Html::UpperHex) => {
                out.push_str(&format!("&#x{:X};", c as u32))
            }
            ('&', Html::Named) => out.push_str("&amp;"),
            ('<', Html::Named) => out.push_str("&lt;"),
            ('>', Html::Named) => out.push_str("&gt;"),
            ('"', Html::Named) => out.push_str("&quot;"),
            ('\'', Html::Named) => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `s` as it appears between the quotes of a JSON string.
fn json_escaped(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_default();
    json.get(1..json.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

/// Which characters a JSON writer puts as `\\uXXXX`: `<>&` (Go), everything past ASCII
/// (Python's `ensure_ascii`), or both and `'` (PHP's `JSON_HEX_*`).
#[derive(Clone, Copy, PartialEq)]
enum JsonEscapes {
    Html,
    NonAscii,
    All,
}

fn json_unicode(escaped: &str, set: JsonEscapes, upper_hex: bool) -> String {
    let mut out = String::with_capacity(escaped.len());
    for c in escaped.chars() {
        let html = matches!(c, '<' | '>' | '&');
        let escape = match set {
            JsonEscapes::Html => html,
            JsonEscapes::NonAscii => !c.is_ascii(),
            JsonEscapes::All => html || c == '\'' || !c.is_ascii(),
        };
        if !escape {
            out.push(c);
            continue;
        }
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            out.push_str(&if upper_hex {
                format!("\\u{unit:04X}")
            } else {
                format!("\\u{unit:04x}")
            });
        }
    }
    out
}

/// What a JSON decode error may say of a vendor's body without quoting any of it: serde's own
/// message quotes the offending value, and a vendor may have echoed a credential there.
pub fn unreadable_json(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("line {}, column {}", e.line(), e.column());
    match e.classify() {
        Category::Io | Category::Syntax => format!("not valid JSON at {at}"),
        Category::Eof => "JSON that ends early".to_owned(),
        Category::Data => {
            // `missing field `x``: the name is snapgate's own field, never vendor content.
            let message = e.to_string();
            match message
                .strip_prefix("missing field `")
                .and_then(|m| m.split_once('`'))
            {
                Some((field, _)) => format!("JSON without its `{field}` field"),
                None => format!("a value of an unexpected type or form at {at}"),
            }
        }
    }
}

/// What an outgoing request carried that may be secret — its credential headers and a
/// form-encoded body — kept as sent (a few cheap clones). The [`Scrubber`], with every encoded
/// form, is only built when a vendor's words come back, not on every call.
pub struct Sent {
    headers: Vec<reqwest::header::HeaderValue>,
    form: Option<Vec<u8>>,
}

impl Sent {
    /// What a request with these headers and body carried.
    pub fn of(headers: &http::HeaderMap, body: &[u8], vendor_header: Option<&str>) -> Self {
        let secret = SECRET_HEADERS
            .iter()
            .copied()
            .chain(vendor_header)
            .flat_map(|name| headers.get_all(name).iter().cloned())
            .collect();
        let form = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let form = form.then(|| body.to_vec());
        Self {
            headers: secret,
            form,
        }
    }

    /// Every form of every secret the request carried: each credential header (the whole
    /// value, the part after the scheme, and for `Basic` the decoded user and password), and a
    /// form body as a whole and value by value (OAuth password grants).
    pub fn scrubber(&self) -> Arc<Scrubber> {
        cached(self)
    }

    fn build(&self) -> Scrubber {
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
            s.add_forms(&String::from_utf8_lossy(body), Kind::Secret, false);
            for (key, value) in url::form_urlencoded::parse(body) {
                match key.as_ref() {
                    "grant_type" | "scope" => {}
                    "username" | "client_id" => s.add_as(&value, Kind::Identifier),
                    _ => s.add(&value),
                }
            }
        }
        s
    }
}

thread_local! {
    /// Scrubbers of the secrets this thread sent lately, by a keyed hash of what was sent: the
    /// encoded forms and the automaton are built once per credential, not once per call.
    static CACHE: std::cell::RefCell<std::collections::HashMap<u64, Arc<Scrubber>>> =
        Default::default();
}

/// Most scrubbers a thread keeps; past it the cache starts again.
const CACHED: usize = 1024;

fn cached(sent: &Sent) -> Arc<Scrubber> {
    use std::hash::{BuildHasher, Hash, Hasher};
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut hasher = KEY.get_or_init(Default::default).build_hasher();
    for value in &sent.headers {
        value.as_bytes().hash(&mut hasher);
    }
    sent.form.hash(&mut hasher);
    let key = hasher.finish();
    if let Some(hit) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return hit;
    }
    let built = Arc::new(sent.build());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHED {
            c.clear();
        }
        c.insert(key, built.clone());
    });
    built
}

impl std::fmt::Debug for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sent({} headers, redacted)", self.headers.len())
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests build the requests they scrub"
)]
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
            .header("vendor-key", "hs-key-99")
            .form(&[
                ("grant_type", "password"),
                ("username", "user@example.com"),
                ("password", "pa ss&word"),
            ])
            .build()
            .unwrap();
        let body = request
            .body()
            .and_then(|b| b.as_bytes())
            .unwrap_or_default();
        let s = Scrubber::of_request(request.headers(), body, Some("vendor-key"));
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

    /// Encoders written apart from [`forms`], the way vendors' own stacks write them.
    fn echoes(secret: &str) -> Vec<(&'static str, String)> {
        let percent = |keep: &dyn Fn(u8) -> bool, upper: bool, space_plus: bool| {
            secret
                .bytes()
                .map(|b| match b {
                    b' ' if space_plus => "+".to_owned(),
                    b if keep(b) => (b as char).to_string(),
                    b if upper => format!("%{b:02X}"),
                    b => format!("%{b:02x}"),
                })
                .collect::<String>()
        };
        let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        let form_safe = |b: u8| b.is_ascii_alphanumeric() || b"-._*".contains(&b);
        let component = |b: u8| unreserved(b) || b"!'()*".contains(&b);
        let html = |named: bool| {
            secret
                .chars()
                .map(|c| match (c, named) {
                    ('&', true) => "&amp;".to_owned(),
                    ('<', true) => "&lt;".to_owned(),
                    ('>', true) => "&gt;".to_owned(),
                    ('"', true) => "&quot;".to_owned(),
                    ('\'', true) => "&#39;".to_owned(),
                    ('&' | '<' | '>' | '"' | '\'', false) => format!("&#x{:X};", c as u32),
                    (c, _) => c.to_string(),
                })
                .collect::<String>()
        };
        let json = serde_json::to_string(secret).unwrap();
        let json = json[1..json.len() - 1].to_owned();
        let go_json: String = json
            .chars()
            .map(|c| match c {
                '<' => "\\u003c".to_owned(),
                '>' => "\\u003e".to_owned(),
                '&' => "\\u0026".to_owned(),
                c => c.to_string(),
            })
            .collect();
        let python_json: String = json
            .chars()
            .map(|c| match c {
                c if !c.is_ascii() => format!("\\u{:04x}", c as u32),
                c => c.to_string(),
            })
            .collect();
        vec![
            ("plain", secret.to_owned()),
            ("percent, lower hex", percent(&unreserved, false, false)),
            ("percent, upper hex", percent(&unreserved, true, false)),
            ("form, lower hex", percent(&form_safe, false, true)),
            ("form, upper hex", percent(&form_safe, true, true)),
            ("encodeURIComponent", percent(&component, true, false)),
            ("html named", html(true)),
            ("html hex", html(false)),
            ("json", json.clone()),
            ("json, escaped slash", json.replace('/', "\\/")),
            ("go json", go_json),
            ("python json", python_json),
            ("base64", STANDARD.encode(secret)),
            ("base64 url, no pad", URL_SAFE_NO_PAD.encode(secret)),
            ("base64 no pad", STANDARD_NO_PAD.encode(secret)),
            // Inside a longer encoded value (a Basic pair, say): the secret's middle shows.
            (
                "base64 inside user:secret",
                STANDARD.encode(format!("user:{secret}")),
            ),
            (
                "base64 inside ab:secret",
                STANDARD.encode(format!("ab:{secret}")),
            ),
            (
                "truncated",
                format!("{}…", secret.chars().take(10).collect::<String>()),
            ),
        ]
    }

    #[test]
    fn every_encoding_of_any_secret_is_removed() {
        use rand::{Rng, SeedableRng};
        const ALPHABET: &[char] = &[
            'a', 'Z', 'q', '0', '9', '-', '.', '_', '~', '+', '/', '=', '&', '<', '>', '"', '\'',
            '\\', ' ', '%', 'é', '!', '*', '(', ')', ':', '@', '€',
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        for _ in 0..300 {
            let len = rng.gen_range(18..48);
            let mut secret: String = (0..len)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
                .collect();
            secret.insert(0, 'K');
            secret.push('7');
            let mut s = Scrubber::new();
            s.add(&secret);
            for (how, echo) in echoes(&secret) {
                let text = format!("refused <<{echo}>> for you");
                let clean = s.scrub(&text);
                let shown = clean
                    .strip_prefix("refused <<")
                    .and_then(|c| c.strip_suffix(">> for you"))
                    .unwrap_or_else(|| panic!("{how}: the text around was changed: {clean}"));
                // Nothing remains, but the ellipsis of a truncation and, inside a longer base64
                // value, the characters that also encode its other bytes.
                let left = shown.replace(REDACTED, "");
                let allowed = match how {
                    "truncated" => 1,
                    h if h.starts_with("base64 inside") => 12,
                    _ => 0,
                };
                assert!(
                    left.chars().count() <= allowed,
                    "{how} of {secret:?} survived as {shown:?}"
                );
            }
        }
    }

    #[test]
    fn data_keeps_identifiers_and_ordinary_words() {
        let client = reqwest::Client::new();
        let request = client
            .get("http://127.0.0.1:9/x")
            .basic_auth("admin", Some("s3cret-pass-word"))
            .build()
            .unwrap();
        let sent = Sent::of(request.headers(), b"", None);
        let s = sent.scrubber();
        assert_eq!(s.scrub_data(br#"{"name":"admin-nightly"}"#), None);
        let echoed = s.scrub_data(br#"{"name":"s3cret-pass-word"}"#).unwrap();
        assert_eq!(echoed, br#"{"name":"[redacted]"}"#);
        // Messages lose the identifier too.
        assert_eq!(s.scrub("user admin refused"), "user [redacted] refused");
    }

    #[test]
    fn decode_errors_never_quote_the_body() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Wire {
            id: u64,
        }
        for body in [
            r#"{"id": "Bearer tok-123456"}"#,
            r#"{"id": 1, "id": "x"}"#,
            r#"{"nope": "Bearer tok-123456"}"#,
            r#"{"id": tok-123456"#,
            r#"["Bearer tok-123456"]"#,
        ] {
            let e = serde_json::from_str::<Wire>(body).unwrap_err();
            let said = unreadable_json(&e);
            assert!(!said.contains("tok-"), "{body}: {said}");
        }
        let e = serde_json::from_str::<Wire>("{}").unwrap_err();
        assert_eq!(unreadable_json(&e), "JSON without its `id` field");
    }

    #[test]
    fn debug_shows_no_secret() {
        let mut s = Scrubber::new();
        s.add("top-secret-value");
        assert!(!format!("{s:?}").contains("secret-value"));
    }
}
