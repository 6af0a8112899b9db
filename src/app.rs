//! Builds the whole application from a [`Config`]: `main` and every test go through here.

use std::{future::Future, net::SocketAddr, sync::Arc};

use tokio::net::{TcpListener, TcpStream};

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
            Upstream::for_workers(config.upstream.clone(), worker_count(config.server.workers))?,
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

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    ///
    /// Thread per core: `server.workers` threads each run a single-threaded runtime that serves
    /// the connections handed to it to the end, with its own vendor connection pool, so a
    /// request is never handed between threads; one acceptor hands each new connection to the
    /// thread with the fewest open.
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

/// Serving threads: the configured count, or one per CPU.
pub fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The connection cap shared by every serving thread.
#[derive(Clone)]
struct ConnLimit {
    open: Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
    /// Connections over the cap being served a probe answer (`/healthz`, `/readyz`,
    /// `/metrics`) or a `503`, one request each: a few, so the cap still holds.
    probes: Arc<std::sync::atomic::AtomicUsize>,
}

/// One open connection, counted until dropped.
struct ConnSlot(Arc<std::sync::atomic::AtomicUsize>);

impl ConnLimit {
    fn new(max: usize) -> Self {
        Self {
            open: Arc::default(),
            max: max.max(1),
            probes: Arc::default(),
        }
    }

    /// A slot for a connection over the cap that gets one probe answer, or `None`.
    fn take_probe(&self) -> Option<ConnSlot> {
        use std::sync::atomic::Ordering;
        self.probes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_PROBE_CONNECTIONS).then_some(n + 1)
            })
            .is_ok()
            .then(|| ConnSlot(self.probes.clone()))
    }

    /// A slot for a new connection, or `None` when `max` are open.
    fn take(&self) -> Option<ConnSlot> {
        use std::sync::atomic::Ordering;
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| ConnSlot(self.open.clone()))
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
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

/// Accept failures (EMFILE, ENFILE, ENOBUFS) back off exponentially, 5 ms to 1 s, and are
/// logged once per second for the whole process (every serving thread's loop), with a count,
/// instead of once per try.
struct AcceptBackoff {
    delay: std::time::Duration,
}

/// Accept failures since the last warning, and when that was, across serving threads.
static ACCEPT_FAILURES: std::sync::Mutex<(u64, Option<std::time::Instant>)> =
    std::sync::Mutex::new((0, None));

impl AcceptBackoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(5);
    const LONGEST: std::time::Duration = std::time::Duration::from_secs(1);

    fn new() -> Self {
        Self { delay: Self::FIRST }
    }

    async fn failed(&mut self, e: &std::io::Error) {
        metrics::counter!("snapgate_accept_errors_total").increment(1);
        let report = {
            let mut failures = ACCEPT_FAILURES.lock().unwrap_or_else(|e| e.into_inner());
            failures.0 += 1;
            let due = failures
                .1
                .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1));
            due.then(|| {
                let count = std::mem::take(&mut failures.0);
                failures.1 = Some(std::time::Instant::now());
                count
            })
        };
        if let Some(failures) = report {
            tracing::warn!(error = %e, failures, backoff_ms = self.delay.as_millis() as u64, "accept failed");
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Self::LONGEST);
    }

    fn succeeded(&mut self) {
        self.delay = Self::FIRST;
    }
}

/// How long shutdown waits for in-flight requests before closing their connections.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A serving thread as the acceptor sees it: where to hand it a connection, and how many it
/// has open.
struct Worker {
    tx: tokio::sync::mpsc::UnboundedSender<Handed>,
    open: Arc<std::sync::atomic::AtomicUsize>,
}

impl Worker {
    /// A serving loop's end for the acceptor, and the end [`serve_handed`] reads.
    fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<Handed>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let open = Arc::default();
        (Self { tx, open }, rx)
    }
}

/// A connection handed to a serving thread, with its slots.
type Handed = (std::net::TcpStream, Slots);

/// What a connection holds until it closes: its place under `server.max_connections`, and its
/// count on its serving thread (`snapgate_connections_open{worker}`).
struct Slots {
    _process: ConnSlot,
    _worker: WorkerLoad,
}

/// One connection of serving thread `index`, counted until dropped.
struct WorkerLoad {
    open: Arc<std::sync::atomic::AtomicUsize>,
    index: usize,
}

impl WorkerLoad {
    fn take(worker: &Worker, index: usize) -> Self {
        worker
            .open
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        worker_gauge(index).increment(1.0);
        Self {
            open: worker.open.clone(),
            index,
        }
    }
}

