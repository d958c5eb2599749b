"""Requests run as a database role that owns nothing and cannot rewrite the audit trail (issue 13, defect 8).

The append-only trigger on `audit_events` binds only roles that may not bypass it: an owner can disable
it, a superuser can also switch triggers off for its session. So the role that serves requests is
neither, and holds only SELECT and INSERT on the audit table; migrations run as the schema's owner,
which grants the request role what it needs after every batch.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from broker import database, database_roles
from broker.app import create_app
from broker.database import POOL
from broker.settings import Settings
from tests.conftest import ADMIN_TOKEN, OWNER_ROLE, REQUEST_ROLE, as_role
from tests.support import Api, free_port, with_database

AUDIT_ROW = "INSERT INTO audit_events (actor_kind, action) VALUES ('system', 'test.audit')"
PERMISSION_DENIED = "permission denied for table audit_events"  # the privilege refuses, not the trigger


@pytest.fixture
async def requests_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the role DATABASE_URL names: what every request runs as."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def owner_conn(migration_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(migration_database_url)
    yield conn
    await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET action = 'rewritten'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "SELECT id FROM audit_events FOR UPDATE",
    ],
)
async def test_request_role_may_not_change_audit_events(requests_conn: asyncpg.Connection, statement: str) -> None:
    await requests_conn.execute(AUDIT_ROW)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=PERMISSION_DENIED):
        await requests_conn.execute(statement)
    assert await requests_conn.fetchval("SELECT action FROM audit_events") == "test.audit"


async def test_request_role_may_not_set_session_replication_role(requests_conn: asyncpg.Connection) -> None:
    """`replica` would silence every ordinary trigger, the append-only one included."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="session_replication_role"):
        await requests_conn.execute("SET session_replication_role = replica")
    assert await requests_conn.fetchval("SHOW session_replication_role") == "origin"


