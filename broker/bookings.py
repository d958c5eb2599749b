"""Bookings: create, read, cancel, reschedule. PostgreSQL's exclusion constraint is the guarantee.

The application checks a requested time against the same slot rules the booking page
uses, for a friendly error; the `bookings_no_overlap` constraint then decides, across any
number of nodes. Every change to a therapist's booked times (a booking, a series, a move) first
takes that therapist's transaction-scoped advisory lock (`lock_times`), so racing requests queue
instead of meeting inside the constraint: two uncommitted overlapping inserts each wait for the
other there, which PostgreSQL breaks as a deadlock only after `deadlock_timeout`.

Since the lock serialises one therapist's bookings until each commits, a new booking does all it
can before taking it (its session type, the rules, busy time from other calendars, the messages
its notice owes, `broker.notices`) and then writes everything in one statement that takes the
lock (`BOOK`): the client record, the booking, their audit rows and the messages. Without an
Idempotency-Key that statement is the whole transaction, so the lock is held for one statement and
no round trip. It does not look for other bookings in its way first: the constraint refuses an
overlap as surely, and that query would run under the lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import typing
import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal

import asyncpg
import msgspec
from aiohttp import web
from asyncpg import Range

from broker import (
    audit,
    availability,
    bookable,
    busy_calendars,
    clients,
    credentials,
    idempotency,
    licences,
    outbox,
    places,
    policies,
    schemas,
    session_types,
    webhooks,
)
from broker.database import Executor, record_to
from broker.errors import Conflict, InvalidInput, NotFound, TeleroomError, invalid
from broker.notices import SILENT, Notice, NoticeKind, Notices
from broker.principals import PUBLIC_CLIENT, Principal
from broker.session_types import SessionType
from broker.therapists import Therapist
from broker.zones import zone
from calendars.slots import SessionRules, Span, offer_problem

# Extra busy time besides bookings (external calendars plug in here): (conn, therapist, span) -> spans.
BusySource = Callable[[Executor, uuid.UUID, Span], Awaitable[Sequence[Span]]]
BUSY_SOURCES = web.AppKey("busy_sources", list[BusySource])

INSERT_BOOKING = """
INSERT INTO bookings (id, therapist_id, session_type_id, starts_at, ends_at, blocked,
    client_name, client_email, client_phone, client_timezone, key_hash, client_location, client_id,
    series_id, series_index)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
"""
# The same insert, taking the therapist's times lock (see `lock_times`) in the same statement: the
# lock is the row the insert selects from, so it is held before the new row meets
# bookings_no_overlap, and a round trip sooner than a statement of its own would hold it.
INSERT_LOCKED = """
INSERT INTO bookings (id, therapist_id, session_type_id, starts_at, ends_at, blocked,
    client_name, client_email, client_phone, client_timezone, key_hash, client_location, client_id,
    series_id, series_index, client_country, client_region)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $18, $19
