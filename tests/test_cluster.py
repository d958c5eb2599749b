"""Three `teleroom serve` nodes on one PostgreSQL behind Debian's nginx, configured from deploy/nginx.conf.

What the cluster must hold, proved with real processes: a slot raced on three nodes is booked once;
a room token used on one node is refused on another; two aiortc participants of one room on two
different nodes meet; the node holding a room killed with SIGKILL, both participants back in a
connected call through nginx, without a second admit, within 10 seconds; and a node sent SIGTERM
stops listening, closes its sockets with 1001 (reconnect), exits 0 within 30 seconds, and its
participants meet again on the last node. And when the node of one participant dies while the
other stays connected to another node, the returning participant replaces its dead connection there
and they negotiate again. The times to reconnect are printed (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from signaling import protocol as p
from signaling.participant import Participant, wait_until
from tests.nginx_support import SHIPPED, render
from tests.programs import require
from tests.signaling_support import Booking, Ws, booking_in_window, room_token
from tests.support import Api, free_port, next_grid_start

TELEROOM = [sys.executable, "-m", "broker.cli"]
ADMIN_TOKEN = "trm_cluster-test-admin-token-0123456789"
NODES = 3
# The proof's bounds: a call back within 10 s of a node's death, a drained node gone within 30 s.
RECONNECT_BOUND = 10.0
DRAIN_BOUND = 30.0


class Node:
    """One `teleroom serve` process on the shared database, its output in a file."""

    def __init__(self, name: str, directory: Path, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "serve.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*TELEROOM, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(directory)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def holds(self, room: str, participant: str) -> bool:
        """Whether this node's log says `participant` joined `room` here (ids only are logged)."""
        return (
            f"room {room}: " in self.text()
            and re.search(rf"room {re.escape(room)}: \w+ {re.escape(participant)} joined", self.text()) is not None
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Cluster:
    nodes: list[Node]
    nginx: subprocess.Popen[bytes]
    edge: str  # https://127.0.0.1:<port>, nginx's TLS listener
    directory: Path


def wait_ready(node: Node, deadline: float) -> None:
    """Poll the node's /readyz until it answers 200 (the node has migrated and reached the database)."""
    while True:
        assert node.proc.poll() is None, f"{node.name} exited with {node.proc.returncode}:\n{node.text()}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", node.port), timeout=1) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.1 200 "):
                return
        assert time.monotonic() < deadline, f"{node.name} not ready:\n{node.text()}"
        time.sleep(0.1)


def three_upstreams(conf: str) -> str:
    """The shipped configuration with a third node after the second in each upstream block."""
    added, count = re.subn(r"^(\s*server )teleroom-2(:8080\b.*)$", r"\g<0>\n\1teleroom-3\2", conf, flags=re.M)
    assert count == 2, "deploy/nginx.conf no longer has two upstream blocks naming teleroom-2"
    return added


