-- Standing series: a first start repeated weekly or every two weeks, booked as one. The series is a
-- row of its own (its rule, its client, the hash of its key); its occurrences are ordinary bookings
-- pointing at it, so bookings_no_overlap keeps guarding every one of them.
CREATE TABLE series (
    id              uuid PRIMARY KEY,
    therapist_id    uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    client_id       uuid NOT NULL,
    session_type_id uuid NOT NULL REFERENCES session_types (id),
    frequency       text NOT NULL CHECK (frequency IN ('weekly', 'biweekly')),
    count           integer NOT NULL CHECK (count BETWEEN 1 AND 52),
    -- The rule, as expanded: the first start and the therapist's zone whose wall clock it keeps.
    first_start     timestamptz NOT NULL,
    timezone        text NOT NULL,
    client_timezone text,
    key_hash        bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT series_key_hash_key UNIQUE (key_hash),
    CONSTRAINT series_therapist_id_key UNIQUE (therapist_id, id),
    CONSTRAINT series_client_fk FOREIGN KEY (therapist_id, client_id) REFERENCES clients (therapist_id, id)
);
CREATE INDEX series_client ON series (client_id);

-- An occurrence: which series, and which of its sessions (0-based), so its original time is known
-- after a reschedule (the .ics excludes it from the rule then). One booking per session of a series.
ALTER TABLE bookings
    ADD COLUMN series_id uuid,
    ADD COLUMN series_index integer CHECK (series_index BETWEEN 0 AND 51),
    ADD CONSTRAINT bookings_series_fk FOREIGN KEY (therapist_id, series_id) REFERENCES series (therapist_id, id),
    ADD CONSTRAINT bookings_series_index CHECK ((series_id IS NULL) = (series_index IS NULL));
CREATE UNIQUE INDEX bookings_series ON bookings (series_id, series_index) WHERE series_id IS NOT NULL;

-- Whether clients may book a session type as a series, how often, and how many sessions at most.
ALTER TABLE session_types
    ADD COLUMN series_frequencies text[] NOT NULL DEFAULT '{}'
        CHECK (series_frequencies <@ ARRAY['weekly', 'biweekly']::text[]),
    ADD COLUMN series_max_sessions integer NOT NULL DEFAULT 12 CHECK (series_max_sessions BETWEEN 1 AND 52);