FROM (SELECT pg_advisory_xact_lock($16, $17)) AS times_locked
"""


# A public booking in one statement (so without a transaction round trip of its own): it takes
# the therapist's times lock (see `lock_times`), then writes the client record, the booking, their
# audit rows and the outbox messages the booking's notice hooks made beforehand, or nothing.
#
# It writes only if what the booking was checked against and told about is still what is stored
# (`broker.bookable`): the session type active with the same rules ($20-$25) and reminder minutes
# ($27), the therapist's hours last changed at $26, their notice setting ($32) and the webhook
# endpoints that listen ($33). When the booking skipped the busy-calendar query ($30 false: this
# node saw no calendar of the therapist's last time) or the licence check ($31 false: no licence
# rule refused), it writes only if that is still so, and it answers both for the node's next
# booking. `made` false: nothing was written (something changed, or a check has work now).
#
# The client record ($13 is the id a new one gets, $34 the wish for confidential messages) is
# matched by email under the lock (`clients.MATCH_OR_CREATE_FROM`). The actor is $28, $29; the
# messages' columns are $35-$46 (`outbox.columns`).
def _book(*, keyed: bool) -> str:
    """BOOK, or BOOK_KEYED: the same with the key's claim between the lock and the writes."""
    claim = idempotency.CLAIM_FROM.format(scope="$2", values=("$47", "$48", "$49"), source="allowed")
    claimed = f"claimed AS ({claim}), " if keyed else ""
    client = clients.MATCH_OR_CREATE_FROM.format(
        values="$13, $2, $7, $8, $9, $12, $34", source="claimed" if keyed else "allowed"
    )
    return f"""
WITH allowed AS (
    SELECT FROM (SELECT pg_advisory_xact_lock($16, $17)) AS times_locked
    WHERE EXISTS (
        SELECT FROM session_types st
        WHERE st.id = $3 AND st.therapist_id = $2 AND st.active
          AND (st.duration_minutes, st.buffer_before_minutes, st.buffer_after_minutes, st.min_notice_minutes,
               st.horizon_days, st.slot_interval_minutes) = ($20, $21, $22, $23, $24, $25)
          AND st.reminder_minutes = $27::int[]
    ) AND (SELECT a.updated_at FROM availability a WHERE a.therapist_id = $2) IS NOT DISTINCT FROM $26
      AND ($30 OR NOT {busy_calendars.HAS_CALENDARS}) AND ($31 OR NOT {licences.REFUSES})
      AND (SELECT t.notify_bookings FROM therapists t WHERE t.id = $2) = $32
      AND {webhooks.LISTENER_IDS} = $33::uuid[]
), {claimed}client AS ({client}
), client_logged AS (
    INSERT INTO audit_events (actor_kind, actor_id, action, therapist_id, client_id)
    SELECT $28, $29, 'client.created', $2, client.id FROM client WHERE client.created
), made AS (
    INSERT INTO bookings (id, therapist_id, session_type_id, starts_at, ends_at, blocked,
        client_name, client_email, client_phone, client_timezone, key_hash, client_location, client_id,
        series_id, series_index, client_country, client_region)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, client.id, $14, $15, $18, $19 FROM client
    RETURNING id, therapist_id
), logged AS (
    INSERT INTO audit_events (actor_kind, actor_id, action, booking_id, therapist_id)
    SELECT $28, $29, 'booking.created', made.id, made.therapist_id FROM made
), queued AS (
    INSERT INTO outbox ({outbox.COLUMNS})
    SELECT m.* FROM made, {outbox.unnest_messages(35)} AS m
)
SELECT EXISTS (SELECT FROM made) AS made,
       {busy_calendars.HAS_CALENDARS} AS any_calendar, {licences.REFUSES} AS licences_refuse
"""  # noqa: S608 (constants of ours, no input: the values are $n parameters)


BOOK = _book(keyed=False)
# With an Idempotency-Key: after the lock it claims the key ($47-$49: `idempotency.claim_values`)
# with the booking's answer, and writes the rest only if it claimed it.
BOOK_KEYED = _book(keyed=True)
# Who hears of a therapist's new bookings (`bookable.Audience`), for a node that does not know yet.
SELECT_AUDIENCE = f"SELECT t.notify_bookings, {webhooks.LISTENER_IDS_OF.format(therapist='t.id')} AS listeners FROM therapists t WHERE t.id = $1"  # noqa: S608, E501
# How many times a booking reads its rules afresh when they keep changing under it.
CHECKED_TRIES = 3
# A booking with what `Booking` carries of its session type, therapist and cancellation policy.
_SELECT_BOOKINGS = """
SELECT b.*, st.name AS session_type_name, st.duration_minutes,
       t.slug AS therapist_slug, t.name AS therapist_name, t.timezone AS therapist_timezone,
       p.version AS policy_version, p.window_hours AS policy_window_hours, p.text AS policy_text,
       p.late_cancel_amount, p.late_cancel_currency, p.no_show_amount, p.no_show_currency
FROM bookings b
JOIN session_types st ON st.id = b.session_type_id
JOIN therapists t ON t.id = b.therapist_id
LEFT JOIN cancellation_policies p ON p.id = b.policy_id
"""
SELECT_BOOKING = _SELECT_BOOKINGS + "WHERE b.id = $1"
SELECT_THERAPIST_BOOKINGS = (
    _SELECT_BOOKINGS
    + """WHERE b.therapist_id = $1 AND b.starts_at < $3 AND b.ends_at > $2 AND ($4::text IS NULL OR b.status = $4)
ORDER BY b.starts_at
LIMIT 2000
"""
)
SELECT_BY_KEY = "SELECT id, therapist_id FROM bookings WHERE key_hash = $1"
SELECT_OWNER = "SELECT therapist_id FROM bookings WHERE id = $1"
SELECT_SERIES_OF = "SELECT series_id FROM bookings WHERE id = $1"
# A session marked attended or no_show has started: it leaves the exclusion constraint (which
# guards confirmed bookings only) but its remaining time and buffers stay busy here.
SELECT_BUSY = """
SELECT lower(blocked) AS start, upper(blocked) AS end FROM bookings
WHERE therapist_id = $1 AND status IN ('confirmed', 'attended', 'no_show') AND blocked && $2
  AND id IS DISTINCT FROM $3
"""
# The advisory-lock key space (namespace, therapist) that serialises changes to one therapist's times.
TIMES_LOCK_NAMESPACE = 0x7E1E_0003
LOCK_TIMES = "SELECT pg_advisory_xact_lock($1, $2)"
CANCEL_BOOKING = """
UPDATE bookings SET status = $2, cancelled_at = now(), updated_at = now(), sequence = sequence + 1
WHERE id = $1 AND status = 'confirmed'
"""
SET_OUTCOME = """
UPDATE bookings SET status = $2, updated_at = now()
WHERE id = $1 AND status IN ('confirmed', 'attended', 'no_show') AND status <> $2
"""
RESCHEDULE_BOOKING = """
UPDATE bookings SET starts_at = $2, ends_at = $3, blocked = $4, sequence = sequence + 1, updated_at = now()
WHERE id = $1 AND status = 'confirmed'
"""

