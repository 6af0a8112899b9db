//! The fan-out list: every selected account of a tenant read at once, each within its own
//! time limit, merged with the gateway's unfinished work shown, filtered, put in the list's one
//! order and cut into the page after a cursor.
//!
//! Each page re-lists the selected accounts (walking every vendor page) and returns the items
//! strictly after the cursor's `(created_at, id)` position, so following cursors yields every
//! matching snapshot exactly once while the vendors do not change.

use std::{cmp::Ordering, time::Duration};

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::{Service, ServiceError};
use crate::{
    domain::{Account, ProviderError, ProviderKind, Snapshot, SnapshotStatus},
    providers::ListFilter,
};

/// What a snapshot list asks for (validated by the edge).
#[derive(Debug, Default)]
pub struct SnapshotQuery {
    /// Only these accounts (none: every account).
    pub accounts: Vec<String>,
    /// Only accounts of these providers (none: every provider).
    pub providers: Vec<ProviderKind>,
    /// Only these normalized statuses (none: every status).
    pub statuses: Vec<SnapshotStatus>,
    /// Only snapshots of this source (pushed down to the vendor).
    pub source_id: Option<String>,
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    /// Add the raw vendor objects.
    pub include_vendor: bool,
    /// Any account failure fails the list.
    pub strict: bool,
}

/// Where a page of snapshots ended (sealed into a page token by the edge).
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotCursor {
    /// `created_at` of the last item (RFC 3339), or null when it had none.
    t: Option<String>,
    /// Id of the last item.
    id: String,
}

/// One page of the merged list: its items in the list's order, where it ended when more
/// follow, and every account or source that could not be read.
#[derive(Debug, Default)]
pub struct SnapshotsPage {
    pub items: Vec<Snapshot>,
    pub next: Option<SnapshotCursor>,
    pub failures: Vec<ServiceError>,
}

/// How the accounts of one list are read.
#[derive(Clone, Copy, Debug)]
pub struct FanOut {
    /// One account's whole list (every vendor page) must finish within this.
    pub per_account: Duration,
    /// Accounts read at once.
    pub concurrency: usize,
}

/// What a list found: snapshots, and every account or source (VM) that could not be read.
#[derive(Debug, Default)]
pub struct Merged {
    pub snapshots: Vec<Snapshot>,
    pub failures: Vec<ServiceError>,
}

impl Service {
    /// The page after `after` (at most `page_size` items) of the tenant's snapshots that match
    /// `q`, across every selected account. A failing account is reported beside the items,
    /// unless the query is strict: then the first failure fails the list.
    pub async fn snapshot_page(
        &self,
        tenant: &str,
        q: &SnapshotQuery,
        after: Option<&SnapshotCursor>,
        page_size: usize,
        fan_out: FanOut,
    ) -> Result<SnapshotsPage, ServiceError> {
        // Statuses the operation overlay can turn a settled snapshot into must be filtered
        // after the overlay; only `available`/`deleted` are safe to hand to a vendor.
        let pushable = !q.statuses.is_empty()
            && q.statuses
                .iter()
                .all(|s| matches!(s, SnapshotStatus::Available | SnapshotStatus::Deleted));
        let filter = ListFilter {
            source_id: q.source_id.as_deref(),
            statuses: if pushable { &q.statuses } else { &[] },
        };
        let selected = |a: &Account| {
            (q.accounts.is_empty() || q.accounts.iter().any(|id| id == a.id.as_str()))
                && (q.providers.is_empty() || q.providers.contains(&a.provider))
        };
        let mut merged = self
            .list_snapshots(tenant, selected, &filter, q.include_vendor, fan_out)
            .await?;
        if q.strict && !merged.failures.is_empty() {
            let first = merged.failures.swap_remove(0);
            return Err(ServiceError::StrictListing(Box::new(first)));
        }
        let (items, next) = page_of(merged.snapshots, q, after, page_size);
        Ok(SnapshotsPage {
            items,
            next,
            failures: merged.failures,
        })
    }

