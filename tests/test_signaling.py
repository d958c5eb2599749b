"""The signaling WebSocket through the running service: waiting room, admission, relaying, and every refusal."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from broker.app import create_app
from broker.clock import Clock
from broker.settings import Settings
from signaling import protocol, relay
from signaling.mount import RELAY_MODE
from signaling.server import HUB
from tests.signaling_support import Booking, Ws, booking_in_window, join, room_token
from tests.support import Api, free_port

DOC = Path(__file__).resolve().parent.parent / "docs" / "signaling.md"


@pytest.fixture
async def booking(api: Api) -> Booking:
    return await booking_in_window(api)


async def admitted_pair(api: Api, http: aiohttp.ClientSession, booking: Booking) -> tuple[Ws, Ws, str, str]:
    """Therapist and client in the room, the client admitted; the queues drained of the admission."""
    return await admitted_pair_from(
        http, await room_token(api, booking, "therapist"), await room_token(api, booking, "client")
    )


async def admitted_pair_from(
    http: aiohttp.ClientSession, t_token: dict[str, Any], c_token: dict[str, Any]
) -> tuple[Ws, Ws, str, str]:
    therapist, t_joined = await join(http, t_token)
    client, c_joined = await join(http, c_token)
    waiting = await therapist.expect("waiting")
    await therapist.send(type="admit", participant=waiting["participant"]["id"])
    await client.expect("admitted")
    await client.expect("peer-joined")
    await therapist.expect("peer-joined")
    return therapist, client, t_joined["participant"], c_joined["participant"]


async def test_client_waits_until_the_therapist_admits(
    api: Api, http: aiohttp.ClientSession, booking: Booking, db: asyncpg.Connection
) -> None:
    therapist, t_joined = await join(http, await room_token(api, booking, "therapist"))
    assert t_joined["state"] == "admitted" and t_joined["role"] == "therapist" and t_joined["peers"] == []

    client, c_joined = await join(http, await room_token(api, booking, "client"), location="At home, Berlin")
    assert c_joined["state"] == "waiting" and c_joined["role"] == "client" and c_joined["peers"] == []
    assert isinstance(c_joined["ice_servers"], list)

    waiting = await therapist.expect("waiting")
    assert waiting["participant"] == {
        "id": c_joined["participant"],
        "name": "Client Example",
        "location": "At home, Berlin",
    }

    await therapist.send(type="admit", participant=c_joined["participant"])
    await client.expect("admitted")
    assert (await client.expect("peer-joined"))["participant"] == {"id": t_joined["participant"], "role": "therapist"}
    assert (await therapist.expect("peer-joined"))["participant"] == {"id": c_joined["participant"], "role": "client"}

    await client.close()
    assert (await therapist.expect("peer-left"))["participant"]["id"] == c_joined["participant"]
    rows = await db.fetch("SELECT participant, event FROM attendance_events ORDER BY id")
    events = [(r["participant"], r["event"]) for r in rows]
    assert events == [
        (t_joined["participant"], "joined"),
        (c_joined["participant"], "joined"),
        (c_joined["participant"], "admitted"),
        (c_joined["participant"], "left"),
    ]


async def test_signal_and_chat_reach_only_the_admitted_peer(
    api: Api, http: aiohttp.ClientSession, booking: Booking
) -> None:
    therapist, client, t_id, c_id = await admitted_pair(api, http, booking)
    offer = {"description": {"type": "offer", "sdp": "v=0\r\n"}}
    await therapist.send(type="signal", to=c_id, data=offer)
    assert await client.expect("signal") == {"type": "signal", "from": t_id, "data": offer}
    await client.send(type="signal", to=t_id, data={"candidate": None})
    assert (await therapist.expect("signal"))["data"] == {"candidate": None}

    await client.send(type="chat", text="Can you hear me?")
    line = await therapist.expect("chat")
    assert line["from"] == c_id and line["text"] == "Can you hear me?"
    assert dt.datetime.fromisoformat(line["at"]).tzinfo is not None


async def test_client_cannot_admit_remove_or_end(api: Api, http: aiohttp.ClientSession, booking: Booking) -> None:
    therapist, t_joined = await join(http, await room_token(api, booking, "therapist"))
    client, c_joined = await join(http, await room_token(api, booking, "client"))
    await therapist.expect("waiting")
    for attempt in (
        {"type": "admit", "participant": c_joined["participant"]},
        {"type": "remove", "participant": t_joined["participant"]},
        {"type": "end"},
    ):
        await client.send(**attempt)
        assert (await client.expect("error"))["code"] == "forbidden"
    # No effect: the client still waits, the therapist is still there and can admit.
    await therapist.send(type="admit", participant=c_joined["participant"])
    await client.expect("admitted")


async def test_signal_needs_admission_on_both_sides(api: Api, http: aiohttp.ClientSession, booking: Booking) -> None:
    therapist, t_joined = await join(http, await room_token(api, booking, "therapist"))
    client, c_joined = await join(http, await room_token(api, booking, "client"))
    await therapist.expect("waiting")

    await client.send(type="signal", to=t_joined["participant"], data={"sdp": "x"})
    assert (await client.expect("error"))["code"] == "not_admitted"
    await client.send(type="chat", text="hello?")
    assert (await client.expect("error"))["code"] == "not_admitted"
    await therapist.send(type="signal", to=c_joined["participant"], data={"sdp": "x"})
    assert (await therapist.expect("error"))["code"] == "not_admitted"
    await therapist.send(type="signal", to="c-000000000000", data={"sdp": "x"})
    assert (await therapist.expect("error"))["code"] == "unknown_peer"
    await therapist.send(type="admit", participant="c-000000000000")
    assert (await therapist.expect("error"))["code"] == "unknown_peer"


async def test_join_with_no_token_or_a_bad_one_is_closed(
    api: Api, http: aiohttp.ClientSession, base_url: str, booking: Booking
) -> None:
    url = base_url.replace("http", "ws", 1) + f"/ws?room={booking.id}"
    silent = await Ws.connect(http, url)
    nonsense = await Ws.connect(http, url)
    await nonsense.send(type="join", token="eyJhbGciOiJub25lIn0.e30.")
    assert (await nonsense.expect("error"))["code"] == "token_invalid"
    assert await nonsense.closed() == protocol.CloseCode.TOKEN_REJECTED

    not_join = await Ws.connect(http, url)
    await not_join.send(type="chat", text="let me in")
    assert (await not_join.expect("error"))["code"] == "join_required"
    assert await not_join.closed() == protocol.CloseCode.JOIN_REQUIRED

    assert (await silent.expect("error"))["code"] == "join_timeout"
    assert await silent.closed() == protocol.CloseCode.JOIN_TIMEOUT

    async with http.get(base_url + "/ws") as resp:  # no room in the URL: refused before any upgrade
        assert resp.status == 422 and (await resp.json())["code"] == "missing_parameter"


async def test_foreign_origin_is_refused_before_the_upgrade(
    api: Api, http: aiohttp.ClientSession, base_url: str, booking: Booking
) -> None:
    url = base_url.replace("http", "ws", 1) + f"/ws?room={booking.id}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await Ws.connect(http, url, origin="https://evil.example")
    assert refused.value.status == 403
    async with http.get(url.replace("ws", "http", 1), headers={"Origin": "https://evil.example"}) as resp:
        assert resp.status == 403 and (await resp.json())["code"] == "origin_forbidden"
    same = await Ws.connect(http, url, origin=base_url)  # the service's own pages are welcome
    await same.send(type="join", token=(await room_token(api, booking, "therapist"))["token"])
    assert (await same.expect("joined"))["state"] == "admitted"


async def test_token_for_another_room_is_refused(api: Api, http: aiohttp.ClientSession, booking: Booking) -> None:
    other = await booking_in_window(api)
    token = await room_token(api, other, "client")
    ws = await Ws.connect(http, f"{token['signaling_url'].split('?')[0]}?room={booking.id}")
    await ws.send(type="join", token=token["token"])
    assert (await ws.expect("error"))["code"] == "token_wrong_room"
    assert await ws.closed() == protocol.CloseCode.TOKEN_REJECTED


async def test_replayed_token_is_refused(api: Api, http: aiohttp.ClientSession, booking: Booking) -> None:
    token = await room_token(api, booking, "client")
    first, _ = await join(http, token)
    again = await Ws.connect(http, token["signaling_url"])
    await again.send(type="join", token=token["token"])
    assert (await again.expect("error"))["code"] == "token_replayed"
    assert await again.closed() == protocol.CloseCode.TOKEN_REJECTED
    await first.send(type="chat", text="still here")  # the first connection is untouched
    assert (await first.expect("error"))["code"] == "not_admitted"


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        ("x" * (70 * 1024), protocol.CloseCode.TOO_LARGE, "too_large"),
        ("{not json", protocol.CloseCode.MALFORMED, "malformed"),
        ('{"type":"chat","text":""}', protocol.CloseCode.MALFORMED, "malformed"),
        ('{"type":"chat","text":"a\\u0000b"}', protocol.CloseCode.MALFORMED, "malformed"),
        ('{"type":"signal","to":"x","data":{},"extra":1}', protocol.CloseCode.MALFORMED, "malformed"),
        ('{"type":"teleport"}', protocol.CloseCode.UNKNOWN_TYPE, "unknown_type"),
        (b"\x00\x01", protocol.CloseCode.BINARY_FRAME, "binary_frame"),
    ],
)
async def test_bad_frames_close_only_their_connection(
    api: Api, http: aiohttp.ClientSession, booking: Booking, frame: str | bytes, code: int, reason: str
) -> None:
    therapist, client, _t_id, c_id = await admitted_pair(api, http, booking)
    if isinstance(frame, bytes):
        await client.ws.send_bytes(frame)
    else:
        await client.ws.send_str(frame)
    assert (await client.expect("error"))["code"] == reason
    assert await client.closed() == code
    assert (await therapist.expect("peer-left"))["participant"]["id"] == c_id
    # The room carries on: the client comes back with a fresh token, admitted at once.
    back, joined = await join(http, await room_token(api, booking, "client"))
    assert joined["state"] == "admitted"
    await back.send(type="chat", text="back")
    assert (await therapist.expect("peer-joined"))["participant"]["id"] == c_id
    assert (await therapist.expect("chat"))["text"] == "back"


async def test_a_huge_frame_is_refused_unread_with_the_same_close_code(
    api: Api, http: aiohttp.ClientSession, booking: Booking
) -> None:
    therapist, client, _t_id, c_id = await admitted_pair(api, http, booking)
    await client.ws.send_str("x" * (1024 * 1024))
    assert await client.closed() == protocol.CloseCode.TOO_LARGE
    assert (await therapist.expect("peer-left"))["participant"]["id"] == c_id


async def test_flood_is_closed_and_the_room_carries_on(api: Api, http: aiohttp.ClientSession, booking: Booking) -> None:
    therapist, client, t_id, c_id = await admitted_pair(api, http, booking)
    for i in range(400):
        if client.ws.closed:
            break
        await client.ws.send_str(json.dumps({"type": "signal", "to": t_id, "data": {"n": i}}))
    codes = []
    while True:
        message = await client.recv() if not client.ws.closed else None
        if message is None or message["type"] == "error":
            codes.append(message and message["code"])
            break
    assert codes == ["rate_limited"]
    assert await client.closed() == protocol.CloseCode.RATE_LIMITED
    relayed = 0
    while (message := await therapist.recv())["type"] == "signal":
        relayed += 1
    assert message["type"] == "peer-left" and 90 <= relayed < 400
    await therapist.send(type="chat", text="anyone?")  # the therapist's connection is fine
    await therapist.send(type="signal", to=c_id, data={})
    assert (await therapist.expect("error"))["code"] == "unknown_peer"


async def test_reconnect_replaces_the_old_connection_without_a_second_admission(
    api: Api, http: aiohttp.ClientSession, booking: Booking, db: asyncpg.Connection
) -> None:
    therapist, old, t_id, c_id = await admitted_pair(api, http, booking)
    new, joined = await join(http, await room_token(api, booking, "client"))
    assert joined["state"] == "admitted"
    assert joined["peers"] == [{"id": t_id, "role": "therapist"}]
    assert (await old.expect("error"))["code"] == "replaced"
    assert await old.closed() == protocol.CloseCode.REPLACED
    assert (await therapist.expect("peer-left"))["participant"]["id"] == c_id
    assert (await therapist.expect("peer-joined"))["participant"]["id"] == c_id
    await therapist.send(type="signal", to=c_id, data={"hello": 1})
    assert (await new.expect("signal"))["data"] == {"hello": 1}
    events = [
        r["event"]
        for r in await db.fetch("SELECT event FROM attendance_events WHERE participant = $1 ORDER BY id", c_id)
    ]
    assert events == ["joined", "admitted", "joined"]  # no `left` for the replaced socket, no second admission


async def test_therapist_removes_a_client_and_ends_the_room(
    api: Api, http: aiohttp.ClientSession, booking: Booking
) -> None:
    therapist, client, _t_id, c_id = await admitted_pair(api, http, booking)
    await therapist.send(type="remove", participant=c_id)
    assert (await client.expect("error"))["code"] == "removed"
    assert await client.closed() == protocol.CloseCode.REMOVED
    assert (await therapist.expect("peer-left"))["participant"]["id"] == c_id

    again, joined = await join(http, await room_token(api, booking, "client"))
    assert joined["state"] == "waiting"  # removal revokes the earlier admission
    await therapist.expect("waiting")
    await therapist.send(type="end")
    for ws in (therapist, again):
        await ws.expect("ended")
        assert await ws.closed() == protocol.CloseCode.ROOM_ENDED


async def test_an_ended_session_stays_ended_for_the_client_until_the_therapist_returns(
    api: Api, http: aiohttp.ClientSession, booking: Booking
) -> None:
    therapist, client, _t_id, _c_id = await admitted_pair(api, http, booking)
    early_token = await room_token(api, booking, "client")  # fetched before End, used after
    await therapist.send(type="end")
    for ws in (therapist, client):
        await ws.expect("ended")
        assert await ws.closed() == protocol.CloseCode.ROOM_ENDED

    status, body = await api.call("POST", f"/api/v1/bookings/{booking.id}/room-token", token=booking.client_key)
    assert (status, body["code"], body["reason"]) == (410, "room_closed", "ended")
    late = await Ws.connect(http, early_token["signaling_url"])
    await late.send(type="join", token=early_token["token"])
    await late.expect("ended")
    assert await late.closed() == protocol.CloseCode.ROOM_ENDED

    # The therapist coming back reopens the room (an End pressed by mistake is not final).
    back, _ = await join(http, await room_token(api, booking, "therapist"))
    again, joined = await join(http, await room_token(api, booking, "client"))
    assert joined["state"] == "admitted"  # admitted earlier in this session, not held again
    await back.close()
    await again.close()


async def test_room_closes_at_the_end_of_the_join_window(
    api: Api, http: aiohttp.ClientSession, booking: Booking, clock: Clock
) -> None:
    window_end = booking.end + dt.timedelta(minutes=10)
    clock.advance(window_end - dt.timedelta(seconds=3) - clock.now())
    therapist, _ = await join(http, await room_token(api, booking, "therapist"))
    client, _ = await join(http, await room_token(api, booking, "client"))
    ending = await therapist.expect("ending")
    assert dt.datetime.fromisoformat(ending["at"]) == window_end
    await therapist.expect("waiting")
    await therapist.expect("ended")
    assert await therapist.closed() == protocol.CloseCode.ROOM_ENDED
    await client.expect("ending")
    await client.expect("ended")
    assert await client.closed() == protocol.CloseCode.ROOM_ENDED


async def test_ending_warning_comes_five_minutes_before_the_window_closes(
    api: Api, http: aiohttp.ClientSession, booking: Booking, clock: Clock
) -> None:
    window_end = booking.end + dt.timedelta(minutes=10)
    clock.advance(window_end - dt.timedelta(minutes=6) - clock.now())
    therapist, client, t_id, _c_id = await admitted_pair(api, http, booking)
    clock.advance(dt.timedelta(minutes=1, seconds=1))  # now 4:59 before the end
    assert dt.datetime.fromisoformat((await therapist.expect("ending"))["at"]) == window_end
    assert dt.datetime.fromisoformat((await client.expect("ending"))["at"]) == window_end
    await therapist.send(type="chat", text="still open")  # the room stays usable until the end
    line = await client.expect("chat")
    assert (line["from"], line["text"]) == (t_id, "still open")


# --- several nodes ---------------------------------------------------------------------------


async def test_two_nodes_share_a_room_through_postgres(
    api: Api, http: aiohttp.ClientSession, booking: Booking, settings: Settings, clock: Clock, server: TestServer
) -> None:
    assert server.app[RELAY_MODE] == "auto" and settings.database_url  # node one relays through PostgreSQL too
    # Nodes behind one load balancer share the public origin (the tokens' issuer).
    other = dataclasses.replace(settings, port=free_port(), public_origin=settings.origin)
    app = create_app(other, clock=clock)
    srv = TestServer(app, host="127.0.0.1", port=other.port)
    await srv.start_server()
    try:
        t_token = await room_token(api, booking, "therapist")
        c_token = await room_token(api, booking, "client")
        c_token["signaling_url"] = c_token["signaling_url"].replace(str(settings.port), str(other.port))
        therapist, t_joined = await join(http, t_token)
        client, c_joined = await join(http, c_token)
        waiting = await therapist.expect("waiting")
        assert waiting["participant"]["id"] == c_joined["participant"]
        await therapist.send(type="admit", participant=c_joined["participant"])
        await client.expect("admitted")
        await client.expect("peer-joined")
        await therapist.expect("peer-joined")
        big = {"sdp": "a=candidate:" + "x" * 40_000 + "é"}  # far over NOTIFY's 8000 bytes
        await therapist.send(type="signal", to=c_joined["participant"], data=big)
        assert (await client.expect("signal"))["data"] == big
        await client.send(type="signal", to=t_joined["participant"], data={"type": "answer"})
        assert (await therapist.expect("signal"))["data"] == {"type": "answer"}
        await client.close()
        assert (await therapist.expect("peer-left"))["participant"]["id"] == c_joined["participant"]
    finally:
        await srv.close()


async def test_server_shutdown_closes_sockets_with_going_away(
    api: Api, http: aiohttp.ClientSession, booking: Booking, settings: Settings, clock: Clock
) -> None:
    other = dataclasses.replace(settings, port=free_port(), public_origin=settings.origin)
    srv = TestServer(create_app(other, clock=clock), host="127.0.0.1", port=other.port)
    await srv.start_server()
    closing = None
    try:
        token = await room_token(api, booking, "therapist")
        token["signaling_url"] = token["signaling_url"].replace(str(settings.port), str(other.port))
        ws, _ = await join(http, token)
        closing = asyncio.create_task(srv.close())
        assert await ws.closed() == protocol.CloseCode.GOING_AWAY
    finally:
        await (closing or srv.close())


# --- the relay's framing, and the contract document -------------------------------------------


def test_large_relay_events_are_chunked_under_the_notify_limit() -> None:
    payload = json.dumps({"sdp": "é" * 30_000}).encode()
    frames = relay.notifications("node1", 7, payload)
    assert len(frames) > 1 and all(len(f.encode()) < 8000 for f in frames)
    collector = relay.Reassembler()
    results = [collector.feed(f) for f in reversed(frames)]
    assert results[:-1] == [None] * (len(frames) - 1) and results[-1] == ("node1", payload)
    assert collector.feed(relay.notifications("n", 1, b'{"a":1}')[0]) == ("n", b'{"a":1}')
    assert collector.feed("c n 1 0 2 !!!not-base64") is None


def test_the_protocol_document_names_every_message_and_close_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    for kind in (*protocol.CLIENT_TYPES, *protocol.SERVER_TYPES):
        tag = protocol.tag_of(kind)
        assert re.search(rf'"type":\s*"{re.escape(tag)}"', text), f"docs/signaling.md lacks message {tag!r}"
        for field in kind.__struct_encode_fields__:
            if field != "type":
                assert f'"{field}"' in text, f"docs/signaling.md lacks field {field!r} of {tag!r}"
    for code in protocol.CloseCode:
        assert re.search(rf"\b{code.value}\b.*`{code.name}`", text), f"docs/signaling.md lacks close code {code!r}"
    for error in (protocol.FORBIDDEN, protocol.NOT_ADMITTED, protocol.UNKNOWN_PEER, protocol.ALREADY_JOINED):
        assert f"`{error}`" in text


async def test_a_single_node_with_the_in_process_relay_admits_and_relays(
    api: Api, http: aiohttp.ClientSession, booking: Booking, settings: Settings, clock: Clock
) -> None:
    other = dataclasses.replace(settings, port=free_port(), public_origin=settings.origin)
    app = create_app(other, clock=clock)
    app[RELAY_MODE] = "local"
    srv = TestServer(app, host="127.0.0.1", port=other.port)
    await srv.start_server()
    try:
        assert isinstance(app[HUB].relay, relay.LocalRelay)
        tokens = [await room_token(api, booking, role) for role in ("therapist", "client")]
        for token in tokens:
            token["signaling_url"] = token["signaling_url"].replace(str(settings.port), str(other.port))
        therapist, client, t_id, _c_id = await admitted_pair_from(http, *tokens)
        await client.send(type="signal", to=t_id, data={"n": 1})
        assert (await therapist.expect("signal"))["data"] == {"n": 1}
    finally:
        await srv.close()
