//! Provider kinds, the fields their accounts hold, and what each can do.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One of the clouds snapgate speaks to.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Hyperstack,
    Koyeb,
    Oktawave,
    Hostinger,
    Syminet,
    Hetzner,
    Digitalocean,
}

impl ProviderKind {
    /// Every provider, in the order the API lists them.
    pub const ALL: [ProviderKind; 7] = [
        ProviderKind::Hyperstack,
        ProviderKind::Koyeb,
        ProviderKind::Oktawave,
        ProviderKind::Hostinger,
        ProviderKind::Syminet,
        ProviderKind::Hetzner,
        ProviderKind::Digitalocean,
    ];

    /// The lowercase name used on the wire, in config keys and in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Hyperstack => "hyperstack",
            ProviderKind::Koyeb => "koyeb",
            ProviderKind::Oktawave => "oktawave",
            ProviderKind::Hostinger => "hostinger",
            ProviderKind::Syminet => "syminet",
            ProviderKind::Hetzner => "hetzner",
            ProviderKind::Digitalocean => "digitalocean",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name that is not one of [`ProviderKind::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown provider `{name}`; expected one of {}", ProviderKind::ALL.map(ProviderKind::as_str).join(", "), name = .0)]
pub struct UnknownProvider(pub String);

impl FromStr for ProviderKind {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

/// Describes one credential or setting field an account of a provider carries.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FieldSpec {
    /// Field name as sent in `credentials` or `settings`.
    pub name: &'static str,
    /// Whether the field must be present.
    pub required: bool,
    /// What the field holds, for people reading the API.
    pub description: &'static str,
    /// The only values accepted, when the field is an enumeration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<&'static [&'static str]>,
    /// The value travels in an HTTP header, so only visible ASCII and spaces can be sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub visible_ascii: bool,
}

impl FieldSpec {
    pub const fn required(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            required: true,
            description,
            allowed: None,
            visible_ascii: false,
        }
    }

    pub const fn optional(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            required: false,
            description,
            allowed: None,
            visible_ascii: false,
        }
    }

    pub const fn one_of(mut self, allowed: &'static [&'static str]) -> Self {
        self.allowed = Some(allowed);
        self
    }

    /// The value is sent in an HTTP header (an API token): visible ASCII and spaces only.
    pub const fn sent_in_header(mut self) -> Self {
        self.visible_ascii = true;
        self
    }

    /// Whether `value` can be stored for this field: not blank, no control characters, and
    /// visible ASCII where it goes into a header. (The OpenAPI patterns say the same.)
    pub fn accepts_text(&self, value: &str) -> Result<(), &'static str> {
        if value.trim().is_empty() {
            return Err("must not be blank");
        }
        if self.visible_ascii && !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err("must be visible ASCII characters (it is sent in an HTTP header)");
        }
        if value.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(())
    }
}

/// One thing a provider may or may not do: the name the 501 problem, the adapters' defaults and
/// the capability flags of `GET /v1/providers` share, so none can disagree with another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    Create,
    Rename,
    Describe,
    Restore,
    CreateImage,
    NameAvailability,
    ListSources,
}

impl Capability {
    /// How problems name the operation.
    pub const fn as_str(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Rename => "rename",
            Capability::Describe => "describe",
            Capability::Restore => "restore",
            Capability::CreateImage => "image",
            Capability::NameAvailability => "name availability",
            Capability::ListSources => "source listing",
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Capabilities {
    /// Whether the provider declares this capability (an exhaustive match: a new capability
    /// cannot silently read as unsupported).
    pub fn has(&self, capability: Capability) -> bool {
        match capability {
            Capability::Create => self.create,
            Capability::Rename => self.rename,
            Capability::Describe => self.describe,
            Capability::Restore => self.restore,
            Capability::CreateImage => self.create_image,
            Capability::NameAvailability => self.name_availability,
            Capability::ListSources => self.list_sources,
        }
    }
}

/// The snapshot operations a provider supports, as its adapter declares them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Capabilities {
    pub list: bool,
    pub get: bool,
    pub create: bool,
    /// Create replaces the source's existing snapshot (Hostinger keeps one per VM).
    pub create_replaces_existing: bool,
    pub rename: bool,
    pub describe: bool,
    pub delete: bool,
    pub restore: bool,
    /// Restore creates a new resource (VM or volume) instead of rolling back in place.
    pub restore_to_new_resource: bool,
    /// Restore may target another resource than the snapshot's source.
    pub restore_to_other_target: bool,
    /// Restore can roll the snapshot's own source back in place, replacing its disk (where the
    /// provider also restores to a new resource, only when asked with `in_place: true`).
    pub restore_in_place: bool,
    pub create_image: bool,
    pub name_availability: bool,
    /// The account's snapshot sources (VMs, volumes, ...) can be listed
    /// (`GET /v1/accounts/{account}/sources`, policies over all sources).
    pub list_sources: bool,
}

/// One resource of an account that snapshots can be made of: its `id` is what
/// `POST /v1/snapshots` takes as `source_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct AccountSource {
    /// The id `source_id` takes.
    #[schema(example = "vm-7")]
    pub id: String,
    /// The vendor's name for it, where it has one.
    pub name: Option<String>,
    pub kind: super::SourceKind,
    /// The vendor's own status word for it, as sent (not normalized).
    pub status: Option<String>,
}

#[cfg(test)]
mod capability_tests {
    use super::{Capabilities, Capability};

    #[test]
    fn each_capability_reads_its_own_flag() {
        let all = [
            Capability::Create,
            Capability::Rename,
            Capability::Describe,
            Capability::Restore,
            Capability::CreateImage,
            Capability::NameAvailability,
            Capability::ListSources,
        ];
        for (i, capability) in all.into_iter().enumerate() {
            let flags = Capabilities {
                create: i == 0,
                rename: i == 1,
                describe: i == 2,
                restore: i == 3,
                create_image: i == 4,
                name_availability: i == 5,
                list_sources: i == 6,
                ..Capabilities::default()
            };
            for other in all {
                assert_eq!(
                    flags.has(other),
                    other == capability,
                    "{capability} vs {other}"
                );
            }
        }
    }
}
