-- Master-key rollouts: each serving process announces the keys it holds, renewed while it
-- lives. New records are sealed under the active key only once every live process holds it.
CREATE TABLE replica_keys (
    replica  TEXT NOT NULL,
    key_id   TEXT NOT NULL,
    seen_at  TEXT NOT NULL,
    PRIMARY KEY (replica, key_id)
);
