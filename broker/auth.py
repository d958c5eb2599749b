"""Who is calling: bearer tokens (admin, therapist API token, booking key) and pluggable authenticators."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

import asyncpg
from aiohttp import web

from broker import credentials
from broker.problems import Problem, not_found, unauthorized
from broker.state import AUTHENTICATORS, POOL, SETTINGS

PrincipalKind = Literal["admin", "therapist", "client", "system"]

SELECT_API_TOKEN = """
UPDATE api_tokens SET last_used_at = now()
WHERE token_hash = $1
RETURNING therapist_id
"""
SELECT_ADMIN_TOKEN = "SELECT 1 FROM admin_tokens WHERE token_hash = $1"
SELECT_BOOKING_BY_KEY = "SELECT id, therapist_id FROM bookings WHERE key_hash = $1"
SELECT_THERAPIST_BY_SLUG = "SELECT id, slug, name, email, timezone FROM therapists WHERE slug = $1"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. A client is known only by the booking its key opens."""

    kind: PrincipalKind
    therapist_id: uuid.UUID | None = None
    booking_id: uuid.UUID | None = None
    via: Literal["bearer", "session"] = "bearer"

    @property
    def actor_id(self) -> str | None:
        if self.kind == "therapist":
            return str(self.therapist_id)
        if self.kind == "client":
            return str(self.booking_id)
        return None


SYSTEM = Principal("system")
_PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(request: web.Request) -> Principal | None:
    """Resolve the caller once per request; None when anonymous. A bad bearer token is a 401."""
    if _PRINCIPAL in request:
        cached: Principal | None = request[_PRINCIPAL]
        return cached
    principal: Principal | None = None
    token = bearer(request)
    if token is not None:
        principal = await _from_bearer(request, token)
        if principal is None:
            raise unauthorized("The bearer token is not valid.")
    else:
        for authenticator in request.app[AUTHENTICATORS]:
            principal = await authenticator(request)
            if principal is not None:
                break
    request[_PRINCIPAL] = principal
    return principal


async def _from_bearer(request: web.Request, token: str) -> Principal | None:
    pool = request.app[POOL]
    digest = credentials.secret_hash(token)
    if token.startswith(credentials.API_TOKEN):
        therapist_id = await pool.fetchval(SELECT_API_TOKEN, digest)
        return Principal("therapist", therapist_id=therapist_id) if therapist_id else None
    if token.startswith(credentials.BOOKING_KEY):
        row = await pool.fetchrow(SELECT_BOOKING_BY_KEY, digest)
        return Principal("client", therapist_id=row["therapist_id"], booking_id=row["id"]) if row else None
    env_token = request.app[SETTINGS].admin_token
    if env_token is not None and credentials.same_secret(digest, credentials.secret_hash(env_token)):
        return Principal("admin")
    if await pool.fetchval(SELECT_ADMIN_TOKEN, digest):
        return Principal("admin")
    return None


async def require_admin(request: web.Request) -> Principal:
    principal = await authenticate(request)
    if principal is None:
        raise unauthorized("This needs the admin token as a bearer token.")
    if principal.kind != "admin":
        raise Problem(403, "forbidden", "This needs the admin token.")
    return principal


async def therapist_by_slug(conn: asyncpg.Pool | asyncpg.Connection, slug: str) -> asyncpg.Record:
    row = await conn.fetchrow(SELECT_THERAPIST_BY_SLUG, slug)
    if row is None:
        raise not_found("therapist")
    return row


async def require_therapist(request: web.Request, slug: str) -> tuple[Principal, asyncpg.Record]:
    """The therapist named by `slug`, who must be the caller (by API token or dashboard session)."""
    therapist = await therapist_by_slug(request.app[POOL], slug)
    principal = await authenticate(request)
    if principal is None:
        raise unauthorized("This needs the therapist's API token as a bearer token.")
    if principal.kind != "therapist" or principal.therapist_id != therapist["id"]:
        raise Problem(403, "forbidden", "Only this therapist can do that.")
    return principal, therapist


async def require_booking_access(request: web.Request, booking_id: uuid.UUID) -> Principal:
    """The booking's client (by its key) or its therapist. Anyone else learns nothing: 404."""
    principal = await authenticate(request)
    if principal is None:
        raise unauthorized("This needs the booking key or the therapist's token as a bearer token.")
    if principal.kind == "client" and principal.booking_id == booking_id:
        return principal
    if principal.kind == "therapist":
        owner = await request.app[POOL].fetchval("SELECT therapist_id FROM bookings WHERE id = $1", booking_id)
        if owner is not None and owner == principal.therapist_id:
            return principal
    raise not_found("booking")


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found(what) from None
