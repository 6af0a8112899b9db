//! Who may start work, and who may wait: the gateway's admission control.
//!
//! Work (a request the gateway is handling) takes a tenant slot, then a global slot; a request
//! over its tenant's share waits for it without holding a global slot, so one tenant cannot
//! fill them all. Waiting (a long-poll that holds its answer until an operation changes) is not
//! work: it takes a *waiter* slot of its tenant and of the gateway instead, never a work slot,
//! and when none is free it is answered `429 too_many_waiters` at once with `Retry-After`
//! rather than queued — a queued long-poll would only be a longer one.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    operations,
    problem::{ApiError, Refusal},
};
use crate::{auth::Authenticator, config::ServerConfig};

/// The slots of the whole gateway and of each tenant.
pub struct Admission {
    auth: Arc<Authenticator>,
    work: Arc<Semaphore>,
    tenant_work: Shares,
    waiters: Arc<Semaphore>,
    max_waiters: usize,
    tenant_waiters: Shares,
}

impl Admission {
    pub fn new(auth: Arc<Authenticator>, server: &ServerConfig) -> Self {
        let max_waiters = server.max_waiters.max(1);
        Self {
            auth,
            work: Arc::new(Semaphore::new(server.max_in_flight.max(1))),
            tenant_work: Shares::new(server.max_in_flight_per_tenant.max(1)),
            waiters: Arc::new(Semaphore::new(max_waiters)),
            max_waiters,
            tenant_waiters: Shares::new(server.max_waiters_per_tenant.max(1)),
        }
    }

    /// The long-polls of the whole gateway waiting now (a gauge for `/metrics`).
    fn waiting(&self) -> usize {
        self.max_waiters - self.waiters.available_permits()
    }
}

/// One semaphore per tenant: its share of something the gateway has a fixed amount of.
struct Shares {
    per_tenant: usize,
    tenants: std::sync::Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
}

impl Shares {
    fn new(per_tenant: usize) -> Self {
        Self {
            per_tenant,
            tenants: Default::default(),
        }
    }

    fn of(&self, tenant: &Arc<str>) -> Arc<Semaphore> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if tenants.len() > 10_000 {
            // Forget idle tenants (every permit back) so the map stays bounded.
            tenants.retain(|_, s| s.available_permits() < self.per_tenant);
        }
        tenants
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone()
    }
}

/// Admits a request as work or as a waiter (see the module). Requests that do not
/// authenticate take only a global work slot and go on to their `401`.
pub async fn admit(
    State(admission): State<Arc<Admission>>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match header {
        Some(h) if req.uri().path().starts_with("/v1/") => {
            admission.auth.authenticate(Some(h)).await.ok()
        }
        _ => None,
    };
    let waits = operations::requested_wait(req.uri()).is_some_and(|w| !w.is_zero());
    let _permits: (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>) = match caller {
        Some(caller) if waits => {
            let permits = match waiter_slots(&admission, &caller.tenant) {
                Ok(permits) => permits,
                Err(refused) => return refused.into_response(),
            };
            metrics::gauge!("snapgate_long_polls_waiting").set(admission.waiting() as f64);
            req.extensions_mut().insert(caller);
            (Some(permits.0), Some(permits.1))
        }
        Some(caller) => {
            // The tenant's share first, then the gateway's: a tenant over its share waits here
            // without holding a global slot.
            let tenant = admission
                .tenant_work
                .of(&caller.tenant)
                .acquire_owned()
                .await;
            let global = admission.work.clone().acquire_owned().await;
            // The handler's `Caller` extractor takes it from here instead of verifying again.
            req.extensions_mut().insert(caller);
            (tenant.ok(), global.ok())
        }
        None => (None, admission.work.clone().acquire_owned().await.ok()),
    };
    let _working = (!waits).then(Working::start);
    let response = next.run(req).await;
    if waits {
        drop(_permits);
        metrics::gauge!("snapgate_long_polls_waiting").set(admission.waiting() as f64);
    }
    response
}

/// A waiter slot of the tenant and of the gateway, or the `429` that says which is full.
fn waiter_slots(
    admission: &Admission,
    tenant: &Arc<str>,
) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), ApiError> {
    let share = admission.tenant_waiters.of(tenant);
    let refused = |whose: &str, limit: usize| {
        metrics::counter!("snapgate_long_polls_refused_total", "limit" => whose.to_owned())
            .increment(1);
        ApiError::refuse(
            Refusal::TooManyWaiters,
            format!(
                "{whose} already holds {limit} long-polls (`wait`) at once, the limit: \
                 ask again without `wait`, or after one of them has answered"
            ),
        )
        .with_retry_after(1)
    };
    let tenant_slot = share
        .try_acquire_owned()
        .map_err(|_| refused("this tenant", admission.tenant_waiters.per_tenant))?;
    let global_slot = admission
        .waiters
        .clone()
        .try_acquire_owned()
        .map_err(|_| refused("the gateway", admission.max_waiters))?;
    Ok((tenant_slot, global_slot))
}

/// A request being worked on, counted in `snapgate_http_requests_in_flight` until dropped
/// (also when the caller goes away mid-request).
struct Working;

thread_local! {
    /// This thread's handle on `snapgate_http_requests_in_flight`.
    static IN_FLIGHT: crate::telemetry::HandleCache<(), metrics::Gauge> = Default::default();
}

fn in_flight(change: f64) {
    let make = || metrics::gauge!("snapgate_http_requests_in_flight");
    crate::telemetry::with_handle(&IN_FLIGHT, (), make, |g| g.increment(change));
}

impl Working {
    fn start() -> Self {
        in_flight(1.0);
        Working
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        in_flight(-1.0);
    }
}
