//! Per-identity protection of a vendor: a circuit breaker and a concurrency cap, plus the
//! process-wide retry budget.
//!
//! An identity is the vendor host plus the credential identity the adapter names, so it is
//! one account's view of one vendor (accounts sharing credentials share the vendor's limits).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

/// Breaker thresholds and the concurrency cap.
#[derive(Clone, Copy, Debug)]
pub struct GuardConfig {
    pub failure_threshold: u32,
    pub cooldown: Duration,
    pub max_concurrency: usize,
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
    /// The vendor said 429 with `Retry-After`: no call before this instant.
    rate_limited_until: Option<Instant>,
}

/// What the breaker says about a call about to be made.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The one trial call after the cool-down.
    Probe,
    /// Open: fail fast, retry after this many seconds.
    Rejected(u64),
    /// The vendor asked us to wait this many more seconds.
    RateLimited(u64),
}

/// The breaker and concurrency cap of one identity.
#[derive(Debug)]
pub struct Guard {
    pub permits: Semaphore,
    breaker: Mutex<BreakerState>,
    config: GuardConfig,
}

impl Guard {
    fn new(config: GuardConfig) -> Self {
        Self {
            permits: Semaphore::new(config.max_concurrency.max(1)),
            breaker: Mutex::new(BreakerState::default()),
            config,
        }
    }

    pub fn admit(&self) -> Admission {
        let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = b.rate_limited_until {
            let now = Instant::now();
            if now < until {
                return Admission::RateLimited(until.duration_since(now).as_secs().max(1));
            }
            b.rate_limited_until = None;
        }
        match b.open_until {
            None => Admission::Allowed,
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    Admission::Rejected(until.duration_since(now).as_secs().max(1))
                } else if b.probing {
                    Admission::Rejected(1)
                } else {
                    b.probing = true;
                    Admission::Probe
                }
            }
        }
    }

    /// A call reached the vendor and it answered sanely (any non-5xx).
    pub fn success(&self) {
        let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        if b.open_until.is_some() {
            metrics::gauge!("snapgate_upstream_breakers_open").decrement(1.0);
        }
        let rate_limited_until = b.rate_limited_until;
        *b = BreakerState {
            rate_limited_until,
            ..BreakerState::default()
        };
    }

    /// Seconds left of a 429 hold, if one is on (for guards that only hold: an address's).
    pub fn held_for(&self) -> Option<u64> {
        let b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        b.rate_limited_until
            .filter(|until| *until > now)
            .map(|until| until.duration_since(now).as_secs().max(1))
    }

    /// The vendor answered 429: hold further calls for `secs`.
    pub fn rate_limited(&self, secs: u64) {
        let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        b.rate_limited_until = Some(Instant::now() + Duration::from_secs(secs));
    }

    /// A call failed in a way that says the vendor is unwell (5xx, timeout, transport).
    pub fn failure(&self) {
        let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        b.consecutive_failures += 1;
        if b.probing || b.consecutive_failures >= self.config.failure_threshold {
            if b.open_until.is_none() {
                metrics::gauge!("snapgate_upstream_breakers_open").increment(1.0);
            }
            b.open_until = Some(Instant::now() + self.config.cooldown);
            b.probing = false;
            tracing::warn!(failures = b.consecutive_failures, "circuit opened");
        }
    }

    /// A probe ended without telling anything (e.g. a 4xx): let the next call probe.
    pub fn release_probe(&self) {
        let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        b.probing = false;
    }
}

/// Every identity's guard, created on first use.
#[derive(Debug)]
pub struct Guards {
    map: Mutex<HashMap<u64, Arc<Guard>>>,
    config: GuardConfig,
}

impl Guards {
    pub fn new(config: GuardConfig) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            config,
        }
    }

    pub fn get(&self, identity: u64) -> Arc<Guard> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(identity)
            .or_insert_with(|| Arc::new(Guard::new(self.config)))
            .clone()
    }
}

/// Retries spend tokens that first attempts earn, so retries stay a fraction of the load.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: Mutex<f64>,
    ratio: f64,
    cap: f64,
}

impl RetryBudget {
    pub fn new(ratio: f64) -> Self {
        Self {
            tokens: Mutex::new(2.0),
            ratio,
            cap: 10.0,
        }
    }

    pub fn deposit(&self) {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        *t = (*t + self.ratio).min(self.cap);
    }

    pub fn withdraw(&self) -> bool {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GuardConfig {
        GuardConfig {
            failure_threshold: 3,
            cooldown: Duration::from_millis(50),
            max_concurrency: 2,
        }
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_probes_once_after_the_cooldown() {
        let g = Guard::new(config());
        for _ in 0..3 {
            assert_eq!(g.admit(), Admission::Allowed);
            g.failure();
        }
        assert!(matches!(g.admit(), Admission::Rejected(_)));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(g.admit(), Admission::Probe);
        assert!(
            matches!(g.admit(), Admission::Rejected(_)),
            "one probe at a time"
        );
        g.success();
        assert_eq!(g.admit(), Admission::Allowed);
    }

    #[test]
    fn a_failed_probe_reopens_the_breaker() {
        let g = Guard::new(config());
        for _ in 0..3 {
            g.failure();
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(g.admit(), Admission::Probe);
        g.failure();
        assert!(matches!(g.admit(), Admission::Rejected(_)));
    }

    #[test]
    fn the_retry_budget_limits_retries_to_a_fraction_of_calls() {
        let b = RetryBudget::new(0.2);
        let mut retries = 0;
        for _ in 0..100 {
            b.deposit();
            if b.withdraw() {
                retries += 1;
            }
        }
        assert!(retries <= 22, "{retries}");
    }
}
