-- Replica coherence under load: an operation change notifies everything a replica's index of
-- unfinished work needs (`[tenant, id, snapshot_id, kind, state]`), so applying it takes no
-- query on the listener's path.
CREATE OR REPLACE FUNCTION snapgate_operation_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify(
        'snapgate_operations',
        json_build_array(NEW.tenant, NEW.id, NEW.snapshot_id, NEW.kind, NEW.state)::text
    );
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
