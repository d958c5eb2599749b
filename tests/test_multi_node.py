"""Two nodes on one PostgreSQL: the guarantees hold across nodes, not just within one process."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from broker.app import create_app
from broker.settings import Settings
from tests.support import Api, free_port


@pytest.fixture
async def second_node(settings: Settings) -> AsyncIterator[str]:
    other = dataclasses.replace(settings, port=free_port())
    srv = TestServer(create_app(other), host="127.0.0.1", port=other.port)
    await srv.start_server()
    yield f"http://127.0.0.1:{other.port}"
    await srv.close()


async def test_a_slot_raced_on_two_nodes_is_booked_once(
    api: Api, second_node: str, http: aiohttp.ClientSession, db: asyncpg.Connection
) -> None:
    therapist, st = await api.ready_therapist()
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    slot = (await api.slots(therapist, st, tomorrow, tomorrow))[0]
    other = Api(http, second_node, api.admin_token)
    attempts = [(api if i % 2 else other).book(therapist, st, slot["start"], name=f"C{i}") for i in range(40)]
    statuses = [status for status, _ in await asyncio.gather(*attempts)]
    assert statuses.count(201) == 1 and statuses.count(409) == 39
    assert await db.fetchval("SELECT count(*) FROM bookings WHERE status = 'confirmed'") == 1


async def test_idempotency_key_holds_across_nodes(api: Api, second_node: str, http: aiohttp.ClientSession) -> None:
    therapist, st = await api.ready_therapist()
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    slot = (await api.slots(therapist, st, tomorrow, tomorrow))[0]
    other = Api(http, second_node, api.admin_token)
    headers = {"Idempotency-Key": "same-everywhere"}
    a, b = await asyncio.gather(
        api.book(therapist, st, slot["start"], headers=headers),
        other.book(therapist, st, slot["start"], headers=headers),
    )
    assert a[0] == b[0] == 201 and a[1]["id"] == b[1]["id"]


async def test_a_node_books_by_the_hours_and_session_types_another_node_just_changed(
    api: Api, second_node: str, http: aiohttp.ClientSession
) -> None:
    # Node B keeps the rules it read at its first booking (broker.bookable); whatever node A changes
    # afterwards, B's next booking follows at once: never booked on the old rules, never refused on them.
    therapist, st = await api.ready_therapist()
    other = Api(http, second_node, api.admin_token)
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)
    at = lambda hour: dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC).isoformat()  # noqa: E731
    assert (await other.book(therapist, st, at(9)))[0] == 201  # B reads and keeps the rules

    await api.availability(therapist, overrides=[{"date": day.isoformat(), "intervals": []}])  # A: day off
    status, body = await other.book(therapist, st, at(11))
    assert (status, body["code"], body["reason"]) == (422, "slot_not_offered", "not_on_grid")

    await api.availability(therapist)  # A: the day is open again; B's kept rules say closed
    assert (await other.book(therapist, st, at(11)))[0] == 201

    status, _ = await api.call(
        "DELETE", f"/api/v1/therapists/{therapist['slug']}/session-types/{st['id']}", token=therapist["api_token"]
    )
    assert status in (200, 204)
    status, body = await other.book(therapist, st, at(13))
    assert (status, body["code"]) == (422, "unknown_session_type")
