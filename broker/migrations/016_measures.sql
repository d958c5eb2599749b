-- Outcome measures (PHQ-9, GAD-7, ...) and the safety alerts their answers raise.
--
-- Instruments are data files (broker/instruments/*.json), not rows: a response keeps the id and
-- version of the definition it answered, so a later edition of a questionnaire never rereads an
-- old answer. Everything here is clinical data: readable through the therapist's principal only
-- (broker/measures.py, broker/safety_alerts.py audit every read), never joined into feeds, emails,
-- webhooks or logs.

-- Which questionnaires a client is asked to complete, and how often.
--   every_session  before every session
--   every_other    unless the client's previous session has one (so every other session)
--   monthly        unless one was completed in the 28 days before the session
--   once           until one is completed after it was (re)assigned
CREATE TABLE measure_assignments (
    client_id   uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    instrument  text NOT NULL CHECK (instrument ~ '^[a-z0-9_]{1,40}$'),
    schedule    text NOT NULL CHECK (schedule IN ('every_session', 'every_other', 'monthly', 'once')),
    -- when the schedule was last set: `once` counts responses from then on
    assigned_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, instrument)
);

-- A completed questionnaire: scored on the server when it was stored, with the version it answered.
-- One per booking and instrument (a second submission for the same session is refused by the key).
CREATE TABLE measure_responses (
    id                 uuid PRIMARY KEY,
    client_id          uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    booking_id         uuid NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    instrument         text NOT NULL CHECK (instrument ~ '^[a-z0-9_]{1,40}$'),
    instrument_version integer NOT NULL CHECK (instrument_version >= 1),
    total              integer NOT NULL CHECK (total >= 0),
    band               text NOT NULL CHECK (length(band) BETWEEN 1 AND 60),
    completed_at       timestamptz NOT NULL,
    CONSTRAINT measure_responses_once_per_booking UNIQUE (booking_id, instrument)
);
CREATE INDEX measure_responses_client ON measure_responses (client_id, instrument, completed_at);

-- The answers, item by item (the unscored ones too, such as PHQ-9's difficulty question).
CREATE TABLE measure_answers (
    response_id uuid NOT NULL REFERENCES measure_responses (id) ON DELETE CASCADE,
    item        text NOT NULL CHECK (length(item) BETWEEN 1 AND 40),
    value       smallint NOT NULL CHECK (value BETWEEN 0 AND 100),
    PRIMARY KEY (response_id, item)
);

-- A response whose safety item was answered above its threshold (PHQ-9 item 9 > 0). It stays open
-- until the therapist marks it reviewed; raising and reviewing it are audited, and its email (through
-- the outbox, kind therapist.review_alert) says only that a client's answers need review.
CREATE TABLE safety_alerts (
    id           uuid PRIMARY KEY,
    therapist_id uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    client_id    uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    response_id  uuid NOT NULL UNIQUE REFERENCES measure_responses (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    reviewed_at  timestamptz,
    reviewed_by  uuid REFERENCES therapists (id) ON DELETE SET NULL,
    CONSTRAINT safety_alerts_reviewed_together CHECK (reviewed_at IS NOT NULL OR reviewed_by IS NULL)
);
-- The dashboard's and the room's question: which alerts of this therapist are still open.
CREATE INDEX safety_alerts_open ON safety_alerts (therapist_id, created_at) WHERE reviewed_at IS NULL;
CREATE INDEX safety_alerts_client ON safety_alerts (client_id, created_at);
