//! Checks and decoding every adapter shares, so a caller error never reaches a vendor and a
//! vendor's garbage reads the same way whichever vendor sent it.

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::ProviderError;
use crate::domain::ProviderKind;

/// An integer id (at most 20 digits): anything else cannot exist at the vendor, so it is
/// `NotFound` without a call.
pub fn numeric(id: &str) -> Result<&str, ProviderError> {
    if !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(ProviderError::NotFound)
    }
}

/// A name the vendor accepts in length: not blank, at most `max` characters.
pub fn name(
    vendor: ProviderKind,
    field: &'static str,
    name: &str,
    max: usize,
) -> Result<(), ProviderError> {
    if name.trim().is_empty() || name.chars().count() > max {
        return Err(ProviderError::Invalid {
            field,
            message: format!(
                "{field} must be 1 to {max} characters for {}",
                super::display_name(vendor)
            ),
        });
    }
    Ok(())
}

/// A vendor whose snapshots have no description refuses one instead of dropping it.
pub fn no_description(
    vendor: ProviderKind,
    description: Option<&str>,
) -> Result<(), ProviderError> {
    if description.is_some_and(|d| !d.trim().is_empty()) {
        return Err(ProviderError::Invalid {
            field: "description",
            message: format!(
                "{} snapshots have no description",
                super::display_name(vendor)
            ),
        });
    }
    Ok(())
}

/// Decodes one snapshot as the vendor sent it; garbage is a `502 upstream_error`.
pub fn decode<T: DeserializeOwned>(
    vendor: ProviderKind,
    raw: &RawValue,
) -> Result<T, ProviderError> {
    serde_json::from_str(raw.get()).map_err(|e| ProviderError::Upstream {
        status: None,
        message: format!(
            "{} sent a snapshot snapgate could not read ({})",
            super::display_name(vendor),
            crate::scrub::unreadable_json(&e)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_digit_strings_are_ids() {
        assert_eq!(numeric("1268054"), Ok("1268054"));
        for bad in ["", "12a", "-1", "1.5", "1/2", &"9".repeat(21)] {
            assert_eq!(numeric(bad), Err(ProviderError::NotFound), "{bad}");
        }
    }

    #[test]
    fn names_are_bounded_and_not_blank() {
        let kind = ProviderKind::ALL[0];
        assert!(name(kind, "name", "nightly", 10).is_ok());
        assert!(name(kind, "name", &"é".repeat(10), 10).is_ok());
        for bad in ["", "   ", "elevenchars"] {
            match name(kind, "new_name", bad, 10) {
                Err(ProviderError::Invalid { field, message }) => {
                    assert_eq!(field, "new_name");
                    assert_eq!(
                        message,
                        format!(
                            "new_name must be 1 to 10 characters for {}",
                            crate::providers::display_name(kind)
                        )
                    );
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
