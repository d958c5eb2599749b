"""A participant that stops reading is dropped within two heartbeats and its peer is told, however
slowly it is sent to and whatever it keeps sending itself."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from broker.settings import Settings
from signaling.server import HUB
from tests.signaling_support import Booking, Ws, booking_in_window, room_token
from tests.support import Api
from tests.test_signaling import admitted_pair_from

HEARTBEAT = 1
# Two heartbeats and generous slack for a loaded machine: a bound on the wait, not a timing claim.
WAIT = 10 * HEARTBEAT


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, signaling_heartbeat_seconds=HEARTBEAT)


@pytest.fixture
async def booking(api: Api) -> Booking:
    return await booking_in_window(api)


async def every(seconds: float, send: Callable[[], Awaitable[None]]) -> None:
    """Call `send()` every `seconds` until cancelled (or the socket refuses)."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        while True:
            await send()
            await asyncio.sleep(seconds)


async def until_peer_left(ws: Ws) -> dict[str, object]:
    """The next `peer-left`, skipping the signals relayed meanwhile."""
    async with asyncio.timeout(WAIT):  # around the loop: pings restart receive()'s own timeout
        while True:
            message = await ws.recv()
            if message["type"] == "peer-left":
                return message
            assert message["type"] == "signal", message


async def drop_case(
    api: Api, http: aiohttp.ClientSession, booking: Booking, server: TestServer, *, stalled_talks: bool
) -> None:
    therapist, client, t_id, c_id = await admitted_pair_from(
        http, await room_token(api, booking, "therapist"), await room_token(api, booking, "client")
    )
    # From here on the client never calls receive(): its pings go unanswered, frames pile up unread.
    slow_sender = asyncio.create_task(
        every(4 * HEARTBEAT / 10, lambda: therapist.send(type="signal", to=c_id, data={"sdp": "x" * 2048}))
    )
    talker = asyncio.create_task(
        every(HEARTBEAT / 4, lambda: client.send(type="signal", to=t_id, data={"candidate": {}}))
        if stalled_talks
        else asyncio.sleep(0)
    )
    try:
        left = await until_peer_left(therapist)
        assert left["participant"] == {"id": c_id, "role": "client"}
        assert c_id not in {c.participant for room in server.app[HUB].rooms.values() for c in room.conns.values()}
    finally:
        slow_sender.cancel()
        talker.cancel()
    # Reading again, the client finds its connection gone: what was sent before the drop, then no more
    # (aiohttp raises when it answers a ping that waited in its buffer).
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(WAIT):
            while (await client.ws.receive()).type == aiohttp.WSMsgType.TEXT:
                pass


async def test_a_client_that_keeps_sending_but_never_reads_is_dropped_and_its_peer_told(
    api: Api, http: aiohttp.ClientSession, booking: Booking, server: TestServer
) -> None:
    await drop_case(api, http, booking, server, stalled_talks=True)


async def test_a_silent_client_that_never_reads_is_dropped_and_its_peer_told(
    api: Api, http: aiohttp.ClientSession, booking: Booking, server: TestServer
) -> None:
    await drop_case(api, http, booking, server, stalled_talks=False)


async def test_a_reading_client_stays_however_quiet_it_is(
    api: Api, http: aiohttp.ClientSession, booking: Booking, server: TestServer
) -> None:
    """Answering pings is enough: a participant that reads is never dropped by the heartbeat."""
    therapist, client, _t, c_id = await admitted_pair_from(
        http, await room_token(api, booking, "therapist"), await room_token(api, booking, "client")
    )
    reader = asyncio.create_task(client.recv())  # aiohttp answers pings while receive() waits
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(3 * HEARTBEAT):
            await therapist.recv()  # no peer-left across three heartbeats
    await therapist.send(type="signal", to=c_id, data={"still": "here"})
    assert (await reader)["data"] == {"still": "here"}
