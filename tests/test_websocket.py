"""The signaling socket's own RFC 6455 layer, spoken to byte by byte: framing rules, fragments, the
closing handshake, bytes sent right behind the upgrade request, and no task held by an idle socket."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from signaling import protocol
from signaling import websocket as w
from signaling.server import HUB
from tests.signaling_support import Booking, booking_in_window, join, room_token
from tests.support import Api

TIMEOUT = 10.0


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    """A frame as a client sends it: masked with a random key (RFC 6455 section 5.3)."""
    length = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 0x10000:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Raw:
    """A WebSocket client written out by hand, so tests can send what aiohttp's client never would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, url: str, behind_request: bytes = b"") -> tuple[Raw, bytes]:
        """Upgrade, sending `behind_request` in the same write as the request; (client, 101 head)."""
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        writer.write(request.encode() + behind_request)
        async with asyncio.timeout(TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert f"Sec-WebSocket-Accept: {w.accept_key(key)}".encode() in head
        return cls(reader, writer), head

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def send_json(self, **message: Any) -> None:
        self.writer.write(client_frame(w.OP_TEXT, json.dumps(message).encode()))

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload). Server frames are never masked."""
        async with asyncio.timeout(TIMEOUT):
            first, second = await self.reader.readexactly(2)
            assert not second & 0x80, "a server must not mask"
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return first & 0x0F, await self.reader.readexactly(length)

    async def message(self) -> dict[str, Any]:
        opcode, payload = await self.frame()
        assert opcode == w.OP_TEXT, (opcode, payload)
        data: dict[str, Any] = json.loads(payload)
        return data

    async def close_code(self) -> int:
        """Skip to the server's close frame; its code. The server then ends the TCP connection."""
        while True:
            opcode, payload = await self.frame()
            if opcode == w.OP_CLOSE:
                async with asyncio.timeout(TIMEOUT):
                    assert await self.reader.read() == b""
                return int.from_bytes(payload[:2], "big")

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def booking(api: Api) -> Booking:
    return await booking_in_window(api)


def join_frame(token: dict[str, Any]) -> bytes:
    return client_frame(w.OP_TEXT, json.dumps({"type": "join", "token": token["token"]}).encode())


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_unmask_is_the_rfc_xor(data: bytes, key: bytes) -> None:
    assert w.unmask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_frame_lengths_use_the_shortest_encoding(length: int) -> None:
    data = w.frame(w.OP_TEXT, b"a" * length)
    header = {0: 2, 125: 2, 126: 4, 65535: 4, 65536: 10}[length]
    assert data[0] == 0x81 and len(data) == header + length


async def test_a_join_sent_in_the_same_packet_as_the_upgrade_is_read(api: Api, booking: Booking) -> None:
    token = await room_token(api, booking, "therapist")
    raw, _ = await Raw.connect(token["signaling_url"], behind_request=join_frame(token))
    assert (await raw.message())["type"] == "joined"
    raw.close()


async def test_a_fragmented_join_with_a_ping_between_fragments(api: Api, booking: Booking) -> None:
    token = await room_token(api, booking, "therapist")
    raw, _ = await Raw.connect(token["signaling_url"])
    text = json.dumps({"type": "join", "token": token["token"]}).encode()
    raw.send(client_frame(w.OP_TEXT, text[:10], fin=False))
    raw.send(client_frame(w.OP_PING, b"between"))
    raw.send(client_frame(w.OP_CONTINUATION, text[10:40], fin=False))
    raw.send(client_frame(w.OP_CONTINUATION, text[40:]))
    assert await raw.frame() == (w.OP_PONG, b"between")
    assert (await raw.message())["type"] == "joined"
    raw.close()


async def test_a_frame_split_across_writes_is_put_back_together(api: Api, booking: Booking) -> None:
    token = await room_token(api, booking, "therapist")
    raw, _ = await Raw.connect(token["signaling_url"])
    data = join_frame(token)
    for i in range(0, len(data), 7):
        raw.send(data[i : i + 7])
        await raw.writer.drain()
        await asyncio.sleep(0.001)
    assert (await raw.message())["type"] == "joined"
    raw.close()


@pytest.mark.parametrize(
    "bad",
    [
        client_frame(w.OP_TEXT, b'{"type":"end"}', masked=False),
        client_frame(w.OP_TEXT, b'{"type":"end"}', rsv=0x40),
        client_frame(0x3, b"reserved opcode"),
        client_frame(w.OP_PING, b"fragmented control", fin=False),
        client_frame(w.OP_PING, b"x" * 126),
        client_frame(w.OP_CONTINUATION, b"nothing to continue"),
        client_frame(w.OP_CLOSE, b"\x03"),
    ],
)
async def test_frames_that_break_rfc_6455_close_with_1002(base_url: str, bad: bytes) -> None:
    raw, _ = await Raw.connect(base_url.replace("http", "ws", 1) + "/ws?room=any")
    raw.send(bad)
    assert await raw.close_code() == w.PROTOCOL_ERROR


async def test_text_that_is_not_utf8_closes_with_1007(base_url: str) -> None:
    raw, _ = await Raw.connect(base_url.replace("http", "ws", 1) + "/ws?room=any")
    raw.send(client_frame(w.OP_TEXT, b'{"type":"join","token":"\xff\xfe"}'))
    assert await raw.close_code() == w.INVALID_TEXT


async def test_a_fragmented_message_over_64_kib_is_refused_on_the_fragment_that_crosses(base_url: str) -> None:
    raw, _ = await Raw.connect(base_url.replace("http", "ws", 1) + "/ws?room=any")
    raw.send(client_frame(w.OP_TEXT, b"x" * 40_000, fin=False))
    raw.send(client_frame(w.OP_CONTINUATION, b"x" * 40_000))
    error = await raw.message()
    assert (error["type"], error["code"]) == ("error", "too_large")
    assert await raw.close_code() == protocol.CloseCode.TOO_LARGE


async def test_a_client_close_is_answered_with_its_code_and_the_room_told(
    api: Api, http: aiohttp.ClientSession, booking: Booking
) -> None:
    therapist, _ = await join(http, await room_token(api, booking, "therapist"))
    token = await room_token(api, booking, "client")
    raw, _ = await Raw.connect(token["signaling_url"], behind_request=join_frame(token))
    joined = await raw.message()
    await therapist.expect("waiting")
    raw.send(client_frame(w.OP_CLOSE, (4000).to_bytes(2, "big") + b"bye"))
    assert await raw.close_code() == 4000
    left = await therapist.expect("peer-left")
    assert left["participant"]["id"] == joined["participant"]


async def test_idle_joined_sockets_hold_no_task(api: Api, http: aiohttp.ClientSession, server: TestServer) -> None:
    """What makes an idle socket cheap: once joined, it waits in no task and no request handler
    (aiohttp's WebSocketResponse held two tasks per socket, and the request with them)."""
    bookings = [await booking_in_window(api) for _ in range(3)]
    tokens = [await room_token(api, b, role) for b in bookings for role in ("therapist", "client")]
    await asyncio.sleep(0.1)
    before = len(asyncio.all_tasks())
    sockets = [await join(http, token) for token in tokens]
    await asyncio.sleep(0.2)  # the joins' tasks finish
    handlers = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.startswith("RequestHandler.")]
    assert handlers == []  # aiohttp's request handling ended with the upgrade
    assert len(asyncio.all_tasks()) - before < len(sockets)
    hub = server.app[HUB]
    assert len(hub.sockets) == len(sockets) and all(isinstance(s, w.WebSocket) for s in hub.sockets)