impl Drop for WorkerLoad {
    fn drop(&mut self) {
        self.open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        worker_gauge(self.index).decrement(1.0);
    }
}

/// `snapgate_connections_open` of serving thread `index`.
fn worker_gauge(index: usize) -> metrics::Gauge {
    metrics::gauge!("snapgate_connections_open", "worker" => index.to_string())
}

/// Accepts until `shutdown`, handing each connection to the worker with the fewest open.
async fn accept_for_workers(
    listener: TcpListener,
    router: axum::Router,
    limit: ConnLimit,
    shutdown: impl Future<Output = ()>,
    workers: &[Worker],
) {
    let mut backoff = AcceptBackoff::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff.succeeded();
                    let Some((stream, slot)) = admit(stream, &limit, &router) else {
                        continue;
                    };
                    hand_off(workers, stream, slot);
                }
                Err(e) => backoff.failed(&e).await,
            },
            () = &mut shutdown => break,
        }
    }
}

/// Hands `stream` to the live serving thread with the fewest open connections. A thread that
/// has stopped (its runtime failed) gets nothing more: its connection goes to the next one
/// instead of being closed unanswered.
fn hand_off(workers: &[Worker], stream: TcpStream, slot: ConnSlot) {
    use std::sync::atomic::Ordering;
    let mut handed = match stream.into_std() {
        Ok(stream) => (stream, slot),
        Err(e) => {
            tracing::warn!(error = %e, "could not hand a connection to a serving thread");
            return;
        }
    };
    loop {
        let live = workers
            .iter()
            .enumerate()
            .filter(|(_, w)| !w.tx.is_closed());
        let Some((index, worker)) = live.min_by_key(|(_, w)| w.open.load(Ordering::Acquire)) else {
            tracing::error!("every serving thread has stopped: a new connection is closed");
            return;
        };
        let (stream, slot) = handed;
        let slots = Slots {
            _process: slot,
            _worker: WorkerLoad::take(worker, index),
        };
        match worker.tx.send((stream, slots)) {
            Ok(()) => return,
            Err(tokio::sync::mpsc::error::SendError((stream, slots))) => {
                tracing::error!(
                    worker = index,
                    "a serving thread has stopped; its connection goes to another"
                );
                handed = (stream, slots._process);
            }
        }
    }
}

/// A serving thread's loop: serves what the acceptor hands it until the acceptor stops, then
/// lets its connections finish.
async fn serve_handed(
    mut handed: tokio::sync::mpsc::UnboundedReceiver<Handed>,
    router: axum::Router,
) {
    let mut conns = Connections::new(router);
    loop {
        tokio::select! {
            next = handed.recv() => match next {
                Some((stream, slots)) => match TcpStream::from_std(stream) {
                    Ok(stream) => conns.serve(stream, slots),
                    Err(e) => tracing::warn!(error = %e, "could not serve a handed connection"),
                },
                None => break,
            },
            Some(_) = conns.tasks.join_next(), if !conns.tasks.is_empty() => {}
        }
    }
    conns.drain().await;
}

/// A connection within the cap, with its slot; one over it is answered (a probe) or refused
/// here, and `None` returned.
fn admit(
    stream: TcpStream,
    limit: &ConnLimit,
    router: &axum::Router,
) -> Option<(TcpStream, ConnSlot)> {
    let Some(slot) = limit.take() else {
        match limit.take_probe() {
            Some(probe) => {
                tokio::spawn(serve_over_cap(stream, router.clone(), probe));
            }
            None => {
                tokio::spawn(refuse(stream));
            }
        }
        return None;
    };
    let _ = stream.set_nodelay(true);
    Some((stream, slot))
}

/// The connections one thread serves, and how they are told to finish.
struct Connections {
    router: axum::Router,
    tasks: tokio::task::JoinSet<()>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    stop_rx: tokio::sync::watch::Receiver<bool>,
}

impl Connections {
    fn new(router: axum::Router) -> Self {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        Self {
            router,
            tasks: tokio::task::JoinSet::new(),
            stop_tx,
            stop_rx,
        }
    }