Status = schemas.BookingStatus
CANCELLED: tuple[Status, ...] = ("cancelled", "late_cancelled")


class Booking(msgspec.Struct, frozen=True):
    """A booking with the names of its session type and therapist, as every reader needs them."""

    id: uuid.UUID
    therapist_id: uuid.UUID
    session_type_id: uuid.UUID
    status: Status
    starts_at: dt.datetime
    ends_at: dt.datetime
    client_name: str
    client_email: str
    client_phone: str | None
    client_location: str | None
    client_timezone: str | None
    sequence: int
    created_at: dt.datetime
    updated_at: dt.datetime
    cancelled_at: dt.datetime | None
    session_type_name: str
    duration_minutes: int
    therapist_slug: str
    therapist_name: str
    therapist_timezone: str
    series_id: uuid.UUID | None = None
    # Where the client said, when booking, they will be (ISO 3166 codes; client_location is the note).
    client_country: str | None = None
    client_region: str | None = None
    # The cancellation policy version it was booked under (none if its type had none then).
    policy_id: uuid.UUID | None = None
    policy_version: int | None = None
    policy_window_hours: int | None = None
    policy_text: str | None = None
    late_cancel_amount: Decimal | None = None
    late_cancel_currency: str | None = None
    no_show_amount: Decimal | None = None
    no_show_currency: str | None = None

    @property
    def policy(self) -> policies.Policy | None:
        if self.policy_id is None or self.policy_version is None or self.policy_window_hours is None:
            return None
        return policies.Policy(
            id=self.policy_id,
            version=self.policy_version,
            window_hours=self.policy_window_hours,
            text=self.policy_text or "",
            late_cancel_amount=self.late_cancel_amount,
            late_cancel_currency=self.late_cancel_currency,
            no_show_amount=self.no_show_amount,
            no_show_currency=self.no_show_currency,
        )

    def to_wire(self, now: dt.datetime | None = None) -> schemas.BookingOut:
        """The wire form; given `now`, with what a client's cancellation now would be (while confirmed)."""
        policy = self.policy
        return schemas.BookingOut(
            id=str(self.id),
            status=self.status,
            start=self.starts_at,
            end=self.ends_at,
            session_type=schemas.SessionTypeSummary(
                id=str(self.session_type_id), name=self.session_type_name, duration_minutes=self.duration_minutes
            ),
            therapist=schemas.TherapistSummary(
                slug=self.therapist_slug, name=self.therapist_name, timezone=self.therapist_timezone
            ),
            client=schemas.ClientOut(
                name=self.client_name,
                email=self.client_email,
                phone=self.client_phone,
                location=self.client_location,
                country=self.client_country,
                region=self.client_region,
            ),
            client_timezone=self.client_timezone,
            sequence=self.sequence,
            created_at=self.created_at,
            updated_at=self.updated_at,
            cancelled_at=self.cancelled_at,
            manage_path=f"/manage/{self.id}",
            join_path=f"/join/{self.id}",
            series_id=None if self.series_id is None else str(self.series_id),
            policy=policy.to_wire() if policy is not None else None,
            cancel_now=(
                policies.cancel_now(policy, self.starts_at, now)
                if now is not None and self.status == "confirmed"
                else None
            ),
        )


