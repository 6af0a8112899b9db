//! Snapshot use cases the service owns: reading one snapshot (its status advanced from the
//! operations the gateway tracks), checking a name, and every change — create, delete,
//! restore, image, rename/describe — on one path: once per idempotency key, the intent
//! journaled before the vendor call, the operation recorded after it, the `202` body made here.
//! The edge validates the request, calls one of these and answers.

use super::{Answer, Intent, Journal, Outcome, Resolved, Service, ServiceError};
use crate::{
    domain::{
        Accepted, AccountId, Capability, Operation, OperationKind, ProviderError, Snapshot,
        SnapshotId,
    },
    providers::{CreateRequest, ImageRequest, RestoreRequest, Submitted, UpdateRequest},
    store::OperationFilter,
};

/// What can be done to an existing snapshot through the vendor.
pub enum SnapshotAction {
    Delete,
    Restore(RestoreRequest),
    Image(ImageRequest),
    Update(UpdateRequest),
}

impl SnapshotAction {
    /// The kind of operation it records.
    fn kind(&self) -> OperationKind {
        match self {
            SnapshotAction::Delete => OperationKind::Delete,
            SnapshotAction::Restore(_) => OperationKind::Restore,
            SnapshotAction::Image(_) => OperationKind::Image,
            SnapshotAction::Update(_) => OperationKind::Rename,
        }
    }

    /// What its journaled intent says, for settling it should the request die mid-call.
    fn intent(&self) -> Intent {
        match self {
            SnapshotAction::Delete => Intent::Delete,
            SnapshotAction::Restore(_) => Intent::Restore,
            SnapshotAction::Image(_) => Intent::Image,
            SnapshotAction::Update(u) => Intent::Update {
                name: u.name.clone(),
                description: u.description.clone(),
            },
        }
    }

