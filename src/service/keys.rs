//! Master-key rollouts that nobody notices: every serving process announces the keys it holds,
//! and seals new records under the active key only once every live process holds it (until
//! then, under the newest key they all hold). A process that cannot open a stored record is
//! not ready.

use std::time::Duration;

use chrono::{TimeDelta, Utc};

use super::{Service, ServiceError};

/// How often a process announces its keys, and how long an announcement counts as live.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);
const LIVE_FOR: TimeDelta = TimeDelta::seconds(20);

impl Service {
    /// Announces this process's keys and picks the key new records are sealed under: the
    /// first of this process's keys (active first) that every live process holds.
    pub async fn announce_keys_once(&self) -> Result<String, ServiceError> {
        let now = Utc::now();
        let mine = self.sealer.key_ids();
        self.store.announce_keys(&self.replica, &mine, now).await?;
        let live = self.store.announced_keys(now - LIVE_FOR).await?;
        let chosen = choose(&mine, &live);
        if chosen != self.sealer.sealing_key_id() {
            tracing::info!(key = %chosen, "new records are sealed under this key");
        }
        self.sealer.seal_with(&chosen);
        Ok(chosen)
    }

    /// Announces this process's keys every few seconds until the process stops.
    pub async fn announce_keys_forever(&self) {
        loop {
            if let Err(e) = self.announce_keys_once().await {
                tracing::warn!(error = %e, "could not announce this process's master keys");
            }
            tokio::time::sleep(ANNOUNCE_EVERY).await;
        }
    }

    /// Withdraws this process's announcement as it stops, so a rollout need not wait for it
    /// to lapse.
    pub async fn retire_keys(&self) {
        if let Err(e) = self.store.retire_replica(&self.replica).await {
            tracing::warn!(error = %e, "could not withdraw this process's key announcement");
        }
    }

    /// Why this process cannot serve the stored records, if it cannot: the stored records
    /// sealed under keys it does not hold.
    pub async fn keys_missing(&self) -> Result<Vec<String>, ServiceError> {
        let stored = self.store.stored_key_ids().await?;
        Ok(stored
            .into_iter()
            .filter(|k| !self.sealer.holds(k))
            .collect())
    }
}

/// The first of `mine` (the active key first) that every live replica in `live` holds; the
/// active key when none is held by all (a replica with none of ours cannot be helped).
fn choose(mine: &[String], live: &[(String, String)]) -> String {
    let mut replicas: Vec<&str> = live.iter().map(|(r, _)| r.as_str()).collect();
    replicas.sort_unstable();
    replicas.dedup();
    let held_by_all = |key: &str| {
        replicas
            .iter()
            .all(|r| live.iter().any(|(rr, k)| rr == r && k == key))
    };
    mine.iter()
        .find(|k| held_by_all(k))
        .or(mine.first())
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::choose;

    fn live(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(r, k)| ((*r).to_owned(), (*k).to_owned()))
            .collect()
    }

    #[test]
    fn the_active_key_seals_only_once_every_live_replica_holds_it() {
        let mine = vec!["k-new".to_owned(), "k-old".to_owned()];
        // Mid-rollout: replica b has only the old key.
        let during = live(&[("a", "k-new"), ("a", "k-old"), ("b", "k-old")]);
        assert_eq!(choose(&mine, &during), "k-old");
        // Every replica restarted with the new key.
        let after = live(&[
            ("a", "k-new"),
            ("a", "k-old"),
            ("b", "k-new"),
            ("b", "k-old"),
        ]);
        assert_eq!(choose(&mine, &after), "k-new");
        // Alone (or nothing announced yet): the active key.
        assert_eq!(choose(&mine, &live(&[])), "k-new");
        // A replica holding none of ours: nothing helps it, the active key is used.
        assert_eq!(choose(&mine, &live(&[("c", "k-other")])), "k-new");
    }
}
