//! Builds the whole application from a [`Config`]: `main` and every test go through here.

mod serving;

pub use serving::worker_count;
use serving::{accept_for_workers, serve_handed, ConnLimit, Worker};

use std::{future::Future, net::SocketAddr, sync::Arc};

use tokio::net::TcpListener;

use crate::{
    api::{self, AppState},
    auth::{AuthConfigError, Authenticator},
    config::Config,
    providers::Registry,
    service::{Leases, Service},
    store::{self, SealError, Sealer, StoreError},
    upstream::Upstream,
};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    MasterKey(#[from] SealError),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot build the vendor HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Providers(#[from] crate::config::ProviderConfigError),
    /// Stored records exist and this process holds the key of none of them: the wrong
    /// SNAPGATE_MASTER_KEY (failures would otherwise appear only when a record is used).
    #[error("the master key {held} opens none of the stored records, which are sealed under {stored}: set SNAPGATE_MASTER_KEY (or SNAPGATE_PREVIOUS_MASTER_KEYS) to the key they were sealed with")]
    WrongMasterKey { held: String, stored: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Another process serves this SQLite file (SQLite serves one process; replicas share
    /// PostgreSQL).
    #[error("another snapgate process is serving the SQLite store {path} (its lock {path}.lock is held): stop it first, or use PostgreSQL for several processes")]
    StoreInUse { path: String },
}

/// A built, bound, not yet running gateway.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    /// Held while this process serves a SQLite store: a second `serve` on the file is refused.
    _sqlite_lock: Option<std::fs::File>,
}

impl Application {
    /// Checks the config, opens the store, binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_store(config, |store| store).await
    }

    /// [`Application::build`] with the opened store passed through `wrap` first (tests and the
    /// soak wrap it in [`store::faulty::Faulty`] to fail calls on purpose).
    pub async fn build_with_store(
        mut config: Config,
        wrap: impl FnOnce(Arc<dyn store::Store>) -> Arc<dyn store::Store>,
    ) -> Result<Self, StartError> {
        fit_to_open_files(&mut config, raise_open_files_limit());
        let sealer = Sealer::from_base64(config.master_key.as_ref())?
            .with_previous(config.previous_master_keys.as_ref())?;
        let _ = crate::telemetry::metrics_handle();
        let auth = Authenticator::from_config(&config.auth)?;
        let sqlite_lock = lock_sqlite(&config.store.url).await?;
        let store = wrap(store::faulty::Faulty::traced(
            store::connect(&config.store.url, config.store.max_connections).await?,
        ));
        let stored = store.stored_key_ids().await?;
        if !stored.is_empty() && !stored.iter().any(|k| sealer.holds(k)) {
            return Err(StartError::WrongMasterKey {
                held: sealer.key_ids().join(", "),
                stored: stored.join(", "),
            });
        }
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let sealer = Arc::new(sealer);
        let registry = Registry::new(
            &config.providers,
            Upstream::for_workers(config.upstream.clone(), worker_count(config.server.workers)),
        )?;
        let service = Service::new(
            store.clone(),
            sealer.clone(),
            registry.clone(),
            Leases::for_deadline(config.server.request_timeout()),
        )
        .with_reconciler(config.reconciler.clone())
        .with_webhooks(config.webhooks.clone())
        .with_policies(config.policies.clone())
        .with_retention(config.retention.clone())
        .with_listing(config.listing.clone());
        // New records are sealed under a key every live replica holds (rollouts of a new
        // key): known before the first request.
        if let Err(e) = service.announce_keys_once().await {
            tracing::warn!(error = %e, "could not announce this process's master keys");
        }
        let state = AppState::new(api::Shared {
            auth: Arc::new(auth),
            config: Arc::new(config),
            service,
        });
        Ok(Self {
            listener,
            router: api::router(state.clone()),
            state,
            _sqlite_lock: sqlite_lock,
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.server.listen)
    }

    /// The shared state, for in-process callers such as the demo's seeding.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The background work of a `serve` process, stopped when the returned guards drop:
    /// operations finish whether or not anyone reads them, webhooks are delivered from the
    /// outbox whichever replica wrote the event, and this process announces its master keys.
    fn spawn_background(&self) -> [AbortOnDrop; 5] {
        let reconciler = self.state.config.reconciler.enabled.then(|| {
            let state = self.state.clone();
            tokio::spawn(async move {
                crate::service::supervised("reconciler", || state.service.reconcile_forever()).await
            })
        });
        let deliverer = self.state.config.webhooks.enabled.then(|| {
            let state = self.state.clone();
            tokio::spawn(async move {
                crate::service::supervised("webhooks", || state.service.deliver_forever()).await
            })
        });
        let runner = self.state.config.policies.enabled.then(|| {
            let state = self.state.clone();
            tokio::spawn(async move {
                crate::service::supervised("policies", || state.service.run_policies_forever())
                    .await
            })
        });
        let pruner = self.state.config.retention.enabled.then(|| {
            let state = self.state.clone();
            tokio::spawn(async move {
                crate::service::supervised("retention", || state.service.prune_forever()).await
            })
        });
        let announcer = Some({
            let state = self.state.clone();
            tokio::spawn(async move { state.service.announce_keys_forever().await })
        });
        [
            AbortOnDrop(reconciler),
            AbortOnDrop(deliverer),
            AbortOnDrop(runner),
            AbortOnDrop(pruner),
            AbortOnDrop(announcer),
        ]
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    ///
    /// Thread per core: `server.workers` threads each run a single-threaded runtime that serves
    /// the connections handed to it to the end, with its own vendor connection pool, so a
    /// request is never handed between threads; one acceptor hands each new connection to the
    /// thread with the fewest open.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let _background = self.spawn_background();
        let limit = ConnLimit::new(self.state.config.server.max_connections);
        let workers = worker_count(self.state.config.server.workers);
        let state = self.state.clone();
        // Draining first: readiness 503 and long-polls answered while connections are still
        // served, for `server.drain_delay_ms`; then the listener closes and in-flight requests
        // finish (within DRAIN_TIMEOUT).
        let shutdown = {
            let state = state.clone();
            let delay = std::time::Duration::from_millis(state.config.server.drain_delay_ms);
            async move {
                shutdown.await;
                tracing::info!(delay_ms = delay.as_millis() as u64, "draining");
                state.service.start_draining();
                tokio::time::sleep(delay).await;
            }
        };
        if workers <= 1 {
            // One shared multi-threaded runtime: the same acceptor, feeding one serving task.
            let (worker, handed) = Worker::new();
            let serving = tokio::spawn(serve_handed(handed, self.router.clone()));
            let only = std::slice::from_ref(&worker);
            accept_for_workers(self.listener, self.router, limit, shutdown, only).await;
            state.service.retire_keys().await;
            drop(worker);
            return serving.await.map_err(std::io::Error::other);
        }
        // One acceptor hands each connection to the serving thread with the fewest open: the
        // threads sharing the listening socket took them as they happened to wake, and one
        // thread could end up serving most of a client's pool while the other idled.
        let mut threads = Vec::with_capacity(workers);
        let mut handoff = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (to_thread, rx) = Worker::new();
            handoff.push(to_thread);
            let router = self.router.clone();
            let thread = std::thread::Builder::new()
                .name(format!("snapgate-worker-{worker}"))
                .spawn(move || -> std::io::Result<()> {
                    crate::upstream::set_worker(worker);
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(serve_handed(rx, router));
                    Ok(())
                })?;
            threads.push(thread);
        }
        accept_for_workers(self.listener, self.router, limit, shutdown, &handoff).await;
        state.service.retire_keys().await;
        // The threads finish their connections once nothing more can be handed to them.
        drop(handoff);
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("worker panicked")))
                })
                .collect::<std::io::Result<Vec<()>>>()
        })
        .await
        .map_err(std::io::Error::other)?;
        joined.map(|_| ())
    }
}