    /// The capabilities the provider must declare for it.
    fn needs(&self) -> Vec<Capability> {
        match self {
            SnapshotAction::Delete => Vec::new(),
            SnapshotAction::Restore(_) => vec![Capability::Restore],
            SnapshotAction::Image(_) => vec![Capability::CreateImage],
            SnapshotAction::Update(u) => [
                u.name.as_ref().map(|_| Capability::Rename),
                u.description.as_ref().map(|_| Capability::Describe),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }
}

impl Service {
    /// Starts a snapshot of `create.source_id` in `account`: once per idempotency `key`
    /// (`request` is what makes a retry the same request), its intent journaled right before
    /// the vendor call, its operation recorded after. The `202` answer.
    pub async fn create(
        &self,
        tenant: &str,
        key: Option<&str>,
        request: &str,
        account: &AccountId,
        create: CreateRequest,
    ) -> Result<Outcome, ServiceError> {
        self.once(tenant, key, request, async |journal| {
            let resolved = self.resolve(tenant, account).await?;
            resolved.require(Capability::Create)?;
            let intent = Intent::Create {
                source_id: create.source_id.clone(),
                name: create.name.clone(),
            };
            let kind = OperationKind::Create;
            journal.intend(&resolved, kind, None, intent).await?;
            let submitted = self
                .create_snapshot(tenant, &resolved, journal, &create)
                .await?;
            let intended = journal.intended();
            self.accepted(tenant, &resolved, kind, None, submitted, intended)
                .await
        })
        .await
    }

    /// Deletes, restores, images or renames/describes snapshot `id`, on the same path as a
    /// create: once per key, the provider's capability checked before anything is stored, the
    /// intent journaled, one vendor call, the operation recorded. The `202` answer.
    pub async fn change(
        &self,
        tenant: &str,
        key: Option<&str>,
        request: &str,
        id: &SnapshotId,
        action: SnapshotAction,
    ) -> Result<Outcome, ServiceError> {
        self.once(tenant, key, request, async |journal| {
            let resolved = self.resolve_snapshot(tenant, id).await?;
            self.check_action(&resolved, &action)?;
            let (kind, native) = (action.kind(), id.native_id.as_str());
            journal
                .intend(&resolved, kind, Some(native), action.intent())
                .await?;
            let submitted = self.act(&resolved, native, &action).await?;
            let intended = journal.intended();
            self.accepted(tenant, &resolved, kind, Some(native), submitted, intended)
                .await
        })
        .await
    }

    /// Records what the vendor answered and makes the `202` body: the operation and, when the
    /// vendor named it, the snapshot.
    async fn accepted(
        &self,
        tenant: &str,
        resolved: &Resolved,
        kind: OperationKind,
        native_id: Option<&str>,
        submitted: Submitted,
        intended: Option<Operation>,
    ) -> Result<Answer, ServiceError> {
        let operation = self
            .record(tenant, resolved, kind, native_id, &submitted, intended)
            .await?;
        let account = resolved.account();
        let snapshot = submitted
            .snapshot
            .map(|s| Snapshot::from_vendor(&account.id, account.provider, s, false));
        let body = serde_json::to_value(Accepted {
            operation,
            snapshot,
        })
        .map_err(|e| ServiceError::internal("serializing an operation", &e))?;
        Ok(Answer { status: 202, body })
    }

    /// The account a snapshot id names, opened: a snapshot of an account the tenant does not
    /// have is a snapshot it does not have (`404 snapshot_not_found`, never naming accounts).
    pub(super) async fn resolve_snapshot(
        &self,
        tenant: &str,
        id: &SnapshotId,
    ) -> Result<Resolved, ServiceError> {
        self.resolve(tenant, &id.account)
            .await
            .map_err(|e| match e {
                ServiceError::AccountNotFound(_) => ServiceError::SnapshotNotFound,
                other => other,
            })
    }

    /// One snapshot as the vendor has it now, its status advanced from any operation the
    /// gateway is tracking on it; with `include_vendor`, the vendor's own object too.
    pub async fn snapshot(
        &self,
        tenant: &str,
        id: &SnapshotId,
        include_vendor: bool,
    ) -> Result<Snapshot, ServiceError> {
        let resolved = self.resolve_snapshot(tenant, id).await?;
        let vendor = resolved
            .adapter
            .get(&resolved.ctx(), &id.native_id)
            .await
            .map_err(|e| resolved.fail(e))?;
        let account = resolved.account();
        let mut snapshot =
            Snapshot::from_vendor(&account.id, account.provider, vendor, include_vendor);
        self.overlay(tenant, &mut snapshot).await?;
        Ok(snapshot)
    }

    /// `unsupported_operation` unless the account's provider can do `action`.
    fn check_action(
        &self,
        resolved: &Resolved,
        action: &SnapshotAction,
    ) -> Result<(), ServiceError> {
        for capability in action.needs() {
            resolved.require(capability)?;
        }
        if let SnapshotAction::Restore(restore) = action {
            restore
                .check(resolved.adapter.info())
                .map_err(|e| resolved.fail(e))?;
        }
        Ok(())
    }

    /// Asks the vendor to do `action` to the snapshot `native_id` (after
    /// [`Service::check_action`]); what it answered.
    async fn act(
        &self,
        resolved: &Resolved,
        native_id: &str,
        action: &SnapshotAction,
    ) -> Result<Submitted, ServiceError> {
        let (adapter, ctx) = (&resolved.adapter, resolved.ctx());
        match action {
            SnapshotAction::Delete => adapter.delete(&ctx, native_id).await,
            SnapshotAction::Restore(restore) => adapter.restore(&ctx, native_id, restore).await,
            SnapshotAction::Image(image) => adapter.create_image(&ctx, native_id, image).await,
            SnapshotAction::Update(update) => adapter.update(&ctx, native_id, update).await,
        }
        .map_err(|e| resolved.fail(e))
    }

    /// Whether `name` is free for a new snapshot in `account` (where the vendor can tell).
    pub async fn name_available(
        &self,
        tenant: &str,
        account: &AccountId,
        name: &str,
    ) -> Result<bool, ServiceError> {
        let resolved = self.resolve(tenant, account).await?;
        resolved.require(Capability::NameAvailability)?;
        resolved
            .adapter
            .name_available(&resolved.ctx(), name)
            .await
            .map_err(|e| resolved.fail(e))
    }

    /// Starts a snapshot of `request.source_id`, after `journal` has stored the intent.
    ///
    /// Where a create replaces the source's snapshot (Hostinger keeps one per VM), the vendor's
    /// state is not the whole truth: the gateway's own unfinished create on the same source
    /// counts too, so two creates in a row never silently overwrite each other. Of two racing
    /// creates the older one (by start, then id) goes on. A vendor 404 names the source.
    async fn create_snapshot(
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
                    what: info.source_kind.as_str(),
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
