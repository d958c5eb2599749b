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
