-- Bounded growth: finished records older than their retention are pruned in small batches.
-- `store_meta` keeps the event log's watermark: events at or below `events_pruned_through`
-- may have been pruned, so a cursor below it is answered 410 (never a silently short log).
CREATE TABLE store_meta (
    key    TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);
CREATE INDEX operations_finished ON operations (finished_at) WHERE state IN ('succeeded', 'failed');
CREATE INDEX idempotency_by_time ON idempotency (created_at);
CREATE INDEX policy_runs_by_slot ON policy_runs (slot);