@pytest.mark.parametrize("trigger", ["audit_events_no_update", "audit_events_no_truncate", "ALL", "USER"])
async def test_request_role_may_not_disable_the_audit_triggers(requests_conn: asyncpg.Connection, trigger: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner of table audit_events"):
        await requests_conn.execute(f"ALTER TABLE audit_events DISABLE TRIGGER {trigger}")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
        await requests_conn.execute("DROP TRIGGER audit_events_no_update ON audit_events")


async def test_request_role_is_no_superuser_and_owns_nothing(requests_conn: asyncpg.Connection) -> None:
    role = await requests_conn.fetchrow(
        "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
    )
    assert tuple(role) == (REQUEST_ROLE, False, False, False, False)
    owned = await requests_conn.fetchval(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relowner = $1::regrole",
        REQUEST_ROLE,
    )
    assert owned == 0
    assert await database_roles.risks(requests_conn, REQUEST_ROLE, wait_seconds=5) == []
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # nor can it create objects of its own
        await requests_conn.execute("CREATE TABLE mine (id int)")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # nor record a migration as applied
        await requests_conn.execute("DELETE FROM schema_migrations")


async def test_a_superuser_or_owner_serving_requests_is_named_as_a_risk(
    db: asyncpg.Connection, owner_conn: asyncpg.Connection
) -> None:
    superuser = await db.fetchval("SELECT current_user")
    assert "is a superuser" in await database_roles.risks(db, superuser, wait_seconds=5)
    assert await database_roles.risks(owner_conn, OWNER_ROLE, wait_seconds=5) == [
        "owns tables",
        "may update, delete, truncate or disable the triggers of audit_events",
    ]
    # A member of the owner role could SET ROLE to it. Roles are the whole server's: rolled back.
    membership = db.transaction()
    await membership.start()
    try:
        await db.execute(f"GRANT {OWNER_ROLE} TO {REQUEST_ROLE}")
        assert await database_roles.risks(db, REQUEST_ROLE, wait_seconds=5) == [
            "may update, delete, truncate or disable the triggers of audit_events"
        ]
    finally:
        await membership.rollback()
    assert await database_roles.risks(db, REQUEST_ROLE, wait_seconds=5) == []


async def test_request_role_reads_and_writes_every_other_table(
    requests_conn: asyncpg.Connection, owner_conn: asyncpg.Connection
) -> None:
    tables = await owner_conn.fetch(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')"
    )
    for (table,) in tables:
        want = database_roles.PRIVILEGES.get(table, database_roles.CHANGE)
        held = {
            p
            for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
            if await requests_conn.fetchval("SELECT has_table_privilege($1, $2)", table, p)
        }
        assert held == want, table


async def test_a_table_a_later_migration_adds_is_granted_and_a_stray_grant_is_taken_back(
    requests_conn: asyncpg.Connection, owner_conn: asyncpg.Connection
) -> None:
    """What `migrate` runs after each batch: later tables need no grant of their own, and the audit
    table's rule holds even against a grant made by hand."""
    await owner_conn.execute("CREATE TABLE later_table (id serial PRIMARY KEY, note text)")
    await owner_conn.execute(f"GRANT UPDATE, TRUNCATE ON audit_events TO {REQUEST_ROLE}")
    await owner_conn.execute("GRANT DELETE ON audit_events TO PUBLIC")
    assert await database_roles.grant(owner_conn, REQUEST_ROLE, wait_seconds=5) > 0
    await requests_conn.execute("INSERT INTO later_table (note) VALUES ('a')")  # the serial's sequence too
    await requests_conn.execute("UPDATE later_table SET note = 'b'")
    await requests_conn.execute("DELETE FROM later_table")
    await requests_conn.execute(AUDIT_ROW)
    for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events", "TRUNCATE audit_events"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=PERMISSION_DENIED):
            await requests_conn.execute(statement)
    assert await database_roles.grant(owner_conn, REQUEST_ROLE, wait_seconds=5) == 0  # nothing left to change


async def test_advisory_locks_and_notifications_work_for_the_request_role(
    requests_conn: asyncpg.Connection, database_url: str
) -> None:
    heard: list[str] = []
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("teleroom_roles_test", lambda *args: heard.append(args[3]))
        async with requests_conn.transaction():
            await requests_conn.execute("SELECT pg_advisory_xact_lock($1, $2)", 1, 2)
            await requests_conn.execute("SELECT pg_notify('teleroom_roles_test', 'hello')")
        await listener.fetchval("SELECT 1")  # notifications arrive before the next result
        assert heard == ["hello"]
    finally:
        await listener.close()


async def test_the_request_role_cannot_apply_migrations(pg_url: str) -> None:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f"CREATE DATABASE {name} OWNER {OWNER_ROLE}")
    try:
        conn = await asyncpg.connect(as_role(with_database(pg_url, name), REQUEST_ROLE))
        try:
            with pytest.raises(database.MigrationError, match="TELEROOM_MIGRATION_DATABASE_URL"):
                await database.migrate(conn)
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_the_app_serves_requests_as_the_request_role(server: TestServer, api: Api) -> None:
    pool = server.app[POOL]
    assert await pool.fetchval("SELECT current_user") == REQUEST_ROLE
    therapist = await api.therapist()
    assert therapist["slug"]
    assert await pool.fetchval("SELECT count(*) FROM audit_events") >= 1


async def test_one_url_for_both_serves_but_says_the_audit_trail_is_exposed(
    settings: Settings, migration_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The documented trade-off of leaving TELEROOM_MIGRATION_DATABASE_URL unset: it works, and says so."""
    one = dataclasses.replace(settings, database_url=migration_database_url, migration_database_url=None)
    srv = TestServer(create_app(one), host="127.0.0.1", port=free_port())
    with caplog.at_level(logging.WARNING, logger="broker.database"):
        await srv.start_server()
    try:
        assert await srv.app[POOL].fetchval("SELECT current_user") == OWNER_ROLE
    finally:
        await srv.close()
    warnings = [r.getMessage() for r in caplog.records if "Database roles" in r.getMessage()]
    assert (
        len(warnings) == 1
        and f"database role {OWNER_ROLE} serves requests but owns tables and may update" in warnings[0]
    )


# --- a clinic's own PostgreSQL, set up as docs/operations.md says -------------------------------------

OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def documented_setup(owner: str, app: str, database_name: str, password: str) -> tuple[list[str], list[str]]:
    """The statements of *Database roles*' first SQL block, with these names: before and after `\\connect`."""
    section = OPERATIONS.read_text().split("## Database roles", 1)[1]
    block = section.split("```sql\n", 1)[1].split("```", 1)[0]
    block = block.replace("teleroom_owner", owner).replace("teleroom_app", app)
    block = re.sub(r"\bteleroom\b", database_name, block)
    block = re.sub(r"'<[a-z-]+>'", f"'{password}'", block)
    before, connect, after = block.partition(f"\\connect {database_name}\n")
    assert connect, "the block connects to the new database"

    def statements(sql: str) -> list[str]:
        lines = [line for line in sql.splitlines() if line.strip() and not line.lstrip().startswith("--")]
        return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]

    return statements(before), statements(after)


