//! Provider adapters: one module per vendor behind [`ProviderAdapter`], plus the registry.
//!
//! Vendor wire types never leave this module tree; callers see only domain types.

mod digitalocean;
mod hetzner;
mod hostinger;
mod hyperstack;
mod koyeb;
mod oktawave;
mod syminet;

mod check;
mod fields;
mod http;
mod walk;
mod wire;

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;

pub use crate::domain::ProviderError;
pub use fields::{validate_credentials, validate_settings, FieldError};
pub(crate) use walk::{walk_sources, ListWalk, PageSignals, SourcePage};

use crate::{
    config::{ProviderConfigError, ProvidersConfig},
    domain::{
        Account, AccountSource, Capabilities, Capability, Credentials, FieldSpec, Operation,
        OperationKind, OperationState, ProviderKind, SourceKind, VendorRef, VendorRefKind,
        VendorSnapshot,
    },
    upstream::Upstream,
};

/// What a provider is and what its accounts carry: declared by each adapter.
#[derive(Debug)]
pub struct ProviderInfo {
    pub kind: ProviderKind,
    pub display_name: &'static str,
    /// What snapshots are taken of.
    pub source_kind: SourceKind,
    pub credential_fields: &'static [FieldSpec],
    pub setting_fields: &'static [FieldSpec],
    pub capabilities: Capabilities,
    /// How a call is authenticated (its credential header is also what scrubbing looks for).
    pub auth: http::Auth,
    /// How the vendor rate-limits.
    pub rate_limits: RateLimits,
}

/// How a vendor rate-limits, as its documentation says.
#[derive(Clone, Copy, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RateLimits {
    /// How long a `429` without `Retry-After` holds the account, in seconds (`null`: the
    /// gateway's configured `upstream.rate_limit_hold_secs`).
    pub window_secs: Option<u64>,
    /// The limit is per caller address: one account's 429 holds every account of the vendor,
    /// as they all call from the gateway's address.
    pub by_address: bool,
    /// The headers saying how much of the limit is left, where the vendor sends them.
    pub headers: Option<crate::upstream::RateLimitHeaders>,
}

impl RateLimits {
    /// Limits per account (token), with no documented window.
    pub const PER_ACCOUNT: Self = Self {
        window_secs: None,
        by_address: false,
        headers: None,
    };
}

impl ProviderInfo {
    /// What the HTTP layer needs to know of the vendor.
    pub fn vendor(&self) -> crate::upstream::Vendor {
        crate::upstream::Vendor {
            kind: self.kind,
            rate_limit_window_secs: self.rate_limits.window_secs,
            limits_by_address: self.rate_limits.by_address,
            rate_limit_headers: self.rate_limits.headers,
            secret_header: match self.auth {
                http::Auth::Header { name, .. } => Some(name),
                http::Auth::Scheme { .. } | http::Auth::Obtained => None,
            },
        }
    }
}

/// The account a call acts for, with its opened credentials.
pub struct CallContext<'a> {
    pub account: &'a Account,
    pub credentials: &'a Credentials,
}

impl CallContext<'_> {
    /// A credential field's value. Fields are validated present when an account is created or
    /// its credentials are replaced, so a missing one is a stored account to fix, never an
    /// empty value sent to the vendor.
    pub fn secret(&self, field: &'static str) -> Result<&str, ProviderError> {
        use secrecy::ExposeSecret;
        self.credentials
            .get(field)
            .map(|s| s.expose_secret())
            .ok_or_else(|| ProviderError::Invalid {
                field: "credentials",
                message: format!(
                    "the account has no `{field}` credential; replace its credentials with PATCH"
                ),
            })
    }

    /// An account setting.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.account.settings.get(name).and_then(|v| v.as_str())
    }
}

