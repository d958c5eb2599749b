"""A session marked attended or no_show keeps its time: PostgreSQL refuses an overlapping booking."""

from __future__ import annotations

import datetime as dt
import os

import asyncpg
import pytest

from broker.clock import Clock
from tests.support import Api, next_grid_start

# The same booking again under a new id and key: the shape of a competing insert from any node.
COPY_BOOKING = """
INSERT INTO bookings (id, therapist_id, session_type_id, starts_at, ends_at, blocked, client_name,
    client_email, key_hash, client_id)
SELECT gen_random_uuid(), therapist_id, session_type_id, starts_at, ends_at, blocked, client_name,
    client_email, $2, client_id
FROM bookings WHERE id = $1
"""


@pytest.mark.parametrize("outcome", ["attended", "no_show"])
async def test_an_overlapping_insert_beside_a_marked_session_is_refused_by_the_database(
    api: Api, clock: Clock, db: asyncpg.Connection, outcome: str
) -> None:
    therapist, session_type = await api.ready_therapist()
    start = next_grid_start(clock.now() + dt.timedelta(hours=1), 60)
    status, booking = await api.book(therapist, session_type, start.isoformat())
    assert status == 201, booking
    clock.advance(start - clock.now() + dt.timedelta(minutes=5))
    status, body = await api.call(
        "POST", f"/api/v1/bookings/{booking['id']}/outcome", token=therapist["api_token"], json={"status": outcome}
    )
    assert status == 200 and body["status"] == outcome, body
    with pytest.raises(asyncpg.ExclusionViolationError) as caught:
        await db.execute(COPY_BOOKING, booking["id"], os.urandom(32))
    assert caught.value.constraint_name == "bookings_no_overlap"


async def test_a_cancelled_session_holds_nothing(api: Api, clock: Clock, db: asyncpg.Connection) -> None:
    therapist, session_type = await api.ready_therapist()
    start = next_grid_start(clock.now() + dt.timedelta(days=1), 60)
    status, booking = await api.book(therapist, session_type, start.isoformat())
    assert status == 201, booking
    status, body = await api.call("POST", f"/api/v1/bookings/{booking['id']}/cancel", token=booking["booking_key"])
    assert status == 200 and body["status"] == "cancelled", body
    await db.execute(COPY_BOOKING, booking["id"], os.urandom(32))
    assert await db.fetchval("SELECT count(*) FROM bookings WHERE starts_at = $1", start) == 2