/// Takes the serving lock of a SQLite store (`<file>.lock`, an OS file lock the process holds
/// until it ends, released by the kernel even on `kill -9`). A process that is still shutting
/// down on the same file is waited for a few seconds; one that keeps serving is refused.
async fn lock_sqlite(url: &str) -> Result<Option<std::fs::File>, StartError> {
    if store::is_postgres(url) {
        return Ok(None);
    }
    let path = store::sqlite_path(url);
    if path == ":memory:" {
        return Ok(None);
    }
    let lock_path = format!("{path}.lock");
    if let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        crate::private_files::create_dir_all(dir)
            .map_err(|e| StartError::Store(StoreError::Database(e.into())))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StartError::Store(StoreError::Database(e.into())))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StartError::StoreInUse {
                    path: path.to_owned(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StartError::Store(StoreError::Database(e.into())))
            }
        }
    }
}

/// Stops a background task when the server stops.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Fits the settings that hold descriptors to the open-files limit: every connection is one,
/// so the connection cap stays under the limit and answers 503 before accept fails with EMFILE;
/// vendor sockets of lists in flight come out of the same budget, at most a quarter of it.
fn fit_to_open_files(config: &mut Config, open_files: Option<u64>) {
    let listing = &mut config.listing.max_total_concurrency;
    let listing_cap = connection_cap(*listing, open_files.map(|n| n / 4), 0);
    if listing_cap < *listing {
        tracing::warn!(
            configured = *listing,
            open_files_limit = open_files,
            using = listing_cap,
            "listing.max_total_concurrency is over a quarter of the open-files limit; using less"
        );
        *listing = listing_cap;
    }
    let reserve = config.store.max_connections as usize + FD_RESERVE + *listing;
    let cap = connection_cap(config.server.max_connections, open_files, reserve);
    if cap < config.server.max_connections {
        tracing::warn!(
            configured = config.server.max_connections,
            open_files_limit = open_files,
            using = cap,
            "server.max_connections is over what the open-files limit allows; using less"
        );
        config.server.max_connections = cap;
    }
}

