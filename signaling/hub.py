"""Rooms, the waiting room and admission, as one node sees them.

A node keeps only what it can lose: its open sockets and a view of who is in each room it
hosts. The view is rebuilt from relay events (`signaling.relay`), so every node hosting a room
agrees on it whichever node a participant connected to. Durable facts (joined, admitted, left,
removed) go to PostgreSQL through `broker.attendance`; whether a reconnecting client is let in
without waiting again is read back from there, so it holds across nodes and restarts.

Every heartbeat the hub pings each connection with a fresh payload, behind what is queued for it;
a connection that has not answered the previous ping with that payload is dropped. Only the pong
counts: a client that keeps sending but never reads (so never sees the ping) is caught as surely as
a dead one, and so is one whose outgoing frames have stopped draining. The rooms are pinged in
`HEARTBEAT_SLICES` turns spread over the interval, so thousands of sockets never make one burst of
pings (and of pongs coming back) that would hold up relaying.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import asyncpg
import msgspec

from broker import attendance
from broker.tokens import RoomClaims
from signaling import protocol as p
from signaling.relay import Admit, Closed, Deliver, EndRoom, Event, Gone, Member, Present, Relay, Remove, Sync
from signaling.websocket import OP_PING, WebSocket, frame

log = logging.getLogger(__name__)

ENDING_NOTICE = dt.timedelta(minutes=5)
TICK_SECONDS = 1.0
# A reader this far behind is not reading: close it rather than buffer for it.
MAX_QUEUED_FRAMES = 256
# How long a node remembers a room closed by a cancellation: a join admitted just before the
# cancellation committed is ended when it arrives (tokens minted before it live about two minutes).
CLOSED_MEMORY_SECONDS = 300.0
# The heartbeat pings a tenth of the rooms at a time (see the module doc).
HEARTBEAT_SLICES = 10
# Shutdown waits this long for sockets to close and for `left` to be recorded.
SHUTDOWN_SECONDS = 5.0


class Connection:
    """One joined participant's socket on this node.

    Sending never blocks the hub and never starts a task: a frame goes to the socket, which writes
    it at once or, while the peer is not taking what it is sent, holds it in a bounded queue.
    """

    __slots__ = (
        "awaiting",
        "claims",
        "closing",
        "id",
        "location",
        "replaced",
        "socket",
        "state",
        "warned",
    )

    def __init__(self, socket: WebSocket, claims: RoomClaims, location: str | None) -> None:
        self.socket = socket
        self.claims = claims
        self.location = location
        self.id = uuid.uuid4().hex
        self.state: p.State = "waiting"
        self.awaiting: bytes | None = None  # the payload of a ping not answered yet
        self.warned = False
        self.replaced = False
        self.closing = False

    @property
    def participant(self) -> str:
        return self.claims.participant

    @property
    def role(self) -> p.Role:
        return self.claims.role

    def send(self, message: p.ServerMessage) -> None:
        self.send_frame(p.encode(message))

    def send_frame(self, frame: bytes) -> None:
        if self.closing:
            return
        if self.socket.backlog >= MAX_QUEUED_FRAMES:
            self.socket.discard_backlog()
            self.close(p.CloseCode.SLOW_CONSUMER)
            return
        self.socket.send_text(frame)

    def close(self, code: int, error: str | None = None, message: str = "") -> None:
        """Send what is queued (and an `error` if given), then close with `code`. Idempotent."""
        if self.closing:
            return
        self.closing = True
        if error is not None:
            self.socket.send_text(p.encode(p.Error(code=error, message=message)))
        self.socket.close(code)

    def heartbeat(self, payload: bytes, ping: bytes) -> None:
        """Send `ping` (the encoded frame carrying `payload`), or drop the connection if the previous
        ping has not been answered."""
        if self.awaiting is not None:
            log.info("room %s: %s %s did not answer a ping; dropped", self.claims.room, self.role, self.participant)
            self.drop()
            return
        self.awaiting = payload
        if not self.closing:
            self.socket.send_encoded(ping)  # behind the frames queued before it

    def pong(self, payload: bytes) -> None:
        """A pong counts only if it carries the payload of the ping that is out (not an unsolicited one)."""
        if payload == self.awaiting:
            self.awaiting = None

    def drop(self) -> None:
        """Close the TCP connection at once: a peer that does not read could not take a close frame,
        and what is queued for it is dropped with it. The socket's owner then leaves the room as for
        any close."""
        self.closing = True
        self.socket.abort()


class Room:
    __slots__ = ("conns", "id", "members", "turn")

    def __init__(self, room_id: str, turn: int) -> None:
        self.id = room_id
        self.turn = turn  # which of the heartbeat's turns pings this room's connections
        self.members: dict[str, Member] = {}  # the room-wide view, from relay events
        self.conns: dict[str, Connection] = {}  # this node's sockets, by connection id

    def local(self, participant: str) -> Iterator[Connection]:
        return (c for c in self.conns.values() if c.participant == participant)

    def current(self, participant: str) -> Connection | None:
        member = self.members.get(participant)
        return self.conns.get(member.conn) if member is not None else None

    def admitted_except(self, participant: str) -> Iterator[Connection]:
        for conn in self.conns.values():
            member = self.members.get(conn.participant)
            if (
                conn.participant != participant
                and member is not None
                and member.conn == conn.id
                and member.state == "admitted"
            ):
                yield conn

    def therapists(self) -> Iterator[Connection]:
        return (c for c in self.conns.values() if c.role == "therapist" and self._is_current(c))

    def _is_current(self, conn: Connection) -> bool:
        member = self.members.get(conn.participant)
        return member is not None and member.conn == conn.id


def _peer(member: Member) -> p.Peer:
    return p.Peer(id=member.id, role="therapist" if member.role == "therapist" else "client")


class Hub:
    """Every room this node hosts. All room changes go through the relay and come back as events."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        relay: Relay,
        now: Callable[[], dt.datetime],
        ice_servers: Callable[[RoomClaims], list[p.IceServer]],
        *,
        node: str | None = None,
        heartbeat: float = 10.0,
    ) -> None:
        self.pool = pool
        self.relay = relay
        self.now = now
        self.ice_servers = ice_servers
        self.node = node or uuid.uuid4().hex[:12]
        self.rooms: dict[str, Room] = {}
        self.sockets: set[WebSocket] = set()  # every open socket, joined or not
        self.work: set[asyncio.Task[None]] = set()  # joins, commands and leaves in progress
        self.heartbeat = heartbeat
        self._turns = itertools.count()
        self.closed: dict[str, float] = {}  # rooms closed by a cancellation, and when (monotonic)
        self._tasks: list[asyncio.Task[None]] = []
        relay.attach(self.on_event)

    async def start(self) -> None:
        await self.relay.start()
        self._tasks = [
            asyncio.create_task(self._tick_forever(), name="signaling-room-clock"),
            asyncio.create_task(self._beat_forever(), name="signaling-heartbeat"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.work:  # leaves still recording `left`
            await asyncio.wait(list(self.work), timeout=SHUTDOWN_SECONDS)
        await self.relay.close()

    async def close_all(self, code: int = p.CloseCode.GOING_AWAY) -> None:
        """Close every socket on this node (shutdown): participants reconnect to another node.
        Returns when they are gone (a peer that does not answer the close is cut off)."""
        sockets = list(self.sockets)
        for socket in sockets:
            socket.close(code, b"server shutting down")
        if sockets:
            await asyncio.wait([asyncio.ensure_future(s.wait_closed()) for s in sockets], timeout=SHUTDOWN_SECONDS)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `work` in a task the hub holds until it is done (the event loop keeps only weak references)."""
        task = asyncio.get_running_loop().create_task(work)
        self.work.add(task)
        task.add_done_callback(self.work.discard)
        return task

    # --- joining and leaving ----------------------------------------------------------------

    async def join(self, conn: Connection) -> None:
        """Seat a verified connection: admitted (therapist, or a client admitted earlier) or waiting."""
        claims = conn.claims
        if claims.room in self.closed:  # its booking was cancelled while this connection was admitted
            conn.send(p.Ended())
            conn.close(p.CloseCode.ROOM_ENDED)
            return
        room = self.rooms.get(claims.room)
        if room is None:
            room = self.rooms[claims.room] = Room(claims.room, next(self._turns) % HEARTBEAT_SLICES)
            await self.relay.subscribe(claims.room)
            self.relay.publish(claims.room, Sync(node=self.node))
        room.conns[conn.id] = conn
        at = self.now()
        admitted = claims.role == "therapist" or await attendance.was_admitted(
            self.pool, claims.booking_id, claims.participant
        )
        conn.state = "admitted" if admitted else "waiting"
        await attendance.record(self.pool, claims.booking_id, claims.participant, claims.role, "joined", at)
        peers = [_peer(m) for m in room.members.values() if m.state == "admitted" and m.id != conn.participant]
        conn.send(
            p.Joined(
                participant=conn.participant,
                role=conn.role,
                state=conn.state,
                peers=peers if admitted else [],
                ice_servers=self.ice_servers(claims),
            )
        )
        member = Member(
            id=conn.participant,
            role=conn.role,
            name=claims.name,
            location=conn.location,
            state=conn.state,
            node=self.node,
            conn=conn.id,
            since=time.time(),
        )
        self.relay.publish(room.id, Present(node=self.node, member=member))
        if conn.role == "therapist":
            for waiting in room.members.values():
                if waiting.state == "waiting":
                    conn.send(p.Waiting(participant=_waiting(waiting)))
        self._check_clock(conn, self.now())
        log.info("room %s: %s %s joined (%s)", room.id, conn.role, conn.participant, conn.state)

    async def leave(self, conn: Connection) -> None:
        """The socket closed: tell the room, and record `left` unless a newer connection replaced it."""
        room = self.rooms.get(conn.claims.room)
        if room is None or room.conns.pop(conn.id, None) is None:
            return
        if not conn.replaced:  # recorded before the others hear of it, so the record is never behind them
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await attendance.record(
                    self.pool, conn.claims.booking_id, conn.participant, conn.role, "left", self.now()
                )
        self.relay.publish(room.id, Gone(node=self.node, participant=conn.participant, conn=conn.id))
        log.info("room %s: %s %s left (close %s)", room.id, conn.role, conn.participant, conn.socket.close_code)
        if not room.conns and self.rooms.get(room.id) is room:
            del self.rooms[room.id]
            await self.relay.unsubscribe(room.id)

    # --- what participants ask for ---------------------------------------------------------

    def handle(self, conn: Connection, message: p.ClientMessage) -> Coroutine[Any, Any, None] | None:
        """Act on a participant's message. Relaying is done at once; a command that writes to the
        database comes back as a coroutine for the caller to run before the connection's next message."""
        room = self.rooms[conn.claims.room]
        match message:
            case p.Signal(to=to, data=data):
                if self._can_reach(room, conn, to):
                    frame = p.encode(p.Relayed(from_=conn.participant, data=data))
                    self.relay.publish(room.id, Deliver(node=self.node, frame=msgspec.Raw(frame), to=to))
            case p.Chat(text=text):
                if self._is_admitted(room, conn):
                    line = p.ChatLine(from_=conn.participant, text=text, at=self.now())
                    frame = msgspec.Raw(p.encode(line))
                    self.relay.publish(room.id, Deliver(node=self.node, frame=frame, exclude=conn.participant))
            case p.Admit() | p.Remove() | p.End() if conn.role != "therapist":
                conn.send(p.Error(code=p.FORBIDDEN, message="Only the therapist can do that."))
            case p.End():
                return self._end_room(room, conn)
            case p.Admit() | p.Remove():
                return self._admit_or_remove(room, conn, message, message.participant)
            case p.Join():
                conn.send(p.Error(code=p.ALREADY_JOINED, message="This connection has already joined."))
        return None

    async def _end_room(self, room: Room, conn: Connection) -> None:
        await attendance.end_room(self.pool, conn.claims.booking_id, self.now())
        self.relay.publish(room.id, EndRoom(node=self.node))
        log.info("room %s: ended by the therapist", room.id)

    async def _admit_or_remove(self, room: Room, conn: Connection, command: p.Admit | p.Remove, target: str) -> None:
        member = room.members.get(target)
        if member is None or member.id == conn.participant:
            conn.send(p.Error(code=p.UNKNOWN_PEER, message="No such participant in this room."))
            return
        booking = conn.claims.booking_id
        if isinstance(command, p.Admit):
            if member.state == "admitted":
                return  # admitting twice is harmless
            await attendance.record(self.pool, booking, target, member.role, "admitted", self.now())
            self.relay.publish(room.id, Admit(node=self.node, participant=target))
        else:
            await attendance.record(self.pool, booking, target, member.role, "removed", self.now())
            self.relay.publish(room.id, Remove(node=self.node, participant=target))

    def _is_admitted(self, room: Room, conn: Connection) -> bool:
        if conn.state != "admitted":
            conn.send(p.Error(code=p.NOT_ADMITTED, message="Wait until the therapist admits you."))
            return False
        return True

    def _can_reach(self, room: Room, conn: Connection, to: str) -> bool:
        if not self._is_admitted(room, conn):
            return False
        target = room.members.get(to)
        if target is None or to == conn.participant:
            conn.send(p.Error(code=p.UNKNOWN_PEER, message="No such participant in this room."))
            return False
        if target.state != "admitted":
            conn.send(p.Error(code=p.NOT_ADMITTED, message="That participant has not been admitted."))
            return False
        return True

    # --- events from the relay (this node's own included) ------------------------------------

    def on_event(self, room_id: str, event: Event) -> None:
        if isinstance(event, Closed):
            self.closed[room_id] = time.monotonic()
        room = self.rooms.get(room_id)
        if room is None:
            return
        match event:
            case Present(member=member):
                self._present(room, member)
            case Gone(participant=participant, conn=conn_id):
                gone = room.members.get(participant)
                if gone is not None and gone.conn == conn_id:
                    del room.members[participant]
                    self._announce_gone(room, gone)
            case Admit(participant=participant):
                self._admit(room, participant)
            case Remove(participant=participant):
                removed = room.members.pop(participant, None)
                if removed is not None:
                    for conn in list(room.local(participant)):
                        conn.close(p.CloseCode.REMOVED, "removed", "The therapist removed you from the room.")
                    self._announce_gone(room, removed)
            case EndRoom() | Closed():
                self._end(room)
            case Deliver(frame=frame, to=to, exclude=exclude):
                data = bytes(frame)
                if to is not None:
                    target = room.current(to)
                    if target is not None:
                        target.send_frame(data)
                else:
                    for conn in room.admitted_except(exclude or ""):
                        conn.send_frame(data)
            case Sync(node=node):
                if node != self.node:
                    for member in list(room.members.values()):
                        if member.node == self.node:
                            self.relay.publish(room.id, Present(node=self.node, member=member))

    def _present(self, room: Room, member: Member) -> None:
        known = room.members.get(member.id)
        if known is not None and known.conn == member.conn:
            return  # an answer to Sync that we already know
        if known is not None:
            if known.since > member.since:
                return  # a late announcement of a connection that has since been replaced
            # A reconnect: the newer connection wins; the old one is closed and the others told.
            for old in room.local(member.id):
                if old.id != member.conn:
                    old.replaced = True
                    old.close(p.CloseCode.REPLACED, "replaced", "You connected again elsewhere.")
            self._announce_gone(room, known)
        room.members[member.id] = member
        if member.state == "admitted":
            for conn in room.admitted_except(member.id):
                conn.send(p.PeerJoined(participant=_peer(member)))
        else:
            for therapist in room.therapists():
                therapist.send(p.Waiting(participant=_waiting(member)))

    def _admit(self, room: Room, participant: str) -> None:
        member = room.members.get(participant)
        if member is None or member.state == "admitted":
            return
        member = room.members[participant] = msgspec.structs.replace(member, state="admitted")
        conn = room.current(participant)
        if conn is not None:
            conn.state = "admitted"
            conn.send(p.Admitted())
            for other in room.members.values():
                if other.id != participant and other.state == "admitted":
                    conn.send(p.PeerJoined(participant=_peer(other)))
        for other_conn in room.admitted_except(participant):
            other_conn.send(p.PeerJoined(participant=_peer(member)))

    def _announce_gone(self, room: Room, member: Member) -> None:
        """Admitted peers learn an admitted participant left; therapists learn a waiting one did."""
        audience = room.admitted_except(member.id) if member.state == "admitted" else room.therapists()
        for conn in list(audience):
            conn.send(p.PeerLeft(participant=_peer(member)))

    def _end(self, room: Room) -> None:
        for conn in list(room.conns.values()):
            conn.send(p.Ended())
            conn.close(p.CloseCode.ROOM_ENDED)

    # --- the room clock -------------------------------------------------------------------

    def _check_clock(self, conn: Connection, now: dt.datetime) -> None:
        """`ending` five minutes before the window closes, `ended` and close when it has."""
        window_end = conn.claims.window_end
        if now >= window_end:
            conn.send(p.Ended())
            conn.close(p.CloseCode.ROOM_ENDED)
        elif now >= window_end - ENDING_NOTICE and not conn.warned:
            conn.warned = True
            conn.send(p.Ending(at=window_end))

    async def _tick_forever(self) -> None:
        # One task for all rooms, re-reading the service clock each second, so that moving the
        # clock (tests, rehearsals) takes effect at once rather than when a long timer fires.
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = self.now()
            for room in list(self.rooms.values()):
                for conn in list(room.conns.values()):
                    self._check_clock(conn, now)
            forget = time.monotonic() - CLOSED_MEMORY_SECONDS
            for room_id in [r for r, at in self.closed.items() if at < forget]:
                del self.closed[room_id]

    async def _beat_forever(self) -> None:
        """Each turn (a heartbeat's slice): in that turn's rooms, drop the connections that did not
        answer their last ping and ping the others, one fresh payload for the turn."""
        for turn in itertools.cycle(range(HEARTBEAT_SLICES)):
            await asyncio.sleep(self.heartbeat / HEARTBEAT_SLICES)
            payload = os.urandom(8)
            ping = frame(OP_PING, payload)
            for room in [r for r in self.rooms.values() if r.turn == turn]:
                for conn in list(room.conns.values()):
                    conn.heartbeat(payload, ping)


def _waiting(member: Member) -> p.WaitingParticipant:
    return p.WaitingParticipant(id=member.id, name=member.name, location=member.location)
