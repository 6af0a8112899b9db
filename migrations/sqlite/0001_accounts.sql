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
    nonce                   BLOB NOT NULL,
    ciphertext              BLOB NOT NULL,
    credentials_updated_at  TEXT NOT NULL,
    health                  TEXT NOT NULL,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
