//! Accounts: stored sealed, opened (and cached) only for a provider call.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use secrecy::ExposeSecret;

use super::{
    error::{scrubbed, AccountFailure},
    Service, ServiceError,
};
use crate::{
    domain::{
        Account, AccountHealth, AccountId, AccountSource, Capability, Credentials, Event,
        EventType, HealthStatus, Problem, ProviderError, ProviderKind,
    },
    providers::{
        validate_credentials, validate_settings, CallContext, FieldError, ProviderAdapter, Registry,
    },
    scrub::Scrubber,
    store::{AccountPatch, NewAccount, StoreError},
};

/// An account with its credentials opened, as cached between requests.
struct Opened {
    account: Account,
    credentials: Credentials,
    loaded: Instant,
    /// The store's [`crate::store::Store::account_stamp`] when it was opened.
    stamp: u64,
}

/// Opened accounts by (tenant, id): saves a store read and a decryption per vendor call.
///
/// Writes through this process invalidate at once; writes through another replica change the
/// store's stamp of the account (PostgreSQL notifies them), which makes the entry stale; the
/// TTL bounds staleness whatever happens.
#[derive(Default)]
pub(super) struct AccountCache {
    map: Mutex<HashMap<(String, String), Arc<Opened>>>,
}

const ACCOUNT_TTL: Duration = Duration::from_secs(30);
const ACCOUNT_CACHE_MAX: usize = 10_000;

impl AccountCache {
    fn get(&self, tenant: &str, id: &AccountId, stamp: u64) -> Option<Arc<Opened>> {
        self.unchanged(tenant, id, stamp)
            .filter(|o| o.loaded.elapsed() < ACCOUNT_TTL)
    }

    /// The cached opening however old, as long as no change to the account was heard since:
    /// what a replica serves while the store cannot be read (nobody can change the account
    /// meanwhile; changes made before are caught when the store is back).
    fn unchanged(&self, tenant: &str, id: &AccountId, stamp: u64) -> Option<Arc<Opened>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&crate::pair::key(tenant, id.as_str()) as &dyn crate::pair::Pair)
            .filter(|o| o.stamp == stamp)
            .cloned()
    }

    fn put(&self, tenant: &str, opened: Arc<Opened>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= ACCOUNT_CACHE_MAX {
            map.retain(|_, o| o.loaded.elapsed() < ACCOUNT_TTL);
            if map.len() >= ACCOUNT_CACHE_MAX {
                map.clear();
            }
        }
        map.insert(
            (tenant.to_owned(), opened.account.id.as_str().to_owned()),
            opened,
        );
    }

    /// Forgets an account after it changed or was deleted.
    fn invalidate(&self, tenant: &str, id: &AccountId) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&crate::pair::key(tenant, id.as_str()) as &dyn crate::pair::Pair);
    }
}

impl std::fmt::Debug for AccountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCache").finish_non_exhaustive()
    }
}

/// An account opened for a provider call.
pub struct Resolved {
    opened: Arc<Opened>,
    pub(super) adapter: Arc<dyn ProviderAdapter>,
    registry: Registry,
}

impl Resolved {
    pub fn account(&self) -> &Account {
        &self.opened.account
    }

    pub(super) fn ctx(&self) -> CallContext<'_> {
        CallContext {
            account: &self.opened.account,
            credentials: &self.opened.credentials,
        }
    }

    /// A provider failure of this account, with any echoed secret removed.
    pub fn fail(&self, e: ProviderError) -> ServiceError {
        self.fail_source(e, None)
    }

    /// As [`Resolved::fail`], for one source (VM) of the account that could not be read.
    pub fn fail_source(&self, e: ProviderError, source_id: Option<String>) -> ServiceError {
        let mut secrets = Scrubber::new();
        for (_, v) in self.opened.credentials.iter() {
            secrets.add(v.expose_secret());
        }
        let supported_by = match &e {
            ProviderError::Unsupported { capability } => supported_by(&self.registry, *capability),
            _ => Vec::new(),
        };
        ServiceError::Provider(Box::new(AccountFailure {
            provider: self.opened.account.provider,
            account: self.opened.account.id.clone(),
            source_id,
            error: scrubbed(e, &secrets),
            supported_by,
        }))
    }

    /// `unsupported_operation` unless the adapter declares the capability.
    pub fn require(&self, capability: Capability) -> Result<(), ServiceError> {
        if self.adapter.info().capabilities.has(capability) {
            Ok(())
        } else {
            Err(self.fail(ProviderError::Unsupported { capability }))
        }
    }
}

