"""Bookings: create, read, cancel, reschedule. PostgreSQL's exclusion constraint is the guarantee.

The application checks a requested time against the same slot rules the booking page
uses, for a friendly error; the `bookings_no_overlap` constraint then decides, across any
number of nodes. Under contention PostgreSQL may answer a losing insert with a deadlock
(40P01) rather than an exclusion violation (23P01): both mean someone else got the time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg
from asyncpg import Range

from broker import audit, credentials, schemas, therapists
from broker.auth import Principal
from broker.problems import Problem, invalid, not_found
from broker.state import BusySource
from broker.zones import zone
from calendars.slots import Span, offer_problem

INSERT_BOOKING = """
INSERT INTO bookings (id, therapist_id, session_type_id, starts_at, ends_at, blocked,
    client_name, client_email, client_phone, client_timezone, key_hash, client_location)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
# A booking with what `booking_out` shows of its session type and therapist.
_SELECT_BOOKINGS = """
SELECT b.*, st.name AS session_type_name, st.duration_minutes,
       t.slug AS therapist_slug, t.name AS therapist_name, t.timezone AS therapist_timezone
FROM bookings b
JOIN session_types st ON st.id = b.session_type_id
JOIN therapists t ON t.id = b.therapist_id
"""
SELECT_BOOKING = _SELECT_BOOKINGS + "WHERE b.id = $1"
SELECT_THERAPIST_BOOKINGS = (
    _SELECT_BOOKINGS
    + """WHERE b.therapist_id = $1 AND b.starts_at < $3 AND b.ends_at > $2 AND ($4::text IS NULL OR b.status = $4)
ORDER BY b.starts_at
LIMIT 2000
"""
)
SELECT_BUSY = """
SELECT lower(blocked) AS start, upper(blocked) AS end FROM bookings
WHERE therapist_id = $1 AND status = 'confirmed' AND blocked && $2 AND id IS DISTINCT FROM $3
"""
CANCEL_BOOKING = """
UPDATE bookings SET status = 'cancelled', cancelled_at = now(), updated_at = now(), sequence = sequence + 1
WHERE id = $1 AND status = 'confirmed'
"""
RESCHEDULE_BOOKING = """
UPDATE bookings SET starts_at = $2, ends_at = $3, blocked = $4, sequence = sequence + 1, updated_at = now()
WHERE id = $1 AND status = 'confirmed'
"""


_OFFER_REASONS = {
    "in_past": "That time has already passed.",
    "too_soon": "That time is sooner than this session type's minimum notice.",
    "beyond_horizon": "That time is further ahead than this therapist takes bookings.",
    "not_on_grid": "That is not one of the times this therapist offers.",
}


def slot_taken() -> Problem:
    return Problem(409, "slot_unavailable", "That time is no longer available. Please choose another.")


def is_contention(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.ExclusionViolationError | asyncpg.DeadlockDetectedError)


async def busy_spans(
    conn: asyncpg.Connection | asyncpg.Pool,
    therapist_id: uuid.UUID,
    span: Span,
    *,
    exclude: uuid.UUID | None = None,
    sources: Sequence[BusySource] = (),
) -> list[Span]:
    """Busy time overlapping `span`: confirmed bookings (with buffers) and any extra sources."""
    rows = await conn.fetch(SELECT_BUSY, therapist_id, Range(span.start, span.end), exclude)
    spans = [Span(r["start"], r["end"]) for r in rows]
    for source in sources:
        spans.extend(await source(conn, therapist_id, span))
    return spans


async def check_offered(
    conn: asyncpg.Connection | asyncpg.Pool,
    therapist: asyncpg.Record,
    session_type: asyncpg.Record,
    start: dt.datetime,
    now: dt.datetime,
    *,
    exclude: uuid.UUID | None = None,
    sources: Sequence[BusySource] = (),
) -> None:
    """422 `slot_not_offered` if the time could never be booked; 409 `slot_unavailable` if it is taken."""
    av, _ = await therapists.load_availability(conn, therapist["id"], therapist["timezone"])
    rules = therapists.rules_of(session_type)
    reason = offer_problem(av, rules, start, now)
    if reason is not None:
        raise invalid(_OFFER_REASONS[reason], code="slot_not_offered", reason=reason)
    blocked = rules.blocked(start)
    if await busy_spans(conn, therapist["id"], blocked, exclude=exclude, sources=sources):
        raise slot_taken()


