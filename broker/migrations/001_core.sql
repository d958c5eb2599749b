-- Scheduling core: therapists, credentials, availability, session types, bookings, audit.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE therapists (
    id         uuid PRIMARY KEY,
    slug       text NOT NULL,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email      text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    timezone   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT therapists_slug_key UNIQUE (slug),
    CONSTRAINT therapists_slug_format CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$')
);
CREATE UNIQUE INDEX therapists_email_key ON therapists (lower(email));

-- Bearer tokens for therapists; only the SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    token_hash   bytea PRIMARY KEY,
    therapist_id uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE INDEX api_tokens_therapist ON api_tokens (therapist_id);

-- Weekly wall-clock rules and date overrides, in the zone they were written in.
CREATE TABLE availability (
    therapist_id uuid PRIMARY KEY REFERENCES therapists (id) ON DELETE CASCADE,
    timezone     text NOT NULL,
    weekly       jsonb NOT NULL,
    overrides    jsonb NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE session_types (
    id                     uuid PRIMARY KEY,
    therapist_id           uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    duration_minutes       integer NOT NULL CHECK (duration_minutes BETWEEN 5 AND 480),
    buffer_before_minutes  integer NOT NULL CHECK (buffer_before_minutes BETWEEN 0 AND 240),
    buffer_after_minutes   integer NOT NULL CHECK (buffer_after_minutes BETWEEN 0 AND 240),
    min_notice_minutes     integer NOT NULL CHECK (min_notice_minutes BETWEEN 0 AND 525600),
    horizon_days           integer NOT NULL CHECK (horizon_days BETWEEN 1 AND 730),
    slot_interval_minutes  integer NOT NULL CHECK (slot_interval_minutes BETWEEN 5 AND 1440),
    active                 boolean NOT NULL DEFAULT true,
    created_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_types_therapist ON session_types (therapist_id);

CREATE TABLE bookings (
    id               uuid PRIMARY KEY,
    therapist_id     uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    session_type_id  uuid NOT NULL REFERENCES session_types (id),
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    -- The session plus its buffers: what no other confirmed booking may touch.
    blocked          tstzrange NOT NULL,
    status           text NOT NULL DEFAULT 'confirmed' CHECK (status IN ('confirmed', 'cancelled')),
    client_name      text NOT NULL CHECK (length(client_name) BETWEEN 1 AND 200),
    client_email     text NOT NULL CHECK (length(client_email) BETWEEN 3 AND 254),
    client_phone     text CHECK (length(client_phone) <= 40),
    client_timezone  text,
    key_hash         bytea NOT NULL,
    sequence         integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    cancelled_at     timestamptz,
    CONSTRAINT bookings_key_hash_key UNIQUE (key_hash),
    CONSTRAINT bookings_time_order CHECK (ends_at > starts_at),
    CONSTRAINT bookings_blocked_covers CHECK (blocked @> tstzrange(starts_at, ends_at)),
    CONSTRAINT bookings_no_overlap EXCLUDE USING gist (therapist_id WITH =, blocked WITH &&)
        WHERE (status = 'confirmed')
);
CREATE INDEX bookings_therapist_start ON bookings (therapist_id, starts_at);

-- A retried POST with the same Idempotency-Key gets the first answer back. The key is kept
-- hashed and the answer sealed with a key derived from it: the answer holds the booking key.
CREATE TABLE idempotency_keys (
    therapist_id    uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    key_hash        bytea NOT NULL,
    request_hash    bytea NOT NULL,
    response_status integer,
    response_sealed bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (therapist_id, key_hash)
);

-- Who created, changed, cancelled or read a booking, and when. Ids only; never updated or deleted.
CREATE TABLE audit_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor_kind   text NOT NULL CHECK (actor_kind IN ('client', 'therapist', 'admin', 'system')),
    actor_id     text,
    action       text NOT NULL,
    booking_id   uuid,
    therapist_id uuid
);
CREATE INDEX audit_events_booking ON audit_events (booking_id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Admin bearer tokens (hashed); TELEROOM_ADMIN_TOKEN is accepted in addition.
CREATE TABLE admin_tokens (
    token_hash bytea PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
