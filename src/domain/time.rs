//! One timestamp format for every response: RFC 3339 in UTC with exactly six fractional digits
//! (`2026-12-01T03:11:35.398951Z`), whatever precision the vendor or the clock gave.
//!
//! chrono's own format drops a zero fraction and otherwise shows 3, 6 or 9 digits, so times from
//! two providers would not sort as strings. Use with `#[serde(serialize_with = "…")]`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Formats a timestamp the one way the API shows times.
pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `serialize_with` for `DateTime<Utc>`.
pub fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t))
}

/// `serialize_with` for `Option<DateTime<Utc>>`.
pub fn rfc3339_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_precision_comes_out_with_six_digits() {
        let whole = Utc.with_ymd_and_hms(2026, 12, 1, 3, 11, 19).unwrap();
        assert_eq!(format(&whole), "2026-12-01T03:11:19.000000Z");
        let nanos = whole + chrono::Duration::nanoseconds(398_951_123);
        assert_eq!(format(&nanos), "2026-12-01T03:11:19.398951Z");
    }
}
