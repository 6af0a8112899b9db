//! Wire-format pieces several vendors share: lenient timestamps, ids that arrive as numbers
//! or strings, and reading an error message out of a vendor body.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};

/// Parses RFC 3339 (`Z` or offset) and the zone-less `T` or space-separated forms (as UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() || s.starts_with("0001-01-01") {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
        .map(|t| t.and_utc())
}

/// Deserializes an optional timestamp leniently: absent, null, empty, zero time → `None`.
pub fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .as_deref()
        .and_then(parse_time))
}

/// An id or number that a vendor sends as a JSON number or a string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            U(u64),
            S(String),
        }
        Ok(Id(match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string(),
            Raw::U(n) => n.to_string(),
            Raw::S(s) => s,
        }))
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A number that may arrive as a JSON number or a numeric string.
pub fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        F(f64),
        S(String),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        Some(Raw::F(f)) => Some(f),
        Some(Raw::S(s)) => s.trim().parse().ok(),
        None => None,
    })
}

/// Reads a vendor's error body, whichever documented shape it has: the message (`message`,
/// `error` or `Message`), then the reason code (Hyperstack `error_reason`, Koyeb `code`), the
/// per-field reasons (Hostinger `errors{field: [..]}`) and the vendor's request id (Hostinger
/// `correlation_id`), so the problem carries everything the vendor said about why.
pub fn error_message(body: &[u8]) -> Option<String> {
    use serde_json::Value;
    #[derive(Deserialize)]
    struct Body {
        message: Option<Value>,
        error: Option<Value>,
        #[serde(rename = "Message")]
        pascal: Option<Value>,
        error_reason: Option<Value>,
        code: Option<Value>,
        errors: Option<Value>,
        correlation_id: Option<Value>,
    }
    let text = |v: Value| match v {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    let b = match serde_json::from_slice::<Body>(body) {
        Ok(b) => b,
        Err(_) => {
            let s = String::from_utf8_lossy(body).trim().to_owned();
            return (!s.is_empty() && s.len() < 300 && !s.starts_with('<')).then_some(s);
        }
    };
    let mut out = b
        .message
        .and_then(text)
        .or_else(|| b.error.and_then(text))
        .or_else(|| b.pascal.and_then(text))
        .unwrap_or_default();
    // A numeric `code` is an HTTP or gRPC status, not a reason.
    let reason = b
        .error_reason
        .and_then(text)
        .or_else(|| b.code.filter(Value::is_string).and_then(text));
    if let Some(reason) = reason {
        out = if out.is_empty() {
            reason
        } else {
            format!("{out} ({reason})")
        };
    }
    if let Some(Value::Object(fields)) = b.errors {
        let reasons: Vec<String> = fields
            .into_iter()
            .map(|(field, v)| match v {
                Value::Array(items) => {
                    let items: Vec<String> = items.into_iter().filter_map(text).collect();
                    format!("{field}: {}", items.join(", "))
                }
                other => format!("{field}: {}", text(other).unwrap_or_default()),
            })
            .collect();
        if !reasons.is_empty() {
            out = format!("{out}: {}", reasons.join("; "));
        }
    }
    if let Some(id) = b.correlation_id.and_then(text) {
        out = format!("{out} [correlation_id {id}]");
    }
    let out = out.trim_start_matches([':', ' ']).to_owned();
    (!out.is_empty()).then_some(out)
}

/// Joins a base URL and a path without doubling or dropping the slash.
pub fn url(base: &str, path: &str) -> String {
    let (base, path) = (base.trim_end_matches('/'), path.trim_start_matches('/'));
    // Room for the query the call may add.
    let mut url = String::with_capacity(base.len() + 1 + path.len() + 64);
    url.push_str(base);
    url.push('/');
    url.push_str(path);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_timestamp_form_parses_as_utc() {
        let want = "2024-11-04T10:48:13Z";
        for s in [
            "2024-11-04T10:48:13",
            "2024-11-04T10:48:13Z",
            "2024-11-04T11:48:13+01:00",
            "2024-11-04 10:48:13.000000",
        ] {
            assert_eq!(
                parse_time(s)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                want,
                "{s}"
            );
        }
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn error_messages_are_read_from_every_vendor_shape() {
        assert_eq!(
            error_message(br#"{"status":false,"message":"bad","error_reason":"x"}"#).unwrap(),
            "bad (x)"
        );
        // Hostinger: per-field reasons and its request id are kept.
        assert_eq!(
            error_message(
                br#"{"message":"locked","errors":{"virtual_machine":["locked.","busy."]},"correlation_id":"c-1"}"#
            )
            .unwrap(),
            "locked: virtual_machine: locked., busy. [correlation_id c-1]"
        );
        // A numeric code is a status, not a reason; a reason alone is still a message.
        assert_eq!(
            error_message(br#"{"code":5,"message":"gone"}"#).unwrap(),
            "gone"
        );
        assert_eq!(
            error_message(br#"{"error_reason":"forbidden"}"#).unwrap(),
            "forbidden"
        );
        assert_eq!(
            error_message(br#"{"error":"missing slice name"}"#).unwrap(),
            "missing slice name"
        );
        assert_eq!(error_message(br#"{"Message":"denied"}"#).unwrap(), "denied");
        assert_eq!(error_message(b"<html>oops</html>"), None);
    }
}

/// A vendor's region (or data centre) id → its name (e.g. Hyperstack `3` → `CANADA-1`), the
/// same for every account, learnt as the vendor tells.
#[derive(Default)]
pub(super) struct RegionNames(std::sync::RwLock<std::collections::HashMap<String, String>>);

impl RegionNames {
    pub(super) fn learn(&self, id: &str, name: &str) {
        let known = self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .is_some_and(|n| n == name);
        if !known {
            let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
            map.insert(id.to_owned(), name.to_owned());
        }
    }

    pub(super) fn name(&self, id: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}
