-- snapgate on PostgreSQL: the same records as the SQLite store, shared by every replica.
-- Timestamps are fixed-width RFC 3339 text (UTC, microseconds) in both back-ends, so one row
-- mapping serves both, they sort as text, and `snapgate store copy` is lossless.

-- Accounts: one row per (tenant, id). Credentials are sealed (AES-256-GCM); the row names its key.
CREATE TABLE accounts (
    tenant                  TEXT NOT NULL,
    id                      TEXT NOT NULL,
    provider                TEXT NOT NULL,
    display_name            TEXT,
    settings                TEXT NOT NULL,
    credential_fields       TEXT NOT NULL,
    credential_fingerprint  TEXT NOT NULL,
    key_id                  TEXT NOT NULL,
    nonce                   BYTEA NOT NULL,
    ciphertext              BYTEA NOT NULL,
    credentials_updated_at  TEXT NOT NULL,
    health                  TEXT NOT NULL,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- Operations: normalized async work, advanced from the vendor's truth.
CREATE TABLE operations (
    tenant           TEXT NOT NULL,
    id               TEXT NOT NULL,
    account          TEXT NOT NULL,
    provider         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    state            TEXT NOT NULL,
    snapshot_id      TEXT,
    result           TEXT,
    vendor_ref       TEXT NOT NULL,
    tracking         TEXT NOT NULL,
    error            TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    finished_at      TEXT,
    completion_note  TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX operations_by_snapshot ON operations (tenant, snapshot_id, state);
CREATE INDEX operations_by_time ON operations (tenant, created_at DESC);
CREATE INDEX operations_unfinished ON operations (state) WHERE state IN ('pending', 'running');

-- Idempotency records: (tenant, key) → request fingerprint and the first response.
CREATE TABLE idempotency (
    tenant       TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    status       BIGINT,            -- NULL while the first request is in flight
    body         TEXT,
    created_at   TEXT NOT NULL,     -- renewed while the request that holds the key lives
    PRIMARY KEY (tenant, key)
);

-- Replica coherence. Every account change bumps a sequence and notifies `snapgate_accounts`
-- with `[tenant, id, version]`; every operation change notifies `snapgate_operations` with
-- `[tenant, id]`. A replica that missed a notification sees the sequence ahead of what it
-- heard and drops its whole account cache.
CREATE SEQUENCE snapgate_account_version;

CREATE FUNCTION snapgate_account_changed() RETURNS trigger AS $$
DECLARE
    row_tenant TEXT;
    row_id TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_tenant := OLD.tenant; row_id := OLD.id;
    ELSE
        row_tenant := NEW.tenant; row_id := NEW.id;
    END IF;
    PERFORM pg_notify(
        'snapgate_accounts',
        json_build_array(row_tenant, row_id, nextval('snapgate_account_version'))::text
    );
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION snapgate_account_changed();

CREATE FUNCTION snapgate_operation_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('snapgate_operations', json_build_array(NEW.tenant, NEW.id)::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER operations_changed AFTER INSERT OR UPDATE ON operations
    FOR EACH ROW EXECUTE FUNCTION snapgate_operation_changed();