    /// Every snapshot of the tenant's accounts that `selected` keeps, narrowed by `filter`
    /// where vendors can, with unfinished operations shown on them. A failing account (or
    /// source) is reported beside the snapshots, not as the list's failure.
    pub async fn list_snapshots(
        &self,
        tenant: &str,
        selected: impl Fn(&Account) -> bool,
        filter: &ListFilter<'_>,
        include_vendor: bool,
        fan_out: FanOut,
    ) -> Result<Merged, ServiceError> {
        let accounts: Vec<Account> = self
            .store
            .list_accounts(tenant)
            .await?
            .into_iter()
            .filter(|a| selected(a))
            .collect();
        let read = |account: Account| async move {
            let resolved = self.resolve(tenant, &account.id).await?;
            let listed = tokio::time::timeout(
                fan_out.per_account,
                resolved.adapter.list(&resolved.ctx(), filter),
            )
            .await
            .unwrap_or(Err(ProviderError::Timeout))
            .map_err(|e| resolved.fail(e))?;
            let snapshots = listed
                .snapshots
                .into_iter()
                .map(|v| Snapshot::from_vendor(&account.id, account.provider, v, include_vendor));
            let failures = listed
                .failures
                .into_iter()
                .map(|f| resolved.fail_source(f.error, Some(f.source_id)));
            Ok::<_, ServiceError>(Merged {
                snapshots: snapshots.collect(),
                failures: failures.collect(),
            })
        };
        let results: Vec<Result<Merged, ServiceError>> = stream::iter(accounts)
            .map(read)
            .buffer_unordered(fan_out.concurrency.max(1))
            .collect()
            .await;
        let mut merged = Merged::default();
        for result in results {
            match result {
                Ok(one) => {
                    merged.snapshots.extend(one.snapshots);
                    merged.failures.extend(one.failures);
                }
                Err(e) => merged.failures.push(e),
            }
        }
        self.overlay_pending(tenant, &mut merged.snapshots).await?;
        Ok(merged)
    }
}

/// Newest first, snapshots without a date last, ties by id ascending.
fn order(a: (Option<DateTime<Utc>>, &str), b: (Option<DateTime<Utc>>, &str)) -> Ordering {
    match (a.0, b.0) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.1.cmp(b.1))
}

/// The page after `cursor` of the snapshots that match `q`'s filters, in the list's order, and
/// where it ended when more follow.
fn page_of(
    mut items: Vec<Snapshot>,
    q: &SnapshotQuery,
    cursor: Option<&SnapshotCursor>,
    page_size: usize,
) -> (Vec<Snapshot>, Option<SnapshotCursor>) {
    let source = q.source_id.as_deref();
    let name = q.name.as_ref().map(|n| n.to_lowercase());
    items.retain(|s| {
        (q.statuses.is_empty() || q.statuses.contains(&s.status))
            && source.is_none_or(|src| s.source.as_ref().is_some_and(|x| x.id == src))
            && name.as_ref().is_none_or(|n| {
                s.name
                    .as_ref()
                    .is_some_and(|sn| sn.to_lowercase().contains(n))
            })
    });
    let mut keyed: Vec<(String, Snapshot)> =
        items.into_iter().map(|s| (s.id.to_string(), s)).collect();
    keyed.sort_by(|a, b| order((a.1.created_at, &a.0), (b.1.created_at, &b.0)));
    if let Some(c) = cursor {
        let t =
            c.t.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
        keyed.retain(|(id, s)| order((s.created_at, id), (t, &c.id)) == Ordering::Greater);
    }
    let more = keyed.len() > page_size;
    keyed.truncate(page_size);
    let last = more
        .then(|| keyed.last())
        .flatten()
        .map(|(id, s)| SnapshotCursor {
            t: s.created_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
            id: id.clone(),
        });
    (keyed.into_iter().map(|(_, s)| s).collect(), last)
}