/// The providers that declare a capability.
fn supported_by(registry: &Registry, capability: Capability) -> Vec<ProviderKind> {
    registry
        .all()
        .map(|a| a.info())
        .filter(|i| i.capabilities.has(capability))
        .map(|i| i.kind)
        .collect()
}

/// A new account as a caller asks for it, before validation.
pub struct AccountRequest {
    pub id: AccountId,
    pub provider: ProviderKind,
    pub display_name: Option<String>,
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub credentials: serde_json::Map<String, serde_json::Value>,
}

/// Changes to an account as a caller asks for them; `None` keeps a part as it is.
#[derive(Default)]
pub struct AccountChanges {
    /// `Some(None)` clears the display name.
    pub display_name: Option<Option<String>>,
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
    pub credentials: Option<serde_json::Map<String, serde_json::Value>>,
}

fn invalid(e: FieldError) -> ServiceError {
    ServiceError::Invalid {
        field: e.field(),
        message: e.to_string(),
    }
}

impl Service {
    /// Opens the caller's account (from the cache, or the store and the sealer).
    pub async fn resolve(&self, tenant: &str, id: &AccountId) -> Result<Resolved, ServiceError> {
        let stamp = self.store.account_stamp(tenant, id);
        let opened = match self.accounts.get(tenant, id, stamp) {
            Some(opened) => opened,
            None => {
                let read = match self.store.get_account_sealed(tenant, id).await {
                    Ok(read) => read,
                    Err(e) => match self.accounts.unchanged(tenant, id, stamp) {
                        // The store is unreachable: the last opening stands (stale-if-error).
                        Some(opened) if !matches!(e, StoreError::Conflict) => {
                            tracing::info!(error = %e, "store unreachable; serving a cached account");
                            return Ok(Resolved {
                                adapter: self.registry.get(opened.account.provider).clone(),
                                registry: self.registry.clone(),
                                opened,
                            });
                        }
                        _ => return Err(e.into()),
                    },
                };
                let (account, sealed) =
                    read.ok_or_else(|| ServiceError::AccountNotFound(id.clone()))?;
                let credentials =
                    self.sealer
                        .open_account(tenant, id, &sealed)
                        .map_err(|e| match e {
                            crate::store::SealError::UnknownKey(key) => {
                                ServiceError::KeyMissing(key)
                            }
                            other => {
                                ServiceError::internal("cannot open sealed credentials", &other)
                            }
                        })?;
                let opened = Arc::new(Opened {
                    account,
                    credentials,
                    loaded: Instant::now(),
                    stamp,
                });
                self.accounts.put(tenant, opened.clone());
                opened
            }
        };
        Ok(Resolved {
            adapter: self.registry.get(opened.account.provider).clone(),
            registry: self.registry.clone(),
            opened,
        })
    }

    pub async fn list_accounts(&self, tenant: &str) -> Result<Vec<Account>, ServiceError> {
        Ok(self.store.list_accounts(tenant).await?)
    }

    pub async fn account(&self, tenant: &str, id: &AccountId) -> Result<Account, ServiceError> {
        self.store
            .get_account(tenant, id)
            .await?
            .ok_or_else(|| ServiceError::AccountNotFound(id.clone()))
    }

