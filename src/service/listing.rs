//! The fan-out list: every selected account of a tenant read at once, each within its own
//! time limit, merged with the gateway's unfinished work shown, filtered, put in the list's one
//! order and cut into the page after a cursor.
//!
//! Each page re-lists the selected accounts (walking every vendor page) and returns the items
//! strictly after the cursor's `(created_at, id)` position, so following cursors yields every
//! matching snapshot exactly once while the vendors do not change.

use std::{cmp::Ordering, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::{Service, ServiceError};
use crate::{
    config::ListingConfig,
    domain::{AccountId, ProviderError, ProviderKind, Snapshot, SnapshotId, SnapshotStatus},
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

/// How the accounts of a list are read: each within its own time limit, up to
/// `max_concurrency` of one list at once, and up to `max_total_concurrency` across every list
/// this process is serving (the slots).
pub(super) struct Listing {
    config: ListingConfig,
    slots: Arc<Semaphore>,
}

impl Listing {
    pub(super) fn new(config: ListingConfig) -> Self {
        let permits = config
            .max_total_concurrency
            .clamp(1, Semaphore::MAX_PERMITS);
        let slots = Arc::new(Semaphore::new(permits));
        Self { config, slots }
    }
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
        let selected = |id: &AccountId, provider: ProviderKind| {
            (q.accounts.is_empty() || q.accounts.iter().any(|a| a == id.as_str()))
                && (q.providers.is_empty() || q.providers.contains(&provider))
        };
        let mut merged = self
            .list_snapshots(tenant, selected, &filter, q.include_vendor)
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
        selected: impl Fn(&AccountId, ProviderKind) -> bool,
        filter: &ListFilter<'_>,
        include_vendor: bool,
    ) -> Result<Merged, ServiceError> {
        let accounts: Vec<(AccountId, ProviderKind)> = self
            .store
            .account_keys(tenant)
            .await?
            .into_iter()
            .filter(|(id, provider)| selected(id, *provider))
            .collect();
        let per_account = Duration::from_millis(self.listing.config.account_timeout_ms);
        let read = |(account, provider): (AccountId, ProviderKind)| async move {
            // Waiting for a slot is the gateway's load, not the account's slowness: the
            // account's time starts once it holds one.
            let _slot = self.listing.slots.acquire().await;
            let resolved = self.resolve(tenant, &account).await?;
            let listed =
                tokio::time::timeout(per_account, resolved.adapter.list(&resolved.ctx(), filter))
                    .await
                    .unwrap_or(Err(ProviderError::Timeout))
                    .map_err(|e| resolved.fail(e))?;
            let snapshots = listed
                .snapshots
                .into_iter()
                .map(|v| Snapshot::from_vendor(&account, provider, v, include_vendor));
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
            .buffer_unordered(self.listing.config.max_concurrency.max(1))
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

/// Newest first, snapshots without a date last, ties by id ascending (the id as its string,
/// `{account}:{native_id}`, compared without being written out).
fn order(
    a: (Option<DateTime<Utc>>, &SnapshotId),
    b: (Option<DateTime<Utc>>, IdRef<'_>),
) -> Ordering {
    match (a.0, b.0) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| id_bytes(a.1).cmp(b.1.bytes()))
}

/// A snapshot id as the list orders it: a parsed one, or the text a cursor holds.
#[derive(Clone, Copy)]
enum IdRef<'a> {
    Id(&'a SnapshotId),
    Text(&'a str),
}

impl<'a> IdRef<'a> {
    fn bytes(self) -> impl Iterator<Item = u8> + 'a {
        let (id, text) = match self {
            IdRef::Id(id) => (Some(id), None),
            IdRef::Text(t) => (None, Some(t)),
        };
        id.into_iter()
            .flat_map(id_bytes)
            .chain(text.into_iter().flat_map(|t| t.bytes()))
    }
}

/// The bytes of `{account}:{native_id}`.
fn id_bytes(id: &SnapshotId) -> impl Iterator<Item = u8> + '_ {
    id.account
        .as_str()
        .bytes()
        .chain(std::iter::once(b':'))
        .chain(id.native_id.bytes())
}

/// The page after `cursor` of the snapshots that match `q`'s filters, in the list's order, and
/// where it ended when more follow. Only the page is put in order: the rest are just known to
/// come after it.
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
    if let Some(c) = cursor {
        let t =
            c.t.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
        items
            .retain(|s| order((s.created_at, &s.id), (t, IdRef::Text(&c.id))) == Ordering::Greater);
    }
    let by_order =
        |a: &Snapshot, b: &Snapshot| order((a.created_at, &a.id), (b.created_at, IdRef::Id(&b.id)));
    let more = items.len() > page_size;
    if more && page_size > 0 {
        items.select_nth_unstable_by(page_size - 1, by_order);
    }
    items.truncate(page_size);
    items.sort_unstable_by(by_order);
    let last = more
        .then(|| items.last())
        .flatten()
        .map(|s| SnapshotCursor {
            t: s.created_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
            id: s.id.to_string(),
        });
    (items, last)
}
