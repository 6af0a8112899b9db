//! Accounts: a tenant's named credentials for one provider.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ProviderKind;

/// An account slug: `[a-z0-9][a-z0-9-]{0,62}`, chosen at creation and immutable.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

/// Why a string is not an account id.
#[derive(Debug, thiserror::Error)]
#[error("account id `{0}` is invalid: it must match [a-z0-9][a-z0-9-]{{0,62}}")]
pub struct AccountIdError(pub String);

impl AccountId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountId {
    type Err = AccountIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 63
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if valid {
            Ok(AccountId(s.to_owned()))
        } else {
            // Cap what we echo back so a megabyte of garbage does not come back in the error.
            Err(AccountIdError(s.chars().take(80).collect()))
        }
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Result of the last credential check against the vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Never verified.
    Unknown,
    Ok,
    Failing,
}

/// The account's health as last recorded.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountHealth {
    pub status: HealthStatus,
    #[serde(serialize_with = "super::time::rfc3339_opt")]
    pub checked_at: Option<DateTime<Utc>>,
    /// The problem met on the last failed check (no credentials in it).
    #[schema(value_type = Option<Object>)]
    pub problem: Option<super::Problem>,
}

impl Default for AccountHealth {
    fn default() -> Self {
        Self {
            status: HealthStatus::Unknown,
            checked_at: None,
            problem: None,
        }
    }
}

/// A stored account, without its (sealed) credentials.
#[derive(Clone, Debug)]
pub struct Account {
    pub tenant: String,
    pub id: AccountId,
    pub provider: ProviderKind,
    pub display_name: Option<String>,
    /// Non-secret per-provider settings (e.g. Oktawave `region`).
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Names of the credential fields stored (never their values).
    pub credential_fields: Vec<String>,
    /// Keyed, non-reversible fingerprint of the credentials.
    pub credential_fingerprint: String,
    pub credentials_updated_at: DateTime<Utc>,
    pub health: AccountHealth,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An account's credential fields, held so they cannot be printed.
#[derive(Clone, Default)]
pub struct Credentials(std::collections::BTreeMap<String, secrecy::SecretString>);

impl Credentials {
    pub fn new(fields: std::collections::BTreeMap<String, secrecy::SecretString>) -> Self {
        Self(fields)
    }

    /// The secret value of one field.
    pub fn get(&self, name: &str) -> Option<&secrecy::SecretString> {
        self.0.get(name)
    }

    /// The field names, never their values.
    pub fn field_names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &secrecy::SecretString)> {
        self.0.iter()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("fields", &self.0.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
