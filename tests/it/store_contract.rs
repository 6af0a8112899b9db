//! One store contract, run against both back-ends: SQLite always, PostgreSQL when
//! `SNAPGATE_TEST_POSTGRES_URL` names a server (each test gets a fresh database on it).
//! Without the variable the PostgreSQL runs say plainly that they were skipped.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use snapgate::{
    domain::{
        AccountId, Completion, Credentials, Operation, OperationKind, OperationState, ProviderKind,
        SnapshotId, VendorRef, VendorRefKind,
    },
    store::{
        AccountPatch, IdempotencyBegin, NewAccount, OperationFilter, Sealer, SqliteStore, Store,
        StoreError,
    },
};

/// A PostgreSQL database made for one test, dropped when the test ends well.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    /// A fresh database on the server `SNAPGATE_TEST_POSTGRES_URL` names, or `None` (saying
    /// so) when the variable is unset.
    pub async fn create(what: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var("SNAPGATE_TEST_POSTGRES_URL") else {
            eprintln!("skipped on PostgreSQL ({what}): SNAPGATE_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("snapgate_test_{}", uuid::Uuid::now_v7().simple());
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .expect("SNAPGATE_TEST_POSTGRES_URL must name a reachable PostgreSQL server");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        Some(Self {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    pub async fn drop_database(self) {
        let admin = sqlx::PgPool::connect(&self.admin_url).await.unwrap();
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await
        .unwrap();
        admin.close().await;
    }
}

/// Runs `contract` against SQLite, then PostgreSQL when configured.
async fn on_both<F, Fut>(what: &str, contract: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("s.db").display().to_string())
        .await
        .unwrap();
    contract(Arc::new(sqlite)).await;
    if let Some(db) = TestDatabase::create(what).await {
        let store = snapgate::store::connect(&db.url, 8).await.unwrap();
        contract(store).await;
        db.drop_database().await;
    }
}

fn sealer() -> Sealer {
    Sealer::from_bytes(&[7u8; 32])
}

fn credentials(token: &str) -> Credentials {
    Credentials::new(BTreeMap::from([(
        "token".to_owned(),
        SecretString::from(token.to_owned()),
    )]))
}

fn account(tenant: &str, id: &str, token: &str) -> NewAccount {
    let id: AccountId = id.parse().unwrap();
    NewAccount {
        tenant: tenant.to_owned(),
        credentials: sealer().seal_account(tenant, &id, &credentials(token)),
        id,
        provider: ProviderKind::Koyeb,
        display_name: Some("Production".to_owned()),
        settings: serde_json::Map::new(),
        now: Utc::now(),
    }
}

fn operation(account: &str, native: &str, kind: OperationKind) -> Operation {
    let now = Utc::now();
    let account: AccountId = account.parse().unwrap();
    Operation {
        id: format!("op_{}", uuid::Uuid::now_v7().simple()),
        kind,
        state: OperationState::Running,
        snapshot_id: Some(SnapshotId::new(&account, native)),
        account,
        provider: ProviderKind::Koyeb,
        result: None,
        vendor_ref: VendorRef {
            kind: VendorRefKind::SnapshotStatus,
            id: None,
        },
        created_at: now,
        updated_at: now,
        finished_at: None,
        error: None,
        tracking: serde_json::json!({"name": "nightly"}),
        completion: Completion::Observed,
        completion_note: None,
        next_check_at: Some(now),
        checks: 0,
    }
}

#[tokio::test]
async fn accounts_are_stored_per_tenant_and_their_credentials_stay_sealed() {
    on_both("accounts", |store| async move {
        let created = store
            .insert_account(account("acme", "prod", "tok-1"))
            .await
            .unwrap();
        assert_eq!(created.display_name.as_deref(), Some("Production"));
        assert_eq!(created.credential_fields, vec!["token".to_owned()]);
        assert!(matches!(
            store.insert_account(account("acme", "prod", "tok-2")).await,
            Err(StoreError::Conflict)
        ));
        // Another tenant may use the same id; neither sees the other's.
        store
            .insert_account(account("globex", "prod", "tok-g"))
            .await
            .unwrap();
        let id: AccountId = "prod".parse().unwrap();
        assert_eq!(store.list_accounts("acme").await.unwrap().len(), 1);
        assert!(store.get_account("initech", &id).await.unwrap().is_none());
        // What a list across accounts selects from: id and provider, the tenant's only.
        assert_eq!(
            store.account_keys("acme").await.unwrap(),
            vec![(id.clone(), created.provider)]
        );
        assert!(store.account_keys("initech").await.unwrap().is_empty());

        // Sealed at rest, openable only as this tenant's account.
        let (_, sealed) = store
            .get_account_sealed("acme", &id)
            .await
            .unwrap()
            .unwrap();
        assert!(!sealed.ciphertext.windows(5).any(|w| w == b"tok-1"));
        let opened = sealer().open_account("acme", &id, &sealed).unwrap();
        assert_eq!(opened.get("token").unwrap().expose_secret(), "tok-1");
        assert!(sealer().open_account("globex", &id, &sealed).is_err());

        // Replacing credentials re-seals them; the display name can be cleared.
        let patch = AccountPatch {
            display_name: Some(None),
            settings: None,
            credentials: Some(sealer().seal_account("acme", &id, &credentials("tok-3"))),
        };
        let updated = store
            .update_account("acme", &id, patch, Utc::now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updated.display_name, None);
        let (_, sealed) = store
            .get_account_sealed("acme", &id)
            .await
            .unwrap()
            .unwrap();
        let opened = sealer().open_account("acme", &id, &sealed).unwrap();
        assert_eq!(opened.get("token").unwrap().expose_secret(), "tok-3");

        assert!(store.delete_account("acme", &id).await.unwrap());
        assert!(!store.delete_account("acme", &id).await.unwrap());
        assert!(store.get_account("globex", &id).await.unwrap().is_some());
    })
    .await;
}

#[tokio::test]
async fn operations_round_trip_and_a_finished_one_is_never_rewritten() {
    on_both("operations", |store| async move {
        let mut op = operation("prod", "snap-1", OperationKind::Create);
        store.insert_operation("acme", &op, &[]).await.unwrap();
        let read = store.get_operation("acme", &op.id).await.unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            serde_json::to_value(&op).unwrap()
        );
        assert_eq!(read.tracking, op.tracking);
        assert!(store
            .get_operation("globex", &op.id)
            .await
            .unwrap()
            .is_none());

        // Unfinished work is indexed by snapshot, per tenant.
        assert!(store
            .has_unfinished_operation("acme", "prod:snap-1")
            .await
            .unwrap());
        assert!(!store
            .has_unfinished_operation("globex", "prod:snap-1")
            .await
            .unwrap());
        let pending = store.pending_snapshots("acme").await.unwrap();
        assert_eq!(pending.get("prod:snap-1"), Some(&OperationKind::Create));

        op.state = OperationState::Succeeded;
        op.finished_at = Some(Utc::now());
        assert!(store.update_operation("acme", &op, &[]).await.unwrap());
        assert!(!store
            .has_unfinished_operation("acme", "prod:snap-1")
            .await
            .unwrap());
        // A slower writer cannot undo the end.
        let mut stale = op.clone();
        stale.state = OperationState::Failed;
        assert!(!store.update_operation("acme", &stale, &[]).await.unwrap());
        let read = store.get_operation("acme", &op.id).await.unwrap().unwrap();
        assert_eq!(read.state, OperationState::Succeeded);

        let other = operation("prod", "snap-2", OperationKind::Delete);
        store.insert_operation("acme", &other, &[]).await.unwrap();
        let filter = OperationFilter {
            snapshot_id: Some("prod:snap-2".to_owned()),
            unfinished_only: true,
            limit: 10,
            ..Default::default()
        };
        let listed = store.list_operations("acme", &filter).await.unwrap();
        assert_eq!(
            listed.iter().map(|o| &o.id).collect::<Vec<_>>(),
            vec![&other.id]
        );
        let all = OperationFilter {
            limit: 10,
            ..Default::default()
        };
        let newest_first = store.list_operations("acme", &all).await.unwrap();
        assert_eq!(newest_first[0].id, other.id);
        assert!(store
            .list_operations("globex", &all)
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn an_idempotency_key_runs_once_replays_and_passes_on_when_its_request_died() {
    on_both("idempotency", |store| async move {
        let lease = Duration::from_secs(60);
        let begin = |key: &'static str, fingerprint: &'static str| {
            let store = store.clone();
            async move {
                store
                    .begin_idempotent("acme", key, fingerprint, Utc::now(), lease)
                    .await
                    .unwrap()
            }
        };
        assert!(matches!(begin("k1", "f").await, IdempotencyBegin::Started));
        assert!(matches!(begin("k1", "f").await, IdempotencyBegin::InFlight));
        assert!(matches!(begin("k1", "g").await, IdempotencyBegin::Mismatch));
        store
            .finish_idempotent("acme", "k1", 202, "{\"a\":1}")
            .await
            .unwrap();
        match begin("k1", "f").await {
            IdempotencyBegin::Replay { status, body } => {
                assert_eq!((status, body.as_str()), (202, "{\"a\":1}"));
            }
            other => panic!("{other:?}"),
        }
        // Keys are per tenant.
        let other_tenant = store
            .begin_idempotent("globex", "k1", "f", Utc::now(), lease)
            .await
            .unwrap();
        assert!(matches!(other_tenant, IdempotencyBegin::Started));

        // A refusal that changed nothing frees the key.
        assert!(matches!(begin("k2", "f").await, IdempotencyBegin::Started));
        store.abandon_idempotent("acme", "k2").await.unwrap();
        assert!(matches!(begin("k2", "f").await, IdempotencyBegin::Started));

        // A key whose request stopped renewing it is taken over after its lease; a renewed one
        // is not.
        let short = Duration::from_millis(300);
        let at = |ms: i64| Utc::now() + chrono::TimeDelta::milliseconds(ms);
        let take = |key: &'static str, when| {
            let store = store.clone();
            async move {
                store
                    .begin_idempotent("acme", key, "f", when, short)
                    .await
                    .unwrap()
            }
        };
        assert!(matches!(take("k3", at(0)).await, IdempotencyBegin::Started));
        assert!(matches!(take("k4", at(0)).await, IdempotencyBegin::Started));
        store.renew_idempotent("acme", "k4", at(400)).await.unwrap();
        assert!(matches!(
            take("k3", at(500)).await,
            IdempotencyBegin::Started
        ));
        assert!(matches!(
            take("k4", at(500)).await,
            IdempotencyBegin::InFlight
        ));
    })
    .await;
}

#[tokio::test]
async fn racing_writers_get_one_key_and_one_end_per_operation() {
    on_both("concurrency", |store| async move {
        // Eight requests race for one key: exactly one runs.
        let racers = (0..8).map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .begin_idempotent("acme", "race", "f", Utc::now(), Duration::from_secs(60))
                    .await
                    .unwrap()
            })
        });
        let outcomes = futures::future::join_all(racers).await;
        let started = outcomes
            .iter()
            .filter(|o| matches!(o.as_ref().unwrap(), IdempotencyBegin::Started))
            .count();
        assert_eq!(started, 1, "{outcomes:?}");

        // Eight writers race to finish one operation: exactly one write lands.
        let op = operation("prod", "snap-9", OperationKind::Delete);
        store.insert_operation("acme", &op, &[]).await.unwrap();
        let finishers = (0..8).map(|i| {
            let (store, mut op) = (store.clone(), op.clone());
            tokio::spawn(async move {
                op.state = if i % 2 == 0 {
                    OperationState::Succeeded
                } else {
                    OperationState::Failed
                };
                op.finished_at = Some(Utc::now());
                store.update_operation("acme", &op, &[]).await.unwrap()
            })
        });
        let landed = futures::future::join_all(finishers)
            .await
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        assert_eq!(landed, 1);
    })
    .await;
}

/// Issue 21 item 2: many writers commit events concurrently while a follower tails the log by
/// cursor; the follower must see every event exactly once. (Positions are given at insert and
/// become visible at commit: if commits could land out of order, the cursor would pass a
/// late number for good.)
#[tokio::test]
async fn a_follower_of_the_event_log_sees_every_event_once_under_concurrent_writers() {
    on_both("event follower", |store| async move {
        const WRITERS: usize = 12;
        const BATCHES: usize = 25;
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut written = Vec::new();
                    for b in 0..BATCHES {
                        // Two events per transaction, as an operation's end writes them.
                        let events: Vec<snapgate::domain::Event> = (0..2)
                            .map(|i| {
                                snapgate::domain::Event::new(
                                    snapgate::domain::EventType::OperationSucceeded,
                                    "t",
                                    serde_json::json!({"w": w, "b": b, "i": i}),
                                )
                            })
                            .collect();
                        written.extend(events.iter().map(|e| e.id.clone()));
                        store.append_events("acme", &events).await.unwrap();
                    }
                    written
                })
            })
            .collect();
        let follower = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seen: Vec<String> = Vec::new();
                let mut cursor = 0;
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while seen.len() < WRITERS * BATCHES * 2 && std::time::Instant::now() < deadline {
                    let page = store.list_events("acme", cursor, &[], 50).await.unwrap();
                    for (position, event) in page {
                        assert!(position > cursor, "positions only grow");
                        cursor = position;
                        seen.push(event.id);
                    }
                    tokio::task::yield_now().await;
                }
                seen
            })
        };
        let mut written: Vec<String> = futures::future::join_all(writers)
            .await
            .into_iter()
            .flat_map(|w| w.unwrap())
            .collect();
        let mut seen = follower.await.unwrap();
        assert_eq!(seen.len(), written.len(), "every event seen, none twice");
        seen.sort();
        written.sort();
        assert_eq!(seen, written);
    })
    .await;
}

