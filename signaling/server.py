"""GET /ws: the signaling WebSocket. Origin check before the upgrade, `join` within 5 s, then the room.

Limits (docs/signaling.md, "Limits"): frames of at most 64 KiB, JSON text only, a token bucket of
50 messages a second with bursts of 100 per connection, a bounded outgoing queue per connection,
and a heartbeat (`TELEROOM_SIGNALING_HEARTBEAT_SECONDS`): the hub pings every joined connection
and drops one that has not answered by the next ping (any frame received is not an answer: a
client that kept sending but never read would otherwise stay forever).

Once upgraded, a socket is a `signaling.websocket.WebSocket` with a `Session` as its listener: no
task waits on an idle socket. A task exists only while a connection's message needs the database
(the join, admit, remove, end, and recording `left`); the connection's next messages wait for it,
so they are handled in the order they came.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from broker import database, room_access, tokens
from broker.clock import CLOCK
from broker.database import POOL
from broker.errors import Forbidden
from broker.http.endpoints import query_param
from broker.http.problems import HttpProblem
from broker.settings import SETTINGS
from signaling import protocol as p
from signaling.hub import Connection, Hub
from signaling.websocket import INTERNAL_ERROR, TRY_AGAIN_LATER, WebSocket, upgrade

log = logging.getLogger(__name__)

HUB = web.AppKey("signaling_hub", Hub)

JOIN_TIMEOUT_SECONDS = 5.0
RATE_PER_SECOND = 50.0
RATE_BURST = 100.0


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
    room = query_param(request, "room", required=True) or ""
    if not web.WebSocketResponse().can_prepare(request).ok:
        raise HttpProblem(426, "websocket_required", "Connect with a WebSocket upgrade.")
    app = request.app
    return upgrade(request, p.MAX_FRAME_BYTES, lambda socket: Session(app, room, socket))


class Session:
    """One /ws socket from the upgrade to its close: the `join` handshake, then the participant's
    messages for the hub. Frames that arrive while a task runs for an earlier one wait in order."""

    __slots__ = ("_backlog", "_busy", "_timer", "app", "bucket", "conn", "hub", "room", "socket")

    def __init__(self, app: web.Application, room: str, socket: WebSocket) -> None:
        self.app = app
        self.hub = app[HUB]
        self.room = room
        self.socket = socket
        self.conn: Connection | None = None
        self.bucket: TokenBucket | None = None  # made at the join
        self._busy = False
        self._backlog: list[tuple[bool, bytes]] | None = None  # (text?, payload) waiting for _busy
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            JOIN_TIMEOUT_SECONDS, self._join_timeout
        )
        self.hub.sockets.add(socket)

    # --- from the socket -------------------------------------------------------------------

    def on_text(self, payload: bytes) -> None:
        self._message(True, payload)

    def on_binary(self, payload: bytes) -> None:
        self._message(False, payload)

    def on_pong(self, payload: bytes) -> None:
        if self.conn is not None:
            self.conn.pong(payload)

    def on_oversized(self) -> None:
        self._refuse(p.CloseCode.TOO_LARGE, "too_large", f"Frames may be at most {p.MAX_FRAME_BYTES} bytes.")

    def on_closed(self) -> None:
        self._cancel_timer()
        self.hub.sockets.discard(self.socket)
        self._backlog = None
        if not self._busy:  # else the task in progress leaves when it is done
            self._leave()

    # --- messages --------------------------------------------------------------------------

    def _message(self, text: bool, payload: bytes) -> None:
        if self._busy:
            if self._backlog is None:
                self._backlog = []
            self._backlog.append((text, payload))
        elif self.conn is None:
            self._first(text, payload)
        else:
            self._next(self.conn, text, payload)

    def _first(self, text: bool, payload: bytes) -> None:
        """The first message must be `join`; its token is checked and spent in a task."""
        self._cancel_timer()
        if self.bucket is not None:  # a join already failed or is over: the socket is closing
            return
        self.bucket = TokenBucket(RATE_PER_SECOND, RATE_BURST)
        if not text:
            self._refuse(p.CloseCode.BINARY_FRAME, "binary_frame", "Send JSON text frames only.")
            return
        try:
            message = p.decode_client(payload)
        except p.ProtocolError as exc:
            self._refuse(exc.close_code, exc.reason, exc.message)
            return
        if not isinstance(message, p.Join):
            self._refuse(p.CloseCode.JOIN_REQUIRED, "join_required", "The first message must be `join`.")
            return
        self._run(self._join(message))

    def _next(self, conn: Connection, text: bool, payload: bytes) -> None:
        if conn.closing:
            return
        assert self.bucket is not None
        if not self.bucket.take():
            conn.close(p.CloseCode.RATE_LIMITED, "rate_limited", "Too many messages; slow down.")
            return
        if not text:
            conn.close(p.CloseCode.BINARY_FRAME, "binary_frame", "Send JSON text frames only.")
            return
        try:
            message = p.decode_client(payload)
        except p.ProtocolError as exc:
            conn.close(exc.close_code, exc.reason, exc.message)
            return
        work = self.hub.handle(conn, message)
        if work is not None:
            self._run(work)

    async def _join(self, message: p.Join) -> None:
        app = self.app
        try:
            claims = await room_access.enter(
                app[POOL], app[SETTINGS], message.token, app[CLOCK].now(), room=self.room, keys=app.get(tokens.KEYRING)
            )
        except tokens.TokenRejected as rejected:
            self._refuse(p.CloseCode.TOKEN_REJECTED, rejected.code, rejected.detail)
            return
        except room_access.RoomClosed:
            # A token fetched just before the booking was cancelled, or (a client's) before the therapist
            # pressed End: the room is over for its holder.
            self.socket.send_text(p.encode(p.Ended()))
            self.socket.close(p.CloseCode.ROOM_ENDED)
            return
        if self.socket.closing:
            return  # gone while the token was checked: it is spent, and there is nobody to seat
        self.conn = Connection(self.socket, claims, message.location)
        await self.hub.join(self.conn)

    # --- work that needs the database ------------------------------------------------------

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in a task; the socket's next frames wait for it (reading pauses meanwhile)."""
        self._busy = True
        self.socket.transport.pause_reading()
        self.hub.spawn(self._finish(work))

    async def _finish(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception as exc:
            if database.unavailable(exc):  # one log line per outage (HEALTH), not a stack per socket
                self.app[database.HEALTH].failed(type(exc).__name__)
                code = TRY_AGAIN_LATER
            else:
                log.exception("signaling: a message could not be handled; closing its connection")
                code = INTERNAL_ERROR
            if self.conn is not None:
                self.conn.close(code)
            else:
                self.socket.close(code)
        finally:
            self._busy = False
        if self.socket.closed:
            self._leave()
            return
        backlog, self._backlog = self._backlog, None
        for text, payload in backlog or ():
            self._message(text, payload)
        if not self._busy:  # closing too: the peer's close frame is still to be read
            self.socket.transport.resume_reading()

    # --- endings ---------------------------------------------------------------------------

    def _refuse(self, code: p.CloseCode, reason: str, message: str) -> None:
        if self.conn is not None:
            self.conn.close(code, reason, message)
        else:
            self.socket.send_text(p.encode(p.Error(code=reason, message=message)))
            self.socket.close(code)

    def _join_timeout(self) -> None:
        self._timer = None
        if self.conn is None and self.bucket is None:
            self._refuse(p.CloseCode.JOIN_TIMEOUT, "join_timeout", "Send `join` within 5 seconds.")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _leave(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.hub.spawn(self.hub.leave(conn))