class BookingRef(msgspec.Struct, frozen=True):
    """Which booking a key opens, and whose it is."""

    id: uuid.UUID
    therapist_id: uuid.UUID


class NewBooking(msgspec.Struct, frozen=True):
    """A booking just made: its id, its times and the key, which exists only in this answer."""

    id: uuid.UUID
    start: dt.datetime
    end: dt.datetime
    key: str


class _Booked(msgspec.Struct, frozen=True):
    """What BOOK answers: whether it wrote the booking, and for the therapist's next booking on
    this node, what the checks it may skip found."""

    made: bool
    any_calendar: bool
    licences_refuse: bool


class _Audience(msgspec.Struct, frozen=True):
    notify_bookings: bool
    listeners: list[uuid.UUID]


async def audience(conn: Executor, therapist_id: uuid.UUID) -> bookable.Audience:
    """Who hears of the therapist's new bookings, read now."""
    row = record_to(_Audience, await conn.fetchrow(SELECT_AUDIENCE, therapist_id))
    return bookable.Audience(row.notify_bookings, tuple(row.listeners))


_OFFER_REASONS = {
    "in_past": "That time has already passed.",
    "too_soon": "That time is sooner than this session type's minimum notice.",
    "beyond_horizon": "That time is further ahead than this therapist takes bookings.",
    "not_on_grid": "That is not one of the times this therapist offers.",
}


def not_offered(reason: str) -> InvalidInput:
    """422 `slot_not_offered`, saying why (`calendars.slots.offer_problem`'s reason) the time is never offered."""
    return invalid(_OFFER_REASONS[reason], code="slot_not_offered", reason=reason)


def slot_taken() -> Conflict:
    return Conflict("That time is no longer available. Please choose another.", code="slot_unavailable")


async def lock_times(conn: Executor, therapist_id: uuid.UUID) -> None:
    """Hold until the transaction ends the right to add or move this therapist's bookings.

    A series or a move takes it before its busy check, so the check sees every booking committed
    before it; a single booking takes it in its one statement (BOOK). Either way no insert waits
    on another uncommitted one: contention is a queue, never a deadlock. Two
    therapists whose ids share a 32-bit prefix merely queue together. Needs a transaction.

    A therapist's client records are written under it too, by a booking and a series alike: had
    one taken the lock after writing a new client record, a holder of the lock that met that
    uncommitted record would wait for it, and close a cycle."""
    await conn.execute(LOCK_TIMES, TIMES_LOCK_NAMESPACE, _times_key(therapist_id))


def _times_key(therapist_id: uuid.UUID) -> int:
    return int.from_bytes(therapist_id.bytes[:4], "big", signed=True)


async def busy_spans(
    conn: Executor,
    therapist_id: uuid.UUID,
    span: Span,
    *,
    exclude: uuid.UUID | None = None,
    sources: Sequence[BusySource] = (),
) -> list[Span]:
    """Busy time overlapping `span`: confirmed bookings (with buffers) and any extra sources."""
    rows = await conn.fetch(SELECT_BUSY, therapist_id, Range(span.start, span.end), exclude)
    spans = [record_to(Span, r) for r in rows]
    for source in sources:
        spans.extend(await source(conn, therapist_id, span))
    return spans


async def check_offered(
    conn: Executor,
    therapist_id: uuid.UUID,
    therapist_zone: str,
    session_type: SessionType,
    start: dt.datetime,
    now: dt.datetime,
    *,
    exclude: uuid.UUID | None = None,
    sources: Sequence[BusySource] = (),
) -> None:
    """Invalid `slot_not_offered` if the time could never be booked; Conflict `slot_unavailable` if taken."""
    rules = session_type.rules
    await check_rules(conn, therapist_id, therapist_zone, rules, start, now)
    if await busy_spans(conn, therapist_id, rules.blocked(start), exclude=exclude, sources=sources):
        raise slot_taken()