/// What a list may be narrowed to at the vendor. Adapters push down what their vendor can
/// filter on exactly; the gateway applies every filter again afterwards.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListFilter<'a> {
    /// Only snapshots of this VM / volume / instance / slice.
    pub source_id: Option<&'a str>,
    /// Only these vendor-reported statuses; empty = any. The gateway sets it only with statuses
    /// its own operation overlay cannot produce (`available`, `deleted`), so pushing it down
    /// never hides a snapshot the caller asked for.
    pub statuses: &'a [crate::domain::SnapshotStatus],
}

/// Normalized create request.
#[derive(Clone, Debug)]
pub struct CreateRequest {
    pub source_id: String,
    pub name: String,
    pub description: Option<String>,
    pub replace_existing: bool,
}

/// Normalized rename / describe request.
#[derive(Clone, Debug)]
pub struct UpdateRequest {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Normalized restore request.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub target_id: Option<String>,
    pub new_name: Option<String>,
    /// Roll the snapshot's own source back, replacing its disk (destructive).
    pub in_place: bool,
}

impl RestoreRequest {
    /// Refuses what the provider's restore cannot take, from its declared capabilities: a
    /// `target_id` unless it restores onto other targets, a `new_name` unless it makes a new
    /// resource. Adapters check only what their vendor adds (a name's length, a required name).
    pub fn check(&self, info: &ProviderInfo) -> Result<(), ProviderError> {
        let vendor = info.display_name;
        let resource = info.source_kind.noun();
        let c = &info.capabilities;
        if self.target_id.is_some() && !c.restore_to_other_target {
            let how = if c.restore_to_new_resource {
                format!("to a new {resource}")
            } else {
                format!("a snapshot onto its own {resource}")
            };
            return Err(ProviderError::Invalid {
                field: "target_id",
                message: format!("{vendor} restores {how}; target_id is not accepted"),
            });
        }
        if self.in_place {
            let refused = if !c.restore_in_place {
                Some(format!(
                    "{vendor} restores to a new {resource}; in_place is not accepted"
                ))
            } else if self.target_id.is_some() || self.new_name.is_some() {
                Some(format!(
                    "in_place rolls the snapshot's own {resource} back; target_id and new_name \
                     are not accepted with it"
                ))
            } else {
                None
            };
            if let Some(message) = refused {
                return Err(ProviderError::Invalid {
                    field: "in_place",
                    message,
                });
            }
        }
        if self.new_name.is_some() && !c.restore_to_new_resource {
            let how = if c.restore_to_other_target {
                format!("onto an existing {resource}")
            } else {
                "in place".to_owned()
            };
            return Err(ProviderError::Invalid {
                field: "new_name",
                message: format!("{vendor} restores {how}; new_name is not accepted"),
            });
        }
        Ok(())
    }
}

/// Hyperstack image-from-snapshot request.
#[derive(Clone, Debug)]
pub struct ImageRequest {
    pub name: String,
    pub labels: Vec<String>,
}

/// What a vendor said when work was submitted.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub state: OperationState,
    /// The snapshot as the vendor returned it, when it did.
    pub snapshot: Option<VendorSnapshot>,
    /// The snapshot's native id, when known.
    pub native_id: Option<String>,
    pub vendor_ref: VendorRef,
    pub result: Option<serde_json::Value>,
    /// Private data the adapter needs to poll this work later.
    pub tracking: serde_json::Value,
    /// Why the end of this work cannot be seen at the vendor and is assumed (see
    /// [`crate::domain::Completion`]); `None` when the vendor reports it.
    pub assumed: Option<String>,
}

impl Submitted {
    /// Work that makes a new resource (the VM or volume of a restore), done when the vendor
    /// reports that resource ready: see [`new_resource_progress`].
    pub fn building(resource_id: String, result: serde_json::Value) -> Self {
        Self {
            state: OperationState::Running,
            snapshot: None,
            native_id: None,
            vendor_ref: VendorRef {
                kind: VendorRefKind::Resource,
                id: Some(resource_id),
            },
            result: Some(result),
            tracking: serde_json::Value::Null,
            assumed: None,
        }
    }

