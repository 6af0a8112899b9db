//! What the background workers (the reconciler, the webhook deliverer) share: a pipeline of
//! items in flight that keeps being driven while the worker awaits something else.

use futures::{stream::FuturesUnordered, StreamExt};

/// Awaits `work` while driving the items in flight, handing each that ends to `done`: an item
/// may hold the store (a SQLite write) that `work` needs, and would never release it unpolled.
pub(super) async fn driving<W, R>(
    work: W,
    running: &mut FuturesUnordered<R>,
    mut done: impl FnMut(R::Output),
) -> W::Output
where
    W: std::future::Future,
    R: std::future::Future,
{
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => break out,
            Some(finished) = running.next(), if !running.is_empty() => done(finished),
        }
    }
}
