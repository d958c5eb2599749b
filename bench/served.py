"""Servers in processes of their own, as a benchmark's client should meet them.

`python -m bench.served --port P --database-url URL --data-dir D [--silent] [--no-delivery]` runs
Teleroom as `teleroom serve` would (same app factory, run_app, no access log), with the bench's
admin token and without the per-address booking and slot listing limits (the benchmark books
thousands of slots from one address; `--slot-listings-per-minute` sets one). `--silent` removes the
notice hooks (outbox rows, webhooks, room closing), so a run can tell what telling people costs;
`--no-delivery` leaves queued messages undelivered, so the delivery worker (rendering and sending
emails) does not share the CPU with the requests measured. `process()` starts any such server and
waits until it answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web

from bench.harness import ADMIN
from broker import database, outbox
from broker.app import create_app
from broker.notices import NOTICES
from broker.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def fresh_database(data_dir: Path) -> AsyncIterator[str]:
    """A new, empty database on the embedded PostgreSQL under `data_dir` (or on DATABASE_URL's
    server), dropped afterwards. Yields its URL."""
    with database.database_url(data_dir, os.environ.get("DATABASE_URL")) as base_url:
        name = f"bench_{os.getpid()}"
        conn = await asyncpg.connect(base_url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        try:
            yield urlunsplit(urlsplit(base_url)._replace(path="/" + name))
        finally:
            conn = await asyncpg.connect(base_url)
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            finally:
                await conn.close()


@contextlib.asynccontextmanager
async def process(module: str, port: int, args: Sequence[str], *, ready_path: str = "/readyz") -> AsyncIterator[int]:
    """Run `python -m module --port port *args`, yield its pid once `ready_path` answers 200."""
    child = subprocess.Popen(  # our own module, our own arguments
        [sys.executable, "-m", module, "--port", str(port), *args],
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    try:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                if child.poll() is not None:
                    raise RuntimeError(f"{module} exited with {child.returncode}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}{ready_path}") as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{module} did not become ready in 60 s")
                await asyncio.sleep(0.1)
        yield child.pid
    finally:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--silent", action="store_true", help="run no notice hooks")
    parser.add_argument("--no-delivery", action="store_true", help="queue messages but run no delivery worker")
    parser.add_argument(
        "--slot-listings-per-minute", type=int, default=0, help="the per-address slot listing limit (default: none)"
    )
    args = parser.parse_args()
    settings = Settings(
        port=args.port,
        data_dir=args.data_dir,
        database_url=args.database_url,
        admin_token=ADMIN,
        log_level="WARNING",
        booking_attempts_per_hour=0,
        slot_listings_per_minute=args.slot_listings_per_minute,
    )
    app = create_app(settings)
    if args.silent:
        app[NOTICES].hooks.clear()
    if args.no_delivery:
        app.cleanup_ctx.remove(outbox.worker_ctx)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
