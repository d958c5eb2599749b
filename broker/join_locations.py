"""Where a client says they are, confirmed at every join of a session's room.

This module owns `join_locations`: one row each time the client confirms their place before
entering a session's waiting room (country and, where it matters, region as ISO 3166 codes, and an
optional note). The latest for a booking is where the client is "today": the therapist's room
shows it with the crisis lines for that place and warns before admitting when no valid licence
covers it. Read only by the therapist (audited in `broker.safety`).
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from broker import audit, places
from broker.database import Executor, record_to
from broker.principals import Principal

INSERT = """
INSERT INTO join_locations (booking_id, country, region, note, confirmed_at) VALUES ($1, $2, $3, $4, $5)
RETURNING booking_id, country, region, note, confirmed_at
"""
SELECT_LATEST = """
SELECT booking_id, country, region, note, confirmed_at FROM join_locations
WHERE booking_id = $1 ORDER BY confirmed_at DESC, id DESC LIMIT 1
"""
# A client's confirmed places across their sessions, latest first.
SELECT_OF_CLIENT = """
SELECT j.booking_id, j.country, j.region, j.note, j.confirmed_at, b.starts_at AS session_start
FROM join_locations j JOIN bookings b ON b.id = j.booking_id
WHERE b.client_id = $1
ORDER BY j.confirmed_at DESC, j.id DESC
LIMIT $2
"""
MAX_LISTED = 100
# Where the client said, when booking, they would be: the booking's own columns (written with the
# booking by broker.bookings), read here beside the joins' so "where is the client" has one reader.
SELECT_BOOKED = (
    "SELECT client_country AS country, client_region AS region, client_location AS note FROM bookings WHERE id = $1"
)


class BookedPlace(msgspec.Struct, frozen=True):
    country: str | None
    region: str | None
    note: str | None


class JoinLocation(msgspec.Struct, frozen=True):
    """A place the client confirmed when joining a session."""

    booking_id: uuid.UUID
    country: str
    region: str | None
    note: str | None
    confirmed_at: dt.datetime
    session_start: dt.datetime | None = None

    @property
    def place(self) -> places.Place:
        return places.Place(self.country, self.region)


async def confirm(
    conn: Executor,
    booking_id: uuid.UUID,
    where: places.Place,
    note: str | None,
    *,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID | None,
    actor: Principal,
    now: dt.datetime,
) -> JoinLocation:
    """Keep where the client says they are for this session (`where` checked by `places.place`); audited."""
    row = await conn.fetchrow(INSERT, booking_id, where.country, where.region, note, now)
    assert row is not None
    await audit.record(
        conn, actor, "location.confirmed", booking_id=booking_id, therapist_id=therapist_id, client_id=client_id
    )
    return record_to(JoinLocation, row)


async def latest(conn: Executor, booking_id: uuid.UUID) -> JoinLocation | None:
    """Where the client last said they were for this session (None: not confirmed yet)."""
    row = await conn.fetchrow(SELECT_LATEST, booking_id)
    return None if row is None else record_to(JoinLocation, row)


async def of_client(conn: Executor, client_id: uuid.UUID) -> list[JoinLocation]:
    """The client's confirmed places, latest first (at most MAX_LISTED)."""
    return [record_to(JoinLocation, r) for r in await conn.fetch(SELECT_OF_CLIENT, client_id, MAX_LISTED)]


async def booked(conn: Executor, booking_id: uuid.UUID) -> tuple[places.Place | None, str | None]:
    """The place given when booking (None if only free text or nothing was given) and its note."""
    row = await conn.fetchrow(SELECT_BOOKED, booking_id)
    if row is None:
        return None, None
    found = record_to(BookedPlace, row)
    return (None if found.country is None else places.Place(found.country, found.region)), found.note
