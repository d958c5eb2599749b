"""Fixtures that build real things: a PostgreSQL server, a migrated database per test, a running app."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from broker import database, database_roles
from broker.app import create_app
from broker.clock import Clock
from broker.settings import Settings
from tests.support import Api, free_port, with_database

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
# Every test books from 127.0.0.1, the most at once being test_bookings_api's 50 racers for one slot.
# The limit sits far above that so flood control never decides a test by accident; the test of
# flood control sets its own small limit.
BOOKING_ATTEMPTS_PER_HOUR = 1000
# Likewise slot listings: property and race tests list slots many times a minute from one address.
SLOT_LISTINGS_PER_MINUTE = 100_000
TEMPLATE_DB = "teleroom_template"
# As in production, the app under test migrates as the schema's owner and serves requests as a role
# that owns nothing (docs/operations.md, *Database roles*). Own names, so a DATABASE_URL server's
# real roles are never touched; the password only matters where that server asks for one.
OWNER_ROLE = "teleroom_test_owner"
REQUEST_ROLE = "teleroom_test_app"
ROLE_PASSWORD = "teleroom-test-role-password"


def as_role(url: str, role: str) -> str:
    """`url` connecting as one of the test roles."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}:{quote(ROLE_PASSWORD, safe='')}@{host}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


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
    """A database migrated once, copied for every test (CREATE DATABASE ... TEMPLATE is fast).

    Owned by the test owner role, which migrates it and grants the test request role, as a node does."""

    async def build() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            async with conn.transaction():  # test sessions sharing a DATABASE_URL server start at once
                await conn.execute("SELECT pg_advisory_xact_lock($1)", database.MIGRATION_LOCK_KEY)
                for role in (OWNER_ROLE, REQUEST_ROLE):
                    await database_roles.ensure_role(conn, role, password=ROLE_PASSWORD)
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {TEMPLATE_DB} OWNER {OWNER_ROLE}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(as_role(with_database(pg_url, TEMPLATE_DB), OWNER_ROLE))
        try:
            await database.migrate(conn, grant_to=REQUEST_ROLE)
        finally:
            await conn.close()

    asyncio.run(build())
    return with_database(pg_url, TEMPLATE_DB)


@pytest.fixture
async def database_url(pg_url: str, template_url: str) -> AsyncIterator[str]:
    """A copy of the template for this test, connecting as the request role (what DATABASE_URL is)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB} OWNER {OWNER_ROLE}")
    finally:
        await conn.close()
    yield as_role(with_database(pg_url, name), REQUEST_ROLE)
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
def migration_database_url(database_url: str) -> str:
    """The same database as its owner (what TELEROOM_MIGRATION_DATABASE_URL is)."""
    return as_role(database_url, OWNER_ROLE)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(database_url: str, migration_database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=free_port(),
        data_dir=tmp_path,
        database_url=database_url,
        migration_database_url=migration_database_url,
        admin_token=ADMIN_TOKEN,
        allow_private_calendar_urls=True,
        booking_attempts_per_hour=BOOKING_ATTEMPTS_PER_HOUR,
        slot_listings_per_minute=SLOT_LISTINGS_PER_MINUTE,
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
async def db(pg_url: str, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection as the server's superuser, for asserting what was (and was not) written."""
    conn = await asyncpg.connect(with_database(pg_url, database_name(database_url)))
    yield conn
    await conn.close()