async def test_the_documented_setup_serves_requests_as_a_role_that_cannot_touch_the_audit_trail(
    pg_url: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    owner, app_role, name, password = f"doc_owner_{suffix}", f"doc_app_{suffix}", f"doc_{suffix}", "doc-password"
    before, after = documented_setup(owner, app_role, name, password)
    admin = await asyncpg.connect(pg_url)
    try:
        for statement in before:  # one at a time: CREATE DATABASE refuses a transaction block
            await admin.execute(statement)
        conn = await asyncpg.connect(with_database(pg_url, name))
        try:
            for statement in after:
                await conn.execute(statement)
        finally:
            await conn.close()

        def url(role: str) -> str:
            parts = urlsplit(with_database(pg_url, name))
            return urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.netloc.rpartition('@')[2]}"))

        port = free_port()
        settings = Settings(
            host="127.0.0.1",
            port=port,
            data_dir=tmp_path,
            database_url=url(app_role),
            migration_database_url=url(owner),
            admin_token=ADMIN_TOKEN,
        )
        srv = TestServer(create_app(settings), host="127.0.0.1", port=port)
        await srv.start_server()  # migrates the empty database as the owner, btree_gist included
        try:
            pool = srv.app[POOL]
            assert await pool.fetchval("SELECT current_user") == app_role
            async with pool.acquire() as conn:
                assert await database_roles.risks(conn, app_role, wait_seconds=5) == []
            async with aiohttp.ClientSession() as http:
                assert (await Api(http, f"http://127.0.0.1:{port}", ADMIN_TOKEN).therapist())["slug"]
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=PERMISSION_DENIED):
                await pool.execute("DELETE FROM audit_events")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await pool.execute("CREATE TABLE mine (id int)")
        finally:
            await srv.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {app_role}")
        await admin.execute(f"DROP ROLE IF EXISTS {owner}")
        await admin.close()


# --- the embedded database ---------------------------------------------------------------------------


async def test_embedded_database_serves_requests_as_the_request_role_and_adopts_an_old_data_dir(
    embedded_data_dir: Path,
) -> None:
    """A data dir from before the roles (everything owned by the `postgres` superuser, which the
    service used to connect as) is taken over by the owner role at start; requests then run as the
    request role, which cannot touch the audit trail."""
    data = embedded_data_dir / "data"
    embedded = database.EmbeddedPostgres(data)
    superuser_url = embedded.start()
    try:
        conn = await asyncpg.connect(superuser_url)
        try:
            await database.migrate(conn)  # as the service did before it had roles
            assert await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'bookings'") == "postgres"
        finally:
            await conn.close()

        port = free_port()
        app = create_app(Settings(host="127.0.0.1", port=port, data_dir=data, admin_token=ADMIN_TOKEN))
        srv = TestServer(app, host="127.0.0.1", port=port)
        await srv.start_server()
        try:
            pool = app[POOL]
            assert await pool.fetchval("SELECT current_user") == database_roles.REQUEST_ROLE
            async with pool.acquire() as conn:
                assert await database_roles.risks(conn, database_roles.REQUEST_ROLE, wait_seconds=5) == []
            await pool.execute(AUDIT_ROW)
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=PERMISSION_DENIED):
                await pool.execute("DELETE FROM audit_events")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await pool.execute("SET session_replication_role = replica")

            admin = await asyncpg.connect(superuser_url)
            try:
                owners = await admin.fetch("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
                assert [r["tableowner"] for r in owners] == [database_roles.OWNER_ROLE]
                functions = await admin.fetch(
                    "SELECT DISTINCT proowner::regrole::text AS owner FROM pg_proc WHERE proname IN "
                    "('audit_events_append_only', 'bookings_policy_at_insert')"
                )
                assert [r["owner"] for r in functions] == [database_roles.OWNER_ROLE]
                serving = await admin.fetch(
                    "SELECT DISTINCT usename FROM pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND pid <> pg_backend_pid() AND datname = current_database()"
                )
                assert [r["usename"] for r in serving] == [database_roles.REQUEST_ROLE]
            finally:
                await admin.close()
            async with aiohttp.ClientSession() as http:
                therapist = await Api(http, f"http://127.0.0.1:{port}", ADMIN_TOKEN).therapist()
                assert therapist["slug"]
        finally:
            await srv.close()
    finally:
        embedded.stop()