    /// Validates an account against its provider's declared fields and stores it, its
    /// credentials sealed.
    pub async fn create_account(
        &self,
        tenant: &str,
        request: AccountRequest,
    ) -> Result<Account, ServiceError> {
        let info = self.registry.get(request.provider).info();
        let settings = validate_settings(info, request.settings).map_err(invalid)?;
        let creds = validate_credentials(info, request.credentials).map_err(invalid)?;
        let credentials = self.sealer.seal_account(tenant, &request.id, &creds);
        let id = request.id.clone();
        self.store
            .insert_account(NewAccount {
                tenant: tenant.to_owned(),
                id: request.id,
                provider: request.provider,
                display_name: request.display_name,
                settings,
                credentials,
                now: Utc::now(),
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict => ServiceError::AccountExists(id),
                other => other.into(),
            })
    }

    /// Changes an account; new credentials are validated and sealed, and every cached
    /// opening of the old ones is dropped.
    pub async fn update_account(
        &self,
        tenant: &str,
        id: &AccountId,
        changes: AccountChanges,
    ) -> Result<Account, ServiceError> {
        let existing = self.account(tenant, id).await?;
        let info = self.registry.get(existing.provider).info();
        let settings = changes
            .settings
            .map(|s| validate_settings(info, s))
            .transpose()
            .map_err(invalid)?;
        let credentials = changes
            .credentials
            .map(|c| validate_credentials(info, c))
            .transpose()
            .map_err(invalid)?
            .map(|creds| self.sealer.seal_account(tenant, id, &creds));
        let patch = AccountPatch {
            display_name: changes.display_name,
            settings,
            credentials,
        };
        let account = self
            .store
            .update_account(tenant, id, patch, Utc::now())
            .await?
            .ok_or_else(|| ServiceError::AccountNotFound(id.clone()))?;
        self.accounts.invalidate(tenant, id);
        Ok(account)
    }

    /// Deletes an account and its sealed credentials.
    pub async fn delete_account(&self, tenant: &str, id: &AccountId) -> Result<(), ServiceError> {
        let deleted = self.store.delete_account(tenant, id).await?;
        self.accounts.invalidate(tenant, id);
        if deleted {
            Ok(())
        } else {
            Err(ServiceError::AccountNotFound(id.clone()))
        }
    }

    /// Every resource of the account that snapshots can be made of, as its provider lists
    /// them now (all pages, or the vendor's error).
    pub async fn account_sources(
        &self,
        tenant: &str,
        account: &AccountId,
    ) -> Result<Vec<AccountSource>, ServiceError> {
        let resolved = self.resolve(tenant, account).await?;
        resolved.require(Capability::ListSources)?;
        resolved
            .adapter
            .list_sources(&resolved.ctx())
            .await
            .map_err(|e| resolved.fail(e))
    }

    /// Checks the stored credentials with a cheap vendor call and records the account's
    /// health.
    pub async fn verify_account(
        &self,
        tenant: &str,
        id: &AccountId,
    ) -> Result<AccountHealth, ServiceError> {
        let resolved = self.resolve(tenant, id).await?;
        let before = resolved.account().health.status;
        let outcome = resolved.adapter.verify(&resolved.ctx()).await;
        let (status, problem): (HealthStatus, Option<Problem>) = match outcome {
            Ok(()) => (HealthStatus::Ok, None),
            Err(e) => (HealthStatus::Failing, Some(resolved.fail(e).problem())),
        };
        let health = AccountHealth {
            status,
            checked_at: Some(Utc::now()),
            problem,
        };
        self.store.record_health(tenant, id, &health).await?;
        if health.status != before {
            let data = serde_json::json!({
                "account": id, "provider": resolved.account().provider, "health": health,
            });
            let changed = Event::new(
                EventType::AccountHealthChanged,
                &crate::telemetry::current_actor(),
                data,
            );
            self.store.append_events(tenant, &[changed]).await?;
        }
        Ok(health)
    }
}
