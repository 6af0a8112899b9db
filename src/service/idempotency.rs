//! Idempotency: a mutating request carrying an `Idempotency-Key` runs at most once per tenant
//! and key; a retry replays the first answer without calling the vendor again.

use chrono::Utc;
use sha2::{Digest, Sha256};

use super::{Journal, Service, ServiceError};
use crate::{domain::Problem, store::IdempotencyBegin};

/// An answer as a key stores and replays it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// How a request under a key ended.
#[derive(Debug)]
pub enum Outcome {
    /// The work ran now.
    Done(Answer),
    /// The key had answered before: its first answer.
    Replayed(Answer),
}

/// A failure of the work, as the key records it.
pub trait AsProblem {
    fn as_problem(&self) -> Problem;
}

impl AsProblem for ServiceError {
    fn as_problem(&self) -> Problem {
        self.problem()
    }
}

impl Service {
    /// Runs `work` at most once per (tenant, key): a replay returns the first answer; another
    /// request under the same key is refused (`KeyReused`), a concurrent retry too
    /// (`KeyInFlight`). Without a key, the work simply runs.
    pub async fn once<E>(
        &self,
        tenant: &str,
        key: Option<&str>,
        request: &str,
        work: impl AsyncFnOnce(&Journal<'_>) -> Result<Answer, E>,
    ) -> Result<Outcome, E>
    where
        E: From<ServiceError> + AsProblem,
    {
        let Some(key) = key else {
            let journal = Journal::new(self, tenant, None);
            return match work(&journal).await {
                Ok(answer) => Ok(Outcome::Done(answer)),
                Err(e) => {
                    journal.failed(&e.as_problem()).await?;
                    Err(e)
                }
            };
        };
        let fingerprint = hex::encode(Sha256::digest(request.as_bytes()));
        let begun = self
            .store
            .begin_idempotent(tenant, key, &fingerprint, Utc::now(), self.leases.key)
            .await
            .map_err(ServiceError::from)?;
        match begun {
            IdempotencyBegin::Started => {}
            IdempotencyBegin::Replay { status, body } => {
                return Ok(Outcome::Replayed(Answer {
                    status,
                    body: serde_json::from_str(&body).unwrap_or_default(),
                }))
            }
            IdempotencyBegin::Mismatch => return Err(ServiceError::KeyReused.into()),
            IdempotencyBegin::InFlight => return Err(ServiceError::KeyInFlight.into()),
        }
        // If this future is dropped from here on (deadline, disconnect), the key keeps what the
        // journal stored before the vendor call: the intended operation's `202`.
        let journal = Journal::new(self, tenant, Some(key));
        // While the work runs, the key stays this request's: on any replica, a retry waits
        // (409) instead of taking it over; if this process dies, the key frees within a lease.
        let renew = async {
            loop {
                tokio::time::sleep(self.leases.key / 3).await;
                if let Err(e) = self.store.renew_idempotent(tenant, key, Utc::now()).await {
                    tracing::warn!(error = %e, "could not renew an idempotency key's lease");
                }
            }
        };
        let result = tokio::select! {
            result = work(&journal) => result,
            _ = renew => unreachable!("the renewal loop never ends"),
        };
        match result {
            Ok(answer) => {
                self.store
                    .finish_idempotent(tenant, key, answer.status, &answer.body.to_string())
                    .await
                    .map_err(ServiceError::from)?;
                Ok(Outcome::Done(answer))
            }
            Err(e) => {
                self.settle_key(tenant, key, &journal, &e.as_problem())
                    .await?;
                Err(e)
            }
        }
    }

    /// What a key answers after its work failed with `problem`: kept when the vendor may have
    /// done the work, freed (a retry runs again) when it surely did not.
    async fn settle_key(
        &self,
        tenant: &str,
        key: &str,
        journal: &Journal<'_>,
        problem: &Problem,
    ) -> Result<(), ServiceError> {
        // Once the intent is stored the vendor may have been called: a failure of the
        // gateway's own store from then on is as uncertain as a dropped connection.
        let uncertain = if journal.intended().is_some() {
            problem.outcome_uncertain_after_call()
        } else {
            problem.outcome_uncertain()
        };
        if uncertain {
            // The vendor may have done the work (timeout, reset, 5xx mid-way): a retry with
            // this key must not do it again. With an intended operation the key already
            // answers its `202` (the operation is settled from the vendor); otherwise the
            // failure is the recorded answer.
            if journal.intended().is_none() {
                let body = serde_json::to_string(problem).unwrap_or_default();
                self.store
                    .finish_idempotent(tenant, key, problem.status, &body)
                    .await?;
            }
        } else {
            // Refused with nothing done at the vendor: a retry may run again.
            journal.failed(problem).await?;
            self.store.abandon_idempotent(tenant, key).await?;
        }
        Ok(())
    }
}