async def check_rules(
    conn: Executor,
    therapist_id: uuid.UUID,
    therapist_zone: str,
    rules: SessionRules,
    start: dt.datetime,
    now: dt.datetime,
) -> None:
    """Invalid `slot_not_offered` if the therapist's hours and the type's rules never offer this time."""
    av, _ = await availability.load(conn, therapist_id, therapist_zone)
    reason = offer_problem(av, rules, start, now)
    if reason is not None:
        raise not_offered(reason)


async def check_elsewhere(conn: Executor, therapist_id: uuid.UUID, span: Span, sources: Sequence[BusySource]) -> None:
    """Conflict `slot_unavailable` if busy time outside our bookings (other calendars) meets `span`."""
    for source in sources:
        if await source(conn, therapist_id, span):
            raise slot_taken()


def client_place(client: schemas.ClientIn) -> places.Place | None:
    """Where the client says they will be, checked (`invalid_place`); None when no country is given."""
    if client.country is None:
        if client.region is not None:
            raise places.bad_place("A region needs its country.", "client.country")
        return None
    return places.place(client.country, client.region)


def _new(booking_id: uuid.UUID, key: str, rules: SessionRules, body: schemas.BookingIn) -> tuple[NewBooking, Span]:
    """The booking a request makes under `rules`, and the span it blocks (buffers included)."""
    start = body.start.astimezone(dt.UTC)
    return NewBooking(booking_id, start, start + dt.timedelta(minutes=rules.duration), key), rules.blocked(start)


async def _client(conn: asyncpg.Connection, therapist: Therapist, body: schemas.BookingIn) -> clients.Client:
    c = body.client
    return await clients.match_or_create(
        conn,
        therapist.id,
        name=c.name,
        email=c.email,
        phone=c.phone,
        location=c.location,
        confidential=body.confidential_messages,
    )


def _row(
    booking: NewBooking,
    blocked: Span,
    therapist: Therapist,
    session_type: SessionType,
    body: schemas.BookingIn,
    client_id: uuid.UUID,
    series: tuple[uuid.UUID, int] | None,
) -> tuple[object, ...]:
    """INSERT_LOCKED's arguments."""
    c = body.client
    return (
        booking.id,
        therapist.id,
        session_type.id,
        booking.start,
        booking.end,
        Range(blocked.start, blocked.end),
        c.name,
        c.email,
        c.phone,
        body.client_timezone,
        credentials.secret_hash(booking.key),
        c.location,
        client_id,
        None if series is None else series[0],
        None if series is None else series[1],
        TIMES_LOCK_NAMESPACE,
        _times_key(therapist.id),
        c.country,
        c.region,
    )


async def _insert(
    conn: asyncpg.Connection,
    therapist: Therapist,
    session_type: SessionType,
    body: schemas.BookingIn,
    *,
    actor: Principal,
    series: tuple[uuid.UUID, int],
) -> NewBooking:
    """Insert a confirmed booking of a series in a savepoint, so a lost slot leaves the series'
    transaction usable; its key is returned once and stored only as a hash."""
    booking, blocked = _new(uuid.uuid4(), credentials.new_secret(credentials.BOOKING_KEY), session_type.rules, body)
    try:
        async with conn.transaction():
            client = await _client(conn, therapist, body)
            await audit.record(conn, actor, "booking.created", booking_id=booking.id, therapist_id=therapist.id)
            await conn.execute(INSERT_LOCKED, *_row(booking, blocked, therapist, session_type, body, client.id, series))
    except asyncpg.ExclusionViolationError:
        raise slot_taken() from None
    return booking


async def insert_occurrence(
    conn: asyncpg.Connection,
    therapist: Therapist,
    session_type: SessionType,
    body: schemas.BookingIn,
    *,
    series_id: uuid.UUID,
    index: int,
    actor: Principal,
) -> NewBooking:
    """One session of a standing series (`broker.series`): an ordinary booking, under the same
    constraint and audit, that points at its series. A lost slot is `slot_unavailable`.
    The caller holds `lock_times`."""
    return await _insert(conn, therapist, session_type, body, actor=actor, series=(series_id, index))


