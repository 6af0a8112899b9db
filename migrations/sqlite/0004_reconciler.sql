-- The reconciler: when an unfinished operation is next checked at the vendor, how many checks
-- it has had, and until when a process holds it for a check.
ALTER TABLE operations ADD COLUMN next_check_at TEXT;
ALTER TABLE operations ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN lease_until TEXT;
CREATE INDEX operations_due ON operations (next_check_at) WHERE state IN ('pending', 'running');