async def insert_booking(
    conn: asyncpg.Connection,
    therapist: asyncpg.Record,
    session_type: asyncpg.Record,
    body: schemas.BookingIn,
    actor: Principal,
) -> tuple[uuid.UUID, str, Span]:
    """Insert a confirmed booking; returns its id, the plaintext key (never stored) and its times."""
    rules = therapists.rules_of(session_type)
    start = body.start.astimezone(dt.UTC)
    end = start + dt.timedelta(minutes=rules.duration)
    blocked = rules.blocked(start)
    booking_id = uuid.uuid4()
    key = credentials.new_secret(credentials.BOOKING_KEY)
    try:
        async with conn.transaction():  # a savepoint when nested: a losing insert leaves the caller usable
            await conn.execute(
                INSERT_BOOKING,
                booking_id,
                therapist["id"],
                session_type["id"],
                start,
                end,
                Range(blocked.start, blocked.end),
                body.client.name,
                body.client.email,
                body.client.phone,
                body.client_timezone,
                credentials.secret_hash(key),
                body.client.location,
            )
            await audit.record(conn, actor, "booking.created", booking_id=booking_id, therapist_id=therapist["id"])
    except (asyncpg.ExclusionViolationError, asyncpg.DeadlockDetectedError):
        raise slot_taken() from None
    return booking_id, key, Span(start, end)


async def fetch_booking(conn: asyncpg.Connection | asyncpg.Pool, booking_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(SELECT_BOOKING, booking_id)
    if row is None:
        raise not_found("booking")
    return row


def booking_out(row: asyncpg.Record) -> schemas.BookingOut:
    return schemas.BookingOut(
        id=str(row["id"]),
        status=row["status"],
        start=row["starts_at"],
        end=row["ends_at"],
        session_type=schemas.SessionTypeSummary(
            id=str(row["session_type_id"]), name=row["session_type_name"], duration_minutes=row["duration_minutes"]
        ),
        therapist=schemas.TherapistSummary(
            slug=row["therapist_slug"], name=row["therapist_name"], timezone=row["therapist_timezone"]
        ),
        client=schemas.ClientOut(
            name=row["client_name"],
            email=row["client_email"],
            phone=row["client_phone"],
            location=row["client_location"],
        ),
        client_timezone=row["client_timezone"],
        sequence=row["sequence"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        cancelled_at=row["cancelled_at"],
        manage_path=f"/manage/{row['id']}",
        join_path=f"/join/{row['id']}",
    )


async def cancel(conn: asyncpg.Connection, booking_id: uuid.UUID, actor: Principal, now: dt.datetime) -> asyncpg.Record:
    """Cancel a booking; cancelling a cancelled booking changes nothing and is not an error."""
    async with conn.transaction():
        row = await fetch_booking(conn, booking_id)
        if row["status"] == "cancelled":
            return row
        if row["ends_at"] <= now:
            raise Problem(409, "booking_finished", "This session has already taken place.")
        await conn.execute(CANCEL_BOOKING, booking_id)
        await audit.record(conn, actor, "booking.cancelled", booking_id=booking_id, therapist_id=row["therapist_id"])
        return await fetch_booking(conn, booking_id)


async def reschedule(
    conn: asyncpg.Connection,
    booking_id: uuid.UUID,
    new_start: dt.datetime,
    actor: Principal,
    now: dt.datetime,
    sources: Sequence[BusySource] = (),
) -> asyncpg.Record:
    """Move a booking in one UPDATE: if the new time is taken the old booking stands untouched (409)."""
    row = await fetch_booking(conn, booking_id)
    if row["status"] != "confirmed":
        raise Problem(409, "booking_cancelled", "A cancelled booking cannot be rescheduled; book a new time.")
    if row["starts_at"] <= now:
        raise Problem(409, "booking_started", "A session that has started cannot be rescheduled.")
    therapist = await conn.fetchrow("SELECT * FROM therapists WHERE id = $1", row["therapist_id"])
    session_type = await conn.fetchrow("SELECT * FROM session_types WHERE id = $1", row["session_type_id"])
    start = new_start.astimezone(dt.UTC)
    await check_offered(conn, therapist, session_type, start, now, exclude=booking_id, sources=sources)
    rules = therapists.rules_of(session_type)
    blocked = rules.blocked(start)
    try:
        async with conn.transaction():
            result = await conn.execute(
                RESCHEDULE_BOOKING,
                booking_id,
                start,
                start + dt.timedelta(minutes=rules.duration),
                Range(blocked.start, blocked.end),
            )
            if result == "UPDATE 0":
                raise Problem(409, "booking_cancelled", "This booking was cancelled meanwhile.")
            await audit.record(
                conn, actor, "booking.rescheduled", booking_id=booking_id, therapist_id=row["therapist_id"]
            )
    except (asyncpg.ExclusionViolationError, asyncpg.DeadlockDetectedError):
        raise slot_taken() from None
    return await fetch_booking(conn, booking_id)


async def list_for_therapist(
    conn: asyncpg.Pool, therapist_id: uuid.UUID, span: Span, status: str | None
) -> list[asyncpg.Record]:
    if status is not None and status not in {"confirmed", "cancelled"}:
        raise invalid("`status` must be confirmed or cancelled.")
    return list(await conn.fetch(SELECT_THERAPIST_BOOKINGS, therapist_id, span.start, span.end, status))


def client_zone_ok(name: str | None) -> None:
    if name is not None:
        zone(name, "client_timezone")
