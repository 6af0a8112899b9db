-- Snapshot policies. `spec` is the policy as the caller wrote it (JSON); the runner's schedule
-- lives in columns: `next_slot` (the next scheduled time) and `next_due_at` (that slot plus its
-- jitter). Starting a slot's run moves them in the same transaction, compared and set, so each
-- slot starts once across replicas.
CREATE TABLE policies (
    tenant       TEXT NOT NULL,
    id           TEXT NOT NULL,
    spec         TEXT NOT NULL,
    next_slot    TEXT,
    next_due_at  TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX policies_due ON policies (next_due_at);

-- One run per policy and slot (the primary key is the once-per-slot guarantee). `record` is
-- the run as the API shows it (JSON); a run in progress is claimed with a lease by one replica
-- at a time and checked again at `check_at`.
CREATE TABLE policy_runs (
    tenant         TEXT NOT NULL,
    policy_id      TEXT NOT NULL,
    slot           TEXT NOT NULL,
    id             TEXT NOT NULL,
    state          TEXT NOT NULL,
    check_at       TEXT,
    claimed_by     TEXT,
    claimed_until  TEXT,
    record         TEXT NOT NULL,
    PRIMARY KEY (tenant, policy_id, slot)
);
CREATE INDEX policy_runs_due ON policy_runs (state, check_at);

-- What each policy made, recorded when its create succeeded: retention prunes from these only.
CREATE TABLE policy_snapshots (
    tenant           TEXT NOT NULL,
    policy_id        TEXT NOT NULL,
    snapshot_id      TEXT NOT NULL,
    account          TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    slot             TEXT NOT NULL,
    pruned_at        TEXT,
    prune_operation  TEXT,
    PRIMARY KEY (tenant, policy_id, snapshot_id)
);
CREATE INDEX policy_snapshots_by_source ON policy_snapshots (tenant, policy_id, account, source_id);
