-- Calendars: subscription feeds (secret URLs, stored hashed) and external busy calendars.

CREATE TABLE feeds (
    id           uuid PRIMARY KEY,
    therapist_id uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL,
    privacy      text NOT NULL CHECK (privacy IN ('busy', 'initials', 'full')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    CONSTRAINT feeds_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX feeds_therapist ON feeds (therapist_id);

-- An ICS address the therapist gave us (a Google/iCloud/Outlook "secret address"). The URL is a
-- secret we must keep in clear to fetch it: it is never logged and the API only shows it masked.
-- `body` is the last good copy, kept so a 304 or a moved window can be re-expanded without a fetch.
CREATE TABLE busy_calendars (
    id              uuid PRIMARY KEY,
    therapist_id    uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    position        integer NOT NULL,
    url             text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
    etag            text,
    last_modified   text,
    body            bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_fetched_at timestamptz,
    last_success_at timestamptz,
    last_error      text,
    next_fetch_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT busy_calendars_url_key UNIQUE (therapist_id, url)
);
-- Background workers on every node claim due rows with FOR UPDATE SKIP LOCKED in this order.
CREATE INDEX busy_calendars_due ON busy_calendars (next_fetch_at);

-- The expanded busy time of each calendar's last good copy, replaced whole on every success.
CREATE TABLE busy_events (
    calendar_id  uuid NOT NULL REFERENCES busy_calendars (id) ON DELETE CASCADE,
    therapist_id uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    span         tstzrange NOT NULL CHECK (NOT isempty(span))
);
CREATE INDEX busy_events_calendar ON busy_events (calendar_id);
CREATE INDEX busy_events_therapist_span ON busy_events USING gist (therapist_id, span);
