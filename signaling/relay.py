"""Carrying room events between the hubs of all nodes: in-process for one node, LISTEN/NOTIFY for many.

The hub never talks to another node directly. It publishes an `Event` for a room and receives
every event of the rooms it hosts, its own included, through the listener it attaches. Both
relays deliver a node's own events synchronously, in publish order, so a single node behaves
the same whichever relay it runs; the PostgreSQL relay also NOTIFYs the room's channel so other
nodes hosting the room see the event (and skip the echo of their own).

Both relays also listen on `broker.room_access.ROOMS_CLOSED`, where a cancellation names the
rooms it closed once it commits, and deliver `Closed` for each: the one channel every node
hears, whichever relay it runs, because the cancelling request may reach any node (or none).

PostgreSQL caps a NOTIFY payload at 8000 bytes (docs: "NOTIFY", Notes). A `signal` may carry up
to 64 KiB of SDP, so a larger event is split into base64 chunks sent in one statement: a
transaction's notifications are delivered together and in order, and the receiver reassembles
them by message id.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec

from broker.room_access import ROOMS_CLOSED

log = logging.getLogger(__name__)


# --- events ---------------------------------------------------------------------------------------


class Member(msgspec.Struct, frozen=True):
    """One participant as every node hosting the room sees them. `conn` names the socket holding them."""

    id: str
    role: str
    name: str
    location: str | None
    state: str
    node: str
    conn: str
    since: float


class _Event(msgspec.Struct, tag_field="kind"):
    node: str


class Present(_Event, tag="present"):
    """A participant is here (a join, or a node answering `Sync`)."""

    member: Member


class Gone(_Event, tag="gone"):
    """A participant's connection `conn` closed."""

    participant: str
    conn: str


class Admit(_Event, tag="admit"):
    participant: str


class Remove(_Event, tag="remove"):
    participant: str


class EndRoom(_Event, tag="end"):
    pass


class Deliver(_Event, tag="deliver"):
    """One server message for participant `to`, or for every admitted participant but `exclude`."""

    frame: msgspec.Raw
    to: str | None = None
    exclude: str | None = None


class Sync(_Event, tag="sync"):
    """A node began hosting the room: the others announce their participants again."""


class Closed(_Event, tag="closed"):
    """The booking was cancelled: the room is closed for good (from `ROOMS_CLOSED`, never published)."""


Event = Present | Gone | Admit | Remove | EndRoom | Deliver | Sync | Closed
Listener = Callable[[str, Event], None]
Callback = Callable[[Any, int, str, str], None]

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


class Listening:
    """A LISTEN connection to PostgreSQL that listens again to all its channels after it was lost."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: asyncpg.Connection | None = None
        self._channels: dict[str, Callback] = {}
        self._lock = asyncio.Lock()
        self._closing = False

    async def start(self) -> None:
        conn = await asyncpg.connect(self.url)
        conn.add_termination_listener(self._on_lost)
        self._conn = conn

    async def close(self) -> None:
        self._closing = True
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 2)

    async def listen(self, name: str, callback: Callback) -> None:
        async with self._lock:
            if name in self._channels:
                return
            self._channels[name] = callback
            if self._conn is not None and not self._conn.is_closed():
                await self._conn.add_listener(name, callback)

    async def unlisten(self, name: str) -> None:
        async with self._lock:
            callback = self._channels.pop(name, None)
            if callback is not None and self._conn is not None and not self._conn.is_closed():
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                    await self._conn.remove_listener(name, callback)

    def _on_lost(self, conn: Any) -> None:
        if not self._closing:
            log.warning("signaling relay: LISTEN connection lost; reconnecting")
            asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.2
        while not self._closing:
            try:
                conn = await asyncpg.connect(self.url)
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            async with self._lock:
                conn.add_termination_listener(self._on_lost)
                for name, callback in self._channels.items():
                    await conn.add_listener(name, callback)
                self._conn = conn
            return


class Relay(abc.ABC):
    """Publish room events; receive those of subscribed rooms, and `Closed`, through the attached listener."""

    def __init__(self, url: str) -> None:
        self._listener: Listener | None = None
        self._listening = Listening(url)
        # Told, every PROBE_SECONDS, how long a notification took through PostgreSQL and back
        # (the relay's share of the delay between nodes); the metrics histogram, when set.
        self.on_lag: Callable[[float], None] | None = None

    def attach(self, listener: Listener) -> None:
        self._listener = listener

    def _deliver(self, room: str, event: Event) -> None:
        if self._listener is not None:
            self._listener(room, event)

    async def _listen_for_closings(self) -> None:
        await self._listening.start()
        await self._listening.listen(ROOMS_CLOSED, self._on_closed)

    def _on_closed(self, conn: Any, pid: int, name: str, payload: str) -> None:
        for room in payload.split():
            self._deliver(room, Closed(node=""))

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def subscribe(self, room: str) -> None:
        """Start receiving other nodes' events for `room`."""

    @abc.abstractmethod
    async def unsubscribe(self, room: str) -> None: ...

    @abc.abstractmethod
    def publish(self, room: str, event: Event) -> None:
        """Deliver `event` to this node now and to the other nodes hosting `room` soon; never blocks."""


