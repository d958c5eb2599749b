"""JSON API of video rooms, broker side: room tokens for a booking's join window, the JWKS, attendance.

Signaling (the `signaling` package) verifies the tokens issued here with `broker.tokens` and
records attendance with `broker.attendance`; these routes only hand tokens out and read back.
(Named `room_tokens`, not `rooms`, so it is not mistaken for signaling's `Room`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from broker import attendance, room_access, tokens
from broker.clock import CLOCK
from broker.database import POOL
from broker.http import openapi
from broker.http.endpoints import BOOKING_ACCESS, THERAPIST_ACCESS, ApiRoutes, Call, respond
from broker.settings import SETTINGS
from broker.tokens import KEYRING, KeyRing

log = logging.getLogger(__name__)
routes = ApiRoutes("rooms")
JWKS_MAX_AGE_SECONDS = 60


class AttendanceEventOut(msgspec.Struct):
    participant: str
    role: str
    event: str
    at: datetime


class AttendanceOut(msgspec.Struct):
    events: list[AttendanceEventOut]
    connected_seconds: int
    connected_minutes: float


class Jwks(msgspec.Struct):
    keys: list[dict[str, Any]]


@routes.route(
    "POST",
    "/api/v1/bookings/{id}/room-token",
    summary="A short-lived room token for the booking's video room (within the join window; a client first "
    "needs the current consent and an emergency contact: consent_required)",
    auth=BOOKING_ACCESS,
    response=room_access.RoomPass,
    errors=(410,),
)
async def room_token(request: web.Request, call: Call) -> web.Response:
    app = request.app
    issued = await room_access.issue(
        app[POOL], app[SETTINGS], call.booking_id, call.principal, now=app[CLOCK].now(), keys=app[KEYRING]
    )
    return respond(issued)


@routes.route(
    "GET",
    "/.well-known/jwks.json",
    summary="Public keys that verify room tokens (RFC 7517 JWK Set)",
    response=Jwks,
    content_type="application/jwk-set+json",
)
async def jwks(request: web.Request, call: Call) -> web.Response:
    document = await tokens.public_jwks(request.app[POOL], now=request.app[CLOCK].now())
    return respond(
        document,
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECONDS}"},
        content_type="application/jwk-set+json",
    )


@routes.route(
    "GET",
    "/api/v1/bookings/{id}/attendance",
    summary="When each participant joined, was admitted and left, and the minutes both were in session",
    auth=THERAPIST_ACCESS,
    response=AttendanceOut,
)
async def get_attendance(request: web.Request, call: Call) -> web.Response:
    app = request.app
    found = await attendance.report(
        app[POOL], call.booking_id, call.principal, settings=app[SETTINGS], now=app[CLOCK].now()
    )
    return respond(
        AttendanceOut(
            events=[AttendanceEventOut(e.participant, e.role, e.event, e.at) for e in found.events],
            connected_seconds=found.connected_seconds,
            connected_minutes=found.connected_minutes,
        )
    )


async def _keys_ctx(app: web.Application) -> AsyncIterator[None]:
    """Make sure a signing key exists before the first request, and forget long-expired token uses."""
    now = app[CLOCK].now()
    secret = app[SETTINGS].signing_key_secret
    await tokens.ensure_signing_key(app[POOL], now=now, secret=secret)
    await app[KEYRING].signer(app[POOL])  # fail at start, not at the first session, if the secret is wrong
    await tokens.prune_token_uses(app[POOL], now)
    pruner = asyncio.create_task(_prune_forever(app))
    yield
    pruner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pruner


PRUNE_EVERY_SECONDS = 3600


async def _prune_forever(app: web.Application) -> None:
    """Used jtis are only needed while their tokens could still verify; forget the rest hourly.
    Every node may run this: the DELETE is idempotent, so no claim is needed."""
    while True:
        await asyncio.sleep(PRUNE_EVERY_SECONDS)
        try:
            removed = await tokens.prune_token_uses(app[POOL], app[CLOCK].now())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("could not prune used room tokens; will try again")
            continue
        if removed:
            log.info("pruned %d used room tokens", removed)


def setup(app: web.Application) -> None:
    """Room-token, JWKS and attendance routes, the app's key cache, and the signing-key startup step."""

    app[KEYRING] = KeyRing(secret=app[SETTINGS].signing_key_secret)
    app.cleanup_ctx.append(_keys_ctx)
    openapi.mount(app, routes)
