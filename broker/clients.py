"""Client records: a therapist's clients, matched on each booking by email (case-insensitive).

A first booking creates the record; later bookings with the same email (in any case) point at it.
The record belongs to the therapist: a booking from the public page never overwrites what is
there (the therapist may have corrected a name or a phone), it only fills a phone or a location
the record does not have yet. Each booking keeps the details as given when it was made.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

from broker import audit, schemas
from broker.database import Executor, record_to
from broker.errors import Conflict, NotFound
from broker.principals import PUBLIC_CLIENT, Principal

# The match, as a data-modifying CTE a statement can carry (`broker.bookings.BOOK` does): the new
# record's id, therapist, name, email, phone, location and wish for confidential messages are the
# SQL expressions `{values}`, and it writes only if `{source}` has a row. An existing record keeps
# its name, email and notes; an empty phone or location is filled, and confidential messages are
# turned on if asked (never off: that is the therapist's). It answers the record, `created` true
# for a new one.
#
# Every writer holds the therapist's times lock (`bookings.lock_times`), so two first bookings of
# one client never wait on each other here, and the row lock DO UPDATE takes queues nothing the
# times lock did not. DO UPDATE rather than DO NOTHING: it finds a record committed after the
# statement's snapshot was taken (as by the booking this one waited for at the lock), which a
# SELECT in the same statement would not see.
MATCH_OR_CREATE_FROM = """
    INSERT INTO clients AS c (id, therapist_id, name, email, phone, location, confidential_messages)
    SELECT {values} FROM {source}
    ON CONFLICT (therapist_id, lower(email)) DO UPDATE SET
        phone = coalesce(c.phone, excluded.phone),
        location = coalesce(c.location, excluded.location),
        confidential_messages = c.confidential_messages OR excluded.confidential_messages,
        updated_at = CASE
            WHEN (c.phone IS NULL AND excluded.phone IS NOT NULL)
              OR (c.location IS NULL AND excluded.location IS NOT NULL)
              OR (excluded.confidential_messages AND NOT c.confidential_messages)
            THEN now() ELSE c.updated_at END
    RETURNING c.*, c.xmax = 0 AS created
"""
MATCH_OR_CREATE = (
    "WITH client AS ("  # noqa: S608 (a constant of ours, no input: the values are $n parameters)
    + MATCH_OR_CREATE_FROM.format(values="$1, $2, $3, $4, $5, $6, $7", source="(SELECT) AS one")
    + ") SELECT * FROM client"
)
SELECT_OF_BOOKING = "SELECT c.* FROM clients c JOIN bookings b ON b.client_id = c.id WHERE b.id = $1"
SELECT_OF_SERIES = "SELECT c.* FROM clients c JOIN series s ON s.client_id = c.id WHERE s.id = $1"


class Client(msgspec.Struct, frozen=True):
    """A therapist's client: the details the therapist keeps, which bookings point at."""

    id: uuid.UUID
    therapist_id: uuid.UUID
    name: str
    email: str
    phone: str | None
    location: str | None
    notes: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    # Emails only say "you have an appointment" with the link (broker/mail).
    confidential_messages: bool = False


async def match_or_create(
    conn: Executor,
    therapist_id: uuid.UUID,
    *,
    name: str,
    email: str,
    phone: str | None,
    location: str | None,
    actor: Principal = PUBLIC_CLIENT,
    confidential: bool = False,
) -> Client:
    """The therapist's client with this email (any case), created if there is none (`MATCH_OR_CREATE_FROM`).

    Run it in the booking's transaction under the therapist's times lock (`bookings.lock_times`),
    so a booking that loses its slot leaves no new client behind. A new record is audited as
    `client.created` by `actor`."""
    row = await conn.fetchrow(MATCH_OR_CREATE, uuid.uuid4(), therapist_id, name, email, phone, location, confidential)
    assert row is not None  # the insert, or the update of the record it met
    client = record_to(Client, row)
    if row["created"]:
        await audit.record(conn, actor, "client.created", therapist_id=therapist_id, client_id=client.id)
    return client


async def of_booking(conn: Executor, booking_id: uuid.UUID) -> Client | None:
    """The client record a booking points at (None for a booking made before client records)."""
    row = await conn.fetchrow(SELECT_OF_BOOKING, booking_id)
    return None if row is None else record_to(Client, row)


async def of_series(conn: Executor, series_id: uuid.UUID) -> Client | None:
    row = await conn.fetchrow(SELECT_OF_SERIES, series_id)
    return None if row is None else record_to(Client, row)


