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

/// Runs one step of a worker (a claim, one item's work) with a panic in it contained: logged,
/// counted in `snapgate_worker_panics_total{worker}`, and the worker goes on. The item it was
/// working on is left to its lease, which lapses unrenewed, so it is claimed again later.
pub(super) async fn contained<F: std::future::Future>(
    worker: &'static str,
    step: F,
) -> Option<F::Output> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(step).catch_unwind().await {
        Ok(out) => Some(out),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            let message: String = message.chars().take(200).collect();
            tracing::error!(worker, panic = %message, "a worker step panicked; the worker goes on");
            metrics::counter!("snapgate_worker_panics_total", "worker" => worker).increment(1);
            None
        }
    }
}

/// Runs a worker's loop for the life of the process: should the loop itself panic (outside
/// the steps [`contained`] guards), it is logged, counted and started again a second later.
pub async fn supervised<F, Fut>(worker: &'static str, mut run: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        if contained(worker, run()).await.is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