async def book(
    pool: asyncpg.Pool,
    therapist: Therapist,
    body: schemas.BookingIn,
    *,
    now: dt.datetime,
    sources: Sequence[BusySource],
    idempotency_key: str | None,
    answer: Callable[[NewBooking], bytes],
    refusal: Callable[[TeleroomError], bytes],
    notices: Notices = SILENT,
    kept: bookable.Kept | None = None,
) -> tuple[NewBooking, bytes] | idempotency.Replay:
    """Book a time on the public page, with its Idempotency-Key if one is sent.

    `answer` and `refusal` encode what the caller is told; with an Idempotency-Key that answer is
    kept (sealed, see `broker.idempotency`) so a retry with the same key and body gets it back, a
    taken slot included. Returns the new booking and its encoded answer, or the replayed answer.

    Everything the booking is checked against and the notice hooks need (the session type's rules
    and reminder minutes, the therapist's hours, who hears of bookings) comes from `kept` when this
    node has read it before (`broker.bookable`), and the hooks make the booking's messages before
    anything is written. One statement (`BOOK`, or `BOOK_KEYED`, which claims the key too) then
    takes the therapist's times lock and writes the client record, the booking, their audit rows
    and the messages, provided all that is still what is stored. It needs no transaction around
    it, so the lock is held for that statement alone. A keyed request it does not book (a retry,
    a lost time, changed rules) goes through `idempotency.once`'s transaction instead."""
    key = idempotency.check_key(idempotency_key)
    if body.client_timezone is not None:
        zone(body.client_timezone, "client_timezone")
    where = client_place(body.client)
    session_day = body.start.astimezone(zone(therapist.timezone)).date()
    kept = kept or bookable.Kept(0)
    booking_id = uuid.uuid4()
    booking_key = credentials.new_secret(credentials.BOOKING_KEY)
    actor = (PUBLIC_CLIENT.kind, PUBLIC_CLIENT.actor_id)

    async def fresh(conn: asyncpg.Connection) -> bookable.Bookable:
        return await bookable.read(conn, therapist.id, therapist.timezone, body.session_type)

    async def offering(conn: asyncpg.Connection, current: bookable.Bookable, is_fresh: bool) -> bookable.Bookable:
        """`current` if its rules offer the time; else a fresh read if that offers it; else `slot_not_offered`."""
        reason = offer_problem(current.hours, current.session_type.rules, body.start, now)
        if reason is not None and not is_fresh:
            current = await fresh(conn)
            reason = offer_problem(current.hours, current.session_type.rules, body.start, now)
        if reason is not None:
            raise not_offered(reason)
        kept.put(therapist.id, body.session_type, current)
        return current

    async def insert(conn: asyncpg.Connection, *, claim: bool = False) -> tuple[NewBooking, bytes] | None:
        """Write the booking in one statement, reading afresh and trying again if something changed;
        with `claim`, the statement also claims the Idempotency-Key (BOOK_KEYED), and None says it
        wrote nothing: the key was claimed before or something changed (the caller decides)."""
        found = kept.get(therapist.id, body.session_type)
        current, is_fresh = (found, False) if found is not None else (await fresh(conn), True)
        current = await offering(conn, current, is_fresh)
        heard = kept.audience(therapist.id) or await audience(conn, therapist.id)
        # What this therapist's last booking here had nothing to check in (and, as BOOK makes
        # sure, still has not) needs no query: busy calendars (the only busy source there is) and
        # a licence rule that refuses.
        quiet = kept.quiet(therapist.id)
        skip_calendars = quiet.calendars and all(s is busy_calendars.stored_busy for s in sources)
        if not quiet.licences:
            await licences.check_booking(conn, therapist.id, where, [session_day])  # `refuse`: not_licensed_there
        for _ in range(CHECKED_TRIES):
            made, blocked = _new(booking_id, booking_key, current.session_type.rules, body)
            # Busy time from other calendars only we know of; other bookings are the constraint's.
            if not skip_calendars:
                await check_elsewhere(conn, therapist.id, blocked, sources)
            notice = Notice(
                "booking.created",
                therapist.id,
                (made.id,),
                by="client",
                secret=made.key,
                start=made.start,
                end=made.end,
                reminder_minutes=tuple(current.session_type.reminder_minutes),
                notify_therapist=heard.notify_bookings,
                listeners=heard.listeners,
            )
            messages = outbox.columns(await notices.owed(conn, notice), notices.now())
            row = _row(made, blocked, therapist, current.session_type, body, uuid.uuid4(), None)
            checked = (not skip_calendars, not quiet.licences)
            told = (heard.notify_bookings, list(heard.listeners), body.confidential_messages)
            encoded = answer(made)
            statement, claimed = BOOK, tuple[bytes, ...]()
            if claim and key is not None:
                statement, claimed = BOOK_KEYED, idempotency.claim_values(therapist.id, key, request_hash, encoded)
            booked = record_to(
                _Booked,
                await conn.fetchrow(statement, *row, *current.compared(), *actor, *checked, *told, *messages, *claimed),
            )
            if booked.made:
                kept.seen(therapist.id, bookable.Quiet(not booked.any_calendar, not booked.licences_refuse))
                kept.heard(therapist.id, heard)
                return made, encoded
            # Something changed since this node read it, or a skipped check has work now: read
            # everything afresh and run every check.
            kept.seen(therapist.id, bookable.NOISY)
            kept.heard(therapist.id, None)
            if claim:
                return None
            if quiet.licences:
                await licences.check_booking(conn, therapist.id, where, [session_day])
            skip_calendars, quiet = False, bookable.NOISY
            heard = await audience(conn, therapist.id)
            current = await offering(conn, await fresh(conn), True)
        raise slot_taken()

    async def make(conn: asyncpg.Connection) -> tuple[NewBooking, bytes]:
        try:
            if key is not None:  # a savepoint: the refusal kept for the key outlives a lost slot
                async with conn.transaction():
                    made = await insert(conn)
            else:
                made = await insert(conn)
        except asyncpg.ExclusionViolationError:
            raise slot_taken() from None
        assert made is not None  # only a claim comes back empty
        return made

    request_hash = b"" if key is None else hashlib.sha256(msgspec.json.encode(body)).digest()
    if key is not None:
        # Most keyed requests are a first try on a free time: one statement claims the key with
        # the answer and books. Any other (a retry, a lost or refused time, changed rules) takes
        # the transactional path below, which replays, or keeps the refusal for the key.
        try:
            async with pool.acquire() as conn:
                at_once = await insert(conn, claim=True)
        except (asyncpg.ExclusionViolationError, Conflict):
            at_once = None
        if at_once is not None:
            return at_once
    expected = None
    known = None if key is None else kept.get(therapist.id, body.session_type)
    if known is not None:  # the answer, should the kept rules hold: stored with the key's claim
        expected = answer(_new(booking_id, booking_key, known.session_type.rules, body)[0])

    async def lock(conn: asyncpg.Connection) -> None:
        await lock_times(conn, therapist.id)

    return await idempotency.once(
        pool, therapist.id, key, request_hash, make, refusal, expected, atomic=True, first=lock
    )


