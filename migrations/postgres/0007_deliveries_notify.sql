-- Deliveries queued by any replica wake every replica's delivery worker: one notification per
-- statement (an operation's events may queue many), carrying nothing; a replica that was not
-- listening catches up on its tick.
CREATE FUNCTION snapgate_deliveries_queued() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('snapgate_deliveries', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER deliveries_queued AFTER INSERT ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION snapgate_deliveries_queued();
