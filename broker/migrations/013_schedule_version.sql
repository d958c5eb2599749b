-- A therapist's schedule version: a counter PostgreSQL bumps in the transaction of every change to
-- what slots the therapist can offer (their bookings' times and statuses, availability, session
-- types, busy calendars' events). A node keeps computed slot listings in memory
-- (broker/slot_listings.py) and serves one only while the version it was computed at is still the
-- current one, so a change made through any node, the command line or plain SQL is seen by every
-- node on its next read.
--
-- No foreign key: a therapist's deletion cascades to the tables below, whose triggers must not fail
-- on it; the orphaned counter is harmless. A therapist without a row is at version 0.
CREATE TABLE schedule_versions (
    therapist_id uuid PRIMARY KEY,
    version      bigint NOT NULL,
    -- The transaction that last bumped it: a transaction bumps each therapist once, however many
    -- rows it writes (a series, a calendar refresh, a COPY).
    changed_in   xid8 NOT NULL
);

-- The triggers are deferred to the commit. The bump locks the therapist's counter row until the
-- transaction ends; taken at the end of a statement instead, a transaction that went on to wait
-- for a row another one had changed (a series being cancelled occurrence by occurrence while a
-- client cancels one of them) while that one waited for the counter would deadlock. At commit a
-- transaction waits for nothing else while it holds the counter.
CREATE FUNCTION bump_schedule_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.therapist_id ELSE NEW.therapist_id END;
BEGIN
    INSERT INTO schedule_versions AS v (therapist_id, version, changed_in)
    VALUES (changed, 1, pg_current_xact_id())
    ON CONFLICT (therapist_id) DO UPDATE SET version = v.version + 1, changed_in = EXCLUDED.changed_in
    WHERE v.changed_in <> EXCLUDED.changed_in;
    RETURN NULL;
END
$$;

-- Bookings: a new one, a move, a status change (cancelled, attended, ...), a deletion.
CREATE CONSTRAINT TRIGGER bookings_schedule_version
    AFTER INSERT OR DELETE OR UPDATE OF therapist_id, status, blocked ON bookings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_schedule_version();
CREATE CONSTRAINT TRIGGER availability_schedule_version
    AFTER INSERT OR UPDATE OR DELETE ON availability
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_schedule_version();
CREATE CONSTRAINT TRIGGER session_types_schedule_version
    AFTER INSERT OR UPDATE OR DELETE ON session_types
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_schedule_version();
CREATE CONSTRAINT TRIGGER busy_events_schedule_version
    AFTER INSERT OR UPDATE OR DELETE ON busy_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_schedule_version();
