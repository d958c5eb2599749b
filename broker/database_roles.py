"""Who Teleroom is in PostgreSQL: an owner that migrates, and a request role that owns nothing.

The audit trail's append-only trigger binds whoever may not bypass it, and a table's owner or a
superuser may (`ALTER TABLE ... DISABLE TRIGGER`, `SET session_replication_role = replica`). So
requests run as a role that owns no table, is no superuser, and may only read and add to
`audit_events`; the schema's owner applies migrations and, right after them, grants the request role
what `PRIVILEGES` declares (`grant`, under the migration lock, on every start), so tables added by a
later migration are covered without a grant of their own. On the embedded server the bootstrap
superuser creates both roles (`prepare_embedded`); on a clinic's PostgreSQL its administrator does
(docs/operations.md, *Database roles*), and `risks` says at start what the request role could still
change.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)

# The embedded server's two roles. A clinic's PostgreSQL may use any names: Teleroom reads them
# from the URLs it is given.
OWNER_ROLE = "teleroom_owner"
REQUEST_ROLE = "teleroom_app"

# What the request role holds on each table and view of the schema. Tables added by later
# migrations get `CHANGE`; a table that must not be changed through requests is named here.
READ = frozenset({"SELECT"})
APPEND = frozenset({"SELECT", "INSERT"})
CHANGE = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
PRIVILEGES: dict[str, frozenset[str]] = {
    "audit_events": APPEND,  # append-only (migration 001's trigger); requests may not rewrite it
    "schema_migrations": READ,  # read to see that nothing is pending; written by the owner only
}
# Sequences behind `serial` columns are used through nextval(); identity columns need no grant.
SEQUENCE = frozenset({"USAGE"})
# The attributes both roles are created with (and set back to if changed).
ATTRIBUTES = ("SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS")


def quote_ident(name: str) -> str:
    """`name` as a PostgreSQL identifier (role and table names cannot be $n parameters)."""
    return '"' + name.replace('"', '""') + '"'


def with_user(url: str, user: str) -> str:
    """`url` connecting as `user` instead (no password: the embedded server trusts its socket)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}@{host}"))


# --- the request role's grants -----------------------------------------------------------------------

# Every table, view and sequence of the schema that is not part of an extension, with what `role`
# ($1) and PUBLIC hold on it explicitly. `identity` marks the sequences identity columns own.
HELD = """
SELECT c.oid::regclass::text AS target, c.relname AS name, c.relkind = 'S' AS sequence,
       EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
               AND d.deptype = 'i') AS identity,
       coalesce(array_agg(a.privilege_type) FILTER (WHERE a.grantee = r.oid), '{}') AS held,
       coalesce(array_agg(a.privilege_type) FILTER (WHERE a.grantee = 0), '{}') AS public_held
FROM pg_class c
CROSS JOIN (SELECT oid FROM pg_roles WHERE rolname = $1) r
LEFT JOIN LATERAL aclexplode(c.relacl) a ON true
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
GROUP BY c.oid, c.relname, c.relkind, r.oid
ORDER BY c.relname
"""


def wanted(name: str, *, sequence: bool, identity: bool) -> frozenset[str]:
    """What the request role should hold on this relation."""
    if sequence:
        return frozenset() if identity else SEQUENCE
    return PRIVILEGES.get(name, CHANGE)


async def grant_statements(conn: asyncpg.Connection, role: str) -> list[str]:
    """The GRANTs and REVOKEs that would give `role` exactly what `PRIVILEGES` says, and PUBLIC nothing."""
    statements: list[str] = []
    grantee = quote_ident(role)
    for row in await conn.fetch(HELD, role):
        kind = "SEQUENCE" if row["sequence"] else "TABLE"
        want = wanted(row["name"], sequence=row["sequence"], identity=row["identity"])
        held = frozenset(row["held"])
        if missing := sorted(want - held):
            statements.append(f"GRANT {', '.join(missing)} ON {kind} {row['target']} TO {grantee}")
        if extra := sorted(held - want):
            statements.append(f"REVOKE {', '.join(extra)} ON {kind} {row['target']} FROM {grantee}")
        if public := sorted(row["public_held"]):
            statements.append(f"REVOKE {', '.join(public)} ON {kind} {row['target']} FROM PUBLIC")
    return statements


async def grant(conn: asyncpg.Connection, role: str, *, wait_seconds: float) -> int:
    """Give the request role `role` what `PRIVILEGES` says on every relation of the schema, as their owner.

    Run after each migration batch under the migration lock (concurrent GRANTs on one table collide).
    Only differences are applied, so a start with nothing to change writes nothing. Returns how many
    statements ran; says so in the log when some had no effect (the migrating role owns not all)."""
    statements = await grant_statements(conn, role)
    if not statements:
        return 0
    async with conn.transaction():
        for statement in statements:
            await conn.execute(statement, timeout=wait_seconds)
    if left := await grant_statements(conn, role):
        log.warning(
            "could not set the privileges of database role %s on %d relations (the migrating role does not own "
            "them); see docs/operations.md, Database roles",
            role,
            len(left),
        )
    else:
        log.info("granted database role %s what requests need (%d changes)", role, len(statements))
    return len(statements)


# --- what the request role could still do ------------------------------------------------------------