class LocalRelay(Relay):
    """One node: events go straight back to the hub, no copies, no serialisation (closings still
    come from PostgreSQL, where the cancelling transaction announces them)."""

    async def start(self) -> None:
        await self._listen_for_closings()

    async def close(self) -> None:
        await self._listening.close()

    async def subscribe(self, room: str) -> None:
        return None

    async def unsubscribe(self, room: str) -> None:
        return None

    def publish(self, room: str, event: Event) -> None:
        self._deliver(room, event)


# NOTIFY payloads stay under PostgreSQL's 8000-byte limit with room for the header.
WHOLE_LIMIT = 7800
CHUNK_BYTES = 5600  # 7468 characters once base64-encoded
PARTIAL_TTL_SECONDS = 30.0

# Each node's probe of the relay path: a notification to itself, timed (metrics: relay lag).
PROBE_CHANNEL = "teleroom_relay_probe"
PROBE_SECONDS = 10.0
NOTIFY_MANY = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)"


def channel(room: str) -> str:
    """The NOTIFY channel of a room: a lower-case identifier well under 63 characters."""
    return "teleroom_" + room.replace("-", "").lower()[:40]


def notifications(node: str, message_id: int, payload: bytes) -> list[str]:
    """The NOTIFY payloads carrying `payload`: one whole frame, or numbered base64 chunks."""
    if len(payload) <= WHOLE_LIMIT:
        return [f"w {node} " + payload.decode()]
    pieces = [payload[i : i + CHUNK_BYTES] for i in range(0, len(payload), CHUNK_BYTES)]
    return [
        f"c {node} {message_id} {i} {len(pieces)} " + base64.b64encode(piece).decode("ascii")
        for i, piece in enumerate(pieces)
    ]


class Reassembler:
    """Collects chunked notifications; returns the whole payload when the last piece arrives."""

    def __init__(self) -> None:
        self._partial: dict[tuple[str, str], tuple[float, list[bytes | None]]] = {}

    def feed(self, text: str) -> tuple[str, bytes] | None:
        """(origin node, payload) once complete, else None. Malformed input is dropped."""
        kind, _, rest = text.partition(" ")
        if kind == "w":
            node, _, body = rest.partition(" ")
            return node, body.encode()
        if kind != "c":
            return None
        try:
            node, message_id, index_s, count_s, data = rest.split(" ", 4)
            index, count = int(index_s), int(count_s)
            piece = base64.b64decode(data, validate=True)
        except ValueError:
            return None
        if not 0 <= index < count <= 64:
            return None
        now = time.monotonic()
        self._expire(now)
        key = (node, message_id)
        _, pieces = self._partial.setdefault(key, (now, [None] * count))
        if len(pieces) != count:
            return None
        pieces[index] = piece
        if any(p is None for p in pieces):
            return None
        del self._partial[key]
        return node, b"".join(p for p in pieces if p is not None)

    def _expire(self, now: float) -> None:
        stale = [k for k, (t, _) in self._partial.items() if now - t > PARTIAL_TTL_SECONDS]
        for key in stale:
            del self._partial[key]