# The list: each client with their next confirmed session and the last one they attended. A session
# was attended when its status says so or, until a therapist or the attendance record has said so,
# when the client was admitted to its room (broker.attendance records that). A series is active
# while it has a confirmed session not yet ended; the list counts them and describes the one whose
# next session comes first (the window count is taken before the LIMIT).
SELECT_SUMMARIES = """
SELECT c.id, c.name, c.email, c.phone, c.location,
       n.id AS next_id, n.starts_at AS next_start, n.ends_at AS next_end,
       a.id AS attended_id, a.starts_at AS attended_start, a.ends_at AS attended_end,
       coalesce(sr.active, 0) AS active_series, sr.id AS series_id, sr.frequency AS series_frequency,
       sr.remaining AS series_remaining, sr.last_start AS series_last_start
FROM clients c
LEFT JOIN LATERAL (
    SELECT b.id, b.starts_at, b.ends_at FROM bookings b
    WHERE b.client_id = c.id AND b.status = 'confirmed' AND b.ends_at > $2
    ORDER BY b.starts_at LIMIT 1
) n ON true
LEFT JOIN LATERAL (
    SELECT b.id, b.starts_at, b.ends_at FROM bookings b
    WHERE b.client_id = c.id AND b.starts_at <= $2 AND (
        b.status = 'attended' OR EXISTS (
            SELECT 1 FROM attendance_events ae
            WHERE ae.booking_id = b.id AND ae.role = 'client' AND ae.event = 'admitted'))
    ORDER BY b.starts_at DESC LIMIT 1
) a ON true
LEFT JOIN LATERAL (
    SELECT s.id, s.frequency, u.remaining, u.last_start, count(*) OVER () AS active
    FROM series s
    JOIN LATERAL (
        SELECT count(*) AS remaining, min(b.starts_at) AS next_start, max(b.starts_at) AS last_start
        FROM bookings b WHERE b.series_id = s.id AND b.status = 'confirmed' AND b.ends_at > $2
    ) u ON u.remaining > 0
    WHERE s.client_id = c.id
    ORDER BY u.next_start, s.id LIMIT 1
) sr ON true
WHERE c.therapist_id = $1
ORDER BY lower(c.name), c.id
LIMIT $3
"""
SELECT_CLIENT = "SELECT * FROM clients WHERE id = $1 AND therapist_id = $2"
LOCK_CLIENT = SELECT_CLIENT + " FOR UPDATE"
# A client's sessions, upcoming ($3 = true: not yet ended, soonest first) or past (latest first),
# each with its place in its series if it has one.
SELECT_SESSIONS = """
SELECT b.id, b.starts_at, b.ends_at, b.status, b.session_type_id, st.name AS session_type_name,
       st.duration_minutes, b.series_id, b.series_index, s.frequency AS series_frequency, s.count AS series_count,
       EXISTS (
           SELECT 1 FROM attendance_events ae
           WHERE ae.booking_id = b.id AND ae.role = 'client' AND ae.event = 'admitted'
       ) AS client_admitted
FROM bookings b
JOIN session_types st ON st.id = b.session_type_id
LEFT JOIN series s ON s.id = b.series_id
WHERE b.client_id = $1 AND (b.ends_at > $2) = $3
ORDER BY CASE WHEN $3 THEN b.starts_at END, b.starts_at DESC
LIMIT $4
"""
UPDATE_CLIENT = """
UPDATE clients SET name = $3, email = $4, phone = $5, location = $6, notes = $7, confidential_messages = $8,
    updated_at = now()
WHERE id = $1 AND therapist_id = $2
RETURNING *
"""
EMAIL_INDEX = "clients_therapist_email"
MAX_LISTED = 2000
MAX_SESSIONS = 200


class SessionRef(msgspec.Struct, frozen=True):
    id: uuid.UUID
    start: dt.datetime
    end: dt.datetime


class StandingSeries(msgspec.Struct, frozen=True):
    """A client's active series as the list shows it: how often, how many sessions are left, until when."""

    id: uuid.UUID
    frequency: schemas.Frequency
    remaining: int  # confirmed sessions not yet ended
    last_start: dt.datetime  # the start of the last of them


class ClientSummary(msgspec.Struct, frozen=True):
    """A row of the client list: who, how to reach them, their next session, the last attended, their series."""

    id: uuid.UUID
    name: str
    email: str
    phone: str | None
    location: str | None
    next_session: SessionRef | None
    last_attended: SessionRef | None
    series: int  # active series: with a confirmed session not yet ended
    standing_series: StandingSeries | None  # the active series whose next session comes first


