"""Standing series: weekly or fortnightly sessions booked as one, each an ordinary booking.

A series is a row of its own (the rule, the client, the hash of its key); its occurrences are
bookings pointing at it (`bookings.series_id`, `series_index`), inserted through the same path as
a single booking, so the `bookings_no_overlap` constraint guards every one of them and nothing
new can double-book. The expansion is `calendars.series.expand` (the therapist's wall clock),
shared by the preview and the booking, so what the preview shows is what booking creates.

Booking a series is one transaction: every `free` occurrence is booked, or with
`all_or_nothing` none at all when any is not free (`series_unavailable`, listing which). An
occurrence lost to a concurrent booking between the check and the insert is `taken` (or, all
or nothing, refuses the whole series: its savepoint leaves no row behind). The therapist's
`bookings.lock_times` is held from before the plan to the commit, so such a loss is rare (a
booking written without the lock) and racing requests never deadlock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import asyncpg
import msgspec

from broker import (
    audit,
    availability,
    bookings,
    clients,
    credentials,
    idempotency,
    licences,
    schemas,
    session_types,
    therapists,
)
from broker.bookings import BusySource
from broker.database import Executor, record_to
from broker.errors import Conflict, NotFound, TeleroomError, invalid
from broker.idempotency import Replay
from broker.notices import SILENT, Notice, Notices
from broker.principals import PUBLIC_CLIENT, Principal
from broker.session_types import SessionType
from broker.therapists import Therapist
from broker.zones import zone
from calendars import ical
from calendars.series import MAX_SESSIONS, WEEKS_APART, Frequency, Occurrence, Status, classify, expand, series_window
from calendars.slots import offer_problem

INSERT_SERIES = """
INSERT INTO series (id, therapist_id, client_id, session_type_id, frequency, count, first_start, timezone,
    client_timezone, key_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""
SELECT_SERIES = "SELECT * FROM series WHERE id = $1"
SELECT_BY_KEY = "SELECT id, therapist_id FROM series WHERE key_hash = $1"
SELECT_OCCURRENCES = """
SELECT id, series_index, status, starts_at, ends_at, sequence, created_at, updated_at FROM bookings
WHERE series_id = $1 ORDER BY series_index
"""


class Series(msgspec.Struct, frozen=True):
    """A standing series: the rule its occurrences were expanded from, and whose it is."""

    id: uuid.UUID
    therapist_id: uuid.UUID
    client_id: uuid.UUID
    session_type_id: uuid.UUID
    frequency: Frequency
    count: int
    first_start: dt.datetime
    timezone: str
    client_timezone: str | None
    created_at: dt.datetime


class SeriesRef(msgspec.Struct, frozen=True):
    """Which series a key opens, and whose it is."""

    id: uuid.UUID
    therapist_id: uuid.UUID


class OccurrenceRow(msgspec.Struct, frozen=True):
    """A booked session of a series as it stands now (rescheduled or cancelled, maybe)."""

    id: uuid.UUID
    series_index: int
    status: schemas.BookingStatus
    starts_at: dt.datetime
    ends_at: dt.datetime
    sequence: int
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Planned:
    """An occurrence of a series about to be booked, and whether it can be."""

    occurrence: Occurrence
    status: Status


@dataclass(frozen=True, slots=True)
class NewSeries:
    """A series just booked: its id, its key (only in this answer), and each occurrence's fate."""

    id: uuid.UUID
    key: str
    plan: list[Planned]
    booked: dict[int, uuid.UUID]  # series index -> booking id

    @property
    def first_booking(self) -> uuid.UUID:
        return self.booked[min(self.booked)]


@dataclass(frozen=True, slots=True)
class Request:
    """What a series booking asks for, whoever asks (the public page or the therapist)."""

    session_type: str
    start: dt.datetime
    frequency: Frequency
    count: int
    client_timezone: str | None
    all_or_nothing: bool = False
    confidential_messages: bool = False


def _check_offer(session_type: SessionType, frequency: Frequency, count: int) -> None:
    if frequency not in session_type.series_frequencies:
        offered = ", ".join(session_type.series_frequencies) or "none"
        raise invalid(
            f"This session type cannot be booked {frequency} (offered: {offered}).",
            code="frequency_not_offered",
            offered=list(session_type.series_frequencies),
        )
    limit = min(session_type.series_max_sessions, MAX_SESSIONS)
    if count > limit:
        raise invalid(
            f"A series of this session type holds at most {limit} sessions.", code="series_too_long", max=limit
        )


async def plan(
    conn: Executor,
    therapist: Therapist,
    session_type: SessionType,
    request: Request,
    now: dt.datetime,
    sources: Sequence[BusySource],
    *,
    waive_limits: bool = False,
) -> list[Planned]:
    """Every occurrence of the requested series and its status (`free`, `taken`, `not_offered`).

    The first start must be a time the session type offers (`slot_not_offered` otherwise, as for
    a single booking), busy or not; `waive_limits` (the therapist booking) lifts its notice and
    horizon. Occurrences are expanded in the zone the therapist's hours are kept in."""
    _check_offer(session_type, request.frequency, request.count)
    if request.client_timezone is not None:
        zone(request.client_timezone, "client_timezone")
    av, _ = await availability.load(conn, therapist.id, therapist.timezone)
    rules = session_type.rules
    first_rules = replace(rules, min_notice=0, horizon_days=3650) if waive_limits else rules
    start = request.start.astimezone(dt.UTC)
    reason = offer_problem(av, first_rules, start, now)
    if reason is not None:
        raise bookings.not_offered(reason)
    occurrences = expand(
        start,
        therapist_zone=av.timezone,
        client_zone=request.client_timezone,
        frequency=request.frequency,
        count=request.count,
        duration=rules.duration,
    )
    busy = await bookings.busy_spans(conn, therapist.id, series_window(occurrences, rules), sources=sources)
    statuses = classify(occurrences, av, rules, busy, now, waive_limits=waive_limits)
    return [Planned(o, s) for o, s in zip(occurrences, statuses, strict=True)]


def occurrence_out(
    occ: Occurrence, status: schemas.OccurrenceStatus, booking_id: uuid.UUID | None = None
) -> schemas.OccurrenceOut:
    return schemas.OccurrenceOut(
        index=occ.index,
        start=occ.start,
        end=occ.end,
        therapist_start=occ.therapist_local,
        client_start=occ.client_local,
        status=status,
        client_time_differs=occ.client_time_differs,
        booking_id=None if booking_id is None else str(booking_id),
    )


def preview_out(planned: Sequence[Planned], request: Request, therapist_zone: str) -> schemas.SeriesPreviewOut:
    first = planned[0].occurrence
    return schemas.SeriesPreviewOut(
        timezone=str(first.therapist_local.tzinfo or therapist_zone),
        client_timezone=str(first.client_local.tzinfo or request.client_timezone or therapist_zone),
        frequency=request.frequency,
        occurrences=[occurrence_out(p.occurrence, p.status) for p in planned],
        client_time_changes=any(p.occurrence.client_time_differs and not p.occurrence.skipped for p in planned),
    )


async def preview(
    conn: Executor,
    therapist: Therapist,
    request: Request,
    now: dt.datetime,
    sources: Sequence[BusySource],
    *,
    waive_limits: bool = False,
) -> schemas.SeriesPreviewOut:
    """What booking this series would do, occurrence by occurrence (nothing is held).

    `waive_limits` previews what the therapist may book: notice and horizon lifted, as when booking."""
    session_type = await session_types.active(conn, therapist.id, request.session_type)
    planned = await plan(conn, therapist, session_type, request, now, sources, waive_limits=waive_limits)
    return preview_out(planned, request, therapist.timezone)


def unavailable(planned: Sequence[Planned]) -> Conflict:
    """409 `series_unavailable`, listing every occurrence that is not free."""
    blocked = [
        {"index": p.occurrence.index, "start": p.occurrence.start.isoformat(), "status": p.status}
        for p in planned
        if p.status != "free"
    ]
    return Conflict(
        "Not every session of this series is free." if blocked else "No session of this series is free.",
        code="series_unavailable",
        occurrences=blocked,
    )


async def _create(
    conn: asyncpg.Connection,
    therapist: Therapist,
    session_type: SessionType,
    request: Request,
    client: schemas.ClientIn,
    record: clients.Client,
    actor: Principal,
    now: dt.datetime,
    sources: Sequence[BusySource],
    waive_limits: bool,
) -> NewSeries:
    planned = await plan(conn, therapist, session_type, request, now, sources, waive_limits=waive_limits)
    if not any(p.status == "free" for p in planned) or (
        request.all_or_nothing and any(p.status != "free" for p in planned)
    ):
        raise unavailable(planned)
    series_id = uuid.uuid4()
    key = credentials.new_secret(credentials.SERIES_KEY)
    first = planned[0].occurrence
    await conn.execute(
        INSERT_SERIES,
        series_id,
        therapist.id,
        record.id,
        session_type.id,
        request.frequency,
        request.count,
        first.start,
        str(first.therapist_local.tzinfo),
        request.client_timezone,
        credentials.secret_hash(key),
    )
    booked: dict[int, uuid.UUID] = {}
    final: list[Planned] = []
    for p in planned:
        if p.status != "free":
            final.append(p)
            continue
        body = schemas.BookingIn(
            session_type=str(session_type.id),
            start=p.occurrence.start,
            client=client,
            client_timezone=request.client_timezone,
        )
        try:
            made = await bookings.insert_occurrence(
                conn, therapist, session_type, body, series_id=series_id, index=p.occurrence.index, actor=actor
            )
        except Conflict:  # lost to a booking that committed after the plan was read
            final.append(Planned(p.occurrence, "taken"))
            if request.all_or_nothing:
                raise unavailable(final + planned[len(final) :]) from None
            continue
        booked[p.occurrence.index] = made.id
        final.append(p)
    if not booked:
        raise unavailable(final)
    await audit.record(conn, actor, "series.created", booking_id=booked[min(booked)], therapist_id=therapist.id)
    return NewSeries(id=series_id, key=key, plan=final, booked=booked)


async def book(
    pool: asyncpg.Pool,
    therapist: Therapist,
    request: Request,
    client: schemas.ClientIn,
    *,
    now: dt.datetime,
    sources: Sequence[BusySource],
    idempotency_key: str | None,
    answer: Callable[[NewSeries], bytes],
    refusal: Callable[[TeleroomError], bytes],
    actor: Principal = PUBLIC_CLIENT,
    waive_limits: bool = False,
    notices: Notices = SILENT,
) -> tuple[NewSeries, bytes] | Replay:
    """Book a series in one transaction, with its Idempotency-Key as `bookings.book` does.

    A refusal (`series_unavailable`, a lost race) is kept for the key too; its savepoint is rolled
    back first, so a refused series leaves no booking, series or client row behind."""
    idempotency.check_key(idempotency_key)
    where = bookings.client_place(client)  # `invalid_place` before anything is written
    session_type = await session_types.active(pool, therapist.id, request.session_type)

    async def make(conn: asyncpg.Connection) -> tuple[NewSeries, bytes]:
        async with conn.transaction():  # a savepoint: a refused series leaves no row behind
            # The times lock before the client record, as a single booking takes them
            # (`bookings.BOOK`): whoever writes a therapist's client record holds that therapist's
            # lock, so no holder of the lock can wait for another's uncommitted new client.
            await bookings.lock_times(conn, therapist.id)
            record = await clients.match_or_create(
                conn,
                therapist.id,
                name=client.name,
                email=client.email,
                phone=client.phone,
                location=client.location,
                confidential=request.confidential_messages,
            )
            if not waive_limits:  # the client books on the public page: the therapist's licence rule applies
                await licences.check_booking(conn, therapist.id, where, _dates(therapist, request))
            made = await _create(
                conn, therapist, session_type, request, client, record, actor, now, sources, waive_limits
            )
        booked_ids = tuple(made.booked[i] for i in sorted(made.booked))
        await notices.due(
            conn, Notice("series.created", therapist.id, booked_ids, by=actor.kind, series_id=made.id, secret=made.key)
        )
        return made, answer(made)

    request_hash = hashlib.sha256(b"series\0" + msgspec.json.encode((_hashable(request), client))).digest()

    async def lock(conn: asyncpg.Connection) -> None:  # before the key's claim, as a booking takes them
        await bookings.lock_times(conn, therapist.id)

    return await idempotency.once(pool, therapist.id, idempotency_key, request_hash, make, refusal, first=lock)


def _dates(therapist: Therapist, request: Request) -> list[dt.date]:
    """The first and last session dates of a series in the therapist's zone (a licence valid on the
    last is valid on those between: licences only expire)."""
    first = request.start.astimezone(zone(therapist.timezone)).date()
    step = 7 if request.frequency == "weekly" else 14
    return [first, first + dt.timedelta(days=step * (request.count - 1))]


def _hashable(request: Request) -> list[object]:
    return [
        request.session_type,
        request.start.isoformat(),
        request.frequency,
        request.count,
        request.client_timezone,
        request.all_or_nothing,
        *(["confidential"] if request.confidential_messages else []),
    ]


async def book_for_client(
    pool: asyncpg.Pool,
    therapist: Therapist,
    client_id: uuid.UUID,
    request: Request,
    *,
    actor: Principal,
    now: dt.datetime,
    sources: Sequence[BusySource],
    idempotency_key: str | None,
    answer: Callable[[NewSeries], bytes],
    refusal: Callable[[TeleroomError], bytes],
    notices: Notices = SILENT,
) -> tuple[NewSeries, bytes] | Replay:
    """The therapist books a series for an existing client: notice and horizon waived, double booking never."""
    record = await clients.get(pool, therapist.id, client_id)
    client = schemas.ClientIn(name=record.name, email=record.email, phone=record.phone, location=record.location)
    return await book(
        pool,
        therapist,
        request,
        client,
        now=now,
        sources=sources,
        idempotency_key=idempotency_key,
        answer=answer,
        refusal=refusal,
        actor=actor,
        waive_limits=True,
        notices=notices,
    )


async def for_key(conn: Executor, key: str) -> SeriesRef | None:
    """The series a key opens, if any."""
    row = await conn.fetchrow(SELECT_BY_KEY, credentials.secret_hash(key))
    return None if row is None else record_to(SeriesRef, row)


async def get(conn: Executor, series_id: uuid.UUID) -> Series:
    row = await conn.fetchrow(SELECT_SERIES, series_id)
    if row is None:
        raise NotFound("series")
    return record_to(Series, row)


async def opened_by(conn: Executor, series_id: uuid.UUID, principal: Principal) -> Series:
    """The series, if `principal` holds its key or is its therapist; anyone else learns nothing (404)."""
    found = await get(conn, series_id)
    if principal.kind == "client" and principal.series_id == series_id:
        return found
    if principal.kind == "therapist" and principal.therapist_id == found.therapist_id:
        return found
    raise NotFound("series")


async def occurrences(conn: Executor, series_id: uuid.UUID) -> list[OccurrenceRow]:
    return [record_to(OccurrenceRow, r) for r in await conn.fetch(SELECT_OCCURRENCES, series_id)]


async def view(conn: Executor, found: Series) -> schemas.SeriesOut:
    """Every occurrence of the series as it stands: booked ones with their status and (moved) time."""
    session_type = await session_types.get(conn, found.session_type_id)
    therapist = await therapists.by_id(conn, found.therapist_id)
    expanded = expand(
        found.first_start,
        therapist_zone=found.timezone,
        client_zone=found.client_timezone,
        frequency=found.frequency,
        count=found.count,
        duration=session_type.duration_minutes,
    )
    rows = {r.series_index: r for r in await occurrences(conn, found.id)}
    first_client = expanded[0].client_local
    ctz = first_client.tzinfo
    tz = expanded[0].therapist_local.tzinfo
    out: list[schemas.OccurrenceOut] = []
    for occ in expanded:
        row = rows.get(occ.index)
        if row is None:
            out.append(occurrence_out(occ, "not_booked"))
            continue
        client_local = row.starts_at.astimezone(ctz)
        out.append(
            schemas.OccurrenceOut(
                index=occ.index,
                start=row.starts_at,
                end=row.ends_at,
                therapist_start=row.starts_at.astimezone(tz),
                client_start=client_local,
                status=row.status,
                client_time_differs=(client_local.hour, client_local.minute)
                != (first_client.hour, first_client.minute),
                booking_id=str(row.id),
            )
        )
    return schemas.SeriesOut(
        id=str(found.id),
        frequency=found.frequency,
        count=found.count,
        timezone=found.timezone,
        client_timezone=found.client_timezone,
        session_type=schemas.SessionTypeSummary(
            id=str(session_type.id), name=session_type.name, duration_minutes=session_type.duration_minutes
        ),
        therapist=schemas.TherapistSummary(slug=therapist.slug, name=therapist.name, timezone=therapist.timezone),
        created_at=found.created_at,
        occurrences=out,
    )


async def read(conn: Executor, series_id: uuid.UUID, reader: Principal) -> schemas.SeriesOut:
    """A series for its client (by key) or its therapist; each booked occurrence's read is audited."""
    found = await opened_by(conn, series_id, reader)
    shown = await view(conn, found)
    read_ids = [uuid.UUID(o.booking_id) for o in shown.occurrences if o.booking_id]
    await audit.record_many(conn, reader, "booking.read", read_ids, therapist_id=found.therapist_id)
    return shown


async def cancel(
    conn: asyncpg.Connection,
    series_id: uuid.UUID,
    body: schemas.SeriesCancelIn,
    actor: Principal,
    now: dt.datetime,
    notices: Notices = SILENT,
) -> schemas.SeriesOut:
    """Cancel one occurrence, it and all after it, or every one still ahead, in one transaction.

    Each is cancelled through `bookings.cancel`, as a single booking is (same audit, same rules);
    sessions that have ended are left as they are."""
    async with conn.transaction():
        found = await opened_by(conn, series_id, actor)
        rows = await occurrences(conn, series_id)
        if body.scope == "all":
            chosen = rows
        else:
            if body.booking is None:
                raise invalid("Name the session (`booking`) this scope counts from.", code="booking_required")
            try:
                anchor = next(r for r in rows if str(r.id) == body.booking)
            except StopIteration:
                raise invalid("That session is not part of this series.", code="not_in_series") from None
            if body.scope == "one":
                chosen = [anchor]
            else:
                chosen = [r for r in rows if r.series_index >= anchor.series_index]
        cancelled: list[uuid.UUID] = []
        for row in chosen:
            if row.status != "confirmed" or (body.scope != "one" and row.ends_at <= now):
                continue
            await bookings.cancel(conn, row.id, actor, now)  # silent: the series is announced once
            cancelled.append(row.id)
        if cancelled:
            gone = Notice("series.cancelled", found.therapist_id, tuple(cancelled), by=actor.kind, series_id=series_id)
            await notices.due(conn, gone)
        return await view(conn, found)


async def client_ics(conn: Executor, series_id: uuid.UUID, reader: Principal, origin: str) -> bytes:
    """The series as one recurring event for the client's calendar (links carry no key); audited."""
    found = await opened_by(conn, series_id, reader)
    event, booked = await series_event(conn, found, origin)
    await audit.record_many(conn, reader, "booking.ics", booked, therapist_id=found.therapist_id)
    return ical.render_series_event(event)


async def series_event(
    conn: Executor, found: Series, origin: str, *, label: str | None = None
) -> tuple[ical.SeriesEvent, list[uuid.UUID]]:
    """The series as one recurring event, and the ids of its booked sessions. `label` replaces the
    session type's name in the summary (an email that may not name it says "Appointment").

    The rule is the series' own; every session it no longer holds at its original time (cancelled,
    never booked, moved) is an EXDATE, and a moved session is an event of its own."""
    session_type = await session_types.get(conn, found.session_type_id)
    therapist = await therapists.by_id(conn, found.therapist_id)
    expanded = expand(
        found.first_start,
        therapist_zone=found.timezone,
        client_zone=None,
        frequency=found.frequency,
        count=found.count,
        duration=session_type.duration_minutes,
    )
    rows = {r.series_index: r for r in await occurrences(conn, found.id)}
    excluded: list[dt.datetime] = []
    moved: list[ical.ClientEvent] = []
    for occ in expanded:
        row = rows.get(occ.index)
        if row is None or row.status in bookings.CANCELLED or row.starts_at != occ.start:
            excluded.append(occ.start)
        if row is not None and row.status not in bookings.CANCELLED and row.starts_at != occ.start:
            moved.append(
                ical.ClientEvent(
                    booking_id=str(row.id),
                    start=row.starts_at,
                    end=row.ends_at,
                    sequence=row.sequence,
                    created=row.created_at,
                    updated=row.updated_at,
                    session_type=label or session_type.name,
                    therapist_name=therapist.name,
                    origin=origin,
                )
            )
    first_booked = min(rows.values(), key=lambda r: r.series_index)
    return (
        ical.SeriesEvent(
            series_id=str(found.id),
            timezone=found.timezone,
            first_start=found.first_start,
            duration=dt.timedelta(minutes=session_type.duration_minutes),
            weeks_apart=WEEKS_APART[found.frequency],
            count=found.count,
            excluded=tuple(excluded),
            moved=tuple(moved),
            sequence=sum(r.sequence for r in rows.values()) + len(expanded) - len(rows),
            created=found.created_at,
            updated=max([found.created_at, *(r.updated_at for r in rows.values())]),
            session_type=label or session_type.name,
            therapist_name=therapist.name,
            origin=origin,
            manage_booking_id=str(first_booked.id),
        ),
        [r.id for r in rows.values()],
    )
