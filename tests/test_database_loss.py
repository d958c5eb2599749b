"""A lost or frozen database: requests answer 503 `database_unavailable` with Retry-After at once
instead of hanging or failing with 500, the outage is logged once without a stack, and the service
recovers by itself: it restarts its embedded PostgreSQL, and reconnects to a DATABASE_URL server
once that is back.

Each test owns its PostgreSQL (never the session's shared one): the embedded one under a
`teleroom serve` subprocess, or one this test starts for an in-process app on DATABASE_URL.
Every wait is bounded: a request that hangs fails on the client's timeout, not on pytest's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil  # type: ignore[import-untyped]
import pytest
from aiohttp.test_utils import TestServer

from broker import database
from broker.app import create_app
from broker.settings import Settings
from tests.support import Api, free_port, next_grid_start

TELEROOM = [sys.executable, "-m", "broker.cli"]
ADMIN_TOKEN = "test-admin-token-database-loss-0123"
# Short, so an outage is noticed fast; the client waits far longer before calling it a hang.
DATABASE_TIMEOUT_SECONDS = 1
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=15)
RECOVERY_DEADLINE_SECONDS = 60


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


def cluster(pid: int) -> list[psutil.Process]:
    """The postmaster and its backends: SIGSTOP on all of them freezes the server as a whole."""
    postmaster = psutil.Process(pid)
    return [postmaster, *postmaster.children(recursive=True)]


def signal_cluster(pid: int, sig: signal.Signals) -> None:
    for process in cluster(pid):
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)


@contextlib.contextmanager
def frozen(pgdata: Path) -> Iterator[None]:
    """The embedded server stopped (SIGSTOP) for the block's duration, continued whatever happens."""
    pid = postmaster_pid(pgdata)
    stopped = cluster(pid)
    for process in stopped:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in stopped:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGCONT)


def kill_postmaster(pgdata: Path) -> int:
    """SIGKILL the postmaster and wait (bounded) until it is gone or a zombie: on a loaded machine a
    process in uninterruptible I/O dies late, and a restart before that takes it for running."""
    pid = postmaster_pid(pgdata)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        assert time.monotonic() < deadline, "the killed postmaster did not go away"
        time.sleep(0.05)
    return pid


async def booking_slots(api: Api) -> tuple[dict[str, Any], dict[str, Any], Iterator[str]]:
    """A bookable therapist and an endless supply of free hourly starts."""
    therapist, session_type = await api.ready_therapist(slot_interval_minutes=60)
    first = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2), 60)
    starts = ((first + dt.timedelta(hours=i)).isoformat().replace("+00:00", "Z") for i in range(24 * 30))
    return therapist, session_type, starts


def assert_unavailable(status: int, body: Any, headers: Any) -> None:
    assert status == 503, body
    assert body["code"] == "database_unavailable", body
    assert int(headers["Retry-After"]) > 0


