"""One-time links to choose a password: an invite for a new therapist, a reset after "forgot password".

The link carries its secret in the URL fragment (`/invite#t=...`), which browsers never send to a
server, a log or a Referer; the page's script sends it as a bearer token. Only its SHA-256 is
stored. A link works once and until it expires; issuing a new link retires the therapist's
earlier unused ones.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from dataclasses import dataclass
from typing import Literal

import asyncpg

from broker import credentials
from broker.problems import Problem

Purpose = Literal["invite", "reset"]
PREFIX: dict[Purpose, str] = {"invite": "tri_", "reset": "trr_"}
LIFETIME: dict[Purpose, dt.timedelta] = {
    "invite": dt.timedelta(days=7),
    # Longer than the usual hour: there is no mailer yet, so a person has to pass the link on.
    "reset": dt.timedelta(hours=24),
}

RETIRE_OPEN_LINKS = "UPDATE password_links SET used_at = $2 WHERE therapist_id = $1 AND used_at IS NULL"
INSERT_LINK = """
INSERT INTO password_links (token_hash, therapist_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
"""
SELECT_LINK = """
SELECT l.therapist_id, l.purpose, l.expires_at, l.used_at, t.email, t.name
FROM password_links l JOIN therapists t ON t.id = l.therapist_id
WHERE l.token_hash = $1
"""
USE_LINK = """
UPDATE password_links SET used_at = $2
WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
RETURNING therapist_id, purpose
"""


@dataclass(frozen=True, slots=True)
class Link:
    therapist_id: uuid.UUID
    purpose: Purpose
    expires_at: dt.datetime
    email: str
    name: str


def url(origin: str, purpose: Purpose, secret: str) -> str:
    return f"{origin}/{purpose}#t={secret}"


def looks_like_link_secret(value: str) -> bool:
    return any(value.startswith(prefix) for prefix in PREFIX.values()) and len(value) <= 100


async def issue(conn: asyncpg.Connection, therapist_id: uuid.UUID, purpose: Purpose, now: dt.datetime) -> str:
    """A fresh link secret for the therapist (earlier unused links stop working)."""
    secret = credentials.new_secret(PREFIX[purpose])
    async with conn.transaction():
        await conn.execute(RETIRE_OPEN_LINKS, therapist_id, now)
        await conn.execute(
            INSERT_LINK, credentials.secret_hash(secret), therapist_id, purpose, now, now + LIFETIME[purpose]
        )
    return secret


def _problem(row: asyncpg.Record | None, now: dt.datetime) -> Problem | None:
    if row is None:
        return Problem(404, "link_unknown", "This link is not valid. Check that you copied all of it.")
    if row["used_at"] is not None:
        return Problem(410, "link_used", "This link has already been used. Ask for a new one with “Forgot password”.")
    if row["expires_at"] <= now:
        return Problem(410, "link_expired", "This link has expired. Ask for a new one with “Forgot password”.")
    return None


async def inspect(conn: asyncpg.Pool | asyncpg.Connection, secret: str, now: dt.datetime) -> Link:
    """The open link for `secret`; 404 `link_unknown`, 410 `link_used` or `link_expired` otherwise."""
    row = await conn.fetchrow(SELECT_LINK, credentials.secret_hash(secret))
    problem = _problem(row, now)
    if problem is not None:
        raise problem
    assert row is not None
    return Link(row["therapist_id"], row["purpose"], row["expires_at"], row["email"], row["name"])


async def use(conn: asyncpg.Connection, secret: str, now: dt.datetime) -> tuple[uuid.UUID, Purpose]:
    """Spend the link (once, atomically: two tabs racing get one success); raises like `inspect`."""
    digest = credentials.secret_hash(secret)
    row = await conn.fetchrow(USE_LINK, digest, now)
    if row is None:
        problem = _problem(await conn.fetchrow(SELECT_LINK, digest), now)
        raise problem or Problem(410, "link_used", "This link has already been used.")
    return row["therapist_id"], row["purpose"]


def announce(therapist_id: uuid.UUID, purpose: Purpose, link: str) -> None:
    """There is no mailer yet: print the link on the server's stderr, in one clearly marked line.

    The log itself (which may be shipped elsewhere) only says that a link was issued, for which
    therapist id; this line goes to the operator's terminal or journal, never to the access log.
    """
    print(
        f"TELEROOM-PASSWORD-LINK (no mailer configured; pass this to the therapist yourself) "
        f"purpose={purpose} therapist={therapist_id} link={link}",
        file=sys.stderr,
        flush=True,
    )
