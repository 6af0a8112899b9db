//! Every hot query has an index to take on PostgreSQL: each access pattern the store uses on a
//! growing table, planned with sequential scans priced out (`enable_seqscan = off`), must not
//! fall back to one. (Small test tables would otherwise always plan a sequential scan.)

use crate::store_contract::TestDatabase;

/// (what, query): the shapes of the store's queries on tables that grow.
const HOT: [(&str, &str); 14] = [
    ("event log page", "SELECT * FROM events WHERE tenant = 'a' AND seq > 5 ORDER BY seq LIMIT 50"),
    ("events to prune", "SELECT seq FROM events WHERE created_at < 'x' ORDER BY seq LIMIT 10"),
    ("one operation", "SELECT * FROM operations WHERE tenant = 'a' AND id = 'x'"),
    ("unfinished operations", "SELECT * FROM operations WHERE state IN ('pending', 'running')"),
    ("operations list", "SELECT * FROM operations WHERE tenant = 'a' ORDER BY created_at DESC LIMIT 50"),
    ("operations of a snapshot", "SELECT * FROM operations WHERE tenant = 'a' AND snapshot_id = 's' AND state = 'running'"),
    ("operations to prune", "SELECT id FROM operations WHERE state IN ('succeeded', 'failed') AND finished_at < 'x' ORDER BY finished_at LIMIT 10"),
    ("due deliveries", "SELECT * FROM deliveries WHERE state = 'pending' AND next_attempt_at <= 'x' ORDER BY next_attempt_at LIMIT 10"),
    ("an endpoint's deliveries", "SELECT * FROM deliveries WHERE tenant = 'a' AND webhook_id = 'w' ORDER BY seq DESC LIMIT 50"),
    ("one idempotency key", "SELECT * FROM idempotency WHERE tenant = 'a' AND key = 'k'"),
    ("keys to prune", "SELECT tenant, key FROM idempotency WHERE status IS NOT NULL AND created_at < 'x' ORDER BY created_at LIMIT 10"),
    ("due policies", "SELECT * FROM policies WHERE next_due_at <= 'x' ORDER BY next_due_at LIMIT 10"),
    ("runs due a check", "SELECT tenant, policy_id, slot FROM policy_runs WHERE state = 'running' AND check_at <= 'x' ORDER BY check_at LIMIT 10"),
    ("runs to prune", "SELECT tenant FROM policy_runs WHERE state <> 'running' AND slot < 'x' ORDER BY slot LIMIT 10"),
];

#[tokio::test]
async fn every_hot_query_has_an_index_on_postgresql() {
    let Some(db) = TestDatabase::create("indexes").await else {
        return;
    };
    // Migrated as a gateway migrates it.
    snapgate::store::connect(&db.url, 2).await.unwrap();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut unindexed = Vec::new();
    for (what, query) in HOT {
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {query}"))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        if plan.contains("Seq Scan") {
            unindexed.push(format!("{what}:\n{plan}"));
        }
    }
    assert!(
        unindexed.is_empty(),
        "no index for:\n{}",
        unindexed.join("\n\n")
    );
}
