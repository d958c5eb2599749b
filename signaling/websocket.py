"""The server end of a WebSocket (RFC 6455) as a small asyncio protocol of its own.

aiohttp answers the HTTP request; once the upgrade is accepted, `upgrade` takes the connection
out of aiohttp's hands and gives the transport to a `WebSocket`. The reason is memory: an
aiohttp WebSocketResponse keeps, for the socket's whole life, the request with its parsed
headers, the HTTP protocol object and parser, a reader queue, a writer, two tasks and the
coroutine frames of every middleware around the handler — about 15 KiB per idle socket. A
`WebSocket` is one object with slots next to the transport; nothing waits in a task for the next
frame: the transport calls `data_received`, which parses whole frames and hands them to a
`Listener`.

Sending never blocks and never creates a task: a frame goes straight to the transport, or,
while the transport has asked us to pause writing (its buffer is over its high-water mark because
the peer does not read), into a queue that is written out in order when it resumes. The owner
reads `backlog` to decide when a peer is too slow to keep.

Only what a signaling server needs of RFC 6455 is here: no extensions (a frame with an RSV bit
set fails the connection, section 5.2), no subprotocols, messages up to `max_message` bytes (a
larger frame is refused on its header, before its payload is read), fragmented messages
(section 5.4) with control frames between fragments, text checked as UTF-8 (section 8.1, close
1007), and the closing handshake (section 7): a close frame answers a close frame and the server
then closes the TCP connection first (section 7.1.1); a close we start waits for the peer's
answer at most `CLOSE_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import struct
from collections.abc import Callable
from typing import Any, Protocol, cast

from aiohttp import web

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

NORMAL_CLOSURE = 1000
PROTOCOL_ERROR = 1002
NO_STATUS = 1005  # received only: a close frame without a code (section 7.1.5)
INVALID_TEXT = 1007
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013

CLOSE_TIMEOUT = 5.0
# RFC 6455 section 1.3: the server proves it read the handshake with SHA-1 of the key and this GUID.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_OPEN, _CLOSING, _CLOSED = 0, 1, 2
_short = struct.Struct("!BB").pack
_medium = struct.Struct("!BBH").pack
_long = struct.Struct("!BBQ").pack


class Listener(Protocol):
    """What a WebSocket tells its owner. Every method is called from the event loop, in frame order."""

    def on_text(self, payload: bytes) -> None:
        """A whole text message; its UTF-8 has been checked."""

    def on_binary(self, payload: bytes) -> None: ...

    def on_pong(self, payload: bytes) -> None: ...

    def on_oversized(self) -> None:
        """A frame announced more than `max_message` bytes; it will not be read. Close the socket
        (with a code of your choice); otherwise it is closed with 1009."""

    def on_closed(self) -> None:
        """The TCP connection is gone (after a closing handshake, an abort, or a network error)."""


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (a server never masks, section 5.1)."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        return _short(first, length) + payload
    if length < 0x10000:
        return _medium(first, 126, length) + payload
    return _long(first, 127, length) + payload


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason[:123]


def unmask(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR `data` with the 4-byte `mask` repeated (section 5.3), as one big-integer operation."""
    length = len(data)
    if length == 0:
        return b""
    key = (mask * ((length + 3) // 4))[:length]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(length, "little")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key (section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324 - the RFC's choice


def _sendable(code: int) -> bool:
    """Whether `code` may be put in a close frame (section 7.4): not 1005, 1006 or 1015, nor unassigned."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


class WebSocket(asyncio.Protocol):
    """One upgraded connection. `listener` must be set before the first byte is fed."""

    __slots__ = (
        "_fragments",
        "_kind",
        "_paused",
        "_pending",
        "_queue",
        "_state",
        "_timer",
        "_waiter",
        "close_code",
        "listener",
        "max_message",
        "transport",
    )

    def __init__(self, transport: asyncio.Transport, max_message: int) -> None:
        self.transport = transport
        self.max_message = max_message
        self.listener: Listener | None = None
        self.close_code: int | None = None  # the code in the peer's close frame, once one came
        self._state = _OPEN
        self._pending: bytearray | None = None  # received bytes that do not make a whole frame yet
        self._fragments: list[bytes] | None = None  # a fragmented message being collected
        self._kind = OP_TEXT  # the opcode of that message
        self._paused = False
        self._queue: collections.deque[bytes] | None = None  # made only while writing is paused
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None

    # --- sending ---------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Frames waiting for the transport to take them (it paused writing)."""
        return len(self._queue) if self._queue is not None else 0

    @property
    def closing(self) -> bool:
        """A close frame went out or came in, or the connection is gone: nothing more is sent."""
        return self._state != _OPEN

    @property
    def closed(self) -> bool:
        """The TCP connection is gone."""
        return self._state == _CLOSED

    def send_text(self, payload: bytes) -> None:
        """Send one text message (UTF-8 bytes). Ignored once closing."""
        if self._state == _OPEN:
            self._write(frame(OP_TEXT, payload))

    def send_encoded(self, data: bytes) -> None:
        """Send a frame made by `frame` (one ping for many sockets is encoded once). Ignored once closing."""
        if self._state == _OPEN:
            self._write(data)

    def discard_backlog(self) -> None:
        """Drop the frames the transport has not taken yet (the peer will never read them)."""
        self._queue = None

    def close(self, code: int, reason: bytes = b"") -> None:
        """Start the closing handshake: queued frames, then a close frame with `code`; the connection
        ends when the peer answers, or after `CLOSE_TIMEOUT` seconds. Idempotent."""
        if self._state != _OPEN:
            return
        self._state = _CLOSING
        self._write(frame(OP_CLOSE, close_payload(code, reason)))
        self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        """End the TCP connection now, dropping whatever is unsent (`on_closed` follows)."""
        if self._state == _OPEN:
            self._state = _CLOSING
        self._queue = None
        self.transport.abort()

    async def wait_closed(self) -> None:
        """Until the TCP connection is gone."""
        if self._state == _CLOSED:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)

    def _write(self, data: bytes) -> None:
        if self._paused or self._queue:
            if self._queue is None:
                self._queue = collections.deque()
            self._queue.append(data)
        else:
            self.transport.write(data)

    # --- asyncio.Protocol ------------------------------------------------------------------

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        queue = self._queue
        # Writing may pause the transport again; what is left waits for the next resume.
        while queue and not self._paused:
            self.transport.write(queue.popleft())
        if not queue:
            self._queue = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _CLOSED
        self._queue = None
        self._pending = None
        self._fragments = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self.listener is not None:
            self.listener.on_closed()

    def data_received(self, data: bytes) -> None:
        if self._state == _CLOSED:
            return
        buffer: bytes | bytearray = data
        if self._pending is not None:  # extended in place: a frame trickling in is not copied over and over
            self._pending += data
            buffer = self._pending
        end = len(buffer)
        at = 0
        while end - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            opcode, length = first & 0x0F, second & 0x7F
            head = at + 2
            if length == 126:
                if end - head < 2:
                    break
                length = int.from_bytes(buffer[head : head + 2], "big")
                head += 2
            elif length == 127:
                if end - head < 8:
                    break
                length = int.from_bytes(buffer[head : head + 8], "big")
                head += 8
            if first & 0x70 or not second & 0x80:  # an RSV bit (no extension was agreed), or unmasked
                self._fail(PROTOCOL_ERROR)
                return
            if opcode >= OP_CLOSE:
                if not first & 0x80 or length > 125 or opcode > OP_PONG:  # section 5.5
                    self._fail(PROTOCOL_ERROR)
                    return
            elif opcode > OP_BINARY:
                self._fail(PROTOCOL_ERROR)
                return
            elif length > self.max_message - (self._size() if opcode == OP_CONTINUATION else 0):
                self._oversized()
                return
            start = head + 4
            if end - start < length:
                break
            payload = unmask(buffer[start : start + length], buffer[head:start])
            at = start + length
            if not self._frame(first & 0x80, opcode, payload):
                return
        if at == end:
            self._pending = None
        elif at or self._pending is None:
            self._pending = bytearray(buffer[at:])

    # --- frames ----------------------------------------------------------------------------

    def _size(self) -> int:
        return sum(len(f) for f in self._fragments) if self._fragments else 0

    def _frame(self, fin: int, opcode: int, payload: bytes) -> bool:
        """Act on one frame; False when the connection failed and the rest must not be read."""
        if opcode == OP_PING:
            if self._state == _OPEN:
                self._write(frame(OP_PONG, payload))
            return True
        if opcode == OP_PONG:
            if self._state == _OPEN and self.listener is not None:
                self.listener.on_pong(payload)
            return True
        if opcode == OP_CLOSE:
            return self._peer_closed(payload)
        if opcode == OP_CONTINUATION:
            if self._fragments is None:
                self._fail(PROTOCOL_ERROR)
                return False
            self._fragments.append(payload)
            if not fin:
                return True
            opcode, payload, self._fragments = self._kind, b"".join(self._fragments), None
        elif self._fragments is not None:  # a new message before the last one's final fragment
            self._fail(PROTOCOL_ERROR)
            return False
        elif not fin:
            self._kind, self._fragments = opcode, [payload]
            return True
        if self._state != _OPEN or self.listener is None:
            return True  # after our close frame, data is read and dropped until the peer's close
        if opcode == OP_TEXT:
            try:
                payload.decode()
            except UnicodeDecodeError:
                self._fail(INVALID_TEXT)
                return False
            self.listener.on_text(payload)
        else:
            self.listener.on_binary(payload)
        return self._state != _CLOSED

    def _peer_closed(self, payload: bytes) -> bool:
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else NO_STATUS
        if len(payload) == 1 or (len(payload) >= 2 and not _sendable(code)):
            self._fail(PROTOCOL_ERROR)
            return False
        self.close_code = code
        if self._state == _OPEN:  # answer it, echoing the code (section 5.5.1)
            self._state = _CLOSING
            self._write(frame(OP_CLOSE, close_payload(code) if code != NO_STATUS else b""))
        self._finish()
        return False

    def _finish(self) -> None:
        """No more frames either way: hand what is queued to the transport and close it (the server
        closes TCP first, section 7.1.1). The transport writes its buffer before it closes; the timer
        bounds that on a peer that stopped reading."""
        self._pending = None
        self._fragments = None
        queue, self._queue = self._queue, None
        while queue:
            self.transport.write(queue.popleft())
        self.transport.close()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def _fail(self, code: int) -> None:
        """Fail the connection (section 7.1.7): a close frame with `code` unless one went out, then close."""
        if self._state == _OPEN:
            self._state = _CLOSING
            self._write(frame(OP_CLOSE, close_payload(code)))
        self._finish()

    def _oversized(self) -> None:
        if self.listener is not None:
            self.listener.on_oversized()
        self._fail(MESSAGE_TOO_BIG)


class _Tail:
    """Stands in for aiohttp's WebSocket parser for one call: aiohttp hands the bytes that arrived
    behind the upgrade request to the parser it is given (`set_parser`), and they are ours."""

    def __init__(self) -> None:
        self.data = b""

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:
        return None


class Switched(web.StreamResponse):
    """What the handler returns once the connection left aiohttp: the 101 is written already,
    so there is nothing more to prepare or write (aiohttp then forgets the connection)."""

    def __init__(self) -> None:
        super().__init__(status=101)

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def upgrade(request: web.Request, max_message: int, listen: Callable[[WebSocket], Listener]) -> Switched:
    """Answer a checked upgrade request with 101 and move its connection to a new `WebSocket`.

    `listen(socket)` makes the socket's listener. The caller has checked the handshake (aiohttp's
    `WebSocketResponse.can_prepare`). aiohttp's request handler is then told its connection is
    lost, with its transport pointer cleared first so that it closes nothing: it drops the request,
    its parser and its task as for a client that went away, while the transport lives on with the
    `WebSocket` as its protocol.
    """
    handler = request.protocol
    transport = request.transport
    key = request.headers["Sec-WebSocket-Key"]
    if handler is None or transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away before the upgrade")
    socket = WebSocket(transport, max_message)
    socket.listener = listen(socket)
    transport.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
    )
    tail = _Tail()
    handler.set_parser(cast(Any, tail))
    transport.set_protocol(socket)
    handler.transport = None
    handler.connection_lost(None)
    if tail.data:
        socket.data_received(tail.data)
    transport.resume_reading()  # in case aiohttp had paused it
    return Switched()