/// Polls `check` until it holds or `within` passes; how long it took.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn replicas_on_postgresql_hear_each_others_changes_within_a_second() {
    let Some(db) = TestDatabase::create("replica coherence").await else {
        return;
    };
    // Two replicas start together: migrations take turns under the advisory lock.
    let (a, b) = tokio::join!(
        snapgate::store::connect(&db.url, 4),
        snapgate::store::connect(&db.url, 4)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let id: AccountId = "prod".parse().unwrap();
    a.insert_account(account("acme", "prod", "tok-1"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = b.account_stamp("acme", &id);

    let patch = AccountPatch {
        credentials: Some(sealer().seal_account("acme", &id, &credentials("tok-2"))),
        ..Default::default()
    };
    a.update_account("acme", &id, patch, Utc::now())
        .await
        .unwrap();
    let took = eventually(Duration::from_secs(1), async || {
        b.account_stamp("acme", &id) != before
    })
    .await;
    assert!(
        took.is_some(),
        "replica B never heard of the credential change"
    );

    // Work one replica starts shows on the other's snapshots.
    let op = operation("prod", "snap-1", OperationKind::Restore);
    a.insert_operation("acme", &op, &[]).await.unwrap();
    let took = eventually(Duration::from_secs(1), async || {
        b.has_unfinished_operation("acme", "prod:snap-1")
            .await
            .unwrap()
    })
    .await;
    assert!(took.is_some(), "replica B never heard of the new operation");
    let mut done = op.clone();
    done.state = OperationState::Succeeded;
    done.finished_at = Some(Utc::now());
    assert!(b.update_operation("acme", &done, &[]).await.unwrap());
    let took = eventually(Duration::from_secs(1), async || {
        !a.has_unfinished_operation("acme", "prod:snap-1")
            .await
            .unwrap()
    })
    .await;
    assert!(took.is_some(), "replica A never heard the operation finish");

    // A notification lost (changed behind the listeners' back, as after a dropped connection)
    // is caught by the periodic check.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let stamp = b.account_stamp("acme", &id);
    sqlx::query("SELECT nextval('snapgate_account_version')")
        .execute(&pool)
        .await
        .unwrap();
    let took = eventually(Duration::from_secs(3), async || {
        b.account_stamp("acme", &id) != stamp
    })
    .await;
    assert!(took.is_some(), "a missed change was never caught");
    pool.close().await;
    drop((a, b));
    db.drop_database().await;
}

/// Issue 21 item 3: under operation write load, an account change still reaches the other
/// replica within a second (p99), and a lost notification followed by a heard one is still
/// caught.
#[tokio::test]
async fn replicas_hear_account_changes_within_a_second_under_write_load() {
    let Some(db) = TestDatabase::create("coherence under load").await else {
        return;
    };
    let (a, b) = tokio::join!(
        snapgate::store::connect(&db.url, 10),
        snapgate::store::connect(&db.url, 10)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let ids: Vec<AccountId> = ["prod", "other"]
        .iter()
        .map(|i| i.parse().unwrap())
        .collect();
    for id in &ids {
        a.insert_account(account("acme", id.as_str(), "tok-0"))
            .await
            .unwrap();
    }
    // Load: 16 writers changing operations through replica A as fast as they can, for as
    // long as the measurement runs (bounded: it stops with the flag, or after 20 s).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load: Vec<_> = (0..16)
        .map(|w| {
            let (a, stop, writes) = (a.clone(), stop.clone(), writes.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && started.elapsed() < Duration::from_secs(20)
                {
                    let op = operation("prod", &format!("load-{w}-{i}"), OperationKind::Create);
                    a.insert_operation("acme", &op, &[]).await.unwrap();
                    let mut done = op;
                    done.state = OperationState::Succeeded;
                    done.finished_at = Some(Utc::now());
                    a.update_operation("acme", &done, &[]).await.unwrap();
                    writes.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut took = Vec::new();
    for round in 0..20 {
        let id = &ids[0];
        let before = b.account_stamp("acme", id);
        let patch = AccountPatch {
            credentials: Some(sealer().seal_account(
                "acme",
                id,
                &credentials(&format!("tok-{round}")),
            )),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        a.update_account("acme", id, patch, Utc::now())
            .await
            .unwrap();
        let heard = eventually(Duration::from_secs(5), async || {
            b.account_stamp("acme", id) != before
        })
        .await;
        took.push(heard.map_or(Duration::from_secs(5), |_| started.elapsed()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A lost notification (a number issued behind the listeners' back) followed by a change
    // that is heard: the gap is still found, and every account reopened.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let stamp = b.account_stamp("acme", &ids[1]);
    sqlx::query("SELECT nextval('snapgate_account_version')")
        .execute(&pool)
        .await
        .unwrap();
    let patch = AccountPatch {
        display_name: Some(Some("renamed".to_owned())),
        ..Default::default()
    };
    a.update_account("acme", &ids[0], patch, Utc::now())
        .await
        .unwrap();
    let caught = eventually(Duration::from_secs(3), async || {
        b.account_stamp("acme", &ids[1]) != stamp
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    took.sort();
    let p99 = took[took.len() * 99 / 100];
    eprintln!(
        "account change heard by the other replica under {} operation writes: p50 {:?}, p99 {:?}",
        writes.load(std::sync::atomic::Ordering::Relaxed),
        took[took.len() / 2],
        p99
    );
    assert!(p99 <= Duration::from_secs(1), "p99 {p99:?}: {took:?}");
    assert!(
        caught.is_some(),
        "a lost change followed by a heard one was never caught"
    );
    pool.close().await;
    drop((a, b));
    db.drop_database().await;
}

/// A store holding one of everything, through the store API.
async fn populated(store: &dyn Store) {
    store
        .insert_account(account("acme", "prod", "tok-copy"))
        .await
        .unwrap();
    // An endpoint before the event: the event's delivery is queued to it.
    let hook = webhook("acme", vec![]);
    let sealed = sealer().seal_webhook("acme", &hook.id, &credentials("whsec_AAAA"));
    store.insert_webhook(&hook, &sealed).await.unwrap();
    store
        .insert_operation(
            "acme",
            &operation("prod", "snap-1", OperationKind::Create),
            &[],
        )
        .await
        .unwrap();
    let health = snapgate::domain::Event::new(
        snapgate::domain::EventType::AccountHealthChanged,
        "ops@example.com",
        serde_json::json!({"account": "prod"}),
    );
    store.append_events("acme", &[health]).await.unwrap();
    store
        .begin_idempotent("acme", "k-copy", "f", Utc::now(), Duration::from_secs(60))
        .await
        .unwrap();
    store
        .finish_idempotent("acme", "k-copy", 202, "{\"operation\":null}")
        .await
        .unwrap();
    policy_with_a_run(store).await;
}

/// A policy whose first slot's run made one snapshot: started once (a second start of the
/// same slot is refused), claimed by one claimant at a time, saved only under its claim.
async fn policy_with_a_run(store: &dyn Store) {
    use snapgate::domain::{
        policy::IntervalSchedule, Policy, PolicyRun, PolicySnapshot, PolicySpec, RunState, Schedule,
    };
    use snapgate::store::RunUpdate;
    // Slots are whole seconds (an interval's anchor, a cron minute).
    let now = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let slot = now - chrono::TimeDelta::seconds(5);
    let policy = Policy {
        tenant: "acme".into(),
        id: "pol_0000000000000000000000000000c0de".into(),
        spec: PolicySpec {
            description: None,
            account: "prod".into(),
            source_ids: vec!["vm-1".into()],
            all_sources: false,
            schedule: Schedule::Interval(IntervalSchedule { interval_secs: 60 }),
            name_template: "{policy}-{slot}".into(),
            retention: Default::default(),
            enabled: true,
        },
        next_slot: Some(slot),
        next_due_at: Some(slot),
        created_at: now,
        updated_at: now,
    };
    store.insert_policy(&policy).await.unwrap();
    assert_eq!(store.due_policies(now, 10).await.unwrap().len(), 1);
    let run = PolicyRun {
        id: "run_1".into(),
        policy_id: policy.id.clone(),
        slot,
        state: RunState::Running,
        started_at: now,
        finished_at: None,
        targets: vec![],
        sources_listed_at: None,
        error: None,
        pruned: vec![],
    };
    let moved = Policy {
        next_slot: Some(slot + chrono::TimeDelta::seconds(60)),
        next_due_at: Some(slot + chrono::TimeDelta::seconds(60)),
        ..policy.clone()
    };
    assert!(store.start_run(&moved, slot, &run).await.unwrap());
    // The slot moved on: a second start of it (another replica) does nothing.
    assert!(!store.start_run(&moved, slot, &run).await.unwrap());
    assert!(store.due_policies(now, 10).await.unwrap().is_empty());
    let until = now + chrono::TimeDelta::seconds(30);
    let claimed = store.claim_runs(now, "r-a", until, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store
        .claim_runs(now, "r-b", until, 10)
        .await
        .unwrap()
        .is_empty());
    // The claimant renews its claim while the run's work goes on; no one else can.
    let later = now + chrono::TimeDelta::seconds(90);
    assert!(store
        .renew_run_claim("acme", "run_1", "r-a", later)
        .await
        .unwrap());
    assert!(!store
        .renew_run_claim("acme", "run_1", "r-b", later)
        .await
        .unwrap());
    let after_first_lease = until + chrono::TimeDelta::seconds(1);
    assert!(
        store
            .claim_runs(after_first_lease, "r-b", later, 10)
            .await
            .unwrap()
            .is_empty(),
        "a renewed claim outlasts its first lease"
    );
    let made = PolicySnapshot {
        snapshot_id: "prod:snap-p".into(),
        account: "prod".into(),
        source_id: "vm-1".into(),
        slot,
        pruned_at: None,
        prune_operation: None,
    };
    let update = |claimant: &str| RunUpdate {
        tenant: "acme".into(),
        run: PolicyRun {
            state: RunState::Succeeded,
            finished_at: Some(now),
            ..run.clone()
        },
        check_at: None,
        claimant: claimant.into(),
        release: true,
        snapshots: vec![made.clone()],
        events: vec![],
    };
    // Only the claimant saves.
    assert!(!store.save_run(update("r-b")).await.unwrap());
    assert!(store.save_run(update("r-a")).await.unwrap());
    let runs = store
        .policy_runs("acme", &policy.id, None, 10)
        .await
        .unwrap();
    assert_eq!(runs[0].state, RunState::Succeeded);
    assert_eq!(
        store.policy_snapshots("acme", &policy.id).await.unwrap(),
        vec![made]
    );
    assert!(store
        .policy_runs("globex", &policy.id, None, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_store_copies_to_the_other_back_end_and_back_with_credentials_still_openable() {
    use snapgate::store::{copy, CopyError, Counts};
    let dir = tempfile::tempdir().unwrap();
    let sqlite = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let source = snapgate::store::connect(&sqlite("source.db"), 2)
        .await
        .unwrap();
    populated(source.as_ref()).await;
    let db = TestDatabase::create("store copy").await;
    // Through PostgreSQL when there is one, else through a second SQLite file.
    let middle_url = db
        .as_ref()
        .map_or_else(|| sqlite("middle.db"), |db| db.url.clone());
    let middle = snapgate::store::connect(&middle_url, 2).await.unwrap();
    let one_each = Counts {
        accounts: 1,
        operations: 1,
        idempotency_keys: 1,
        events: 1,
        webhooks: 1,
        deliveries: 1,
        policies: 1,
        policy_runs: 1,
        policy_records: 1,
    };
    assert_eq!(
        copy(source.as_ref(), middle.as_ref(), false).await.unwrap(),
        one_each
    );
    // A target holding records is refused unless told; told, it keeps what it has.
    match copy(source.as_ref(), middle.as_ref(), false).await {
        Err(CopyError::NotEmpty(held)) => assert_eq!(held, one_each),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        copy(source.as_ref(), middle.as_ref(), true).await.unwrap(),
        Counts::default()
    );
    let back = snapgate::store::connect(&sqlite("back.db"), 2)
        .await
        .unwrap();
    assert_eq!(
        copy(middle.as_ref(), back.as_ref(), false).await.unwrap(),
        one_each
    );

    // What came back is what left: the account opens with the same key, the operation and the
    // key's answer are the same.
    let id: AccountId = "prod".parse().unwrap();
    let (account, sealed) = back.get_account_sealed("acme", &id).await.unwrap().unwrap();
    let original = source.get_account("acme", &id).await.unwrap().unwrap();
    assert_eq!(account.created_at, original.created_at);
    assert_eq!(
        account.credential_fingerprint,
        original.credential_fingerprint
    );
    let opened = sealer().open_account("acme", &id, &sealed).unwrap();
    assert_eq!(opened.get("token").unwrap().expose_secret(), "tok-copy");
    let all = OperationFilter {
        limit: 10,
        ..Default::default()
    };
    let ops = |s: &Arc<dyn Store>| {
        let s = s.clone();
        let all = all.clone();
        async move { serde_json::to_value(s.list_operations("acme", &all).await.unwrap()).unwrap() }
    };
    assert_eq!(ops(&back).await, ops(&source).await);
    assert!(back
        .has_unfinished_operation("acme", "prod:snap-1")
        .await
        .unwrap());
    let events = |s: &Arc<dyn Store>| {
        let s = s.clone();
        async move {
            s.list_events("acme", 0, &[], 10)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, e)| e)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(events(&back).await, events(&source).await);
    assert_eq!(events(&back).await.len(), 1);
    // The endpoint came back with its secret still openable, and its delivery log.
    let hooks = back.list_webhooks("acme").await.unwrap();
    assert_eq!(hooks, source.list_webhooks("acme").await.unwrap());
    let (_, sealed_hook) = back
        .get_webhook("acme", &hooks[0].id)
        .await
        .unwrap()
        .unwrap();
    let secrets = sealer()
        .open_webhook("acme", &hooks[0].id, &sealed_hook)
        .unwrap();
    assert_eq!(secrets.get("token").unwrap().expose_secret(), "whsec_AAAA");
    let log = back
        .list_deliveries("acme", &hooks[0].id, None, 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].1.event_id, events(&back).await[0].id);
    let replay = back
        .begin_idempotent("acme", "k-copy", "f", Utc::now(), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        matches!(replay, IdempotencyBegin::Replay { status: 202, .. }),
        "{replay:?}"
    );
    drop((middle, back));
    if let Some(db) = db {
        db.drop_database().await;
    }
}

#[tokio::test]
async fn the_copy_command_prints_counts_and_never_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let from = format!("sqlite://{}", dir.path().join("from.db").display());
    populated(snapgate::store::connect(&from, 2).await.unwrap().as_ref()).await;
    let db = TestDatabase::create("the copy command").await;
    let to = db.as_ref().map_or_else(
        || format!("sqlite://{}", dir.path().join("to.db").display()),
        |db| db.url.clone(),
    );
    let run = |from: &str, to: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_snapgate"))
            .args(["store", "copy", "--from", from, "--to", to])
            .output()
            .unwrap()
    };
    let out = run(&from, &to);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(
            "copied 1 accounts, 1 operations, 1 idempotency keys, 1 events, 1 webhooks, 1 deliveries, 1 policies, 1 policy runs, 1 policy snapshot records from sqlite://"
        ),
        "{stdout}"
    );
    // Again: refused, naming what the target holds.
    let out = run(&from, &to);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the target already holds 1 accounts"),
        "{stderr}"
    );
    // A password in a URL is never printed.
    let secret = "s3cret-pw-in-url";
    let out = run(
        &from,
        &format!("postgres://snapgate:{secret}@127.0.0.1:1/none"),
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(!printed.contains(secret), "{printed}");
    assert!(
        printed.contains("postgres://snapgate:***@127.0.0.1:1/none"),
        "{printed}"
    );
    if let Some(db) = db {
        db.drop_database().await;
    }
}

#[tokio::test]
async fn a_key_rotation_reseals_every_account_and_the_old_key_can_go() {
    use base64::Engine;
    use snapgate::store::{rotate, Rotation};
    let b64 = |k: [u8; 32]| -> SecretString {
        base64::engine::general_purpose::STANDARD.encode(k).into()
    };
    on_both("key rotation", |store| async move {
        // Sealed under the old key (`sealer()`, [7; 32]).
        store
            .insert_account(account("acme", "prod", "tok-r"))
            .await
            .unwrap();
        store
            .insert_account(account("globex", "ops", "tok-g"))
            .await
            .unwrap();
        let hook = webhook("acme", vec![]);
        let sealed_hook = sealer().seal_webhook("acme", &hook.id, &credentials("whsec_AAAA"));
        store.insert_webhook(&hook, &sealed_hook).await.unwrap();
        let new_only = Sealer::from_bytes(&[9u8; 32]);
        let rotating = Sealer::from_bytes(&[9u8; 32])
            .with_previous(Some(&b64([7u8; 32])))
            .unwrap();
        let id: AccountId = "prod".parse().unwrap();
        let (_, before) = store
            .get_account_sealed("acme", &id)
            .await
            .unwrap()
            .unwrap();
        assert!(new_only.open_account("acme", &id, &before).is_err());
        assert!(rotating.open_account("acme", &id, &before).is_ok());

        let done = rotate(store.as_ref(), &rotating).await.unwrap();
        assert_eq!(
            done,
            Rotation {
                resealed: 2,
                current: 0,
                changed_meanwhile: 0,
                webhook_secrets: 1,
            }
        );
        // Nothing left to do; the new key alone opens everything.
        let again = rotate(store.as_ref(), &rotating).await.unwrap();
        assert_eq!((again.resealed, again.current), (0, 2));
        let (_, after) = store
            .get_account_sealed("acme", &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after.key_id, new_only.key_id());
        let opened = new_only.open_account("acme", &id, &after).unwrap();
        assert_eq!(opened.get("token").unwrap().expose_secret(), "tok-r");
        let (_, hook_after) = store.get_webhook("acme", &hook.id).await.unwrap().unwrap();
        let secrets = new_only
            .open_webhook("acme", &hook.id, &hook_after)
            .unwrap();
        assert_eq!(secrets.get("token").unwrap().expose_secret(), "whsec_AAAA");
        // A record whose key is not loaded stops the rotation, naming it.
        store
            .insert_account(account("initech", "lab", "tok-i"))
            .await
            .unwrap();
        let err = rotate(store.as_ref(), &new_only).await.unwrap_err();
        assert!(err.to_string().contains("initech/lab"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn the_rotate_command_reports_what_it_resealed() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create("the rotate command").await;
    let url = db.as_ref().map_or_else(
        || format!("sqlite://{}", dir.path().join("r.db").display()),
        |db| db.url.clone(),
    );
    let store = snapgate::store::connect(&url, 2).await.unwrap();
    store
        .insert_account(account("acme", "prod", "tok-c"))
        .await
        .unwrap();
    let hook = webhook("acme", vec![]);
    let sealed_hook = sealer().seal_webhook("acme", &hook.id, &credentials("whsec_AAAA"));
    store.insert_webhook(&hook, &sealed_hook).await.unwrap();
    let key = |k: [u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapgate"))
        .args(["keys", "rotate"])
        .env("SNAPGATE_STORE__URL", &url)
        .env("SNAPGATE_MASTER_KEY", key([9u8; 32]))
        .env(
            "SNAPGATE_PREVIOUS_MASTER_KEYS",
            format!("{},", key([7u8; 32])),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("re-sealed 1 accounts and 1 webhook secrets under key k-"),
        "{stdout}"
    );
    let id: AccountId = "prod".parse().unwrap();
    let (_, sealed) = store
        .get_account_sealed("acme", &id)
        .await
        .unwrap()
        .unwrap();
    let opened = Sealer::from_bytes(&[9u8; 32])
        .open_account("acme", &id, &sealed)
        .unwrap();
    assert_eq!(opened.get("token").unwrap().expose_secret(), "tok-c");
    drop(store);
    if let Some(db) = db {
        db.drop_database().await;
    }
}

fn webhook(tenant: &str, types: Vec<snapgate::domain::EventType>) -> snapgate::domain::Webhook {
    let now = Utc::now();
    snapgate::domain::Webhook {
        id: format!("wh_{}", uuid::Uuid::now_v7().simple()),
        tenant: tenant.to_owned(),
        url: "https://hooks.example.com/h".to_owned(),
        description: None,
        event_types: types,
        enabled: true,
        disabled_reason: None,
        previous_secret_until: None,
        created_at: now,
        updated_at: now,
    }
}

#[tokio::test]
async fn events_fill_the_outbox_in_their_transaction_and_claims_never_overlap() {
    use snapgate::domain::{DeliveryState, Event, EventType};
    on_both("webhook outbox", |store| async move {
        let all = webhook("acme", vec![]);
        let failures = webhook("acme", vec![EventType::OperationFailed]);
        let mut paused = webhook("acme", vec![]);
        paused.enabled = false;
        let theirs = webhook("globex", vec![]);
        for w in [&all, &failures, &paused, &theirs] {
            let sealed = sealer().seal_webhook(&w.tenant, &w.id, &credentials("whsec_AAAA"));
            store.insert_webhook(w, &sealed).await.unwrap();
        }
        // A finished create tells operation.succeeded and snapshot.created.
        let mut op = operation("prod", "snap-9", OperationKind::Create);
        store.insert_operation("acme", &op, &[]).await.unwrap();
        op.state = OperationState::Succeeded;
        let events = Event::of_finished(&op, "ops@example.com");
        assert_eq!(events.len(), 2);
        assert!(store.update_operation("acme", &op, &events).await.unwrap());
        // Only the enabled endpoint of the tenant that wants them got deliveries.
        for (w, n) in [(&all, 2), (&failures, 0), (&paused, 0), (&theirs, 0)] {
            let log = store
                .list_deliveries(&w.tenant, &w.id, None, 10)
                .await
                .unwrap();
            assert_eq!(log.len(), n, "{}", w.id);
        }
        let log = store
            .list_deliveries("acme", &all.id, None, 10)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&log[0].1.payload).unwrap();
        assert_eq!(body["data"]["actor"], "ops@example.com");
        assert_eq!(body["data"]["operation"]["id"], serde_json::json!(op.id));
        assert!(events.iter().any(|e| e.id == body["id"]));

        // Three more to the same endpoint: at most two in flight to it at once.
        for _ in 0..3 {
            let d = snapgate::domain::Delivery::new(
                "acme",
                &all.id,
                "evt_x",
                "webhook.test",
                "{}".into(),
            );
            store.insert_delivery(&d).await.unwrap();
        }
        let now = Utc::now();
        let lease = now + chrono::TimeDelta::seconds(30);
        let first = store
            .claim_deliveries(now, lease, 10, 2, 100)
            .await
            .unwrap();
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|c| c.webhook.id == all.id));
        // Held: a second claimer gets none of them, and still no more than two in flight.
        let second = store
            .claim_deliveries(now, lease, 10, 2, 100)
            .await
            .unwrap();
        assert!(second.is_empty(), "{second:?}");
        // A finished attempt frees a place; a stale token records nothing.
        let mut done = first[0].delivery.clone();
        done.state = DeliveryState::Succeeded;
        done.next_attempt_at = None;
        assert!(!store
            .finish_delivery(&done, "not-the-token", None)
            .await
            .unwrap());
        assert!(store
            .finish_delivery(&done, &first[0].token, None)
            .await
            .unwrap());
        let third = store
            .claim_deliveries(now, lease, 10, 2, 100)
            .await
            .unwrap();
        assert_eq!(third.len(), 1);
        assert!(first.iter().all(|c| c.delivery.id != third[0].delivery.id));
        // A lapsed lease is claimed again (the process holding it died).
        let later = lease + chrono::TimeDelta::seconds(1);
        let retaken = store
            .claim_deliveries(later, later + chrono::TimeDelta::seconds(30), 10, 2, 100)
            .await
            .unwrap();
        assert_eq!(retaken.len(), 2);
        assert!(!store
            .finish_delivery(&done, &first[0].token, None)
            .await
            .unwrap());
        // Disabling through a failed delivery; deleting takes the log with it.
        let mut failed = retaken[0].delivery.clone();
        failed.state = DeliveryState::Failed;
        assert!(store
            .finish_delivery(&failed, &retaken[0].token, Some("gave up"))
            .await
            .unwrap());
        let (after, _) = store.get_webhook("acme", &all.id).await.unwrap().unwrap();
        assert!(!after.enabled);
        assert_eq!(after.disabled_reason.as_deref(), Some("gave up"));
        assert!(store.delete_webhook("acme", &all.id).await.unwrap());
        assert!(store
            .list_deliveries("acme", &all.id, None, 10)
            .await
            .unwrap()
            .is_empty());
        assert!(!store.delete_webhook("globex", &all.id).await.unwrap());

        // An older delivery's failure does not disable an endpoint a later event reached.
        let flaky = webhook("acme", vec![]);
        let sealed = sealer().seal_webhook("acme", &flaky.id, &credentials("whsec_AAAA"));
        store.insert_webhook(&flaky, &sealed).await.unwrap();
        let older = snapgate::domain::Delivery::new(
            "acme",
            &flaky.id,
            "evt_a",
            "webhook.test",
            "{}".into(),
        );
        store.insert_delivery(&older).await.unwrap();
        let newer = snapgate::domain::Delivery::new(
            "acme",
            &flaky.id,
            "evt_b",
            "webhook.test",
            "{}".into(),
        );
        store.insert_delivery(&newer).await.unwrap();
        let now = Utc::now() + chrono::TimeDelta::minutes(10);
        let claims = store
            .claim_deliveries(now, now + chrono::TimeDelta::seconds(30), 10, 2, 100)
            .await
            .unwrap();
        assert_eq!(claims.len(), 2);
        let claim_of = |id: &str| claims.iter().find(|c| c.delivery.id == id).unwrap();
        let mut reached = claim_of(&newer.id).delivery.clone();
        reached.state = DeliveryState::Succeeded;
        let token = &claim_of(&newer.id).token;
        assert!(store.finish_delivery(&reached, token, None).await.unwrap());
        let mut gave_up = claim_of(&older.id).delivery.clone();
        gave_up.state = DeliveryState::Failed;
        let token = &claim_of(&older.id).token;
        assert!(store
            .finish_delivery(&gave_up, token, Some("gave up"))
            .await
            .unwrap());
        let (after, _) = store.get_webhook("acme", &flaky.id).await.unwrap().unwrap();
        assert!(after.enabled, "{after:?}");
    })
    .await;
}

/// Issue 23: one tenant's backlog never holds another's work. Claims take turns across
/// tenants (every tenant's first before anyone's second) and cap each tenant's work in flight
/// across replicas, for the reconciler's checks and for webhook deliveries alike.
#[tokio::test]
async fn claims_take_turns_across_tenants_and_cap_each_tenant() {
    on_both("fair claims", |store| async move {
        let earlier = Utc::now() - chrono::TimeDelta::seconds(60);
        for i in 0..12 {
            let mut op = operation("prod", &format!("hog-{i}"), OperationKind::Create);
            op.next_check_at = Some(earlier + chrono::TimeDelta::seconds(i));
            store.insert_operation("hog", &op, &[]).await.unwrap();
        }
        // The quiet tenant's one operation is the last due.
        let quiet = operation("prod", "quiet-1", OperationKind::Create);
        store.insert_operation("quiet", &quiet, &[]).await.unwrap();
        let now = Utc::now();
        let lease = now + chrono::TimeDelta::seconds(30);
        let first = store.claim_due(now, lease, 3, 2).await.unwrap();
        let tenants: Vec<&str> = first.iter().map(|(t, _)| t.as_str()).collect();
        assert!(tenants.contains(&"quiet"), "{tenants:?}");
        assert_eq!(tenants.iter().filter(|t| **t == "hog").count(), 2);
        // The hog has its two in flight: nothing more of it until one is released.
        let second = store.claim_due(now, lease, 10, 2).await.unwrap();
        assert!(second.is_empty(), "{second:?}");
        let (_, held) = first.iter().find(|(t, _)| t == "hog").unwrap();
        store
            .schedule_check("hog", &held.id, now + chrono::TimeDelta::seconds(60), 1)
            .await
            .unwrap();
        let third = store.claim_due(now, lease, 10, 2).await.unwrap();
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].0, "hog");

        // Deliveries: the hog's fan-out (3 endpoints, 10 deliveries each) is queued first.
        let hooks: Vec<_> = (0..3).map(|_| webhook("hog", vec![])).collect();
        let theirs = webhook("quiet", vec![]);
        for w in hooks.iter().chain([&theirs]) {
            let sealed = sealer().seal_webhook(&w.tenant, &w.id, &credentials("whsec_AAAA"));
            store.insert_webhook(w, &sealed).await.unwrap();
        }
        for i in 0..10 {
            for w in &hooks {
                let d = snapgate::domain::Delivery::new(
                    "hog",
                    &w.id,
                    &format!("evt_{i}"),
                    "webhook.test",
                    "{}".into(),
                );
                store.insert_delivery(&d).await.unwrap();
            }
        }
        let mine = snapgate::domain::Delivery::new(
            "quiet",
            &theirs.id,
            "evt_q",
            "webhook.test",
            "{}".into(),
        );
        store.insert_delivery(&mine).await.unwrap();
        let now = Utc::now() + chrono::TimeDelta::seconds(1);
        let lease = now + chrono::TimeDelta::seconds(30);
        let claimed = store.claim_deliveries(now, lease, 4, 4, 3).await.unwrap();
        let tenants: Vec<&str> = claimed.iter().map(|c| c.delivery.tenant.as_str()).collect();
        assert!(tenants.contains(&"quiet"), "{tenants:?}");
        assert_eq!(tenants.iter().filter(|t| **t == "hog").count(), 3);
        let more = store.claim_deliveries(now, lease, 10, 4, 3).await.unwrap();
        assert!(more.is_empty(), "the hog is at its cap: {more:?}");
    })
    .await;
}

/// Issue 24: a process started with a master key that opens none of the stored records is
/// refused at start, naming both keys, instead of failing each request that uses a record.
#[tokio::test]
async fn a_master_key_that_opens_nothing_stored_is_refused_at_start() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    {
        let store = snapgate::store::connect(&url, 2).await.unwrap();
        store
            .insert_account(account("acme", "prod", "tok-k"))
            .await
            .unwrap();
    }
    let start = |key: [u8; 32]| {
        let mut config = snapgate::Config::defaults();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.store.url = url.clone();
        config.auth.hs256_secret = Some("a-test-secret-that-is-long-enough".to_owned().into());
        config.master_key = Some(base64::engine::general_purpose::STANDARD.encode(key).into());
        snapgate::Application::build(config)
    };
    let refused = start([8u8; 32])
        .await
        .err()
        .expect("a wrong key must not start");
    let said = refused.to_string();
    assert!(said.contains("opens none of the stored records"), "{said}");
    assert!(said.contains(sealer().key_id()), "{said}");
    // The key the records were sealed with starts.
    assert!(start([7u8; 32]).await.is_ok());
}

#[tokio::test]
async fn expired_records_are_pruned_in_batches_and_work_in_progress_never() {
    use snapgate::store::Cutoffs;
    on_both("retention", |store| async move {
        let now = Utc::now();
        let mut ops = Vec::new();
        for i in 0..3 {
            let mut op = operation("prod", &format!("snap-{i}"), OperationKind::Create);
            op.state = OperationState::Succeeded;
            op.finished_at = Some(now);
            store.insert_operation("acme", &op, &[]).await.unwrap();
            ops.push(op);
        }
        let running = operation("prod", "snap-run", OperationKind::Create);
        store.insert_operation("acme", &running, &[]).await.unwrap();
        let events: Vec<_> = (0..3)
            .map(|_| {
                snapgate::domain::Event::new(
                    snapgate::domain::EventType::AccountHealthChanged,
                    "t",
                    serde_json::json!({}),
                )
            })
            .collect();
        store.append_events("acme", &events).await.unwrap();
        store
            .begin_idempotent("acme", "in-flight", "f", now, Duration::from_secs(60))
            .await
            .unwrap();
        store
            .begin_idempotent("acme", "answered", "f", now, Duration::from_secs(60))
            .await
            .unwrap();
        store
            .finish_idempotent("acme", "answered", 202, "{}")
            .await
            .unwrap();
        assert_eq!(store.events_pruned_through().await.unwrap(), 0);

        let later = now + chrono::TimeDelta::seconds(1);
        let all = Cutoffs {
            events: Some(later),
            deliveries: Some(later),
            operations: Some(later),
            idempotency_keys: Some(later),
            policy_runs: Some(later),
        };
        // Batches of two: the first leaves one finished operation and one event.
        let first = store.prune_expired(all, 2).await.unwrap();
        assert_eq!(
            (first.operations, first.events, first.idempotency_keys),
            (2, 2, 1)
        );
        let second = store.prune_expired(all, 2).await.unwrap();
        assert_eq!((second.operations, second.events), (1, 1));
        assert_eq!(store.prune_expired(all, 2).await.unwrap().total(), 0);
        // Work in progress is kept: the running operation, the key in flight.
        assert!(store
            .get_operation("acme", &running.id)
            .await
            .unwrap()
            .is_some());
        for op in &ops {
            assert!(store.get_operation("acme", &op.id).await.unwrap().is_none());
        }
        let again = store
            .begin_idempotent("acme", "in-flight", "f", now, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(
            matches!(again, snapgate::store::IdempotencyBegin::InFlight),
            "{again:?}"
        );
        // The watermark covers every event pruned.
        let listed = store.list_events("acme", 0, &[], 100).await.unwrap();
        assert!(listed.is_empty());
        assert!(store.events_pruned_through().await.unwrap() > 0);
        // Nothing is pruned before its cutoff.
        let none = Cutoffs::default();
        assert_eq!(store.prune_expired(none, 2).await.unwrap().total(), 0);
    })
    .await;
}
