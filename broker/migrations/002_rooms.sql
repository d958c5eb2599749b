-- Video rooms: room-token signing keys, once-only token use, attendance (ids and timestamps only).

-- ES256 signing keys. The current key has retire_after NULL; a rotated-out key keeps verifying
-- until retire_after (when every token it signed has expired) and is then neither served nor
-- accepted. private_pem is read only to sign; the JWKS endpoint selects public_jwk alone.
CREATE TABLE signing_keys (
    kid          text PRIMARY KEY CHECK (kid ~ '^[A-Za-z0-9_-]{8,64}$'),
    private_pem  text NOT NULL,
    public_jwk   jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    retire_after timestamptz
);
-- At most one current key, whatever number of nodes start or rotate at once.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((true)) WHERE retire_after IS NULL;

-- A room token's jti opens one signaling connection, once: the primary key is the rule, across nodes.
-- Rows may be pruned once the token has expired (an expired token is refused anyway).
CREATE TABLE room_token_uses (
    jti         text PRIMARY KEY CHECK (length(jti) BETWEEN 16 AND 64),
    booking_id  uuid NOT NULL,
    participant text NOT NULL CHECK (length(participant) <= 64),
    used_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX room_token_uses_expires ON room_token_uses (expires_at);

-- Who joined, was admitted, left or was removed, and when: identifiers only, never names.
CREATE TABLE attendance_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id  uuid NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    participant text NOT NULL CHECK (length(participant) <= 64),
    role        text NOT NULL CHECK (role IN ('therapist', 'client')),
    event       text NOT NULL CHECK (event IN ('joined', 'admitted', 'left', 'removed')),
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attendance_events_booking ON attendance_events (booking_id, at, id);
