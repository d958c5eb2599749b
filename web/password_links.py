"""One-time links to choose a password: an invite for a new therapist, a reset after "forgot password".

The link carries its secret in the URL fragment (`/invite#t=...`), which browsers never send to a
server, a log or a Referer; the page's script sends it as a bearer token. Only its SHA-256 is
stored. A link works once and until it expires; issuing a new link retires the therapist's
earlier unused ones. This module owns the `password_links` table.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Literal

import asyncpg
import msgspec

from broker import credentials
from broker.database import Executor, record_to
from broker.errors import Gone, NotFound
from broker.mail import notices as mail_notices
from broker.sealing import Sealer
from broker.settings import Settings
from broker.therapists import NewTherapist, TherapistCreatedHook
from web import passwords

log = logging.getLogger("teleroom.accounts")

Purpose = Literal["invite", "reset"]
PREFIX: dict[Purpose, str] = {"invite": credentials.INVITE_LINK, "reset": credentials.RESET_LINK}
LIFETIME: dict[Purpose, dt.timedelta] = {
    "invite": dt.timedelta(days=7),
    # Longer than the usual hour: an operator without SMTP passes the link on from the .eml file.
    "reset": dt.timedelta(hours=24),
}

RETIRE_OPEN_LINKS = "UPDATE password_links SET used_at = $2 WHERE therapist_id = $1 AND used_at IS NULL"
INSERT_LINK = """
INSERT INTO password_links (token_hash, therapist_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
"""
SELECT_LINK = "SELECT therapist_id, purpose, expires_at, used_at FROM password_links WHERE token_hash = $1"
USE_LINK = """
UPDATE password_links SET used_at = $2
WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
RETURNING therapist_id, purpose, expires_at, used_at
"""


class Link(msgspec.Struct, frozen=True):
    """A stored link (never its secret)."""

    therapist_id: uuid.UUID
    purpose: Purpose
    expires_at: dt.datetime
    used_at: dt.datetime | None


def url(origin: str, purpose: Purpose, secret: str) -> str:
    """The address to hand the therapist: the secret rides in the fragment, never the query."""
    return f"{origin}/{purpose}#t={secret}"


async def issue(conn: asyncpg.Connection, therapist_id: uuid.UUID, purpose: Purpose, now: dt.datetime) -> str:
    """A fresh link secret for the therapist (earlier unused links stop working)."""
    secret = credentials.new_secret(PREFIX[purpose])
    async with conn.transaction():
        await conn.execute(RETIRE_OPEN_LINKS, therapist_id, now)
        await conn.execute(
            INSERT_LINK, credentials.secret_hash(secret), therapist_id, purpose, now, now + LIFETIME[purpose]
        )
    return secret


async def purpose_for(conn: Executor, therapist_id: uuid.UUID) -> Purpose:
    """Which link a therapist who lost theirs needs: an invite until a password exists, then a reset."""
    return "reset" if await passwords.is_set(conn, therapist_id) else "invite"


async def invite_on_create(
    conn: asyncpg.Connection, settings: Settings, created: NewTherapist, now: dt.datetime
) -> NewTherapist:
    """THERAPIST_CREATED hook: the new therapist's answer gains a one-time invite link (valid 7 days).

    Issued on the creating connection, inside its transaction: no therapist without a link."""
    secret = await issue(conn, created.therapist.id, "invite", now)
    log.info("invite link issued for therapist %s", created.therapist.id)
    return msgspec.structs.replace(created, invite_url=url(settings.origin, "invite", secret))


def invite_by_email(sealer: Sealer) -> TherapistCreatedHook:
    """THERAPIST_CREATED hook of the API: the invite link, in the answer and in an email to the
    therapist queued in the same transaction (its secret sealed, see `broker.mail.notices`)."""

    async def hook(
        conn: asyncpg.Connection, settings: Settings, created: NewTherapist, now: dt.datetime
    ) -> NewTherapist:
        secret = await issue(conn, created.therapist.id, "invite", now)
        await mail_notices.queue_password_link(
            conn, sealer, created.therapist.id, "invite", secret, now + LIFETIME["invite"], now
        )
        log.info("invite link issued and emailed to therapist %s", created.therapist.id)
        return msgspec.structs.replace(created, invite_url=url(settings.origin, "invite", secret))

    return hook


async def issue_reset_by_email(
    conn: asyncpg.Connection, sealer: Sealer, therapist_id: uuid.UUID, now: dt.datetime
) -> None:
    """A reset link emailed to the therapist: the link and its email in one transaction."""
    async with conn.transaction():
        secret = await issue(conn, therapist_id, "reset", now)
        await mail_notices.queue_password_link(
            conn, sealer, therapist_id, "reset", secret, now + LIFETIME["reset"], now
        )


def _check_open(link: Link | None, now: dt.datetime) -> Link:
    if link is None:
        raise NotFound(code="link_unknown", detail="This link is not valid. Check that you copied all of it.")
    if link.used_at is not None:
        raise Gone("This link has already been used. Ask for a new one with “Forgot password”.", code="link_used")
    if link.expires_at <= now:
        raise Gone("This link has expired. Ask for a new one with “Forgot password”.", code="link_expired")
    return link


async def _find(conn: Executor, digest: bytes) -> Link | None:
    row = await conn.fetchrow(SELECT_LINK, digest)
    return None if row is None else record_to(Link, row)


async def inspect(conn: Executor, secret: str, now: dt.datetime) -> Link:
    """The open link for `secret`; NotFound `link_unknown`, Gone `link_used` or `link_expired` otherwise."""
    return _check_open(await _find(conn, credentials.secret_hash(secret)), now)


async def use(conn: asyncpg.Connection, secret: str, now: dt.datetime) -> Link:
    """Spend the link (once, atomically: two tabs racing get one success); raises like `inspect`."""
    digest = credentials.secret_hash(secret)
    row = await conn.fetchrow(USE_LINK, digest, now)
    if row is None:
        _check_open(await _find(conn, digest), now)
        raise Gone("This link has already been used.", code="link_used")  # spent between the two reads
    return record_to(Link, row)
