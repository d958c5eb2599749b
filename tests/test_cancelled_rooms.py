"""A cancelled booking's room is closed: no token opens it, and the participants in it are ended, on every node."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from broker.app import create_app
from broker.clock import Clock
from broker.settings import Settings
from signaling.protocol import CloseCode
from tests.signaling_support import TIMEOUT, Booking, Ws, booking_in_window, join, room_token
from tests.support import Api, free_port
from tests.test_signaling import admitted_pair_from


@pytest.fixture
async def booking(api: Api) -> Booking:
    return await booking_in_window(api)


@pytest.fixture
async def second_node(settings: Settings, clock: Clock) -> AsyncIterator[int]:
    """Another node on the same PostgreSQL (nodes behind one load balancer share the public origin)."""
    other = dataclasses.replace(settings, port=free_port(), public_origin=settings.origin)
    srv = TestServer(create_app(other, clock=clock), host="127.0.0.1", port=other.port)
    await srv.start_server()
    yield other.port
    await srv.close()


async def cancel(api: Api, booking: Booking) -> None:
    status, body = await api.call("POST", f"/api/v1/bookings/{booking.id}/cancel", token=booking.therapist_token)
    assert status == 200 and body["status"] == "cancelled", body


async def assert_ended(ws: Ws) -> None:
    """`ended`, then a close frame with ROOM_ENDED. (The code in the frame: a client reading late can
    find the server's side of the TCP connection already shut when it answers, and aiohttp then
    reports 1006 as the socket's close code.)"""
    assert (await ws.recv())["type"] == "ended"
    msg = await ws.ws.receive(timeout=TIMEOUT)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, CloseCode.ROOM_ENDED)


@pytest.mark.parametrize("role", ["client", "therapist"])
async def test_a_token_minted_before_the_cancellation_does_not_open_the_room(
    api: Api, http: aiohttp.ClientSession, booking: Booking, role: str
) -> None:
    token = await room_token(api, booking, role)
    await cancel(api, booking)
    ws = await Ws.connect(http, token["signaling_url"])
    await ws.send(type="join", token=token["token"])
    await assert_ended(ws)


async def test_cancelling_ends_the_live_room_for_everyone_in_it(
    api: Api, http: aiohttp.ClientSession, booking: Booking
) -> None:
    therapist, client, _t, _c = await admitted_pair_from(
        http, await room_token(api, booking, "therapist"), await room_token(api, booking, "client")
    )
    await cancel(api, booking)
    await assert_ended(therapist)
    await assert_ended(client)


async def test_cancelling_ends_the_room_on_every_node(
    api: Api, http: aiohttp.ClientSession, booking: Booking, settings: Settings, second_node: int
) -> None:
    t_token = await room_token(api, booking, "therapist")
    c_token = await room_token(api, booking, "client")
    c_token["signaling_url"] = c_token["signaling_url"].replace(str(settings.port), str(second_node))
    therapist, client, _t, _c = await admitted_pair_from(http, t_token, c_token)
    other = Api(http, f"http://127.0.0.1:{second_node}", api.admin_token)
    await cancel(other, booking)  # through the node the therapist is not on
    await assert_ended(therapist)
    await assert_ended(client)


async def test_a_waiting_client_is_ended_too(api: Api, http: aiohttp.ClientSession, booking: Booking) -> None:
    therapist, _ = await join(http, await room_token(api, booking, "therapist"))
    client, joined = await join(http, await room_token(api, booking, "client"))
    assert joined["state"] == "waiting"
    await therapist.expect("waiting")
    await cancel(api, booking)
    await assert_ended(therapist)
    await assert_ended(client)
