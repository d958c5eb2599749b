-- Reaching people: the transactional outbox, webhook endpoints, and what each person chose to hear.

-- Where webhooks go. A therapist's endpoint hears about that therapist's bookings; the admin's
-- (therapist_id NULL) about every therapist's. The signing secret must be used again, so it is
-- sealed (AES-GCM under the seal key, see broker/sealing.py), never hashed; a rotated-out secret
-- keeps signing beside the new one until previous_until.
CREATE TABLE webhook_endpoints (
    id                     uuid PRIMARY KEY,
    therapist_id           uuid REFERENCES therapists (id) ON DELETE CASCADE,
    url                    text NOT NULL CHECK (length(url) BETWEEN 8 AND 2000),
    events                 text[] NOT NULL CHECK (cardinality(events) >= 1),
    description            text CHECK (length(description) <= 200),
    secret_sealed          bytea NOT NULL,
    previous_secret_sealed bytea,
    previous_until         timestamptz,
    enabled                boolean NOT NULL DEFAULT true,
    disabled_reason        text CHECK (length(disabled_reason) <= 200),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_therapist ON webhook_endpoints (therapist_id);

-- Every message a change owes somebody, written in the change's own transaction. A row holds ids,
-- times and the kind of message, never a name, email or phone number: the sender reads what it
-- may reveal from the records when it sends. `sealed` carries a secret the message must include
-- (a password link, a client's booking key), sealed. Delivery workers on every node claim due rows
-- with FOR UPDATE SKIP LOCKED and a lease (lease_until), so a row is sent by one node at a time,
-- and by another if that node dies mid-send.
CREATE TABLE outbox (
    id              uuid PRIMARY KEY,
    channel         text NOT NULL CHECK (channel IN ('email', 'webhook')),
    kind            text NOT NULL CHECK (length(kind) BETWEEN 1 AND 60),
    recipient       text NOT NULL CHECK (recipient IN ('client', 'therapist', 'endpoint')),
    therapist_id    uuid REFERENCES therapists (id) ON DELETE CASCADE,
    booking_id      uuid REFERENCES bookings (id) ON DELETE CASCADE,
    series_id       uuid REFERENCES series (id) ON DELETE CASCADE,
    endpoint_id     uuid REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    payload         jsonb NOT NULL DEFAULT '{}',
    sealed          bytea,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed', 'withdrawn')),
    due_at          timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    lease_until     timestamptz,
    last_attempt_at timestamptz,
    last_status     integer,
    last_error      text CHECK (length(last_error) <= 300),
    delivered_at    timestamptz,
    CONSTRAINT outbox_endpoint_for_webhooks CHECK ((channel = 'webhook') = (endpoint_id IS NOT NULL)),
    CONSTRAINT outbox_endpoint_recipient CHECK ((recipient = 'endpoint') = (endpoint_id IS NOT NULL))
);
-- What the workers scan: due pending rows, oldest first.
CREATE INDEX outbox_due ON outbox (due_at) WHERE state = 'pending';
-- Reminders a reschedule or cancellation withdraws; a booking's messages for the dashboard.
CREATE INDEX outbox_booking ON outbox (booking_id) WHERE booking_id IS NOT NULL;
CREATE INDEX outbox_therapist ON outbox (therapist_id, created_at DESC);
CREATE INDEX outbox_endpoint ON outbox (endpoint_id, created_at DESC) WHERE endpoint_id IS NOT NULL;

-- What a therapist chose to hear, and to let emails say.
ALTER TABLE therapists
    -- email me about new bookings and cancellations
    ADD COLUMN notify_bookings boolean NOT NULL DEFAULT false,
    -- how much of the client those notices name: busy (nothing), initials, full (name)
    ADD COLUMN notice_detail text NOT NULL DEFAULT 'busy' CHECK (notice_detail IN ('busy', 'initials', 'full')),
    -- let clients' emails name the session type (off: "your appointment")
    ADD COLUMN email_session_type boolean NOT NULL DEFAULT false;

-- A client who asked for confidential messages gets only "you have an appointment, open your link".
ALTER TABLE clients ADD COLUMN confidential_messages boolean NOT NULL DEFAULT false;

-- When a session type's reminders go out, in minutes before the session (default a day and an hour).
ALTER TABLE session_types ADD COLUMN reminder_minutes integer[] NOT NULL DEFAULT '{1440,60}'
    CHECK (cardinality(reminder_minutes) <= 5 AND 0 < ALL (reminder_minutes) AND 20160 >= ALL (reminder_minutes));
