"""Booked sessions that the therapist's hours no longer hold, so none is forgotten after a change.

A day off or shorter hours never cancels anything: sessions already booked stay, and this lists
those that now fall outside availability, for the therapist to move or cancel with the client.
Only hours and date overrides count (`calendars.slots.within_availability`): not the notice, the
horizon or the slot grid, which decide what a client may book next, not whether the therapist is
there for a session already agreed.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from broker import audit, availability, bookings, schemas
from broker.bookings import Booking
from broker.database import Executor
from broker.principals import Principal
from broker.therapists import Therapist
from calendars.slots import Availability, Span, within_availability

# How far ahead "upcoming" reaches: further than any series may run (52 sessions every 2 weeks).
LOOK_AHEAD = dt.timedelta(days=3 * 366)


def outside(av: Availability, upcoming: list[Booking]) -> list[Booking]:
    """The bookings of `upcoming` whose session is not wholly inside `av`, in their order."""
    return [b for b in upcoming if not within_availability(av, Span(b.starts_at, b.ends_at))]


async def _upcoming(conn: Executor, therapist: Therapist, now: dt.datetime) -> list[Booking]:
    found = await bookings.list_for_therapist(conn, therapist.id, Span(now, now + LOOK_AHEAD), "confirmed")
    return [b for b in found if b.starts_at >= now]


async def sessions_outside_hours(
    conn: asyncpg.Connection | asyncpg.Pool, therapist: Therapist, now: dt.datetime, reader: Principal
) -> list[Booking]:
    """The therapist's upcoming confirmed sessions outside their current hours; each listed is audited."""
    av, _ = await availability.load(conn, therapist.id, therapist.timezone)
    found = outside(av, await _upcoming(conn, therapist, now))
    await audit.record_many(conn, reader, "booking.listed", [b.id for b in found], therapist_id=therapist.id)
    return found


async def replace_availability(
    pool: asyncpg.Pool, therapist: Therapist, av: Availability, now: dt.datetime, reader: Principal
) -> tuple[dt.datetime, list[Booking]]:
    """Save new hours and say, in the same transaction, which booked sessions they leave outside."""
    async with pool.acquire() as conn, conn.transaction():
        updated = await availability.save(conn, therapist.id, av)
        found = outside(av, await _upcoming(conn, therapist, now))
        await audit.record_many(conn, reader, "booking.listed", [b.id for b in found], therapist_id=therapist.id)
    return updated, found


def saved_to_wire(av: Availability, updated: dt.datetime, found: list[Booking]) -> schemas.AvailabilitySaved:
    """The PUT answer: what GET availability answers, with the sessions the hours now leave outside."""
    out = availability.to_wire(av, updated)
    return schemas.AvailabilitySaved(
        timezone=out.timezone,
        weekly=out.weekly,
        overrides=out.overrides,
        updated_at=out.updated_at,
        outside_hours=[b.to_wire() for b in found],
    )
