//! How Syminet work is judged done: Syminet answers 202 with no job id, so creates, renames
//! and deletes are read off its lists, and restores (invisible there) are assumed done after a
//! configured settle time.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;

/// A create, rename or delete the lists never reflect is failed after this.
pub(super) const LIST_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A created snapshot's `created` may precede our submit time by clock skew.
pub(super) const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

pub(super) fn lost(kind: &str) -> ProviderError {
    ProviderError::Upstream {
        status: None,
        message: format!("the Syminet {kind} operation has no tracking data to follow"),
    }
}

pub(super) fn timed_out(created_at: DateTime<Utc>, now: DateTime<Utc>, limit: Duration) -> bool {
    now.signed_duration_since(created_at)
        .to_std()
        .is_ok_and(|elapsed| elapsed >= limit)
}

/// A create is done when the slice lists a snapshot of that name, taken after the submit,
/// that is no longer in progress.
pub(super) fn create_progress(
    tracking: &CreateTracking,
    items: impl Iterator<Item = WireImage>,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Progress {
    let not_before = tracking.submitted_at - CLOCK_SKEW;
    let newest = items
        .filter(|i| i.name.as_deref() == Some(tracking.name.as_str()))
        .filter(|i| i.created.is_none_or(|c| c >= not_before))
        .max_by_key(|i| (i.created, i.id.0.parse::<u64>().unwrap_or_default()));
    match newest {
        Some(item) if item.busy().is_none() => Progress {
            native_id: Some(item.id.0),
            ..Progress::succeeded()
        },
        Some(item) => Progress {
            native_id: Some(item.id.0),
            ..Progress::running()
        },
        None if timed_out(created_at, now, LIST_TIMEOUT) => {
            Progress::failed(ProviderError::Upstream {
                status: None,
                message: format!(
                    "Syminet never listed snapshot `{}` on slice {}",
                    tracking.name, tracking.slice_id
                ),
            })
        }
        None => Progress::running(),
    }
}

/// Restore completion is not observable: assumed done once the settle time has passed.
pub(super) fn restore_progress(
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    settle: Duration,
) -> Progress {
    if timed_out(created_at, now, settle) {
        Progress::succeeded()
    } else {
        Progress::running()
    }
}

/// A delete is done when the snapshot is gone; a rename when it carries the new name.
pub(super) fn list_progress(
    kind: OperationKind,
    found: Option<&WireImage>,
    new_name: &str,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Progress {
    let done = match (kind, found) {
        (OperationKind::Delete, None) => true,
        (OperationKind::Rename, None) => return Progress::failed(ProviderError::NotFound),
        (OperationKind::Rename, Some(item)) => item.name.as_deref() == Some(new_name),
        _ => false,
    };
    if done {
        Progress::succeeded()
    } else if timed_out(created_at, now, LIST_TIMEOUT) {
        Progress::failed(ProviderError::Upstream {
            status: None,
            message: format!(
                "Syminet did not reflect the {} within {} minutes",
                kind.as_str(),
                LIST_TIMEOUT.as_secs() / 60
            ),
        })
    } else {
        Progress::running()
    }
}