async def call(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any, Any]:
    async with session.request(method, url, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def book(
    session: aiohttp.ClientSession, base: str, therapist: dict[str, Any], session_type: dict[str, Any], start: str
) -> tuple[int, Any, Any]:
    return await call(
        session,
        "POST",
        f"{base}/api/v1/therapists/{therapist['slug']}/bookings",
        json={
            "session_type": session_type["id"],
            "start": start,
            "client": {"name": "Client", "email": "c@example.org"},
        },
    )


async def until_booked(
    session: aiohttp.ClientSession,
    base: str,
    therapist: dict[str, Any],
    session_type: dict[str, Any],
    starts: Iterator[str],
) -> None:
    """Book until it works (the service recovers by itself); only 503 database_unavailable meanwhile."""
    deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
    while True:
        status, body, headers = await book(session, base, therapist, session_type, next(starts))
        if status == 201:
            return
        assert_unavailable(status, body, headers)
        assert time.monotonic() < deadline, "the service did not recover"
        await asyncio.sleep(0.5)


# --- the embedded database under `teleroom serve` --------------------------------------------------


@pytest.fixture
def serve(embedded_data_dir: Path) -> Iterator[tuple[str, Path, Path, int]]:
    """`teleroom serve` on its own embedded database: (base URL, pgdata, log file, its pid)."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["TELEROOM_ADMIN_TOKEN"] = ADMIN_TOKEN
    env["TELEROOM_DATABASE_TIMEOUT_SECONDS"] = str(DATABASE_TIMEOUT_SECONDS)
    port = free_port()
    data = embedded_data_dir / "data"
    pgdata = data / "pgdata"
    log_path = embedded_data_dir / "serve.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [*TELEROOM, "serve", "--port", str(port), "--data-dir", str(data)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(port, proc, log_path)
        yield f"http://127.0.0.1:{port}", pgdata, log_path, proc.pid
    finally:
        # Whatever the test left frozen or half-restarted: continue it, stop the service, then make
        # sure no PostgreSQL of this data dir outlives the test.
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            signal_cluster(postmaster_pid(pgdata), signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            signal_cluster(postmaster_pid(pgdata), signal.SIGKILL)
        print(log_path.read_text())  # shown by pytest when the test fails


def wait_ready(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"teleroom serve exited early: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("teleroom serve did not become ready")


def incident_lines(log_path: Path) -> list[str]:
    return [line for line in log_path.read_text().splitlines() if "database unavailable" in line]


async def test_frozen_embedded_database_answers_503_then_recovers(serve: tuple[str, Path, Path, int]) -> None:
    base, pgdata, log_path, _ = serve
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
        api = Api(session, base, ADMIN_TOKEN)
        therapist, session_type, starts = await booking_slots(api)
        status, _, _ = await book(session, base, therapist, session_type, next(starts))
        assert status == 201

        with frozen(pgdata):
            # Each answers instead of hanging (a hang fails on the client's timeout).
            assert_unavailable(*await book(session, base, therapist, session_type, next(starts)))
            assert_unavailable(*await call(session, "GET", f"{base}/readyz"))
            assert_unavailable(*await call(session, "GET", f"{base}/api/v1/therapists/{therapist['slug']}"))
            many = await asyncio.gather(
                *(book(session, base, therapist, session_type, next(starts)) for _ in range(30))
            )
            for answer in many:
                assert_unavailable(*answer)

        await until_booked(session, base, therapist, session_type, starts)
        status, _, _ = await call(session, "GET", f"{base}/readyz")
        assert status == 200

    log = log_path.read_text()
    assert len(incident_lines(log_path)) == 1, log
    assert "Traceback" not in log and "internal_error" not in log, log


async def test_killed_embedded_database_is_restarted_by_the_service(serve: tuple[str, Path, Path, int]) -> None:
    base, pgdata, log_path, pid = serve
    # Writing to the killed server's sockets raises EPIPE; with SIGPIPE at its default the process
    # died of it instead (`python -m broker.cli` reset it for every command, `serve` included).
    status_file = Path(f"/proc/{pid}/status")
    if status_file.exists():
        ignored = int(
            next(line for line in status_file.read_text().splitlines() if line.startswith("SigIgn:")).split()[1], 16
        )
        assert ignored & (1 << (signal.SIGPIPE - 1)), "teleroom serve must ignore SIGPIPE"
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
        api = Api(session, base, ADMIN_TOKEN)
        therapist, session_type, starts = await booking_slots(api)
        killed = kill_postmaster(pgdata)
        # Answered at once while the server is down or restarting: 503, never 500.
        for _ in range(5):
            status, body, headers = await book(session, base, therapist, session_type, next(starts))
            if status == 201:
                break  # already restarted
            assert_unavailable(status, body, headers)
        await until_booked(session, base, therapist, session_type, starts)
        assert postmaster_pid(pgdata) != killed
        status, _, _ = await call(session, "GET", f"{base}/readyz")
        assert status == 200

    log = log_path.read_text()
    assert len(incident_lines(log_path)) == 1, log
    assert "Traceback" not in log and "internal_error" not in log, log


# --- a PostgreSQL of one's own, through DATABASE_URL -------------------------------------------------


@pytest.fixture
async def own_postgres(embedded_data_dir: Path) -> AsyncIterator[database.EmbeddedPostgres]:
    """A PostgreSQL this test may kill and start again, standing in for a clinic's server."""
    server = database.EmbeddedPostgres(embedded_data_dir / "own")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def restart(server: database.EmbeddedPostgres) -> None:
    """Start the killed server again, as an operator would, trying until its old backends are gone."""
    deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
    while True:
        try:
            await asyncio.to_thread(server.restart)
            conn = await asyncpg.connect(server._server.get_uri(), timeout=5)
            await conn.close()
            return
        except (subprocess.CalledProcessError, OSError, asyncpg.PostgresError, TimeoutError):
            assert time.monotonic() < deadline, "the database did not start again"
            await asyncio.sleep(0.5)


async def test_database_url_server_lost_then_back_is_reconnected(
    own_postgres: database.EmbeddedPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        host="127.0.0.1",
        port=free_port(),
        data_dir=tmp_path,
        database_url=own_postgres._server.get_uri(),
        admin_token=ADMIN_TOKEN,
        database_timeout_seconds=DATABASE_TIMEOUT_SECONDS,
    )
    app = create_app(settings)
    server = TestServer(app, host=settings.host, port=settings.port)
    await server.start_server()
    caplog.set_level(logging.INFO)
    try:
        base = f"http://{server.host}:{server.port}"
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
            api = Api(session, base, ADMIN_TOKEN)
            therapist, session_type, starts = await booking_slots(api)

            with frozen(own_postgres.data_dir.resolve() / "pgdata"):
                assert_unavailable(*await book(session, base, therapist, session_type, next(starts)))
                assert_unavailable(*await call(session, "GET", f"{base}/readyz"))
            await until_booked(session, base, therapist, session_type, starts)

            kill_postmaster(own_postgres.data_dir.resolve() / "pgdata")
            for _ in range(3):
                assert_unavailable(*await book(session, base, therapist, session_type, next(starts)))
            assert_unavailable(*await call(session, "GET", f"{base}/readyz"))
            await restart(own_postgres)  # the operator brings the server back
            await until_booked(session, base, therapist, session_type, starts)
    finally:
        await server.close()

    incidents = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(incidents) == 2, [r.getMessage() for r in incidents]  # one per outage, not per request
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
