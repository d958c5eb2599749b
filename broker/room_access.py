"""Entering a booking's video room: a room token for its client or its therapist, inside the join window.

The broker's side of the room-access interface (docs/room-tokens.md): who gets a token, when,
and what comes with it (ICE servers whose TURN credentials expire with the window). Signaling
admits a connection with `enter` (the token verified, the room still open, the token spent) and
records attendance with `broker.attendance`.

A cancelled booking's room is closed for everyone: no token is issued for it, a token minted
before the cancellation opens nothing (`enter` reads the booking's status), and the rooms
already open end: `close_cancelled_rooms`, a notice hook, NOTIFYs `ROOMS_CLOSED` inside the
cancelling transaction, which PostgreSQL delivers to every node's listener only once it commits.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import asyncpg
import msgspec

from broker import attendance, audit, bookings, safety, tokens
from broker.errors import Forbidden, Gone
from broker.ice import IceServer, ice_servers
from broker.notices import Notice
from broker.principals import Principal
from broker.settings import Settings
from broker.tokens import KeyRing

log = logging.getLogger(__name__)
# Where signaling listens (the `signaling` package mounts its WebSocket here).
SIGNALING_PATH = "/ws"
# The NOTIFY channel naming rooms closed for good (payload: room ids separated by spaces).
ROOMS_CLOSED = "teleroom_rooms_closed"
# Room ids per notification: 36 characters and a space each, well under NOTIFY's 8000 bytes.
ROOMS_PER_NOTIFY = 150
NOTIFY = "SELECT pg_notify($1, $2)"
CLOSING_NOTICES = frozenset({"booking.cancelled", "booking.late_cancelled", "series.cancelled"})


class RoomClosed(Exception):
    """A valid room token whose room is closed: `reason` is "cancelled" (the booking) or "ended"
    (the therapist ended the session; for the client only)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    therapist asking again reopens it: ended by mistake, or to finish). Forbidden `consent_required`
    (with `missing`) for a client who has not yet accepted the therapist's current consent text or
    given an emergency contact (`broker.safety`); a therapist is never held back."""
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
    if role == "client" and (missing := await safety.missing_steps(pool, booking_id)):
        raise safety.required(missing)  # the join page walks the client through them first
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


async def enter(
    pool: asyncpg.Pool, settings: Settings, token: str, now: datetime, *, room: str, keys: KeyRing | None
) -> tokens.RoomClaims:
    """Admit one signaling connection: verify the token, check its room is still open, spend the token.

    Raises `tokens.TokenRejected` for a token that cannot be used, and `RoomClosed` for a token
    minted before its booking was cancelled (whoever holds it) or, for the client, before the
    therapist ended the session. Only a token that opens a room is spent."""
    claims = await tokens.verify_room_token(pool, settings, token, now, room=room, keys=keys)
    booking = await bookings.get(pool, claims.booking_id)
    if booking.status in bookings.CANCELLED:
        raise RoomClosed("cancelled")
    if claims.role == "client" and await attendance.room_ended_at(pool, claims.booking_id):
        raise RoomClosed("ended")
    await tokens.consume_jti(pool, claims)
    return claims


async def close_cancelled_rooms(conn: asyncpg.Connection, notice: Notice) -> None:
    """A notice hook: the rooms of cancelled bookings close on every node once the cancellation commits.

    NOTIFY inside a transaction is delivered when it commits and never if it rolls back (PostgreSQL
    docs, "NOTIFY"), so no room ends for a cancellation that did not happen."""
    if notice.kind not in CLOSING_NOTICES:
        return
    rooms = [str(booking_id) for booking_id in notice.booking_ids]
    for start in range(0, len(rooms), ROOMS_PER_NOTIFY):
        await conn.execute(NOTIFY, ROOMS_CLOSED, " ".join(rooms[start : start + ROOMS_PER_NOTIFY]))
