//! Account fields: credentials and settings checked against what each provider declares.

use secrecy::SecretString;

use crate::domain::{Credentials, FieldSpec, ProviderKind};

use super::ProviderInfo;

/// A credential or setting field that failed validation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("{section}.{field} is required for {provider}")]
    Missing {
        section: &'static str,
        field: String,
        provider: ProviderKind,
    },
    #[error("{section}.{field} is not a {provider} field (expected: {expected})")]
    Unknown {
        section: &'static str,
        field: String,
        provider: ProviderKind,
        expected: String,
    },
    #[error("{section}.{field} {rule}")]
    BadText {
        section: &'static str,
        field: String,
        rule: &'static str,
    },
    #[error("{section}.{field} must be a non-empty string")]
    NotAString {
        section: &'static str,
        field: String,
    },
    #[error("{section}.{field} must be one of: {allowed}")]
    NotAllowed {
        section: &'static str,
        field: String,
        allowed: String,
    },
}

impl FieldError {
    /// The dotted field name, for the problem's `field` member.
    pub fn field(&self) -> String {
        match self {
            FieldError::Missing { section, field, .. }
            | FieldError::Unknown { section, field, .. }
            | FieldError::NotAString { section, field }
            | FieldError::BadText { section, field, .. }
            | FieldError::NotAllowed { section, field, .. } => format!("{section}.{field}"),
        }
    }
}

fn check_fields(
    provider: ProviderKind,
    section: &'static str,
    specs: &[FieldSpec],
    given: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), FieldError> {
    for name in given.keys() {
        if !specs.iter().any(|s| s.name == name) {
            let expected = specs.iter().map(|s| s.name).collect::<Vec<_>>();
            return Err(FieldError::Unknown {
                section,
                field: name.chars().take(64).collect(),
                provider,
                expected: if expected.is_empty() {
                    "none".to_owned()
                } else {
                    expected.join(", ")
                },
            });
        }
    }
    for spec in specs {
        match given.get(spec.name) {
            None | Some(serde_json::Value::Null) if spec.required => {
                return Err(FieldError::Missing {
                    section,
                    field: spec.name.to_owned(),
                    provider,
                })
            }
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                if let Err(rule) = spec.accepts_text(s) {
                    return Err(FieldError::BadText {
                        section,
                        field: spec.name.to_owned(),
                        rule,
                    });
                }
                if let Some(allowed) = spec.allowed {
                    if !allowed.contains(&s.as_str()) {
                        return Err(FieldError::NotAllowed {
                            section,
                            field: spec.name.to_owned(),
                            allowed: allowed.join(", "),
                        });
                    }
                }
            }
            Some(_) => {
                return Err(FieldError::NotAString {
                    section,
                    field: spec.name.to_owned(),
                })
            }
        }
    }
    Ok(())
}

/// Validates credentials against the provider's declared fields and wraps them as secrets.
pub fn validate_credentials(
    info: &ProviderInfo,
    given: serde_json::Map<String, serde_json::Value>,
) -> Result<Credentials, FieldError> {
    check_fields(info.kind, "credentials", info.credential_fields, &given)?;
    Ok(Credentials::new(
        given
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, SecretString::from(s))),
                _ => None,
            })
            .collect(),
    ))
}

/// Validates account settings against the provider's declared fields (nulls dropped).
pub fn validate_settings(
    info: &ProviderInfo,
    mut given: serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, FieldError> {
    check_fields(info.kind, "settings", info.setting_fields, &given)?;
    given.retain(|_, v| !v.is_null());
    Ok(given)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::infos;

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap()
    }

    /// Every required credential of `info`, each with a placeholder value.
    fn credentials(info: &ProviderInfo) -> serde_json::Map<String, serde_json::Value> {
        info.credential_fields
            .iter()
            .filter(|f| f.required)
            .map(|f| (f.name.to_owned(), serde_json::json!("x")))
            .collect()
    }

    #[test]
    fn every_required_credential_and_only_known_setting_values_are_taken() {
        for info in infos() {
            assert!(
                validate_credentials(info, credentials(info)).is_ok(),
                "{}",
                info.kind
            );
            let Some(last) = info.credential_fields.iter().rfind(|f| f.required) else {
                continue;
            };
            let mut short = credentials(info);
            short.remove(last.name);
            let err = validate_credentials(info, short).unwrap_err();
            assert_eq!(
                err.field(),
                format!("credentials.{}", last.name),
                "{}",
                info.kind
            );
            for field in info.setting_fields {
                let Some(allowed) = field.allowed else {
                    continue;
                };
                let bad = map(serde_json::json!({ field.name: "no-such-value" }));
                let err = validate_settings(info, bad).unwrap_err();
                assert!(
                    matches!(err, FieldError::NotAllowed { .. }),
                    "{}",
                    info.kind
                );
                let good = map(serde_json::json!({ field.name: allowed[0] }));
                assert!(validate_settings(info, good).is_ok(), "{}", info.kind);
            }
        }
    }

    #[test]
    fn unknown_credential_fields_are_named() {
        for info in infos() {
            let mut given = credentials(info);
            given.insert("apikey-typo".to_owned(), serde_json::json!("x"));
            let err = validate_credentials(info, given).unwrap_err();
            assert_eq!(err.field(), "credentials.apikey-typo", "{}", info.kind);
        }
    }
}
