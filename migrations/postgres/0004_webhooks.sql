-- Webhook endpoints: secrets sealed like credentials (current and, during a rotation's grace
-- period, previous), event filter as a JSON array (empty: all).
CREATE TABLE webhooks (
    tenant                 TEXT NOT NULL,
    id                     TEXT NOT NULL,
    url                    TEXT NOT NULL,
    description            TEXT,
    event_types            TEXT NOT NULL,
    enabled                BOOLEAN NOT NULL,
    disabled_reason        TEXT,
    key_id                 TEXT NOT NULL,
    nonce                  BYTEA NOT NULL,
    ciphertext             BYTEA NOT NULL,
    previous_secret_until  TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- The outbox: one row per event and endpoint, written in the transaction that writes the event.
-- A worker claims due rows with a lease; `attempts` is a JSON array of every attempt made.
CREATE TABLE deliveries (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    tenant           TEXT NOT NULL,
    webhook_id       TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         TEXT NOT NULL,
    next_attempt_at  TEXT,
    lease_until      TEXT,
    lease_token      TEXT,
    created_at       TEXT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_by_webhook ON deliveries (tenant, webhook_id, seq);