    /// Serves `stream` to its end (or a graceful close at shutdown), holding `slots` until
    /// then: HTTP/1.1 only. (`axum::serve` negotiates HTTP/1 and HTTP/2 on every connection,
    /// which costs ~27 KB per idle connection here; a gateway behind callers' HTTP/1.1
    /// keep-alive pools does not need h2, and the plain HTTP/1 connection state is several
    /// times smaller.)
    fn serve(&mut self, stream: TcpStream, slots: Slots) {
        use hyper_util::rt::{TokioIo, TokioTimer};
        use tower::ServiceExt;
        let router = self.router.clone();
        let mut stop = self.stop_rx.clone();
        self.tasks.spawn(async move {
            let _slots = slots;
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    // The head copied out of hyper's read buffer, which it can then reuse for
                    // the read it keeps pending while the request is in flight (`api::head`).
                    let req = crate::head::owned(req);
                    router.clone().oneshot(req.map(axum::body::Body::new))
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.changed() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }

    /// Closes every connection gracefully (in-flight requests finish), waiting at most
    /// [`DRAIN_TIMEOUT`].
    async fn drain(mut self) {
        let _ = self.stop_tx.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
        }
    }
}

/// Connections over the cap served at once (beyond them a connection is refused unread).
const MAX_PROBE_CONNECTIONS: usize = 32;

/// Serves one request of a connection over `server.max_connections`, then closes it: health,
/// readiness and metrics are answered (an orchestrator's probe must not fail because callers
/// hold every connection), anything else gets the `503 too_many_connections` problem.
async fn serve_over_cap(stream: tokio::net::TcpStream, router: axum::Router, _probe: ConnSlot) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    tracing::warn!("connection over server.max_connections: answering probes only");
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        async move {
            if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") {
                return router.oneshot(req.map(axum::body::Body::new)).await;
            }
            Ok(over_cap_response())
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(false)
        .header_read_timeout(std::time::Duration::from_secs(1))
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
}

fn over_cap_body() -> String {
    format!(
        concat!(
            r#"{{"type":"https://snapgate.dev/problems/too_many_connections","title":"Service Unavailable","#,
            r#""status":503,"detail":"the gateway has as many open connections as it accepts; retry shortly","#,
            r#""code":"too_many_connections","request_id":"{}","retryable":true}}"#
        ),
        crate::telemetry::new_request_id()
    )
}

fn over_cap_response() -> axum::response::Response {
    use axum::http::{header, HeaderValue, StatusCode};
    let mut response = axum::response::Response::new(axum::body::Body::from(over_cap_body()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Answers a connection over `server.max_connections` with a `503` problem and closes it
/// (within a second whatever the caller does; its request is read and discarded, so the close
/// does not reset the answer away).
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = over_cap_body();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tracing::warn!("connection refused: server.max_connections reached");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
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

    /// A serving thread that has stopped gets no connection: it goes to a live one, counted
    /// there until it closes, and the process's slot is held as long.
    #[tokio::test]
    async fn a_connection_for_a_stopped_serving_thread_goes_to_another() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let (stopped, gone) = tokio::sync::mpsc::unbounded_channel();
        drop(gone);
        let (live, mut handed) = tokio::sync::mpsc::unbounded_channel();
        let workers = [
            Worker {
                tx: stopped,
                open: Arc::default(),
            },
            Worker {
                tx: live,
                open: Arc::new(AtomicUsize::new(5)),
            },
        ];
        let limit = ConnLimit::new(10);
        hand_off(&workers, stream, limit.take().unwrap());
        let (_stream, slots) = handed.try_recv().expect("handed to the live thread");
        assert_eq!(workers[1].open.load(Ordering::Acquire), 6);
        assert_eq!(workers[0].open.load(Ordering::Acquire), 0);
        assert_eq!(limit.open.load(Ordering::Acquire), 1);
        drop(slots);
        assert_eq!(workers[1].open.load(Ordering::Acquire), 5);
        assert_eq!(limit.open.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn accept_failures_back_off_to_a_second_and_log_once_a_second() {
        let mut backoff = AcceptBackoff::new();
        let e = std::io::Error::from_raw_os_error(24);
        let started = std::time::Instant::now();
        for _ in 0..6 {
            backoff.failed(&e).await;
        }
        // 5 + 10 + 20 + 40 + 80 + 160 ms, and the next waits 320 ms.
        assert!(started.elapsed() >= std::time::Duration::from_millis(315));
        assert_eq!(backoff.delay, std::time::Duration::from_millis(320));
        for _ in 0..4 {
            backoff.delay = (backoff.delay * 2).min(AcceptBackoff::LONGEST);
        }
        assert_eq!(backoff.delay, AcceptBackoff::LONGEST);
        backoff.succeeded();
        assert_eq!(backoff.delay, AcceptBackoff::FIRST);
    }
}