class _SummaryRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    email: str
    phone: str | None
    location: str | None
    next_id: uuid.UUID | None
    next_start: dt.datetime | None
    next_end: dt.datetime | None
    attended_id: uuid.UUID | None
    attended_start: dt.datetime | None
    attended_end: dt.datetime | None
    active_series: int
    series_id: uuid.UUID | None
    series_frequency: schemas.Frequency | None
    series_remaining: int | None
    series_last_start: dt.datetime | None

    def summary(self) -> ClientSummary:
        def ref(id_: uuid.UUID | None, start: dt.datetime | None, end: dt.datetime | None) -> SessionRef | None:
            return None if id_ is None or start is None or end is None else SessionRef(id_, start, end)

        return ClientSummary(
            id=self.id,
            name=self.name,
            email=self.email,
            phone=self.phone,
            location=self.location,
            next_session=ref(self.next_id, self.next_start, self.next_end),
            last_attended=ref(self.attended_id, self.attended_start, self.attended_end),
            series=self.active_series,
            standing_series=self.standing(),
        )

    def standing(self) -> StandingSeries | None:
        if self.series_id is None or self.series_frequency is None:
            return None
        assert self.series_remaining is not None and self.series_last_start is not None  # one lateral row
        return StandingSeries(self.series_id, self.series_frequency, self.series_remaining, self.series_last_start)


class ClientSession(msgspec.Struct, frozen=True):
    """One of a client's bookings, as the client page lists it."""

    id: uuid.UUID
    starts_at: dt.datetime
    ends_at: dt.datetime
    status: schemas.BookingStatus
    session_type_id: uuid.UUID
    session_type_name: str
    duration_minutes: int
    client_admitted: bool
    series_id: uuid.UUID | None = None
    series_index: int | None = None  # 0-based
    series_frequency: schemas.Frequency | None = None
    series_count: int | None = None


class ClientRecord(msgspec.Struct, frozen=True):
    """A client with their sessions: upcoming (soonest first) and past (latest first)."""

    client: Client
    upcoming: list[ClientSession]
    past: list[ClientSession]


async def list_for_reader(
    conn: Executor, therapist_id: uuid.UUID, now: dt.datetime, reader: Principal
) -> list[ClientSummary]:
    """The therapist's clients by name (at most MAX_LISTED); every record listed is audited."""
    rows = await conn.fetch(SELECT_SUMMARIES, therapist_id, now, MAX_LISTED)
    found = [record_to(_SummaryRow, r).summary() for r in rows]
    await audit.record_clients(conn, reader, "client.listed", [c.id for c in found], therapist_id=therapist_id)
    return found


async def get(conn: Executor, therapist_id: uuid.UUID, client_id: uuid.UUID) -> Client:
    """The therapist's client; another therapist's client is not found, as an unknown one."""
    row = await conn.fetchrow(SELECT_CLIENT, client_id, therapist_id)
    if row is None:
        raise NotFound("client")
    return record_to(Client, row)


async def sessions(conn: Executor, client_id: uuid.UUID, now: dt.datetime, *, upcoming: bool) -> list[ClientSession]:
    rows = await conn.fetch(SELECT_SESSIONS, client_id, now, upcoming, MAX_SESSIONS)
    return [record_to(ClientSession, r) for r in rows]


async def read(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, client_id: uuid.UUID, now: dt.datetime, reader: Principal
) -> ClientRecord:
    """A client and their sessions, for their therapist; the record and each session listed are audited."""
    async with conn.transaction(isolation="repeatable_read"):
        client = await get(conn, therapist_id, client_id)
        record = ClientRecord(
            client=client,
            upcoming=await sessions(conn, client_id, now, upcoming=True),
            past=await sessions(conn, client_id, now, upcoming=False),
        )
        await audit.record(conn, reader, "client.read", therapist_id=therapist_id, client_id=client_id)
        listed = [s.id for s in (*record.upcoming, *record.past)]
        await audit.record_many(conn, reader, "booking.listed", listed, therapist_id=therapist_id)
    return record


async def update(
    conn: asyncpg.Connection,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID,
    changes: schemas.ClientPatch,
    actor: Principal,
) -> Client:
    """Change a client's details; Conflict `client_email_taken` if another client of the therapist has the email.

    Bookings keep the details they were made with; bookings made from now on match the new email."""
    async with conn.transaction():
        row = await conn.fetchrow(LOCK_CLIENT, client_id, therapist_id)
        if row is None:
            raise NotFound("client")
        current = record_to(Client, row)
        given = {f: getattr(changes, f) for f in schemas.ClientPatch.__struct_fields__}
        # An emptied phone, location or notes field is cleared, not kept as "".
        merged = msgspec.structs.replace(
            current, **{f: (None if v == "" else v) for f, v in given.items() if v is not msgspec.UNSET}
        )
        try:
            async with conn.transaction():
                updated = await conn.fetchrow(
                    UPDATE_CLIENT,
                    client_id,
                    therapist_id,
                    merged.name,
                    merged.email,
                    merged.phone,
                    merged.location,
                    merged.notes,
                    merged.confidential_messages,
                )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != EMAIL_INDEX:
                raise
            raise Conflict("Another of your clients has this email address.", code="client_email_taken") from None
        assert updated is not None  # locked above
        await audit.record(conn, actor, "client.updated", therapist_id=therapist_id, client_id=client_id)
        return record_to(Client, updated)
