"""A join the database cannot serve: the socket closes with 1013 (try again later) at once, and the
outage is one log line (the service's database health), not a stack trace per socket."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from broker.database import POOL
from broker.settings import Settings
from signaling import websocket as w
from tests.signaling_support import booking_in_window, room_token
from tests.support import Api
from tests.test_websocket import Raw, join_frame

TIMEOUT_SECONDS = 1


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, database_timeout_seconds=TIMEOUT_SECONDS)


@contextlib.asynccontextmanager
async def starved(server: TestServer) -> AsyncIterator[None]:
    """Every connection of the service's pool held: an acquire waits out its timeout, as when the
    database is frozen and every connection hangs in a statement."""
    pool = server.app[POOL]
    async with contextlib.AsyncExitStack() as held:
        with contextlib.suppress(TimeoutError):
            while True:
                await held.enter_async_context(pool.acquire(timeout=0.5))
        yield


async def test_a_join_the_database_cannot_serve_closes_with_1013_and_no_stack(
    api: Api, server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = await room_token(api, await booking_in_window(api), "client")
    async with starved(server):
        raw, _ = await Raw.connect(token["signaling_url"], behind_request=join_frame(token))
        assert await raw.close_code() == w.TRY_AGAIN_LATER
    said = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(said) == 1, said  # the service's health noted the outage, once
    assert not [r for r in caplog.records if r.exc_info], "an outage is one line, not a stack per socket"
