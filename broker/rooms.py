"""Video rooms, broker side: room tokens for a booking's join window, the JWKS, and attendance.

Signaling (the `signaling` package) verifies the tokens issued here with `broker.tokens` and
records attendance with `broker.attendance`; this module only hands tokens out and reads back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from broker import attendance, audit, bookings, tokens
from broker.api import ApiRoutes, Param, respond
from broker.auth import parse_uuid, require_booking_access
from broker.ice import IceServer, ice_servers
from broker.problems import Problem
from broker.settings import Settings
from broker.state import API_ROUTES, CLOCK, POOL, SETTINGS
from broker.tokens import KEYRING, KeyRing

log = logging.getLogger(__name__)
routes = ApiRoutes("rooms")
BOOKING_ID = Param("id", "path", "Booking id", required=True)
JWKS_MAX_AGE_SECONDS = 60


class RoomTokenOut(msgspec.Struct):
    token: str
    expires_at: datetime
    room: str
    role: Literal["therapist", "client"]
    participant: str
    signaling_url: str
    ice_servers: list[IceServer]
    window_closes_at: datetime


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


def signaling_url(settings: Settings, room: str) -> str:
    """The WebSocket URL; it carries the room so a load balancer can keep a room on one node."""
    origin = settings.origin
    scheme, _, rest = origin.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?room={room}"


@routes.route(
    "POST",
    "/api/v1/bookings/{id}/room-token",
    summary="A short-lived room token for the booking's video room (within the join window)",
    auth=("booking", "therapist", "session"),
    response=RoomTokenOut,
    params=[BOOKING_ID],
    errors=(401, 403, 404, 410),
)
async def room_token(request: web.Request) -> web.Response:
    booking_id = parse_uuid(request.match_info["id"], "booking")
    principal = await require_booking_access(request, booking_id)
    app = request.app
    pool, settings, now = app[POOL], app[SETTINGS], app[CLOCK].now()
    row = await bookings.fetch_booking(pool, booking_id)
    opens_at, closes_at = tokens.join_window(row["starts_at"], row["ends_at"], settings)
    if row["status"] != "confirmed":
        raise Problem(410, "room_closed", "This booking was cancelled; its room is closed.")
    if now < opens_at:
        raise Problem(
            403,
            "too_early",
            f"The room opens {settings.join_early_minutes} minutes before the session.",
            opens_at=opens_at.isoformat(),
        )
    if now >= closes_at:
        raise Problem(
            410, "room_closed", "The join window for this session has closed.", closed_at=closes_at.isoformat()
        )
    role: tokens.Role = "therapist" if principal.kind == "therapist" else "client"
    if await attendance.room_ended_at(pool, booking_id):
        if role == "client":
            raise Problem(410, "room_closed", "Your therapist has ended this session.", reason="ended")
        await attendance.reopen_room(pool, booking_id)  # the therapist coming back reopens it
    participant = tokens.participant_id(booking_id, role)
    try:
        minted = await tokens.mint_room_token(
            pool,
            settings,
            booking_id=booking_id,
            role=role,
            participant=participant,
            name=row["therapist_name"] if role == "therapist" else row["client_name"],
            now=now,
            window_end=closes_at,
            keys=app[KEYRING],
        )
    except ValueError:  # the window closed within the last second (tokens count whole seconds)
        raise Problem(410, "room_closed", "The join window for this session has closed.") from None
    await audit.record(pool, principal, "room_token.issued", booking_id=booking_id, therapist_id=row["therapist_id"])
    app.logger.info("room token issued for booking %s to %s", booking_id, participant)
    return respond(
        RoomTokenOut(
            token=minted.token,
            expires_at=minted.expires_at,
            room=str(booking_id),
            role=role,
            participant=participant,
            signaling_url=signaling_url(settings, str(booking_id)),
            ice_servers=ice_servers(settings, participant, closes_at),
            window_closes_at=closes_at,
        )
    )


@routes.route(
    "GET",
    "/.well-known/jwks.json",
    summary="Public keys that verify room tokens (RFC 7517 JWK Set)",
    response=Jwks,
    content_type="application/jwk-set+json",
)
async def jwks(request: web.Request) -> web.Response:
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
    auth=("therapist", "session"),
    response=AttendanceOut,
    params=[BOOKING_ID],
    errors=(401, 403, 404),
)
async def get_attendance(request: web.Request) -> web.Response:
    booking_id = parse_uuid(request.match_info["id"], "booking")
    principal = await require_booking_access(request, booking_id)
    if principal.kind != "therapist":
        raise Problem(403, "forbidden", "Only the therapist can read attendance.")
    app = request.app
    pool = app[POOL]
    row = await bookings.fetch_booking(pool, booking_id)
    _, closes_at = tokens.join_window(row["starts_at"], row["ends_at"], app[SETTINGS])
    found = await attendance.summary(pool, booking_id, min(app[CLOCK].now(), closes_at))
    await audit.record(pool, principal, "attendance.read", booking_id=booking_id, therapist_id=row["therapist_id"])
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
    app[API_ROUTES].append(routes)
    routes.install(app)
