//! Normalized snapshots and the async operations that change them.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::{AccountId, Problem, ProviderKind};

/// Normalized snapshot status (vendor value kept in `vendor_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotStatus {
    Creating,
    Available,
    Restoring,
    Deleting,
    Deleted,
    Error,
    Unknown,
}

/// What a snapshot was taken of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Vm,
    Volume,
    Instance,
    Slice,
}

impl SourceKind {
    /// The wire name (`vm`, `volume`, …); a create's field is `{name}_id` in messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceKind::Vm => "vm",
            SourceKind::Volume => "volume",
            SourceKind::Instance => "instance",
            SourceKind::Slice => "slice",
        }
    }

    /// How a sentence names one (`VM`, `volume`, …).
    pub const fn noun(self) -> &'static str {
        match self {
            SourceKind::Vm => "VM",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resource a snapshot was taken of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Source {
    pub kind: SourceKind,
    pub id: String,
}

/// `{account}:{native_id}`: the gateway's snapshot id, URL-safe and round-tripping every vendor id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotId {
    pub account: AccountId,
    pub native_id: String,
}

/// Why a string is not a snapshot id.
#[derive(Debug, thiserror::Error)]
#[error("snapshot id `{0}` is invalid: expected `{{account}}:{{native_id}}`")]
pub struct SnapshotIdError(pub String);

impl FromStr for SnapshotId {
    type Err = SnapshotIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SnapshotIdError(s.chars().take(120).collect());
        let (account, native) = s.split_once(':').ok_or_else(bad)?;
        let account = account.parse().map_err(|_| bad())?;
        let native_ok = !native.is_empty()
            && native.len() <= 128
            && native
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !native_ok {
            return Err(bad());
        }
        Ok(SnapshotId {
            account,
            native_id: native.to_owned(),
        })
    }
}

impl SnapshotId {
    /// What `to_string` gives (`account:native_id`), allocated once at its final size.
    pub fn joined(&self) -> String {
        let (account, native) = (self.account.as_str(), self.native_id.as_str());
        let mut id = String::with_capacity(account.len() + 1 + native.len());
        id.push_str(account);
        id.push(':');
        id.push_str(native);
        id
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.account, self.native_id)
    }
}

impl Serialize for SnapshotId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SnapshotId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A snapshot as a vendor reports it, normalized; the account is added by the caller layer.
#[derive(Clone, Debug)]
pub struct VendorSnapshot {
    pub native_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: SnapshotStatus,
    pub vendor_status: Option<String>,
    pub size_gb: Option<f64>,
    pub created_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub source: Option<Source>,
    pub region: Option<String>,
    /// The raw vendor object, returned only with `?include=vendor`.
    pub vendor: Option<Box<RawValue>>,
}

/// A normalized snapshot as the API returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Snapshot {
    #[schema(value_type = String, example = super::examples::snapshot_id)]
    pub id: SnapshotId,
    #[schema(value_type = String)]
    pub account: AccountId,
    pub provider: ProviderKind,
    pub native_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: SnapshotStatus,
    /// The vendor's own status value, or the synthesized source (e.g. `ticket:135`).
    pub vendor_status: Option<String>,
    pub size_gb: Option<f64>,
    #[serde(serialize_with = "super::time::rfc3339_opt")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "super::time::rfc3339_opt")]
    pub expires_at: Option<DateTime<Utc>>,
    pub source: Option<Source>,
    pub region: Option<String>,
    /// The vendor's raw object (only with `?include=vendor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub vendor: Option<Box<RawValue>>,
}

impl Snapshot {
    pub fn from_vendor(
        account: &AccountId,
        provider: ProviderKind,
        v: VendorSnapshot,
        include_vendor: bool,
    ) -> Self {
        if v.status == SnapshotStatus::Unknown {
            count_unknown_status(provider, "snapshot");
        }
        Self {
            id: SnapshotId {
                account: account.clone(),
                native_id: v.native_id.clone(),
            },
            account: account.clone(),
            provider,
            native_id: v.native_id,
            name: v.name,
            description: v.description,
            status: v.status,
            vendor_status: v.vendor_status,
            size_gb: v.size_gb,
            created_at: v.created_at,
            expires_at: v.expires_at,
            source: v.source,
            region: v.region,
            vendor: if include_vendor { v.vendor } else { None },
        }
    }

    /// Shows unfinished work of `kind` on this snapshot: a vendor's own transitional status
    /// is the truth, so only a settled (`available`) or unknown status is overridden. Whether
    /// it changed.
    pub fn show_pending(&mut self, kind: OperationKind) -> bool {
        // A status the vendor sent but nobody documented stays `unknown` beside its
        // `vendor_status`: the gateway cannot know what it means, so it does not guess.
        let settled = match self.status {
            SnapshotStatus::Available => true,
            SnapshotStatus::Unknown => self.vendor_status.is_none(),
            _ => false,
        };
        match kind.pending_status() {
            Some(status) if settled => {
                self.status = status;
                true
            }
            _ => false,
        }
    }
}

