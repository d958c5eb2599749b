"""Therapists and their API tokens: storage and the rules that guard them.

This module owns the `therapists` and `api_tokens` tables: every query of them is here, and what
leaves is typed (`Therapist`). Hours live in `broker.availability`, session types in
`broker.session_types`.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import msgspec
from aiohttp import web

from broker import audit, credentials, schemas
from broker.database import Executor, record_to
from broker.errors import Conflict, NotFound
from broker.principals import Principal
from broker.recent import Recent
from broker.settings import Settings
from broker.zones import zone


class Therapist(msgspec.Struct, frozen=True):
    """A therapist as the rest of the service sees one (the password and tokens stay in their tables).

    Nothing in the service changes these fields once the therapist exists (nor deletes a
    therapist), which is what lets a node keep them (`BySlug`); a change to any of them must
    drop or shorten that keeping."""

    id: uuid.UUID
    slug: str
    name: str
    email: str
    timezone: str


class NewTherapist(msgspec.Struct, frozen=True):
    """What creating a therapist hands out once: its API token, and what hooks add (an invite link)."""

    therapist: Therapist
    api_token: str
    invite_url: str | None = None


# Runs inside the creating transaction, from the API and from `teleroom therapist add` alike, and
# returns the answer with what it adds (the web package: a one-time invite link).
TherapistCreatedHook = Callable[[asyncpg.Connection, Settings, NewTherapist, dt.datetime], Awaitable[NewTherapist]]

SELECT_BY_SLUG = "SELECT id, slug, name, email, timezone FROM therapists WHERE slug = $1"
SELECT_BY_ID = "SELECT id, slug, name, email, timezone FROM therapists WHERE id = $1"
SELECT_BY_EMAIL = "SELECT id, slug, name, email, timezone FROM therapists WHERE lower(email) = lower($1)"
LOCK_THERAPIST = "SELECT 1 FROM therapists WHERE id = $1 FOR UPDATE"
SELECT_API_TOKEN = """
UPDATE api_tokens SET last_used_at = now()
WHERE token_hash = $1
RETURNING therapist_id
"""
INSERT_THERAPIST = """
INSERT INTO therapists (id, slug, name, email, timezone) VALUES ($1, $2, $3, $4, $5)
"""
INSERT_API_TOKEN = "INSERT INTO api_tokens (token_hash, therapist_id) VALUES ($1, $2)"


async def by_slug(conn: Executor, slug: str) -> Therapist:
    """The therapist with this public slug, or NotFound."""
    row = await conn.fetchrow(SELECT_BY_SLUG, slug)
    if row is None:
        raise NotFound("therapist")
    return record_to(Therapist, row)


# How long a node keeps a therapist it looked up by slug, and how many it keeps. The fields never
# change through the service; the bound only limits how long an edit made in SQL goes unseen.
KEPT_SECONDS = 60.0
KEPT_ENTRIES = 4096


class BySlug:
    """Therapists this node looked up by slug, kept `KEPT_SECONDS` (the least recently used go first).

    Every public booking and slot listing names its therapist by slug; keeping the answer saves
    each such request a pool checkout and a round trip. An unknown slug is never kept: a therapist
    created on another node is found at once."""

    def __init__(
        self,
        entries: int = KEPT_ENTRIES,
        seconds: float = KEPT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self._kept: Recent[str, tuple[float, Therapist]] = Recent(entries)

    async def get(self, conn: Executor, slug: str) -> Therapist:
        """The therapist with this slug (kept or read), or NotFound."""
        found = self._kept.get(slug)
        now = self.clock()
        if found is not None and now - found[0] < self.seconds:
            return found[1]
        therapist = await by_slug(conn, slug)
        self._kept.put(slug, (now, therapist))
        return therapist


BY_SLUG = web.AppKey("therapists_by_slug", BySlug)


async def by_id(conn: Executor, therapist_id: uuid.UUID) -> Therapist:
    row = await conn.fetchrow(SELECT_BY_ID, therapist_id)
    if row is None:
        raise NotFound("therapist")
    return record_to(Therapist, row)


async def by_email(conn: Executor, email: str) -> Therapist | None:
    """The therapist with this email (case-insensitive), if any."""
    row = await conn.fetchrow(SELECT_BY_EMAIL, email)
    return None if row is None else record_to(Therapist, row)


async def for_api_token(conn: Executor, token: str) -> uuid.UUID | None:
    """Whose API token this is (and note that it was used), or None."""
    therapist_id: uuid.UUID | None = await conn.fetchval(SELECT_API_TOKEN, credentials.secret_hash(token))
    return therapist_id


async def lock(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> None:
    """Serialise changes to one therapist's settings (feeds, calendars) within a transaction."""
    await conn.execute(LOCK_THERAPIST, therapist_id)


async def create_therapist(
    conn: asyncpg.Connection,
    body: schemas.TherapistIn,
    *,
    settings: Settings,
    now: dt.datetime,
    actor: Principal,
    hooks: Sequence[TherapistCreatedHook] = (),
) -> NewTherapist:
    """Insert a therapist, its first API token and what the hooks add, atomically.

    Conflict `slug_taken` / `email_taken` when either is in use."""
    zone(body.timezone)
    therapist = Therapist(id=uuid.uuid4(), slug=body.slug, name=body.name, email=body.email, timezone=body.timezone)
    token = credentials.new_secret(credentials.API_TOKEN)
    try:
        async with conn.transaction():
            await conn.execute(
                INSERT_THERAPIST, therapist.id, therapist.slug, therapist.name, therapist.email, therapist.timezone
            )
            await conn.execute(INSERT_API_TOKEN, credentials.secret_hash(token), therapist.id)
            await audit.record(conn, actor, "therapist.created", therapist_id=therapist.id)
            created = NewTherapist(therapist=therapist, api_token=token)
            for hook in hooks:
                created = await hook(conn, settings, created, now)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "therapists_slug_key":
            raise Conflict(f"The slug {body.slug!r} is already taken.", code="slug_taken") from None
        if exc.constraint_name == "therapists_email_key":
            raise Conflict("A therapist with this email already exists.", code="email_taken") from None
        raise
    return created