    /// Work the vendor finished while answering (a rename, a restore that names its result).
    pub fn finished(snapshot: Option<VendorSnapshot>, result: Option<serde_json::Value>) -> Self {
        Self {
            state: OperationState::Succeeded,
            native_id: snapshot.as_ref().map(|s| s.native_id.clone()),
            snapshot,
            vendor_ref: VendorRef {
                kind: VendorRefKind::None,
                id: None,
            },
            result,
            tracking: serde_json::Value::Null,
            assumed: None,
        }
    }

    /// Work whose progress is the snapshot's own status at the vendor.
    pub fn by_status(snapshot: VendorSnapshot, state: OperationState) -> Self {
        Self {
            state,
            native_id: Some(snapshot.native_id.clone()),
            snapshot: Some(snapshot),
            vendor_ref: VendorRef {
                kind: VendorRefKind::SnapshotStatus,
                id: None,
            },
            result: None,
            tracking: serde_json::Value::Null,
            assumed: None,
        }
    }
}

/// What an account's list found: its snapshots, and the sources whose snapshots could not be
/// read (Hostinger reads one VM at a time; one VM failing does not fail the account).
#[derive(Debug, Default)]
pub struct Listed {
    pub snapshots: Vec<VendorSnapshot>,
    pub failures: Vec<SourceFailure>,
}

/// One source (VM) whose snapshots could not be read.
#[derive(Debug)]
pub struct SourceFailure {
    pub source_id: String,
    pub error: ProviderError,
}

impl From<Vec<VendorSnapshot>> for Listed {
    fn from(snapshots: Vec<VendorSnapshot>) -> Self {
        Self {
            snapshots,
            failures: Vec::new(),
        }
    }
}

impl Listed {
    /// Every snapshot, or the first source's failure when one could not be read.
    pub fn complete(self) -> Result<Vec<VendorSnapshot>, ProviderError> {
        match self.failures.into_iter().next() {
            Some(f) => Err(f.error),
            None => Ok(self.snapshots),
        }
    }
}

/// The statuses of a restore's new resource (VM, volume), as its vendor documents them.
#[derive(Clone, Copy, Debug)]
pub struct ResourceStatuses {
    /// Finish the restore.
    pub ready: &'static [&'static str],
    /// Still being built.
    pub building: &'static [&'static str],
    /// Fail it.
    pub failed: &'static [&'static str],
}

/// Whether a vendor status names a failure: failure words win over progress words
/// (`CREATE_FAILED` is a failure, not a create).
pub fn names_failure(status: &str) -> bool {
    let s = status.to_ascii_uppercase();
    s.contains("FAIL") || s.contains("ERROR")
}

/// Where the new resource of a restore stands, from its vendor status: `ready` statuses
/// finish the operation, `failed` ones (and any status naming a failure) fail it, `building`
/// ones (or none yet) keep it running, and any other status is one the gateway does not know:
/// running for a bounded time, then failed naming it (see [`Progress::unknown`]). A resource
/// that is gone (not found) failed to build.
pub fn new_resource_progress(
    vendor: ProviderKind,
    what: &str,
    id: &str,
    status: Result<Option<String>, ProviderError>,
    statuses: &ResourceStatuses,
) -> Result<Progress, ProviderError> {
    match status {
        Ok(Some(s)) if statuses.ready.contains(&s.as_str()) => Ok(Progress::succeeded()),
        Ok(Some(s)) if statuses.failed.contains(&s.as_str()) || names_failure(&s) => {
            Ok(Progress::failed(ProviderError::Upstream {
                status: None,
                message: format!("{vendor} reports the restored {what} {id} as {s}"),
            }))
        }
        Ok(Some(s)) if !statuses.building.contains(&s.as_str()) => Ok(Progress::unknown(format!(
            "the restored {what} {id} as {s}"
        ))),
        Ok(_) => Ok(Progress::running()),
        Err(ProviderError::NotFound) => Ok(Progress::failed(ProviderError::Upstream {
            status: None,
            message: format!("the restored {what} {id} no longer exists at {vendor}"),
        })),
        Err(e) => Err(e),
    }
}

