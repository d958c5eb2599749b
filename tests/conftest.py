"""Fixtures that build real things: a PostgreSQL server, a migrated database per test, a running app."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from broker import database
from broker.app import create_app
from broker.clock import Clock
from broker.settings import Settings
from tests.support import Api, free_port, with_database

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
# Every test books from 127.0.0.1, the most at once being test_bookings_api's 50 racers for one slot.
# The limit sits far above that so flood control never decides a test by accident; the test of
# flood control sets its own small limit.
BOOKING_ATTEMPTS_PER_HOUR = 1000
TEMPLATE_DB = "teleroom_template"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL server: DATABASE_URL when set, else an embedded one for this test session."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    # Not under pytest's basetemp: pytest prunes old numbered dirs there, which would pull the data
    # directory from under a server that a concurrent test run still uses.
    data_dir = Path(tempfile.mkdtemp(prefix="teleroom-test-pg-"))
    embedded = database.EmbeddedPostgres(data_dir)
    try:
        yield embedded.start()
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data dir for a `teleroom` process running its own embedded PostgreSQL, outside pytest's
    basetemp for the reason `pg_url` gives (a concurrent pytest run resets that tree's modes and
    prunes it, which an unprivileged PostgreSQL process cannot survive)."""
    path = Path(tempfile.mkdtemp(prefix="teleroom-test-data-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(pg_url: str) -> str:
    """A database migrated once, copied for every test (CREATE DATABASE ... TEMPLATE is fast)."""

    async def build() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(with_database(pg_url, TEMPLATE_DB))
        try:
            await database.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(build())
    return with_database(pg_url, TEMPLATE_DB)


@pytest.fixture
async def database_url(pg_url: str, template_url: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await conn.close()
    yield with_database(pg_url, name)
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=free_port(),
        data_dir=tmp_path,
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        allow_private_calendar_urls=True,
        booking_attempts_per_hour=BOOKING_ATTEMPTS_PER_HOUR,
    )


@pytest.fixture
async def server(settings: Settings, clock: Clock) -> AsyncIterator[TestServer]:
    app = create_app(settings, clock=clock)
    srv = TestServer(app, host=settings.host, port=settings.port)
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture
async def base_url(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def api(http: aiohttp.ClientSession, base_url: str) -> Api:
    return Api(http, base_url, ADMIN_TOKEN)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection, for asserting what was (and was not) written."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()
