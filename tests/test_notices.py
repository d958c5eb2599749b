"""The notice hook: every change a client or therapist should hear about calls it, in its own transaction.

Email and webhooks (the issue "Reaching people") plug in here; these tests plug in a recorder."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from broker.clock import Clock
from broker.notices import NOTICES, Notice
from tests.support import Api, next_grid_start
from tests.test_series import FIRST, book_series, series_body, series_therapist


class Recorder:
    """A hook that keeps each notice and whether it ran inside the change's transaction."""

    def __init__(self) -> None:
        self.seen: list[tuple[Notice, bool]] = []

    async def __call__(self, conn: asyncpg.Connection, notice: Notice) -> None:
        self.seen.append((notice, conn.is_in_transaction()))

    def kinds(self) -> list[tuple[str, str]]:
        return [(n.kind, n.by) for n, _ in self.seen]


@pytest.fixture
def recorder(server: TestServer) -> Recorder:
    hook = Recorder()
    server.app[NOTICES].hooks.append(hook)
    return hook


async def test_a_booking_its_move_and_its_cancellation_each_call_the_hook_inside_their_transaction(
    api: Api, clock: Clock, recorder: Recorder
) -> None:
    therapist, session_type = await api.ready_therapist()
    first = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    status, booking = await api.book(therapist, session_type, first.isoformat())
    assert status == 201, booking
    key = booking["booking_key"]
    moved = (first + dt.timedelta(hours=2)).isoformat()
    status, _ = await api.call("POST", f"/api/v1/bookings/{booking['id']}/reschedule", token=key, json={"start": moved})
    assert status == 200
    status, _ = await api.call("POST", f"/api/v1/bookings/{booking['id']}/cancel", token=therapist["api_token"])
    assert status == 200
    assert recorder.kinds() == [
        ("booking.created", "client"),
        ("booking.rescheduled", "client"),
        ("booking.cancelled", "therapist"),
    ]
    # A move and a cancellation call it in their transaction; a new booking calls it before its one
    # statement (`bookings.BOOK`), with all a hook needs, and that statement writes what it returns.
    (created, before), *changes = recorder.seen
    assert not before and all(in_transaction for _, in_transaction in changes)
    assert None not in (created.start, created.end, created.reminder_minutes, created.notify_therapist)
    assert created.listeners is not None
    assert {n.booking_ids for n, _ in recorder.seen} == {(uuid.UUID(booking["id"]),)}
    assert {n.therapist_id for n, _ in recorder.seen} == {uuid.UUID(therapist["id"])}


async def test_a_refused_booking_and_a_repeated_cancel_announce_nothing(
    api: Api, clock: Clock, recorder: Recorder, db: asyncpg.Connection
) -> None:
    therapist, session_type = await api.ready_therapist()
    start = next_grid_start(clock.now() + dt.timedelta(days=2), 60).isoformat()
    status, booking = await api.book(therapist, session_type, start)
    assert status == 201
    assert (await api.book(therapist, session_type, start))[0] == 409
    for _ in range(2):
        status, _ = await api.call("POST", f"/api/v1/bookings/{booking['id']}/cancel", token=booking["booking_key"])
        assert status == 200
    # The refused booking's hooks ran before it was refused; nothing they made was written.
    assert recorder.kinds() == [
        ("booking.created", "client"),
        ("booking.created", "client"),
        ("booking.cancelled", "client"),
    ]
    refused = recorder.seen[1][0].booking_ids[0]
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE booking_id = $1", refused) == 0
    assert await db.fetchval("SELECT count(*) FROM bookings WHERE id = $1", refused) == 0


async def test_a_hook_that_fails_undoes_the_change_it_was_called_for(
    api: Api, clock: Clock, server: TestServer, db: asyncpg.Connection
) -> None:
    therapist, session_type = await api.ready_therapist()
    status, booking = await api.book(
        therapist, session_type, next_grid_start(clock.now() + dt.timedelta(days=2), 60).isoformat()
    )
    assert status == 201

    async def refuse(conn: asyncpg.Connection, notice: Notice) -> None:
        raise RuntimeError("the outbox is full")

    server.app[NOTICES].hooks.append(refuse)
    status, _ = await api.call("POST", f"/api/v1/bookings/{booking['id']}/cancel", token=booking["booking_key"])
    assert status == 500
    assert await db.fetchval("SELECT status FROM bookings WHERE id = $1", uuid.UUID(booking["id"])) == "confirmed"


async def test_a_series_is_announced_once_when_booked_and_once_when_cancelled(api: Api, recorder: Recorder) -> None:
    therapist, session_type = await series_therapist(api)
    status, made = await book_series(api, therapist, series_body(session_type, FIRST, count=4))
    assert status == 201, made
    series_id = made["id"]
    status, shown = await api.call(
        "POST", f"/api/v1/series/{series_id}/cancel", token=made["series_key"], json={"scope": "all"}
    )
    assert status == 200, shown
    created, cancelled = (n for n, _ in recorder.seen)
    assert (created.kind, cancelled.kind) == ("series.created", "series.cancelled")
    assert created.series_id == cancelled.series_id == uuid.UUID(series_id)
    assert len(created.booking_ids) == 4 and set(cancelled.booking_ids) == set(created.booking_ids)
