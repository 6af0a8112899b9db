//! The simulator's own accept loop: one HTTP/1.1 connection task per socket, graceful shutdown,
//! and abrupt connection resets on demand (the `reset` fault).
//!
//! A hand-written loop instead of `axum::serve` because a reset needs the socket: each connection
//! keeps a duplicate handle of its socket so that, when the gate asks, it can set `SO_LINGER` to
//! zero and drop the connection, which makes the kernel send a TCP RST instead of a response.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::faults::ConnKill;

/// How long shutdown waits for open connections before aborting them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts until `stop` turns true or its sender is dropped, then drains connections.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    shared: std::sync::Arc<super::faults::Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    conns.spawn(connection(stream, app.clone(), stop.clone()));
                }
                Err(err) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(%err, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
    }
}

/// Serves one connection until it ends, is reset by a fault, or shutdown closes it gracefully.
async fn connection(stream: TcpStream, app: Router, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let Ok((stream, socket)) = duplicate(stream) else {
        return;
    };
    let kill = Arc::new(Notify::new());
    let kill_ext = ConnKill(kill.clone());
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(kill_ext.clone());
        app.clone().oneshot(req.map(Body::new))
    });
    // No header-read timeout: idle keep-alive connections stay open until the client or shutdown
    // closes them, so a pooled client never races a server-side idle close.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = kill.notified() => {
                // Last close of a zero-linger socket sends RST; both handles drop on return.
                if let Ok(socket) = TcpStream::from_std(socket) {
                    let _ = socket.set_zero_linger();
                }
                return;
            }
            changed = stop.changed(), if !closing => {
                if changed.is_err() || *stop.borrow() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The stream plus a second handle on the same socket, kept to set options after hyper owns it.
fn duplicate(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let second = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, second))
}