impl SnapshotId {
    pub fn new(account: &AccountId, native_id: &str) -> Self {
        Self {
            account: account.clone(),
            native_id: native_id.to_owned(),
        }
    }
}

/// Kind of async work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    Create,
    Delete,
    Restore,
    Rename,
    Image,
}

impl OperationKind {
    /// The status a snapshot shows while work of this kind runs on it; a rename or an image
    /// leaves it as it is.
    pub fn pending_status(self) -> Option<SnapshotStatus> {
        match self {
            OperationKind::Create => Some(SnapshotStatus::Creating),
            OperationKind::Delete => Some(SnapshotStatus::Deleting),
            OperationKind::Restore => Some(SnapshotStatus::Restoring),
            OperationKind::Rename | OperationKind::Image => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Create => "create",
            OperationKind::Delete => "delete",
            OperationKind::Restore => "restore",
            OperationKind::Rename => "rename",
            OperationKind::Image => "image",
        }
    }
}

/// Where an operation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationState {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl OperationState {
    pub fn is_terminal(self) -> bool {
        matches!(self, OperationState::Succeeded | OperationState::Failed)
    }

    /// The state of work whose progress is a snapshot's own status: done when it is
    /// available, failed in error, running otherwise.
    pub fn of_snapshot(status: SnapshotStatus) -> Self {
        match status {
            SnapshotStatus::Available => OperationState::Succeeded,
            SnapshotStatus::Error => OperationState::Failed,
            _ => OperationState::Running,
        }
    }
}

/// How the vendor exposes the progress of the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VendorRefKind {
    Ticket,
    Action,
    SnapshotStatus,
    List,
    /// The status of a resource the work makes (the VM or volume a restore creates); `id` is
    /// that resource's vendor id.
    Resource,
    None,
}

/// The vendor handle an operation is tracked by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VendorRef {
    pub kind: VendorRefKind,
    pub id: Option<String>,
}

/// Normalized async work, persisted and advanced from the vendor's truth.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    pub id: String,
    pub kind: OperationKind,
    pub state: OperationState,
    #[schema(value_type = String)]
    pub account: AccountId,
    pub provider: ProviderKind,
    /// Gateway snapshot id, once known.
    #[schema(value_type = Option<String>)]
    pub snapshot_id: Option<SnapshotId>,
    /// E.g. `{"vm_id": "…"}` for a restore that made a new VM.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub vendor_ref: VendorRef,
    #[serde(serialize_with = "super::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "super::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    #[serde(serialize_with = "super::time::rfc3339_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    /// A problem object when the operation failed.
    #[schema(value_type = Option<Object>)]
    pub error: Option<Problem>,
    /// Private tracking data for the adapter (e.g. the name a Syminet create waits for).
    #[serde(skip)]
    pub tracking: serde_json::Value,
    /// `observed`: the vendor reports the end of this work. `assumed`: it cannot (a Syminet
    /// restore), so the operation is reported done after a configured settle time.
    pub completion: Completion,
    /// Why the end is assumed, and when; `null` when it is observed.
    pub completion_note: Option<String>,
    /// When the gateway next asks the vendor how this work is going, without anyone reading
    /// it; `null` once it has finished (or before its first check is scheduled).
    #[serde(serialize_with = "super::time::rfc3339_opt", default)]
    pub next_check_at: Option<DateTime<Utc>>,
    /// Checks made so far by the reconciler (its backoff).
    #[serde(skip)]
    pub checks: u32,
}

/// How snapgate knows an operation has finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// The vendor reports the end (a status, ticket, action or list entry).
    #[default]
    Observed,
    /// The vendor has no way to tell; the end is assumed after a settle time.
    Assumed,
}

impl Completion {
    /// The stored form: a note says why the end is assumed; none means observed.
    pub fn of_note(note: Option<&str>) -> Self {
        if note.is_some() {
            Completion::Assumed
        } else {
            Completion::Observed
        }
    }
}

/// The counter of vendor statuses the gateway does not know.
pub const UNKNOWN_STATUS_METRIC: &str = "snapgate_vendor_unknown_status_total";

/// Counts a vendor status the gateway does not know, seen `on` a `snapshot` (shown as
/// `unknown`) or an `operation` (a restore's new resource).
pub fn count_unknown_status(provider: ProviderKind, on: &'static str) {
    metrics::counter!(UNKNOWN_STATUS_METRIC, "provider" => provider.as_str(), "on" => on)
        .increment(1);
}

/// A `202` answer: the operation tracking the work, and the snapshot when known.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub operation: Operation,
    pub snapshot: Option<Snapshot>,
}

#[cfg(test)]
mod tests {
    use super::SnapshotId;

    #[test]
    fn joined_is_to_string() {
        for id in [
            "k1:5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e",
            "acct:1268054",
            "a:b_c.d",
        ] {
            let parsed: SnapshotId = id.parse().unwrap();
            assert_eq!(parsed.joined(), parsed.to_string());
            assert_eq!(parsed.joined(), id);
        }
    }
}
