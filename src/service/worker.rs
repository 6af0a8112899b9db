//! The one skeleton of the background workers (the reconciler, the webhook deliverer).
//!
//! A worker claims items (a lease in the store, so one process works an item at a time), works
//! each in a pipeline of at most `slots` (refilled as each ends, never rounds waiting for their
//! slowest item), renews the claims of the items in flight, and looks for more when its own
//! signal moves, when a tick passes, or while a backlog lasts. Every claim and every item runs
//! with a panic contained: logged, counted in `snapgate_worker_panics_total{worker}`, the item
//! left to its lease (which lapses unrenewed, so it is claimed again later), the worker going on.

use std::{collections::HashSet, hash::Hash, time::Duration};

use futures::{stream::FuturesUnordered, StreamExt};

use super::ServiceError;

/// What a worker does; [`run`] and [`run_once`] drive it.
#[async_trait::async_trait]
pub(super) trait Worker: Send + Sync {
    /// An item claimed.
    type Item: Send;
    /// What identifies an item's claim, to renew it while the item is worked on.
    type Key: Clone + Eq + Hash + Send + Sync;

    /// The worker's name in logs and metrics.
    const NAME: &'static str;

    /// Items worked on at once, at most.
    fn slots(&self) -> usize;
    /// How long an idle worker waits for its signal before it looks anyway.
    fn tick(&self) -> Duration;
    /// How often the claims in flight are renewed (`None`: a claim outlives its item's work).
    fn renew_every(&self) -> Option<Duration> {
        None
    }

    fn key(&self, item: &Self::Item) -> Self::Key;
    /// Claims up to `limit` due items for this process.
    async fn claim(&self, limit: usize) -> Result<Vec<Self::Item>, ServiceError>;
    /// Works one item and records the outcome.
    async fn work(&self, item: Self::Item) -> Result<(), ServiceError>;
    /// Extends the claims of the items in flight.
    async fn renew(&self, _held: &[Self::Key]) {}
    /// Resolves when something may have become due (the worker's own signal); never resolving
    /// leaves the worker to its tick.
    async fn signalled(&self) {
        std::future::pending::<()>().await
    }
}

/// Runs a worker until the process stops.
pub(super) async fn run<W: Worker>(w: &W) {
    let slots = w.slots().max(1);
    let tick = w.tick().max(Duration::from_millis(10));
    // A claim is a write: made when something may be due (signalled, a tick, a backlog) and,
    // while a backlog lasts, for a batch of freed slots at a time, never once per item.
    let batch = (slots / 8).max(1);
    let mut running = FuturesUnordered::new();
    let mut held: HashSet<W::Key> = HashSet::new();
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renew = tokio::time::interval(w.renew_every().unwrap_or(Duration::from_secs(3600)));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.reset();
    let (mut wanted, mut backlog) = (true, false);
    loop {
        let free = slots.saturating_sub(running.len());
        if wanted && free > 0 {
            wanted = false;
            let claim = contained(W::NAME, w.claim(free));
            // Items in flight are driven while the claim is awaited: one of them may hold the
            // store (a SQLite write) that the claim needs.
            let claimed = driving(claim, &mut running, |done| {
                held.remove(&done);
            })
            .await;
            match claimed {
                Some(Ok(items)) => {
                    // A full claim: more may be due than there was room for.
                    backlog = items.len() == free;
                    for item in items {
                        let key = w.key(&item);
                        held.insert(key.clone());
                        running.push(work_one(w, item, key));
                    }
                }
                Some(Err(e)) => {
                    backlog = false;
                    tracing::warn!(worker = W::NAME, error = %e, "could not claim work");
                }
                None => backlog = false,
            }
        }
        tokio::select! {
            Some(done) = running.next(), if !running.is_empty() => {
                held.remove(&done);
                wanted |= backlog && slots - running.len() >= batch;
            }
            _ = w.signalled() => wanted = true,
            _ = ticker.tick() => wanted = true,
            _ = renew.tick(), if !held.is_empty() => {
                let claims: Vec<W::Key> = held.iter().cloned().collect();
                driving(w.renew(&claims), &mut running, |done| {
                    held.remove(&done);
                })
                .await;
            }
        }
    }
}

/// One round: works every item it can claim (up to `limit`, `slots` at a time); how many.
/// Tests and tools drive a worker with it.
pub(super) async fn run_once<W: Worker>(w: &W, limit: usize) -> Result<usize, ServiceError> {
    let items = w.claim(limit).await?;
    let count = items.len();
    futures::stream::iter(items)
        .for_each_concurrent(w.slots().max(1), |item| async move {
            let key = w.key(&item);
            work_one(w, item, key).await;
        })
        .await;
    Ok(count)
}

/// Works one item, its failure logged and its panic contained; the item's key when done.
async fn work_one<W: Worker>(w: &W, item: W::Item, key: W::Key) -> W::Key {
    if let Some(Err(e)) = contained(W::NAME, w.work(item)).await {
        tracing::info!(worker = W::NAME, error = %e, "work item failed");
    }
    key
}

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
