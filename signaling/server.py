"""GET /ws: the signaling WebSocket. Origin check before the upgrade, `join` within 5 s, then the room.

Limits (docs/signaling.md, "Limits"): frames of at most 64 KiB, JSON text only, a token bucket of
50 messages a second with bursts of 100 per connection, a bounded outgoing queue per connection,
and a heartbeat (`TELEROOM_SIGNALING_HEARTBEAT_SECONDS`): the hub pings every joined connection
and drops one that has not answered by the next ping. aiohttp's own heartbeat is off: it took any
frame received as an answer, so a client that kept sending but never read stayed forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from broker import room_access, tokens
from broker.clock import CLOCK
from broker.database import POOL
from broker.errors import Forbidden
from broker.http.endpoints import query_param
from broker.http.problems import HttpProblem
from broker.settings import SETTINGS
from signaling import protocol as p
from signaling.hub import Connection, Hub

log = logging.getLogger(__name__)

HUB = web.AppKey("signaling_hub", Hub)

JOIN_TIMEOUT_SECONDS = 5.0
RATE_PER_SECOND = 50.0
RATE_BURST = 100.0
# aiohttp refuses frames over this without reading them; frames between the protocol limit and
# this are read and refused by us. Either way the client gets 4413 (see SignalingSocket).
READER_LIMIT = 4 * p.MAX_FRAME_BYTES


class SignalingSocket(web.WebSocketResponse):
    """aiohttp closes a frame over `max_msg_size` with the standard 1009; the protocol promises
    one documented code for every oversized frame, so that close says 4413 instead."""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG:
            code, message = p.CloseCode.TOO_LARGE, b"too_large"
        return await super().close(code=code, message=message, drain=drain)


class TokenBucket:
    """`rate` tokens a second up to `burst`; `take()` is False once the bucket is empty."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level < 1.0:
            return False
        self.level -= 1.0
        return True


def check_origin(request: web.Request) -> None:
    """Refuse a browser page from another origin before the upgrade (cross-site WebSocket hijacking).

    Browsers always send `Origin` on a WebSocket handshake (RFC 6455 section 4.1, RFC 6454), so
    a missing header means a non-browser client (aiortc, `teleroom probe`), which cannot ride a
    user's ambient credentials anyway: the room token in `join` is what admits anyone.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if origin.rstrip("/") != request.app[SETTINGS].origin:
        raise Forbidden("This WebSocket accepts pages of this service's own origin only.", code="origin_forbidden")


async def websocket(request: web.Request) -> web.StreamResponse:
    check_origin(request)
    room = query_param(request, "room", required=True)
    ws = SignalingSocket(heartbeat=None, max_msg_size=READER_LIMIT, compress=False, autoclose=True, autoping=False)
    if not ws.can_prepare(request).ok:
        raise HttpProblem(426, "websocket_required", "Connect with a WebSocket upgrade.")
    hub = request.app[HUB]
    await ws.prepare(request)
    hub.sockets.add(ws)
    conn: Connection | None = None
    try:
        conn = await _handshake(request, ws, room or "")
        if conn is not None:
            await hub.join(conn)
            await _serve(hub, ws, conn)
    finally:
        hub.sockets.discard(ws)
        if conn is not None:
            # aiohttp cancels the handler when the peer's connection goes away; leaving the room
            # (the `left` record, telling the others) must finish regardless.
            await asyncio.shield(hub.leave(conn))
        if not ws.closed:
            await ws.close()
    return ws


async def _refuse(ws: web.WebSocketResponse, code: p.CloseCode, reason: str, message: str) -> None:
    await ws.send_frame(p.encode(p.Error(code=reason, message=message)), WSMsgType.TEXT)
    await ws.close(code=code)


async def _handshake(request: web.Request, ws: web.WebSocketResponse, room: str) -> Connection | None:
    """Wait for `join`, check and use up its token. None when the socket was refused and closed."""
    try:
        async with asyncio.timeout(JOIN_TIMEOUT_SECONDS):
            msg = await ws.receive()
            while msg.type in (WSMsgType.PING, WSMsgType.PONG):  # autoping is off (see the module doc)
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                msg = await ws.receive()
    except TimeoutError:
        await _refuse(ws, p.CloseCode.JOIN_TIMEOUT, "join_timeout", "Send `join` within 5 seconds.")
        return None
    message = await _decode(ws, msg)
    if message is None:
        return None
    if not isinstance(message, p.Join):
        await _refuse(ws, p.CloseCode.JOIN_REQUIRED, "join_required", "The first message must be `join`.")
        return None
    app = request.app
    pool = app[POOL]
    keys = app.get(tokens.KEYRING)
    try:
        claims = await room_access.enter(pool, app[SETTINGS], message.token, app[CLOCK].now(), room=room, keys=keys)
    except tokens.TokenRejected as rejected:
        await _refuse(ws, p.CloseCode.TOKEN_REJECTED, rejected.code, rejected.detail)
        return None
    except room_access.RoomClosed:
        # A token fetched just before the booking was cancelled, or (a client's) before the therapist
        # pressed End: the room is over for its holder.
        await ws.send_frame(p.encode(p.Ended()), WSMsgType.TEXT)
        await ws.close(code=p.CloseCode.ROOM_ENDED)
        return None
    return Connection(ws, claims, message.location, request.transport)


async def _decode(ws: web.WebSocketResponse, msg: WSMessage) -> p.ClientMessage | None:
    """The message in a frame, or None after closing the socket for a frame that breaks the rules."""
    if msg.type == WSMsgType.TEXT:
        try:
            return p.decode_client(msg.data)
        except p.ProtocolError as exc:
            await _refuse(ws, exc.close_code, exc.reason, exc.message)
            return None
    if msg.type == WSMsgType.BINARY:
        await _refuse(ws, p.CloseCode.BINARY_FRAME, "binary_frame", "Send JSON text frames only.")
    return None  # CLOSE, CLOSING, CLOSED, ERROR: aiohttp has answered or closed already


async def _serve(hub: Hub, ws: web.WebSocketResponse, conn: Connection) -> None:
    bucket = TokenBucket(RATE_PER_SECOND, RATE_BURST)
    async for msg in ws:
        if conn.closing:
            break
        if msg.type == WSMsgType.PONG:
            if msg.data == hub.beat:  # an answer to this round's ping, not an unsolicited pong
                conn.answered()
            continue
        if msg.type == WSMsgType.PING:
            with contextlib.suppress(ConnectionError):
                await ws.pong(msg.data)
            continue
        if not bucket.take():
            conn.close(p.CloseCode.RATE_LIMITED, "rate_limited", "Too many messages; slow down.")
            break
        if msg.type == WSMsgType.TEXT:
            try:
                message = p.decode_client(msg.data)
            except p.ProtocolError as exc:
                conn.close(exc.close_code, exc.reason, exc.message)
                break
            await hub.handle(conn, message)
        elif msg.type == WSMsgType.BINARY:
            conn.close(p.CloseCode.BINARY_FRAME, "binary_frame", "Send JSON text frames only.")
            break
    await conn.wait_closed()