# About role $1: its attributes, whether it owns any relation of the schema, and which of the
# append-only tables ($2) it may change or act as the owner of (an owner may disable their triggers).
RISKS = """
SELECT r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
       EXISTS (SELECT FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relowner = r.oid)
           AS owns,
       ARRAY(SELECT c.relname FROM pg_class c
             WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($2::text[])
               AND (pg_has_role(r.oid, c.relowner, 'MEMBER') OR has_table_privilege(r.oid, c.oid, 'UPDATE')
                    OR has_table_privilege(r.oid, c.oid, 'DELETE') OR has_table_privilege(r.oid, c.oid, 'TRUNCATE'))
             ORDER BY c.relname) AS exposed
FROM pg_roles r
WHERE r.rolname = $1
"""
APPEND_ONLY = sorted(name for name, allowed in PRIVILEGES.items() if allowed == APPEND)


async def risks(conn: asyncpg.Connection, role: str, *, wait_seconds: float) -> list[str]:
    """What `role` could do that requests must not: empty when it is least-privileged.

    Asked on any connection (the migrating one, warm after `grant`); reasons read after the role's
    name ("is a superuser")."""
    row = await conn.fetchrow(RISKS, role, APPEND_ONLY, timeout=wait_seconds)
    found: list[str] = []
    if row["superuser"]:
        found.append("is a superuser")
    if row["bypassrls"]:
        found.append("bypasses row security")
    if row["owns"]:
        found.append("owns tables")
    if row["exposed"]:
        found.append(f"may update, delete, truncate or disable the triggers of {', '.join(row['exposed'])}")
    return found


# --- the embedded server -----------------------------------------------------------------------------

ROLE = """
SELECT rolcanlogin AS login, rolsuper AS superuser, rolcreatedb AS createdb, rolcreaterole AS createrole,
       rolreplication AS replication, rolbypassrls AS bypassrls
FROM pg_roles WHERE rolname = $1
"""

# Teleroom's objects in the schema that `owner` ($1) does not own, as `ALTER <kind> <name>`: tables
# (their indexes, row types and owned sequences follow), views, other sequences, routines and types.
# Extension members stay with the extension's owner.
FOREIGN_OWNED = """
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                      WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END AS kind,
       c.oid::regclass::text AS target
FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
  AND c.relowner <> $1::regrole
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype IN ('e', 'a', 'i'))
UNION ALL
SELECT 'ROUTINE', p.oid::regprocedure::text
FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace AND p.proowner <> $1::regrole
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.deptype = 'e')
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text
FROM pg_type t
WHERE t.typnamespace = current_schema()::regnamespace AND t.typtype IN ('e', 'd', 'r') AND t.typowner <> $1::regrole
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid
                  AND d.deptype = 'e')
"""


async def ensure_role(conn: asyncpg.Connection, name: str, *, password: str | None = None) -> None:
    """Create login role `name` without any of `ATTRIBUTES`, or take back those it was given (as a superuser)."""
    attributes = "LOGIN " + " ".join(f"NO{attribute}" for attribute in ATTRIBUTES)
    if password is not None:
        attributes += " PASSWORD " + "'" + password.replace("'", "''") + "'"
    row = await conn.fetchrow(ROLE, name)
    if row is None:
        await conn.execute(f"CREATE ROLE {quote_ident(name)} {attributes}")
        log.info("created database role %s", name)
    elif not row["login"] or any(row[attribute.lower()] for attribute in ATTRIBUTES):
        await conn.execute(f"ALTER ROLE {quote_ident(name)} {attributes}")
        log.warning("database role %s had been given more than it needs; set back", name)


async def prepare_embedded(conn: asyncpg.Connection, *, lock_key: int) -> None:
    """As the embedded server's bootstrap superuser: create both roles, make the owner own the database
    and every object of Teleroom's schema (a data dir from before the roles had `postgres` own them).

    Runs on every start in one transaction under `lock_key` (processes sharing the data dir start at
    once); changes nothing when all is in place."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
        await ensure_role(conn, OWNER_ROLE)
        await ensure_role(conn, REQUEST_ROLE)
        database = await conn.fetchval("SELECT current_database()")
        database_owner = await conn.fetchval(
            "SELECT datdba::regrole::text FROM pg_database WHERE datname = $1", database
        )
        if database_owner != OWNER_ROLE:
            # The owner may then create in the schema (PostgreSQL 15+ gives it to the database owner) and
            # create the trusted btree_gist extension; the request role keeps PUBLIC's CONNECT only.
            await conn.execute(f"ALTER DATABASE {quote_ident(database)} OWNER TO {quote_ident(OWNER_ROLE)}")
        schema = await conn.fetchval("SELECT current_schema()")
        if not await conn.fetchval("SELECT has_schema_privilege($1, $2, 'CREATE')", OWNER_ROLE, schema):
            await conn.execute(f"GRANT USAGE, CREATE ON SCHEMA {quote_ident(schema)} TO {quote_ident(OWNER_ROLE)}")
        moved = await conn.fetch(FOREIGN_OWNED, OWNER_ROLE)
        for row in moved:
            await conn.execute(f"ALTER {row['kind']} {row['target']} OWNER TO {quote_ident(OWNER_ROLE)}")
        if moved:
            log.info("database role %s now owns %d objects created before it existed", OWNER_ROLE, len(moved))