/// Where a create stands from its new snapshot's own status (vendors whose snapshots carry
/// one): `available` finishes it, `error`, `deleting` and `deleted` fail it naming the vendor's
/// status, `creating` keeps it running, and `unknown` runs only for a bounded time.
pub fn create_progress(vendor: ProviderKind, snapshot: &VendorSnapshot) -> Progress {
    use crate::domain::SnapshotStatus as S;
    let named = || {
        snapshot
            .vendor_status
            .clone()
            .unwrap_or_else(|| "(no status)".to_owned())
    };
    match snapshot.status {
        S::Available => Progress {
            native_id: Some(snapshot.native_id.clone()),
            ..Progress::succeeded()
        },
        S::Error | S::Deleting | S::Deleted => Progress::failed(ProviderError::Upstream {
            status: None,
            message: format!("{vendor} reports the new snapshot as {}", named()),
        }),
        S::Unknown => Progress::unknown(format!("the new snapshot as {}", named())),
        S::Creating | S::Restoring => Progress::running(),
    }
}

/// What an adapter reads an unfinished operation's progress from: the handle its submission
/// gave, not the gateway's stored record.
#[derive(Clone, Copy, Debug)]
pub struct PollRequest<'a> {
    pub kind: OperationKind,
    /// The snapshot's native id, once known.
    pub native_id: Option<&'a str>,
    pub vendor_ref: &'a VendorRef,
    /// When the work was submitted.
    pub created_at: chrono::DateTime<chrono::Utc>,
    tracking: &'a serde_json::Value,
}

impl<'a> PollRequest<'a> {
    pub fn of(operation: &'a Operation) -> Self {
        Self {
            kind: operation.kind,
            native_id: operation
                .snapshot_id
                .as_ref()
                .map(|id| id.native_id.as_str()),
            vendor_ref: &operation.vendor_ref,
            created_at: operation.created_at,
            tracking: &operation.tracking,
        }
    }

    /// The adapter's own tracking data ([`Submitted::tracking`]) as its type, `None` when the
    /// operation carries none of that shape.
    pub fn tracking<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        T::deserialize(self.tracking).ok()
    }
}

/// An operation's state as the vendor now reports it.
#[derive(Clone, Debug)]
pub struct Progress {
    pub state: OperationState,
    pub native_id: Option<String>,
    pub result: Option<serde_json::Value>,
    pub error: Option<ProviderError>,
    /// Running, but only because the vendor reports a status the gateway does not know
    /// (`"the new snapshot as WEIRD"`): the service fails the operation naming it once
    /// `reconciler.unknown_status_secs` have passed, never waiting for the deadline.
    pub unknown: Option<String>,
}

impl Progress {
    pub fn running() -> Self {
        Self {
            state: OperationState::Running,
            native_id: None,
            result: None,
            error: None,
            unknown: None,
        }
    }

    /// Running on a vendor status nobody documented: what the vendor reports, as
    /// `"the new snapshot as WEIRD"`.
    pub fn unknown(what: String) -> Self {
        Self {
            unknown: Some(what),
            ..Self::running()
        }
    }

    pub fn succeeded() -> Self {
        Self {
            state: OperationState::Succeeded,
            ..Self::running()
        }
    }

    pub fn failed(error: ProviderError) -> Self {
        Self {
            state: OperationState::Failed,
            error: Some(error),
            ..Self::running()
        }
    }
}

fn unsupported<T>(capability: Capability) -> Result<T, ProviderError> {
    Err(ProviderError::Unsupported { capability })
}

