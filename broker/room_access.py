"""Entering a booking's video room: a room token for its client or its therapist, inside the join window.

The broker's side of the room-access interface (docs/room-tokens.md): who gets a token, when,
and what comes with it (ICE servers whose TURN credentials expire with the window). Signaling
verifies the tokens with `broker.tokens` and records attendance with `broker.attendance`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import asyncpg
import msgspec

from broker import attendance, audit, bookings, tokens
from broker.errors import Forbidden, Gone
from broker.ice import IceServer, ice_servers
from broker.principals import Principal
from broker.settings import Settings
from broker.tokens import KeyRing

log = logging.getLogger(__name__)
# Where signaling listens (the `signaling` package mounts its WebSocket here).
SIGNALING_PATH = "/ws"


class RoomPass(msgspec.Struct, frozen=True):
    """A room token and what its holder needs to use it (the room-token endpoint answers with it as is)."""

    token: str
    expires_at: datetime
    room: str
    role: tokens.Role
    participant: str
    signaling_url: str
    ice_servers: list[IceServer]
    window_closes_at: datetime


def signaling_url(origin: str, room: str) -> str:
    """The WebSocket URL of a room; it names the room so a load balancer can keep a room on one node."""
    scheme, _, rest = origin.rstrip("/").partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{SIGNALING_PATH}?room={room}"


def _closed(**extra: str) -> Gone:
    return Gone("The join window for this session has closed.", code="room_closed", **extra)


async def issue(
    pool: asyncpg.Pool, settings: Settings, booking_id: uuid.UUID, caller: Principal, *, now: datetime, keys: KeyRing
) -> RoomPass:
    """A room token for the booking's client or therapist (the caller may access the booking); audited.

    Forbidden `too_early` (with `opens_at`) before the join window; Gone `room_closed` for a cancelled
    booking, after the window, and for the client once the therapist has ended the session (the
    therapist asking again reopens it: ended by mistake, or to finish)."""
    booking = await bookings.get(pool, booking_id)
    window = tokens.join_window(booking.starts_at, booking.ends_at, settings)
    if booking.status in bookings.CANCELLED:  # attended or no_show: marked after the start, still its room
        raise Gone("This booking was cancelled; its room is closed.", code="room_closed")
    match window.state(now):
        case "later":
            raise Forbidden(
                f"The room opens {settings.join_early_minutes} minutes before the session.",
                code="too_early",
                opens_at=window.opens_at.isoformat(),
            )
        case "over":
            raise _closed(closed_at=window.closes_at.isoformat())
    role: tokens.Role = "therapist" if caller.kind == "therapist" else "client"
    if await attendance.room_ended_at(pool, booking_id):
        if role == "client":
            raise Gone("Your therapist has ended this session.", code="room_closed", reason="ended")
        await attendance.reopen_room(pool, booking_id)
    participant = tokens.participant_id(booking_id, role)
    try:
        minted = await tokens.mint_room_token(
            pool,
            settings,
            booking_id=booking_id,
            role=role,
            participant=participant,
            name=booking.therapist_name if role == "therapist" else booking.client_name,
            now=now,
            window_end=window.closes_at,
            keys=keys,
        )
    except ValueError:  # the window closed within the last second (tokens count whole seconds)
        raise _closed() from None
    await audit.record(pool, caller, "room_token.issued", booking_id=booking_id, therapist_id=booking.therapist_id)
    log.info("room token issued for booking %s to %s", booking_id, participant)
    return RoomPass(
        token=minted.token,
        expires_at=minted.expires_at,
        room=str(booking_id),
        role=role,
        participant=participant,
        signaling_url=signaling_url(settings.origin, str(booking_id)),
        ice_servers=ice_servers(settings, participant, window.closes_at),
        window_closes_at=window.closes_at,
    )