/// Descriptors kept for what is not a caller's connection: the listener, vendor and webhook
/// pools, log files, the store's pool on top (added where it is known).
const FD_RESERVE: usize = 128;

/// Raises the soft open-files limit to the hard one; the limit in force after (`None` where
/// it cannot be read).
fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "could not read or raise the open-files limit");
            None
        }
    }
}

/// The connection cap that fits the open-files limit with `reserve` descriptors to spare (at
/// least 1); the configured one when it fits or the limit is unknown.
fn connection_cap(configured: usize, open_files: Option<u64>, reserve: usize) -> usize {
    match open_files {
        Some(limit) => {
            let room = usize::try_from(limit).unwrap_or(usize::MAX);
            configured.min(room.saturating_sub(reserve).max(1))
        }
        None => configured,
    }
}

/// Resolves on Ctrl-C or SIGTERM.
///
/// The handlers are installed when this is called, not when it is first polled, so a signal
/// that arrives right after the address is printed still shuts down gracefully.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
            tracing::info!("shutting down");
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_fits_under_the_open_files_limit() {
        assert_eq!(connection_cap(4096, Some(1024), 138), 886);
        assert_eq!(connection_cap(100, Some(1024), 138), 100);
        assert_eq!(connection_cap(4096, Some(100), 138), 1);
        assert_eq!(connection_cap(4096, None, 138), 4096);
        assert_eq!(connection_cap(4096, Some(u64::MAX), 138), 4096);
    }

    #[test]
    fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
        let raised = raise_open_files_limit().unwrap();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!(raised, soft);
        assert_eq!(soft, hard.min(raised));
    }

    /// Lists' vendor sockets and callers' connections share the open-files limit: with 4,096
    /// descriptors, lists get a quarter and the connection cap what is left after the store and
    /// the reserve; an unknown limit changes nothing.
    #[test]
    fn lists_and_connections_share_the_open_files_limit() {
        let mut config = Config::defaults();
        config.server.max_connections = 100_000;
        let store = config.store.max_connections as usize;
        fit_to_open_files(&mut config, Some(4_096));
        assert_eq!(config.listing.max_total_concurrency, 1_024);
        assert_eq!(
            config.server.max_connections,
            4_096 - store - FD_RESERVE - 1_024
        );
        let mut unknown = Config::defaults();
        fit_to_open_files(&mut unknown, None);
        assert_eq!(unknown.listing.max_total_concurrency, 4_096);
        assert_eq!(
            unknown.server.max_connections,
            Config::defaults().server.max_connections
        );
    }
}
