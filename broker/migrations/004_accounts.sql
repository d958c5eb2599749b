-- Therapist accounts for the dashboard: passwords, one-time links, server-side sessions, login throttling.
-- Every time below comes from the service clock (not now()), so tests can move time.

-- argon2id hashes only (the PHC string names the algorithm and its parameters).
CREATE TABLE therapist_passwords (
    therapist_id  uuid PRIMARY KEY REFERENCES therapists (id) ON DELETE CASCADE,
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    updated_at    timestamptz NOT NULL
);

-- One-time links to choose a password: `invite` for a new therapist, `reset` after "forgot password".
-- Only the SHA-256 of the link's secret is kept; a link works once (used_at) and until expires_at.
CREATE TABLE password_links (
    token_hash   bytea PRIMARY KEY,
    therapist_id uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    purpose      text NOT NULL CHECK (purpose IN ('invite', 'reset')),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    CONSTRAINT password_links_expiry CHECK (expires_at > created_at)
);
CREATE INDEX password_links_open ON password_links (therapist_id) WHERE used_at IS NULL;

-- Dashboard sessions. The cookie holds a random secret; only its SHA-256 is stored. An ended
-- session keeps its row (with the reason) for a while so the next page can say why it ended.
CREATE TABLE web_sessions (
    id_hash      bytea PRIMARY KEY,
    therapist_id uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    end_reason   text CHECK (end_reason IN ('logout', 'idle', 'expired', 'password_changed')),
    CONSTRAINT web_sessions_end_reason CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
CREATE INDEX web_sessions_live ON web_sessions (therapist_id) WHERE ended_at IS NULL;
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- Login and reset attempts, for throttling. Email and address are kept as SHA-256 only.
CREATE TABLE login_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('login', 'reset')),
    email_hash   bytea NOT NULL,
    address_hash bytea NOT NULL,
    succeeded    boolean NOT NULL
);
CREATE INDEX login_attempts_email ON login_attempts (email_hash, at);
CREATE INDEX login_attempts_address ON login_attempts (address_hash, at);