async def for_key(conn: Executor, key: str) -> BookingRef | None:
    """The booking a key opens, if any."""
    row = await conn.fetchrow(SELECT_BY_KEY, credentials.secret_hash(key))
    return None if row is None else record_to(BookingRef, row)


async def owner(conn: Executor, booking_id: uuid.UUID) -> uuid.UUID | None:
    """The therapist whose booking this is (None for no such booking)."""
    therapist_id: uuid.UUID | None = await conn.fetchval(SELECT_OWNER, booking_id)
    return therapist_id


async def series_of(conn: Executor, booking_id: uuid.UUID) -> uuid.UUID | None:
    """The standing series a booking belongs to (None for a single booking, or no such booking)."""
    series_id: uuid.UUID | None = await conn.fetchval(SELECT_SERIES_OF, booking_id)
    return series_id


async def get(conn: Executor, booking_id: uuid.UUID) -> Booking:
    row = await conn.fetchrow(SELECT_BOOKING, booking_id)
    if row is None:
        raise NotFound("booking")
    return record_to(Booking, row)


async def read(conn: Executor, booking_id: uuid.UUID, reader: Principal) -> Booking:
    """A booking, for someone allowed to see it; the read is audited."""
    booking = await get(conn, booking_id)
    await audit.record(conn, reader, "booking.read", booking_id=booking_id, therapist_id=booking.therapist_id)
    return booking