/// One vendor's snapshot API, shared by every tenant: credentials come with each call.
///
/// Optional capabilities default to "unsupported"; `info().capabilities` declares which
/// ones an adapter implements.
#[async_trait]
pub trait ProviderAdapter: Send + Sync + 'static {
    /// The provider's static description.
    fn info(&self) -> &'static ProviderInfo;

    /// A cheap authenticated call proving the credentials work.
    async fn verify(&self, ctx: &CallContext<'_>) -> Result<(), ProviderError>;

    /// Every snapshot of the account (all vendor pages), narrowed by `filter` where the vendor can.
    async fn list(
        &self,
        ctx: &CallContext<'_>,
        filter: &ListFilter<'_>,
    ) -> Result<Listed, ProviderError>;

    async fn get(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<VendorSnapshot, ProviderError>;

    async fn create(
        &self,
        ctx: &CallContext<'_>,
        request: &CreateRequest,
    ) -> Result<Submitted, ProviderError>;

    async fn update(
        &self,
        _ctx: &CallContext<'_>,
        _native_id: &str,
        _request: &UpdateRequest,
    ) -> Result<Submitted, ProviderError> {
        unsupported(Capability::Rename)
    }

    async fn delete(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
    ) -> Result<Submitted, ProviderError>;

    async fn restore(
        &self,
        ctx: &CallContext<'_>,
        native_id: &str,
        request: &RestoreRequest,
    ) -> Result<Submitted, ProviderError>;

    async fn create_image(
        &self,
        _ctx: &CallContext<'_>,
        _native_id: &str,
        _request: &ImageRequest,
    ) -> Result<Submitted, ProviderError> {
        unsupported(Capability::CreateImage)
    }

    /// Whether a snapshot name is free.
    async fn name_available(
        &self,
        _ctx: &CallContext<'_>,
        _name: &str,
    ) -> Result<bool, ProviderError> {
        unsupported(Capability::NameAvailability)
    }

    /// Every resource of the account that snapshots can be made of (all vendor pages, or an
    /// error: never a short list).
    async fn list_sources(
        &self,
        _ctx: &CallContext<'_>,
    ) -> Result<Vec<AccountSource>, ProviderError> {
        unsupported(Capability::ListSources)
    }

    /// Reads the vendor's truth about an unfinished operation.
    async fn poll(
        &self,
        ctx: &CallContext<'_>,
        operation: &PollRequest<'_>,
    ) -> Result<Progress, ProviderError>;
}

/// The endpoint settings of a vendor with one API: its base URL, by default the vendor's
/// public API. Adapters with more settings declare their own type.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Endpoint {
    base_url: Option<String>,
}

impl Endpoint {
    /// The configured base URL of `vendor`, or `default`.
    pub(crate) fn base_url(
        config: &ProvidersConfig,
        vendor: ProviderKind,
        default: &str,
    ) -> Result<String, ProviderConfigError> {
        let endpoint: Endpoint = config.of(vendor)?;
        Ok(endpoint.base_url.unwrap_or_else(|| default.to_owned()))
    }
}

/// Every adapter, by provider kind.
#[derive(Clone)]
pub struct Registry {
    adapters: Arc<BTreeMap<ProviderKind, Arc<dyn ProviderAdapter>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.adapters.keys()).finish()
    }
}

/// Builds a provider's adapter against its configured vendor endpoint.
type Build =
    fn(&ProvidersConfig, Upstream) -> Result<Arc<dyn ProviderAdapter>, ProviderConfigError>;

/// Every provider: its declaration and its adapter. Adding one is a line here (and its module).
static PROVIDERS: [(&ProviderInfo, Build); 7] = [
    (&hyperstack::INFO, |c, u| {
        Ok(Arc::new(hyperstack::Hyperstack::new(c, u)?))
    }),
    (&koyeb::INFO, |c, u| Ok(Arc::new(koyeb::Koyeb::new(c, u)?))),
    (&oktawave::INFO, |c, u| {
        Ok(Arc::new(oktawave::Oktawave::new(c, u)?))
    }),
    (&hostinger::INFO, |c, u| {
        Ok(Arc::new(hostinger::Hostinger::new(c, u)?))
    }),
    (&syminet::INFO, |c, u| {
        Ok(Arc::new(syminet::Syminet::new(c, u)?))
    }),
    (&hetzner::INFO, |c, u| {
        Ok(Arc::new(hetzner::Hetzner::new(c, u)?))
    }),
    (&digitalocean::INFO, |c, u| {
        Ok(Arc::new(digitalocean::Digitalocean::new(c, u)?))
    }),
];