@pytest.fixture
def cluster(database_url: str, migration_database_url: str, tmp_path: Path) -> Iterator[Cluster]:
    nginx = require("nginx", "nginx")
    https_port, http_port = free_port(), free_port()
    seal_key = tmp_path / "seal-key"
    seal_key.write_text(base64.b64encode(os.urandom(32)).decode())
    seal_key.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEROOM_")}
    env |= {
        "DATABASE_URL": database_url,
        "TELEROOM_MIGRATION_DATABASE_URL": migration_database_url,
        "TELEROOM_SEAL_KEY_FILE": str(seal_key),
        "TELEROOM_SIGNALING_RELAY": "postgres",
        "TELEROOM_PUBLIC_ORIGIN": f"https://127.0.0.1:{https_port}",
        "TELEROOM_ADMIN_TOKEN": ADMIN_TOKEN,
        "TELEROOM_TRUSTED_PROXIES": "127.0.0.1/32",
        "TELEROOM_BOOKING_ATTEMPTS_PER_HOUR": "0",
        "TELEROOM_SLOT_LISTINGS_PER_MINUTE": "100000",
    }
    nodes = [Node(f"teleroom-{i + 1}", tmp_path / f"node{i + 1}", env) for i in range(NODES)]
    proxy: subprocess.Popen[bytes] | None = None
    try:
        conf = render(
            tmp_path / "nginx",
            {node.name: f"127.0.0.1:{node.port}" for node in nodes},
            http_port=http_port,
            https_port=https_port,
            conf=three_upstreams(SHIPPED.read_text()),
        )
        errors = tmp_path / "nginx" / "startup-error.log"
        proxy = subprocess.Popen(
            [nginx, "-p", str(conf.parent), "-c", str(conf), "-e", str(errors), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        for node in nodes:
            wait_ready(node, deadline)
        while True:  # nginx listening
            assert proxy.poll() is None, errors.read_text() if errors.exists() else "nginx exited"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", https_port), timeout=1):
                break
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.05)
        yield Cluster(nodes, proxy, f"https://127.0.0.1:{https_port}", tmp_path)
    finally:
        if proxy is not None and proxy.poll() is None:
            proxy.send_signal(signal.SIGQUIT)
            try:
                proxy.wait(10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait(10)
        for node in nodes:
            node.stop()


@pytest.fixture
async def edge_http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session that accepts the throwaway certificate nginx presents."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False, limit=0)) as session:
        yield session


def on_node(token: dict[str, Any], node: Node) -> str:
    """The token's signaling URL pointed at one node directly, past nginx."""
    room = token["signaling_url"].partition("?")[2]
    return f"ws://127.0.0.1:{node.port}/ws?{room}"


async def meet(therapist: Participant, client: Participant, seconds: float) -> None:
    """Both sides' links DTLS-connected and video frames flowing both ways."""
    async with asyncio.timeout(seconds):
        to_client = await therapist.link(client.id)
        to_therapist = await client.link(therapist.id)
        await to_client.connected.wait()
        await to_therapist.connected.wait()
    await wait_until(lambda: to_client.frames["video"] >= 3 and to_therapist.frames["video"] >= 3, seconds)


async def rejoin(old: Participant, api: Api, booking: Booking, role: str, http: aiohttp.ClientSession) -> Participant:
    """What a participant's page does when its socket drops: a fresh token through nginx, join again."""
    await wait_until(lambda: old.ws is not None and old.ws.closed, RECONNECT_BOUND)
    await old.close()
    while True:
        try:
            token = await room_token(api, booking, role)
            fresh = Participant(token["signaling_url"], token["token"], session=http)
            await fresh.join()
            return fresh
        except (aiohttp.ClientError, ConnectionError, AssertionError):
            await asyncio.sleep(0.1)  # bounded by the caller's timeout


async def attendance(db: asyncpg.Connection, booking: str) -> list[tuple[str, str]]:
    rows = await db.fetch(
        "SELECT participant, event FROM attendance_events WHERE booking_id = $1 ORDER BY at, id", uuid.UUID(booking)
    )
    return [(r["participant"], r["event"]) for r in rows]


def received(participant: Participant) -> list[p.ServerMessage]:
    """What the participant was sent and no step of the test has read yet."""
    messages = []
    while not participant.inbox.empty():
        messages.append(participant.inbox.get_nowait())
    return messages


async def test_three_nodes_behind_nginx_survive_a_kill_and_drain_on_sigterm(
    cluster: Cluster, http: aiohttp.ClientSession, edge_http: aiohttp.ClientSession, db: asyncpg.Connection
) -> None:
    nodes = cluster.nodes
    edge = Api(edge_http, cluster.edge, ADMIN_TOKEN)
    direct = [Api(http, node.base, ADMIN_TOKEN) for node in nodes]

    # A slot raced through the three nodes: one booking, 29 refusals.
    therapist, session_type = await edge.ready_therapist(duration_minutes=50)
    start = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(days=1), 60).isoformat()
    results = await asyncio.gather(*(direct[i % NODES].book(therapist, session_type, start) for i in range(30)))
    assert sorted(status for status, _ in results) == [201] + [409] * 29, results
    confirmed = "SELECT count(*) FROM bookings WHERE status = 'confirmed' AND starts_at = $1"
    assert await db.fetchval(confirmed, dt.datetime.fromisoformat(start)) == 1

    # A room token used on node 1 is refused on node 2.
    booking = await booking_in_window(edge)
    token = await room_token(edge, booking, "client")
    first = await Ws.connect(http, on_node(token, nodes[0]))
    await first.send(type="join", token=token["token"])
    assert (await first.expect("joined"))["state"] == "waiting"
    replay = await Ws.connect(http, on_node(token, nodes[1]))
    await replay.send(type="join", token=token["token"])
    assert (await replay.expect("error"))["code"] == "token_replayed"
    assert await replay.closed() == p.CloseCode.TOKEN_REJECTED
    await first.close()

    # Two participants of one room on two different nodes meet, the relay between them PostgreSQL's.
    t_token, c_token = await room_token(edge, booking, "therapist"), await room_token(edge, booking, "client")
    therapist_p = Participant(on_node(t_token, nodes[1]), t_token["token"], session=http)
    client_p = Participant(on_node(c_token, nodes[2]), c_token["token"], session=http)
    try:
        assert (await therapist_p.join()).state == "admitted"
        assert (await client_p.join()).state == "waiting"
        async with asyncio.timeout(10):
            waiting = await therapist_p.next(p.Waiting)
        assert isinstance(waiting, p.Waiting) and waiting.participant.id == client_p.id
        await therapist_p.admit(client_p.id)
        async with asyncio.timeout(10):
            await client_p.next(p.Admitted)
        await meet(therapist_p, client_p, 20)
    finally:
        await client_p.close()
        await therapist_p.close()

    # A second room, both participants through nginx: hashed on the room, they land on one node.
    room = await booking_in_window(edge)
    t_token, c_token = await room_token(edge, room, "therapist"), await room_token(edge, room, "client")
    therapist_p = Participant(t_token["signaling_url"], t_token["token"], session=edge_http)
    client_p = Participant(c_token["signaling_url"], c_token["token"], session=edge_http)
    survivors: list[Participant] = [therapist_p, client_p]
    try:
        assert (await therapist_p.join()).state == "admitted"
        assert (await client_p.join()).state == "waiting"
        async with asyncio.timeout(10):
            await therapist_p.next(p.Waiting)
        await therapist_p.admit(client_p.id)
        async with asyncio.timeout(10):
            await client_p.next(p.Admitted)
        await meet(therapist_p, client_p, 20)
        await wait_until(lambda: any(n.holds(room.id, client_p.id) for n in nodes), 5)
        holder = next(n for n in nodes if n.holds(room.id, therapist_p.id))
        assert holder.holds(room.id, client_p.id), "nginx sent one room's participants to two nodes"
        before = await attendance(db, room.id)
        assert (client_p.id, "admitted") in before

        # SIGKILL the node holding the room; both sides fetch fresh tokens and join through nginx.
        killed_at = time.monotonic()
        holder.proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(RECONNECT_BOUND):
            therapist_p, client_p = survivors[:] = await asyncio.gather(
                rejoin(therapist_p, edge, room, "therapist", edge_http),
                rejoin(client_p, edge, room, "client", edge_http),
            )
            assert client_p.state == "admitted", "the client was held in the waiting room again"
            await meet(therapist_p, client_p, RECONNECT_BOUND)
        after_kill = time.monotonic() - killed_at
        print(f"\ncall connected again {after_kill:.2f} s after SIGKILL to the node holding the room")
        assert holder.proc.wait(5) == -signal.SIGKILL
        assert not any(isinstance(m, p.Waiting) for m in received(therapist_p)), "the therapist was asked again"
        events = await attendance(db, room.id)
        assert events[: len(before)] == before, "an attendance event recorded before the kill is gone"
        assert [kind for who, kind in events if who == client_p.id].count("admitted") == 1  # admitted once
        assert await db.fetchval("SELECT count(*) FROM bookings WHERE status = 'confirmed'") == 3

        # SIGTERM drains the node now holding the room: it stops listening, tells both to reconnect
        # (1001), exits 0 within 30 s; they meet on the last node.
        alive = [n for n in nodes if n is not holder]
        await wait_until(lambda: any(n.holds(room.id, client_p.id) for n in alive), 5)
        drained = next(n for n in alive if n.holds(room.id, client_p.id))
        last = next(n for n in alive if n is not drained)
        log_before = len(last.text())
        termed_at = time.monotonic()
        drained.proc.send_signal(signal.SIGTERM)
        assert therapist_p.ws is not None and client_p.ws is not None
        await wait_until(lambda: therapist_p.ws.closed and client_p.ws.closed, DRAIN_BOUND)  # type: ignore[union-attr]
        assert (therapist_p.ws.close_code, client_p.ws.close_code) == (p.CloseCode.GOING_AWAY,) * 2
        with pytest.raises(ConnectionRefusedError):  # no longer listening once its sockets are told
            socket.create_connection(("127.0.0.1", drained.port), timeout=1).close()
        async with asyncio.timeout(RECONNECT_BOUND):
            therapist_p, client_p = survivors[:] = await asyncio.gather(
                rejoin(therapist_p, edge, room, "therapist", edge_http),
                rejoin(client_p, edge, room, "client", edge_http),
            )
            assert client_p.state == "admitted"
            await meet(therapist_p, client_p, RECONNECT_BOUND)
        after_term = time.monotonic() - termed_at
        assert await asyncio.to_thread(drained.proc.wait, DRAIN_BOUND) == 0, drained.text()
        exited = time.monotonic() - termed_at
        print(f"call connected again {after_term:.2f} s after SIGTERM; the drained node exited after {exited:.2f} s")
        assert exited < DRAIN_BOUND
        assert f"room {room.id}: " in last.text()[log_before:]  # the last node carries the room now
    finally:
        for participant in survivors:
            await participant.close()


async def test_a_peer_whose_node_dies_comes_back_to_one_that_stayed_connected_elsewhere(
    cluster: Cluster, http: aiohttp.ClientSession, edge_http: aiohttp.ClientSession
) -> None:
    # The therapist on node 1, the client on node 2 (past nginx): node 1 is killed. The client's
    # socket never drops; the therapist reconnects through nginx, and the client's node replaces
    # the dead node's view of the therapist with the new connection: they negotiate again.
    nodes = cluster.nodes
    edge = Api(edge_http, cluster.edge, ADMIN_TOKEN)
    room = await booking_in_window(edge)
    t_token, c_token = await room_token(edge, room, "therapist"), await room_token(edge, room, "client")
    therapist_p = Participant(on_node(t_token, nodes[0]), t_token["token"], session=http)
    client_p = Participant(on_node(c_token, nodes[1]), c_token["token"], session=http)
    survivors: list[Participant] = [therapist_p, client_p]
    try:
        await therapist_p.join()
        await client_p.join()
        async with asyncio.timeout(10):
            await therapist_p.next(p.Waiting)  # node 1 has heard of the client on node 2
        await therapist_p.admit(client_p.id)
        async with asyncio.timeout(10):
            await client_p.next(p.Admitted)
        await meet(therapist_p, client_p, 20)
        client_ws = client_p.ws

        killed_at = time.monotonic()
        nodes[0].proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(RECONNECT_BOUND):
            therapist_p = survivors[0] = await rejoin(therapist_p, edge, room, "therapist", edge_http)
            await meet(therapist_p, client_p, RECONNECT_BOUND)
        print(f"\ncall connected again {time.monotonic() - killed_at:.2f} s after SIGKILL to the therapist's node")
        assert client_p.ws is client_ws and not client_ws.closed  # the client never noticed but for media
        assert not any(isinstance(m, p.Waiting) for m in received(therapist_p))
    finally:
        for participant in survivors:
            await participant.close()
