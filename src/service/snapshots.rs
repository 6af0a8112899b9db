//! Snapshot use cases the service owns: a create, with the guards that need the gateway's
//! own records as well as the vendor's answer.

use super::{Journal, Resolved, Service, ServiceError};
use crate::{
    domain::{Operation, OperationKind, ProviderError},
    providers::{CreateRequest, Submitted},
    store::OperationFilter,
};

impl Service {
    /// Starts a snapshot of `request.source_id`, after `journal` has stored the intent.
    ///
    /// Where a create replaces the source's snapshot (Hostinger keeps one per VM), the vendor's
    /// state is not the whole truth: the gateway's own unfinished create on the same source
    /// counts too, so two creates in a row never silently overwrite each other. Of two racing
    /// creates the older one (by start, then id) goes on. A vendor 404 names the source.
    pub async fn create_snapshot(
        &self,
        tenant: &str,
        resolved: &Resolved,
        journal: &Journal<'_>,
        request: &CreateRequest,
    ) -> Result<Submitted, ServiceError> {
        let info = resolved.adapter.info();
        if info.capabilities.create_replaces_existing && !request.replace_existing {
            if let Some(mine) = journal.intended() {
                if let Some(earlier) = self
                    .earlier_create(tenant, &mine, &request.source_id)
                    .await?
                {
                    return Err(resolved.fail(ProviderError::SnapshotExists {
                        message: format!(
                            "a create of {} {} is still running in the gateway (operation {}); \
                             {} keeps one snapshot per {}, so this one would replace it — wait \
                             for that operation, or send replace_existing: true",
                            info.source_kind,
                            request.source_id,
                            earlier.id,
                            info.display_name,
                            info.source_kind
                        ),
                    }));
                }
            }
        }
        resolved
            .adapter
            .create(&resolved.ctx(), request)
            .await
            .map_err(|e| match e {
                // A create names no snapshot: what the vendor cannot find is the source.
                ProviderError::NotFound => ProviderError::SourceNotFound {
                    field: "source_id",
                    what: info.source_kind,
                    id: request.source_id.clone(),
                },
                other => other,
            })
            .map_err(|e| resolved.fail(e))
    }

    /// An unfinished create of the same account and source that started before `mine`.
    async fn earlier_create(
        &self,
        tenant: &str,
        mine: &Operation,
        source_id: &str,
    ) -> Result<Option<Operation>, ServiceError> {
        let filter = OperationFilter {
            account: Some(mine.account.clone()),
            unfinished_only: true,
            limit: 1000,
            ..Default::default()
        };
        let unfinished = self.store.list_operations(tenant, &filter).await?;
        Ok(unfinished.into_iter().find(|op| {
            op.id != mine.id
                && op.kind == OperationKind::Create
                && create_source(op) == Some(source_id)
                && (op.created_at, &op.id) < (mine.created_at, &mine.id)
        }))
    }
}

/// The source a create operation snapshots, as its intent recorded it.
pub(super) fn create_source(op: &Operation) -> Option<&str> {
    let t = &op.tracking;
    t.get("intent")
        .and_then(|i| i.get("source_id"))
        .or_else(|| t.get(CREATE_SOURCE))
        .and_then(|s| s.as_str())
}

/// The key under which a create's source stays in its tracking once the vendor answered.
pub(super) const CREATE_SOURCE: &str = "gateway_source_id";
