-- Operations: normalized async work, advanced from the vendor's truth.
CREATE TABLE operations (
    tenant       TEXT NOT NULL,
    id           TEXT NOT NULL,
    account      TEXT NOT NULL,
    provider     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    snapshot_id  TEXT,
    result       TEXT,
    vendor_ref   TEXT NOT NULL,
    tracking     TEXT NOT NULL,
    error        TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    finished_at  TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX operations_by_snapshot ON operations (tenant, snapshot_id, state);
CREATE INDEX operations_by_time ON operations (tenant, created_at DESC);

-- Idempotency records: (tenant, key) → request fingerprint and the first response.
CREATE TABLE idempotency (
    tenant       TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    status       INTEGER,           -- NULL while the first request is in flight
    body         TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
