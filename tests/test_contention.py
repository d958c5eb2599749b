"""Racing bookings and moves of one therapist: right answers, and no deadlock on the way (issue 13, defect 1)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestServer

from broker.database import POOL
from tests.support import Api, next_grid_start

ROUNDS = 8
CONFIRMED = """
SELECT lower(blocked) AS s, upper(blocked) AS e FROM bookings WHERE therapist_id = $1 AND status = 'confirmed'
"""
DEADLOCKS = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
OTHER_BACKENDS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND query <> '' AND query NOT LIKE 'LISTEN %'
"""


async def _deadlocks(db: asyncpg.Connection) -> int:
    await db.execute("SELECT pg_stat_clear_snapshot()")
    count: int = await db.fetchval(DEADLOCKS)
    return count


async def _quiesce(server: TestServer, db: asyncpg.Connection) -> None:
    """Close the service's pool and wait for its backends to exit: a backend flushes its pending
    statistics (deadlocks included) when it exits, rather than up to 10 s later when idle. The
    connections left (a relay's LISTEN, ones that never ran a query) never take part in a race."""
    await server.app[POOL].close()
    for _ in range(200):
        if await db.fetchval(OTHER_BACKENDS) == 0:
            return
        await asyncio.sleep(0.05)


def _overlaps(a: tuple[dt.datetime, dt.datetime], b: tuple[dt.datetime, dt.datetime]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


async def test_racing_bookings_series_and_moves_on_a_15_minute_grid_are_right_and_never_deadlock(
    api: Api, db: asyncpg.Connection, server: TestServer
) -> None:
    therapist, st = await api.ready_therapist(
        duration_minutes=50, buffer_after_minutes=10, slot_interval_minutes=15, series_frequencies=["biweekly"]
    )
    first = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(days=1), 60)
    before = await _deadlocks(db)

    async def series(start: dt.datetime) -> tuple[int, Any]:
        return await api.call(
            "POST",
            f"/api/v1/therapists/{therapist['slug']}/series",
            json={
                "session_type": st["id"],
                "start": start.isoformat(),
                "frequency": "biweekly",
                "count": 2,
                "client": {"name": "Series Client", "email": "series@example.org"},
            },
        )

    made: list[dict[str, Any]] = []
    for day in range(ROUNDS):  # one round seldom deadlocked before the fix; eight always did
        base = first + dt.timedelta(days=day)
        # Sixteen starts a quarter apart: each 60-minute block overlaps three neighbours on each side.
        starts = [base + dt.timedelta(minutes=15 * (i % 16)) for i in range(50)]
        attempts = [
            series(start) if i % 5 == 0 else api.book(therapist, st, start.isoformat(), name=f"Client {i}")
            for i, start in enumerate(starts)
        ]
        results = await asyncio.gather(*attempts)
        assert {status for status, _ in results} <= {201, 409}, [b for s, b in results if s not in (201, 409)]
        assert any(status == 201 for status, _ in results)
        made.extend(body for status, body in results if status == 201 and "booking_key" in body)

    # And every single booking moved at once onto another day's offset starts (the series' second
    # sessions take the days two weeks after the rounds).
    base = first + dt.timedelta(days=30)
    moves = [
        api.call(
            "POST",
            f"/api/v1/bookings/{booking['id']}/reschedule",
            token=booking["booking_key"],
            json={"start": (base + dt.timedelta(minutes=15 * (i % 16))).isoformat()},
        )
        for i, booking in enumerate(made)
    ]
    results = await asyncio.gather(*moves)
    assert {status for status, _ in results} <= {200, 409}, [b for s, b in results if s not in (200, 409)]
    assert any(status == 200 for status, _ in results)

    rows = await db.fetch(CONFIRMED, uuid.UUID(therapist["id"]))
    spans = sorted((r["s"], r["e"]) for r in rows)
    assert all(not _overlaps(a, b) for a, b in itertools.pairwise(spans))

    await _quiesce(server, db)
    assert await _deadlocks(db) == before, "PostgreSQL detected a deadlock among racing bookings"


async def test_a_new_clients_racing_bookings_and_series_never_deadlock(
    api: Api, db: asyncpg.Connection, server: TestServer
) -> None:
    # A booking writes its client record before it takes the therapist's times lock; a series must
    # too. When a series created the client under the lock, a single booking holding the same new
    # client (uncommitted, waiting for the lock) and the series (holding the lock, waiting for that
    # client row) deadlocked.
    therapist, st = await api.ready_therapist(
        duration_minutes=30, buffer_after_minutes=0, slot_interval_minutes=30, series_frequencies=["weekly"]
    )
    first = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(days=1), 60)
    before = await _deadlocks(db)
    slug = therapist["slug"]
    for round_ in range(6):
        email = f"new-{round_}@example.org"  # a client each round has never booked before
        client = {"name": "New Client", "email": email}
        base = first + dt.timedelta(hours=round_ * 12)
        attempts = [
            api.call(
                "POST",
                f"/api/v1/therapists/{slug}/series",
                json={
                    "session_type": st["id"],
                    "start": (base + dt.timedelta(minutes=30 * i)).isoformat(),
                    "frequency": "weekly",
                    "count": 2,
                    "client": client,
                },
            )
            if i % 2
            else api.call(
                "POST",
                f"/api/v1/therapists/{slug}/bookings",
                json={
                    "session_type": st["id"],
                    "start": (base + dt.timedelta(minutes=30 * i)).isoformat(),
                    "client": client,
                },
            )
            for i in range(12)
        ]
        results = await asyncio.gather(*attempts)
        assert [status for status, _ in results] == [201] * 12, [b for s, b in results if s != 201]
        assert await db.fetchval("SELECT count(*) FROM clients WHERE email = $1", email) == 1

    await _quiesce(server, db)
    assert await _deadlocks(db) == before, "PostgreSQL detected a deadlock between a booking and a series"