class PostgresRelay(Relay):
    """Many nodes on one PostgreSQL: a LISTEN connection for the rooms this node hosts, and a
    publisher that sends queued notifications in order, batched into one statement per round trip."""

    def __init__(self, url: str, node: str) -> None:
        super().__init__(url)
        self.url = url
        self.node = node
        self._publish: asyncpg.Connection | None = None
        self._rooms: dict[str, str] = {}  # channel -> room
        self._queue: list[tuple[str, str]] = []
        self._wake = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._ids = itertools.count()
        self._reassembler = Reassembler()
        self._closing = False
        self._prober: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._listen_for_closings()
        self._publish = await asyncpg.connect(self.url)
        self._publisher = asyncio.create_task(self._run_publisher(), name="signaling-relay-publisher")
        await self._listening.listen(PROBE_CHANNEL, self._on_probe)
        self._prober = asyncio.create_task(self._run_prober(), name="signaling-relay-prober")

    async def _run_prober(self) -> None:
        """Send this node a probe through PostgreSQL now and then; `_on_probe` times its return."""
        while not self._closing:
            self._queue.append((PROBE_CHANNEL, f"{self.node} {time.monotonic()}"))
            self._wake.set()
            await asyncio.sleep(PROBE_SECONDS)

    def _on_probe(self, conn: Any, pid: int, name: str, payload: str) -> None:
        node, _, sent = payload.partition(" ")
        if node != self.node or self.on_lag is None:
            return  # another node's probe
        with contextlib.suppress(ValueError):
            self.on_lag(time.monotonic() - float(sent))

    async def close(self) -> None:
        self._closing = True
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        if self._publisher is not None:
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                self._publisher.cancel()
                await self._publisher
        await self._listening.close()
        if self._publish is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._publish.close(), 2)

    async def subscribe(self, room: str) -> None:
        name = channel(room)
        self._rooms[name] = room
        await self._listening.listen(name, self._on_notify)

    async def unsubscribe(self, room: str) -> None:
        name = channel(room)
        if self._rooms.pop(name, None) is not None:
            await self._listening.unlisten(name)

    def publish(self, room: str, event: Event) -> None:
        self._deliver(room, event)
        name = channel(room)
        for payload in notifications(self.node, next(self._ids), _encoder.encode(event)):
            self._queue.append((name, payload))
        self._wake.set()

    async def _run_publisher(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:500], self._queue[500:]
                try:
                    assert self._publish is not None
                    if self._publish.is_closed():
                        self._publish = await asyncpg.connect(self.url)
                    await self._publish.execute(NOTIFY_MANY, [c for c, _ in batch], [p for _, p in batch])
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    # Lost events are lost: peers renegotiate or reconnect. Never let the publisher die.
                    log.warning("signaling relay: could not publish %d notifications", len(batch), exc_info=True)
                    await asyncio.sleep(0.5)

    def _on_notify(self, conn: Any, pid: int, name: str, payload: str) -> None:
        room = self._rooms.get(name)
        if room is None:
            return
        done = self._reassembler.feed(payload)
        if done is None:
            return
        origin, body = done
        if origin == self.node:
            return  # already delivered locally when published
        try:
            event = _decoder.decode(body)
        except msgspec.DecodeError:
            log.warning("signaling relay: dropped an unreadable event on %s", name)
            return
        self._deliver(room, event)
