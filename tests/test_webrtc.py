"""Real WebRTC through the running service: two aiortc participants meet in a room, and the echo peer."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from broker import cli
from signaling import protocol as p
from signaling.participant import Participant, echo_check, wait_until
from tests.signaling_support import booking_in_window, room_token
from tests.support import Api


async def test_therapist_and_client_meet_with_video_and_data_both_ways(api: Api, http: aiohttp.ClientSession) -> None:
    booking = await booking_in_window(api)
    t_token = await room_token(api, booking, "therapist")
    c_token = await room_token(api, booking, "client")
    therapist = Participant(t_token["signaling_url"], t_token["token"], session=http)
    client = Participant(c_token["signaling_url"], c_token["token"], session=http, location="Home office")
    try:
        assert (await therapist.join()).state == "admitted"
        assert (await client.join()).state == "waiting"
        async with asyncio.timeout(10):
            waiting = await therapist.next(p.Waiting)
        assert isinstance(waiting, p.Waiting) and waiting.participant.id == client.id
        assert client.links == {}  # nobody negotiates with a participant in the waiting room

        await therapist.admit(client.id)
        async with asyncio.timeout(20):
            await client.next(p.Admitted)
            to_client = await therapist.link(client.id)
            to_therapist = await client.link(therapist.id)
            await to_client.connected.wait()
            await to_therapist.connected.wait()
        assert to_client.dtls_states() == {"connected"} and to_therapist.dtls_states() == {"connected"}
        assert not to_client.polite and to_therapist.polite  # the therapist is the impolite peer

        await wait_until(lambda: to_client.frames["video"] >= 5 and to_therapist.frames["video"] >= 5, 20)
        async with asyncio.timeout(10):
            await to_client.channel_open.wait()
            await to_therapist.channel_open.wait()
            to_client.channel.send("hello from the therapist")
            to_therapist.channel.send("hello from the client")
            assert await to_therapist.messages.get() == "hello from the therapist"
            assert await to_client.messages.get() == "hello from the client"
    finally:
        await client.close()
        await therapist.close()


async def test_echo_peer_sends_the_callers_video_back(base_url: str, http: aiohttp.ClientSession) -> None:
    result = await echo_check(base_url, http)
    assert result.connected and result.video_frames >= 5 and result.channel_echo


async def test_echo_offers_are_rate_limited_per_address(api: Api) -> None:
    statuses = []
    for _ in range(6):
        status, body = await api.call("POST", "/api/v1/echo/offer", json={"type": "offer", "sdp": "v=0\r\n"})
        statuses.append((status, body["code"]))
    assert statuses[:5] == [(422, "invalid_sdp")] * 5
    assert statuses[5] == (429, "rate_limited")


async def test_probe_command_checks_health_echo_and_a_room_join(
    api: Api, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    booking = await booking_in_window(api)
    token = await room_token(api, booking, "client")
    code = await asyncio.to_thread(cli.main, ["probe", base_url, "--token", token["token"], "--timeout", "20"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", "healthz"], ["ok", "readyz"], ["ok", "echo"], ["ok", "room"]]
    assert f"client {token['participant']}, waiting" in lines[3]
    # The token is used up: probing with it again fails the room step, and says so.
    code = await asyncio.to_thread(cli.main, ["probe", base_url, "--token", token["token"], "--timeout", "20"])
    assert code == 1 and "FAIL  room" in capsys.readouterr().out
