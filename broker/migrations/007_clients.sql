-- Client records: a therapist's clients as rows of their own, matched by email (case-insensitive,
-- per therapist). A booking references its client and keeps the details as given when it was made.

CREATE TABLE clients (
    id           uuid PRIMARY KEY,
    therapist_id uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email        text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    phone        text CHECK (length(phone) <= 40),
    location     text CHECK (length(location) <= 100),
    notes        text CHECK (length(notes) <= 5000),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- The target of bookings' (therapist_id, client_id) key: a booking's client is its therapist's.
    CONSTRAINT clients_therapist_id_key UNIQUE (therapist_id, id)
);
-- One client per therapist and email, whatever its case: the rule booking matches by, and the
-- arbiter of INSERT ... ON CONFLICT when two first bookings of one client race.
CREATE UNIQUE INDEX clients_therapist_email ON clients (therapist_id, lower(email));

-- Existing bookings become clients: one per therapist and lower(email), its details from the
-- latest booking, created when the first was.
INSERT INTO clients (id, therapist_id, name, email, phone, location, created_at, updated_at)
SELECT DISTINCT ON (b.therapist_id, lower(b.client_email))
       gen_random_uuid(), b.therapist_id, b.client_name, b.client_email, b.client_phone, b.client_location,
       min(b.created_at) OVER (PARTITION BY b.therapist_id, lower(b.client_email)), now()
FROM bookings b
ORDER BY b.therapist_id, lower(b.client_email), b.created_at DESC, b.id DESC;

ALTER TABLE bookings ADD COLUMN client_id uuid;
UPDATE bookings b SET client_id = c.id
FROM clients c
WHERE c.therapist_id = b.therapist_id AND lower(c.email) = lower(b.client_email);
ALTER TABLE bookings
    ALTER COLUMN client_id SET NOT NULL,
    ADD CONSTRAINT bookings_client_fk FOREIGN KEY (therapist_id, client_id) REFERENCES clients (therapist_id, id);
CREATE INDEX bookings_client_start ON bookings (client_id, starts_at);

-- Reads and changes of a client record are audited by its id, as bookings are.
ALTER TABLE audit_events ADD COLUMN client_id uuid;
CREATE INDEX audit_events_client ON audit_events (client_id) WHERE client_id IS NOT NULL;
