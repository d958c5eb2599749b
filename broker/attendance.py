"""Attendance: when each participant joined, was admitted, left or was removed. Ids and times only.

This module owns `attendance_events` and `room_endings`: every query of them is here. Signaling
records the events; a therapist reads them back (`report`) with the minutes both sides were in the
session, to document its length, and the dashboard shows who is waiting (`presence`). How the
minutes are counted:

- the therapist is in the session while connected (from `joined` to `left`/`removed`);
- a client is in the session while connected *and* admitted. Admission lasts across reconnects
  (a client is not held in the waiting room twice) until the therapist removes them;
- a `joined` while already connected (a reconnect replacing its old connection) changes nothing,
  so signaling should not record `left` for a connection that was replaced, only when the
  participant is really gone;
- an interval still open is counted up to `until` (now, capped at the window end).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec

from broker import audit, bookings, tokens
from broker.database import Executor, record_to
from broker.errors import Forbidden
from broker.principals import Principal
from broker.settings import Settings

Event = Literal["joined", "admitted", "left", "removed"]
EVENTS: tuple[Event, ...] = ("joined", "admitted", "left", "removed")
# Where a booking's client is now: in the waiting room, or admitted and connected.
Presence = Literal["waiting", "in_session"]

INSERT_EVENT = """
INSERT INTO attendance_events (booking_id, participant, role, event, at) VALUES ($1, $2, $3, $4, $5)
"""
SELECT_LAST_ADMISSION = """
SELECT event FROM attendance_events
WHERE booking_id = $1 AND participant = $2 AND event IN ('admitted', 'removed')
ORDER BY at DESC, id DESC LIMIT 1
"""
SELECT_EVENTS = """
SELECT participant, role, event, at FROM attendance_events WHERE booking_id = $1 ORDER BY at, id
"""
# Per client participant of each booking: the last presence event and the last admission event.
SELECT_PRESENCE = """
SELECT booking_id,
       (array_agg(event ORDER BY at DESC, id DESC) FILTER (WHERE event IN ('joined', 'left', 'removed')))[1]
           AS presence,
       (array_agg(event ORDER BY at DESC, id DESC) FILTER (WHERE event IN ('admitted', 'removed')))[1]
           AS admission
FROM attendance_events
WHERE booking_id = ANY($1::uuid[]) AND role = 'client'
GROUP BY booking_id, participant
"""


@dataclass(frozen=True, slots=True)
class AttendanceEvent:
    participant: str
    role: str
    event: str
    at: datetime


class _ClientState(msgspec.Struct, frozen=True):
    """One client participant's last presence and admission events (a row of SELECT_PRESENCE)."""

    booking_id: uuid.UUID
    presence: Event | None
    admission: Event | None


@dataclass(frozen=True, slots=True)
class Summary:
    events: list[AttendanceEvent]
    connected_seconds: int

    @property
    def connected_minutes(self) -> float:
        return round(self.connected_seconds / 60, 1)


async def record(
    pool: Executor,
    booking_id: uuid.UUID,
    participant: str,
    role: str,
    event: Event,
    at: datetime,
) -> None:
    """Append one event (role is "therapist" or "client"; the database checks both)."""
    await pool.execute(INSERT_EVENT, booking_id, participant, role, event, at)


async def was_admitted(pool: Executor, booking_id: uuid.UUID, participant: str) -> bool:
    """Whether the therapist admitted this participant and has not removed them since."""
    last: str | None = await pool.fetchval(SELECT_LAST_ADMISSION, booking_id, participant)
    return last == "admitted"


async def summary(pool: Executor, booking_id: uuid.UUID, until: datetime) -> Summary:
    """The booking's events in order and the seconds therapist and client were in the session together."""
    events = [record_to(AttendanceEvent, r) for r in await pool.fetch(SELECT_EVENTS, booking_id)]
    return Summary(events=events, connected_seconds=together_seconds(events, until))


async def report(
    pool: Executor, booking_id: uuid.UUID, reader: Principal, *, settings: Settings, now: datetime
) -> Summary:
    """The booking's attendance, for its therapist only (audited); open intervals end now or at the window's end."""
    if reader.kind != "therapist":
        raise Forbidden("Only the therapist can read attendance.")
    booking = await bookings.get(pool, booking_id)
    window = tokens.join_window(booking.starts_at, booking.ends_at, settings)
    found = await summary(pool, booking_id, min(now, window.closes_at))
    await audit.record(pool, reader, "attendance.read", booking_id=booking_id, therapist_id=booking.therapist_id)
    return found


async def presence(pool: Executor, booking_ids: list[uuid.UUID]) -> dict[uuid.UUID, Presence]:
    """Which of these bookings have their client in the waiting room, or admitted and connected.

    A client whose last presence event is `joined` is there; waiting unless admitted since the last
    removal. Where a booking has several client participants, one waiting is what the therapist must see."""
    found: dict[uuid.UUID, Presence] = {}
    if not booking_ids:
        return found
    for row in await pool.fetch(SELECT_PRESENCE, booking_ids):
        state = record_to(_ClientState, row)
        if state.presence != "joined":
            continue
        if found.get(state.booking_id) != "waiting":
            found[state.booking_id] = "in_session" if state.admission == "admitted" else "waiting"
    return found


def together_seconds(events: Iterable[AttendanceEvent], until: datetime) -> int:
    """Length of the overlap of the therapist's and the client's in-session intervals (see module doc)."""
    connected = {"therapist": False, "client": False}
    admitted = False
    since: datetime | None = None
    total = 0.0
    for ev in events:
        if ev.at > until:
            break
        if ev.role not in connected:
            continue
        if ev.event == "joined":
            connected[ev.role] = True
        elif ev.event == "admitted" and ev.role == "client":
            admitted = True
        elif ev.event == "left":
            connected[ev.role] = False
        elif ev.event == "removed":
            connected[ev.role] = False
            if ev.role == "client":
                admitted = False
        together = connected["therapist"] and connected["client"] and admitted
        if together and since is None:
            since = ev.at
        elif not together and since is not None:
            total += (ev.at - since).total_seconds()
            since = None
    if since is not None and until > since:
        total += (until - since).total_seconds()
    return int(total)


UPSERT_ENDING = """
INSERT INTO room_endings (booking_id, ended_at) VALUES ($1, $2)
ON CONFLICT (booking_id) DO UPDATE SET ended_at = EXCLUDED.ended_at
"""
SELECT_ENDING = "SELECT ended_at FROM room_endings WHERE booking_id = $1"
DELETE_ENDING = "DELETE FROM room_endings WHERE booking_id = $1"


async def end_room(pool: Executor, booking_id: uuid.UUID, at: datetime) -> None:
    """The therapist ended the session: clients get no new room tokens and cannot rejoin."""
    await pool.execute(UPSERT_ENDING, booking_id, at)


async def reopen_room(pool: Executor, booking_id: uuid.UUID) -> None:
    """The therapist came back to a session they had ended (ended by mistake, or to finish)."""
    await pool.execute(DELETE_ENDING, booking_id)


async def room_ended_at(pool: Executor, booking_id: uuid.UUID) -> datetime | None:
    ended: datetime | None = await pool.fetchval(SELECT_ENDING, booking_id)
    return ended
