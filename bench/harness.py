"""A running Teleroom on a throwaway embedded PostgreSQL (or DATABASE_URL), for benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from broker import database
from broker.app import create_app
from broker.settings import Settings

ADMIN = "bench-admin-token-0123456789abcdef"


@dataclass
class Service:
    """A Teleroom answering at `base` (in this process or another), on the database at `database_url`."""

    base: str
    database_url: str
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, token: str | None = None, json: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.base + path, json=json, headers=headers) as resp:
            body = await resp.json(content_type=None)
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {body}")
            return body

    async def therapist(self, slug: str, *, duration: int = 15, interval: int = 15) -> tuple[dict[str, Any], str]:
        t = await self.call(
            "POST",
            "/api/v1/therapists",
            ADMIN,
            {"slug": slug, "name": "Bench", "email": f"{slug}@example.org", "timezone": "UTC"},
        )
        week = [{"day": d, "start": "00:00", "end": "24:00"} for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]
        await self.call(
            "PUT", f"/api/v1/therapists/{slug}/availability", t["api_token"], {"timezone": "UTC", "weekly": week}
        )
        st = await self.call(
            "POST",
            f"/api/v1/therapists/{slug}/session-types",
            t["api_token"],
            {
                "name": "S",
                "duration_minutes": duration,
                "min_notice_minutes": 0,
                "horizon_days": 365,
                "slot_interval_minutes": interval,
            },
        )
        return t, st["id"]


@dataclass
class Running(Service):
    """A Teleroom running in this process (its app at hand)."""

    app: web.Application


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_service() -> AsyncIterator[Running]:
    with tempfile.TemporaryDirectory(prefix="teleroom-bench-") as tmp:
        with database.database_url(Path(tmp), os.environ.get("DATABASE_URL")) as base_url:
            name = f"bench_{os.getpid()}"
            conn = await asyncpg.connect(base_url)
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {name}")
            await conn.close()
            from urllib.parse import urlsplit, urlunsplit

            url = urlunsplit(urlsplit(base_url)._replace(path="/" + name))
            port = _port()
            settings = Settings(
                port=port,
                data_dir=Path(tmp),
                database_url=url,
                admin_token=ADMIN,
                log_level="WARNING",
                booking_attempts_per_hour=0,  # the benchmark books hundreds of slots from one address
            )
            app = create_app(settings)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", port)
            await site.start()
            try:
                connector = aiohttp.TCPConnector(limit=200)
                async with aiohttp.ClientSession(connector=connector) as http:
                    yield Running(f"http://127.0.0.1:{port}", url, http, app)
            finally:
                await runner.cleanup()
                conn = await asyncpg.connect(base_url)
                await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                await conn.close()


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int = 5) -> float:
    """Median wall time of `repeat` runs, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
