//! The serving loop: one acceptor hands each connection to the serving thread with the fewest
//! open, each thread serves its connections to the end over HTTP/1.1, the connection cap answers
//! what is over it, and a drain closes everything gracefully at shutdown.

use std::{future::Future, sync::Arc};

use tokio::net::{TcpListener, TcpStream};

/// Serving threads: the configured count, or one per CPU.
pub fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The connection cap shared by every serving thread.
#[derive(Clone)]
pub(super) struct ConnLimit {
    open: Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
    /// Connections over the cap being served a probe answer (`/healthz`, `/readyz`,
    /// `/metrics`) or a `503`, one request each: a few, so the cap still holds.
    probes: Arc<std::sync::atomic::AtomicUsize>,
}

/// One open connection, counted until dropped.
struct ConnSlot(Arc<std::sync::atomic::AtomicUsize>);

impl ConnLimit {
    pub(super) fn new(max: usize) -> Self {
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
pub(super) struct Worker {
    tx: tokio::sync::mpsc::UnboundedSender<Handed>,
    open: Arc<std::sync::atomic::AtomicUsize>,
}

impl Worker {
    /// A serving loop's end for the acceptor, and the end [`serve_handed`] reads.
    pub(super) fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<Handed>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let open = Arc::default();
        (Self { tx, open }, rx)
    }
}

/// A connection handed to a serving thread, with its slots.
pub(super) type Handed = (std::net::TcpStream, Slots);

/// What a connection holds until it closes: its place under `server.max_connections`, and its
/// count on its serving thread (`snapgate_connections_open{worker}`).
pub(super) struct Slots {
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
pub(super) async fn accept_for_workers(
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
pub(super) async fn serve_handed(
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

#[cfg(test)]
mod tests {
    use super::*;

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
