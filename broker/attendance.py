"""Attendance: when each participant joined, was admitted, left or was removed. Ids and times only.

Signaling records the events; a therapist reads them back with the minutes both sides were in
the session, to document its length. How the minutes are counted:

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

import asyncpg

Event = Literal["joined", "admitted", "left", "removed"]
EVENTS: tuple[Event, ...] = ("joined", "admitted", "left", "removed")

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


@dataclass(frozen=True, slots=True)
class AttendanceEvent:
    participant: str
    role: str
    event: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Summary:
    events: list[AttendanceEvent]
    connected_seconds: int

    @property
    def connected_minutes(self) -> float:
        return round(self.connected_seconds / 60, 1)


async def record(
    pool: asyncpg.Pool | asyncpg.Connection,
    booking_id: uuid.UUID,
    participant: str,
    role: str,
    event: Event,
    at: datetime,
) -> None:
    """Append one event (role is "therapist" or "client"; the database checks both)."""
    await pool.execute(INSERT_EVENT, booking_id, participant, role, event, at)


async def was_admitted(pool: asyncpg.Pool | asyncpg.Connection, booking_id: uuid.UUID, participant: str) -> bool:
    """Whether the therapist admitted this participant and has not removed them since."""
    last: str | None = await pool.fetchval(SELECT_LAST_ADMISSION, booking_id, participant)
    return last == "admitted"


async def summary(pool: asyncpg.Pool | asyncpg.Connection, booking_id: uuid.UUID, until: datetime) -> Summary:
    """The booking's events in order and the seconds therapist and client were in the session together."""
    rows = await pool.fetch(SELECT_EVENTS, booking_id)
    events = [AttendanceEvent(r["participant"], r["role"], r["event"], r["at"]) for r in rows]
    return Summary(events=events, connected_seconds=together_seconds(events, until))


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


async def end_room(pool: asyncpg.Pool | asyncpg.Connection, booking_id: uuid.UUID, at: datetime) -> None:
    """The therapist ended the session: clients get no new room tokens and cannot rejoin."""
    await pool.execute(UPSERT_ENDING, booking_id, at)


async def reopen_room(pool: asyncpg.Pool | asyncpg.Connection, booking_id: uuid.UUID) -> None:
    """The therapist came back to a session they had ended (ended by mistake, or to finish)."""
    await pool.execute(DELETE_ENDING, booking_id)


async def room_ended_at(pool: asyncpg.Pool | asyncpg.Connection, booking_id: uuid.UUID) -> datetime | None:
    ended: datetime | None = await pool.fetchval(SELECT_ENDING, booking_id)
    return ended
