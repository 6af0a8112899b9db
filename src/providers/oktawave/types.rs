//! Oktawave's wire types (PascalCase JSON) and their conversion to the domain model: nothing
//! here leaves the adapter.

use super::*;

// ---- wire types ----

/// `CreateUpdateSnapshotCommand`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SnapshotCommand<'a> {
    pub(super) name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) description: Option<&'a str>,
}

/// `ApiCollection[T]`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Collection {
    #[serde(default)]
    pub(super) items: Vec<Box<RawValue>>,
    pub(super) meta: Option<Meta>,
}

/// `GET /instances`: `{Items: [Instance], Meta: {Total}}`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Instances {
    #[serde(default)]
    pub(super) items: Vec<ListedInstance>,
    pub(super) meta: Option<Meta>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListedInstance {
    pub(super) id: Id,
    pub(super) name: Option<String>,
    /// A dictionary item: `Id` 86 on, 87 off, 126 deleted, 1748 initializing; `Label` is
    /// localized.
    pub(super) status: Option<StatusItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct StatusItem {
    pub(super) id: Option<i32>,
    pub(super) label: Option<String>,
}

/// An instance's status `Id` once it is deleted.
pub(super) const INSTANCE_DELETED: i32 = 126;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Meta {
    pub(super) total: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireSnapshot {
    pub(super) id: Id,
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) instance: Option<WireRef>,
    #[serde(default, deserialize_with = "wire::time")]
    pub(super) creation_date: Option<chrono::DateTime<chrono::Utc>>,
}

/// `BaseResource`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireRef {
    pub(super) id: Option<Id>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireTicket {
    pub(super) id: Id,
    #[serde(default, deserialize_with = "wire::time")]
    pub(super) end_date: Option<chrono::DateTime<chrono::Utc>>,
    pub(super) status: Option<DictionaryItem>,
}

/// `DictionaryItem`: keyed on `Id` only, the `Label` is localized.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DictionaryItem {
    pub(super) id: Option<Id>,
}

/// What a create operation remembers to find its snapshot once the ticket ends.
#[derive(Deserialize)]
pub(super) struct Tracking {
    pub(super) instance_id: String,
    pub(super) name: String,
}

// ---- conversions ----

pub(super) fn decode(raw: &RawValue) -> Result<WireSnapshot, ProviderError> {
    check::decode(KIND, raw)
}

/// Oktawave snapshots carry no status: one that exists is available (the gateway overlays
/// the state of any ticket it is tracking), and the region is the account's.
pub(super) fn to_domain(raw: Box<RawValue>, region: &str) -> Result<VendorSnapshot, ProviderError> {
    let w = decode(&raw)?;
    Ok(VendorSnapshot {
        native_id: w.id.0,
        name: w.name.filter(|n| !n.is_empty()),
        description: w.description.filter(|d| !d.is_empty()),
        status: SnapshotStatus::Available,
        vendor_status: None,
        size_gb: None,
        created_at: w.creation_date,
        expires_at: None,
        source: w.instance.and_then(|i| i.id).map(|id| Source {
            kind: SourceKind::Instance,
            id: id.0,
        }),
        region: Some(region.to_ascii_uppercase()),
        vendor: Some(raw),
    })
}