async def cancel(
    conn: asyncpg.Connection, booking_id: uuid.UUID, actor: Principal, now: dt.datetime, notices: Notices = SILENT
) -> Booking:
    """Cancel a booking; cancelling a cancelled booking changes nothing and is not an error.

    A client cancelling inside the policy's window makes it `late_cancelled` (`broker.policies`)."""
    async with conn.transaction():
        booking = await get(conn, booking_id)
        if booking.status in CANCELLED:
            return booking
        if booking.ends_at <= now or booking.status != "confirmed":
            raise Conflict("This session has already taken place.", code="booking_finished")
        policy = booking.policy
        late = policies.is_late(policy, booking.starts_at, now, actor)
        status: Status = "late_cancelled" if late else "cancelled"
        await conn.execute(CANCEL_BOOKING, booking_id, status)
        await audit.record(conn, actor, f"booking.{status}", booking_id=booking_id, therapist_id=booking.therapist_id)
        if late:
            await policies.after_late_cancellation(conn, booking_id, booking.therapist_id, policy)
        kind: NoticeKind = "booking.late_cancelled" if late else "booking.cancelled"
        await notices.due(conn, Notice(kind, booking.therapist_id, (booking_id,), by=actor.kind))
        return await get(conn, booking_id)


async def set_outcome(conn: Executor, booking_id: uuid.UUID, outcome: schemas.Outcome) -> bool:
    """Mark a started session attended or no_show; False if it already was (or is cancelled)."""
    result: str = await conn.execute(SET_OUTCOME, booking_id, outcome)
    return result == "UPDATE 1"


async def reschedule(
    conn: asyncpg.Connection,
    booking_id: uuid.UUID,
    new_start: dt.datetime,
    actor: Principal,
    now: dt.datetime,
    sources: Sequence[BusySource] = (),
    notices: Notices = SILENT,
) -> Booking:
    """Move a booking in one UPDATE: if the new time is taken the old booking stands untouched (409)."""
    booking = await get(conn, booking_id)
    if booking.status in CANCELLED:
        raise Conflict("A cancelled booking cannot be rescheduled; book a new time.", code="booking_cancelled")
    if booking.starts_at <= now or booking.status != "confirmed":
        raise Conflict("A session that has started cannot be rescheduled.", code="booking_started")
    session_type = await session_types.get(conn, booking.session_type_id)
    start = new_start.astimezone(dt.UTC)
    rules = session_type.rules
    blocked = rules.blocked(start)
    try:
        async with conn.transaction():
            await lock_times(conn, booking.therapist_id)
            await check_offered(
                conn,
                booking.therapist_id,
                booking.therapist_timezone,
                session_type,
                start,
                now,
                exclude=booking_id,
                sources=sources,
            )
            result = await conn.execute(
                RESCHEDULE_BOOKING,
                booking_id,
                start,
                start + dt.timedelta(minutes=rules.duration),
                Range(blocked.start, blocked.end),
            )
            if result == "UPDATE 0":
                raise Conflict("This booking was cancelled meanwhile.", code="booking_cancelled")
            await audit.record(
                conn, actor, "booking.rescheduled", booking_id=booking_id, therapist_id=booking.therapist_id
            )
            await notices.due(conn, Notice("booking.rescheduled", booking.therapist_id, (booking_id,), by=actor.kind))
    except asyncpg.ExclusionViolationError:
        raise slot_taken() from None
    return await get(conn, booking_id)


async def list_for_therapist(conn: Executor, therapist_id: uuid.UUID, span: Span, status: str | None) -> list[Booking]:
    if status is not None and status not in typing.get_args(Status):
        raise invalid("`status` must be one of " + ", ".join(typing.get_args(Status)) + ".")
    return [
        record_to(Booking, r)
        for r in await conn.fetch(SELECT_THERAPIST_BOOKINGS, therapist_id, span.start, span.end, status)
    ]


async def list_for_reader(
    conn: Executor, therapist_id: uuid.UUID, span: Span, status: str | None, reader: Principal
) -> list[Booking]:
    """A therapist's bookings overlapping `span`, for the therapist; every one listed is audited."""
    found = await list_for_therapist(conn, therapist_id, span, status)
    await audit.record_many(conn, reader, "booking.listed", [b.id for b in found], therapist_id=therapist_id)
    return found
