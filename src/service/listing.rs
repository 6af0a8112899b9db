//! The fan-out list: every selected account of a tenant read at once, each within its own
//! time limit, merged with the gateway's unfinished work shown.

use std::time::Duration;

use futures::{stream, StreamExt};

use super::{Service, ServiceError};
use crate::{
    domain::{Account, ProviderError, Snapshot},
    providers::ListFilter,
};

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
