//! The normalized model callers see: providers, accounts, snapshots, operations.
//!
//! Nothing here knows HTTP, SQL or any vendor's wire format.

mod account;
mod event;
pub mod examples;
pub mod policy;
pub mod problem;
mod provider;
mod provider_error;
mod snapshot;
pub mod time;
mod webhook;

pub use account::{Account, AccountHealth, AccountId, AccountIdError, Credentials, HealthStatus};
pub use event::{Event, EventType};
pub use policy::{
    Policy, PolicyRun, PolicySnapshot, PolicySpec, Pruned, Retention, RunState, RunTarget,
    Schedule, TargetState,
};
pub use problem::Problem;
pub use provider::{
    AccountSource, Capabilities, Capability, FieldSpec, ProviderKind, UnknownProvider,
};
pub use provider_error::ProviderError;
pub use snapshot::{
    count_unknown_status, Accepted, Completion, Operation, OperationKind, OperationState, Snapshot,
    SnapshotId, SnapshotIdError, SnapshotStatus, Source, SourceKind, VendorRef, VendorRefKind,
    VendorSnapshot, UNKNOWN_STATUS_METRIC,
};
pub use webhook::{
    payload, payload_of, Attempt, Delivery, DeliveryState, Webhook, TEST_EVENT_TYPE,
};
