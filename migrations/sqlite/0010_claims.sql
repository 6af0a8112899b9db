-- A claim counts each tenant's operations under a live lease: an index over the leases of
-- unfinished operations keeps that count from reading every unfinished operation, so a claim
-- costs the same at ten thousand open operations as at a hundred (bench/scale.sh).
CREATE INDEX operations_leased ON operations (lease_until) WHERE state IN ('pending', 'running');
