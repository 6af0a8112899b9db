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
    use crate::{config::ProvidersConfig, providers::Registry, upstream::Upstream};

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn oktawave_needs_all_four_credentials_and_a_known_region() {
        let r = Registry::new(
            &ProvidersConfig::default(),
            Upstream::new(Default::default()).unwrap(),
        )
        .unwrap();
        let info = r.get(ProviderKind::Oktawave).info();
        let err = validate_credentials(
            info,
            map(serde_json::json!({"client_id": "a", "client_secret": "b", "username": "c"})),
        )
        .unwrap_err();
        assert_eq!(err.field(), "credentials.password");
        let err = validate_settings(info, map(serde_json::json!({"region": "pl9"}))).unwrap_err();
        assert!(matches!(err, FieldError::NotAllowed { .. }));
        assert!(validate_settings(info, map(serde_json::json!({"region": "pl2"}))).is_ok());
    }

    #[test]
    fn unknown_credential_fields_are_named() {
        let r = Registry::new(
            &ProvidersConfig::default(),
            Upstream::new(Default::default()).unwrap(),
        )
        .unwrap();
        let info = r.get(ProviderKind::Hyperstack).info();
        let err = validate_credentials(
            info,
            map(serde_json::json!({"api_key": "k", "apikey": "x"})),
        )
        .unwrap_err();
        assert_eq!(err.field(), "credentials.apikey");
    }
}