/// What each provider declares (fields, capabilities, policy), without building an adapter:
/// for the OpenAPI document, which models each provider's account fields from these.
pub fn infos() -> impl Iterator<Item = &'static ProviderInfo> {
    PROVIDERS.iter().map(|(info, _)| *info)
}

/// The name people know `kind` by, for messages: its declaration's, the one place it is
/// written.
pub fn display_name(kind: ProviderKind) -> &'static str {
    infos()
        .into_iter()
        .find(|info| info.kind == kind)
        .map_or(kind.as_str(), |info| info.display_name)
}

impl Registry {
    /// Builds every adapter against its configured vendor endpoint.
    pub fn new(config: &ProvidersConfig, upstream: Upstream) -> Result<Self, ProviderConfigError> {
        let mut adapters = BTreeMap::new();
        for (info, build) in &PROVIDERS {
            adapters.insert(info.kind, build(config, upstream.clone())?);
        }
        Ok(Self {
            adapters: Arc::new(adapters),
        })
    }

    pub fn get(&self, kind: ProviderKind) -> &Arc<dyn ProviderAdapter> {
        // The registry is built with every kind, so indexing cannot miss.
        &self.adapters[&kind]
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn ProviderAdapter>> {
        self.adapters.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_credential_is_an_error_never_an_empty_value() {
        let now = chrono::Utc::now();
        let account = crate::domain::Account {
            tenant: "acme".to_owned(),
            id: "hs".parse().unwrap(),
            provider: ProviderKind::ALL[0],
            display_name: None,
            settings: serde_json::Map::new(),
            credential_fields: Vec::new(),
            credential_fingerprint: String::new(),
            credentials_updated_at: now,
            health: crate::domain::AccountHealth::default(),
            created_at: now,
            updated_at: now,
        };
        let credentials = Credentials::new(BTreeMap::new());
        let ctx = CallContext {
            account: &account,
            credentials: &credentials,
        };
        match ctx.secret("api_key") {
            Err(ProviderError::Invalid { field, message }) => {
                assert_eq!(field, "credentials");
                assert!(message.contains("`api_key`"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_registry_has_every_provider_once_each_adapter_declaring_its_own_kind() {
        let kinds: Vec<ProviderKind> = infos().map(|i| i.kind).collect();
        assert_eq!(kinds, ProviderKind::ALL.to_vec());
        let registry = Registry::new(
            &ProvidersConfig::default(),
            Upstream::new(Default::default()),
        )
        .unwrap();
        for kind in ProviderKind::ALL {
            assert_eq!(registry.get(kind).info().kind, kind);
        }
    }

    #[test]
    fn restore_inputs_are_refused_where_the_capabilities_say() {
        for info in infos() {
            let c = &info.capabilities;
            let request = |target: Option<&str>, name: Option<&str>, in_place| RestoreRequest {
                target_id: target.map(str::to_owned),
                new_name: name.map(str::to_owned),
                in_place,
            };
            for (field, given, accepted) in [
                (
                    "target_id",
                    request(Some("9"), None, false),
                    c.restore_to_other_target,
                ),
                (
                    "new_name",
                    request(None, Some("copy"), false),
                    c.restore_to_new_resource,
                ),
                ("in_place", request(None, None, true), c.restore_in_place),
            ] {
                match given.check(info) {
                    Ok(()) => assert!(accepted, "{} took {field}", info.kind),
                    Err(ProviderError::Invalid {
                        field: named,
                        message,
                    }) => {
                        assert!(!accepted, "{} refused {field}: {message}", info.kind);
                        assert_eq!(named, field);
                        let restores = format!("{} restores ", info.display_name);
                        assert!(message.starts_with(&restores), "{message}");
                        assert!(message.ends_with(&format!("; {field} is not accepted")));
                    }
                    Err(other) => panic!("{other:?}"),
                }
            }
        }
    }
}
