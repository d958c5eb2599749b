"""How the minutes "both were connected" are counted (pure), and that the database keeps ids only."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest

from broker import attendance
from broker.attendance import AttendanceEvent
from tests.support import Api

T0 = dt.datetime(2030, 3, 4, 10, 0, tzinfo=dt.UTC)


def at(minute: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute)


def ev(role: str, event: str, minute: float) -> AttendanceEvent:
    return AttendanceEvent("t-1" if role == "therapist" else "c-1", role, event, at(minute))


def test_a_client_only_counts_once_admitted() -> None:
    events = [ev("therapist", "joined", 0), ev("client", "joined", 1), ev("client", "admitted", 5)]
    assert attendance.together_seconds(events, at(50)) == 45 * 60


def test_admission_lasts_across_a_dropped_connection() -> None:
    events = [
        ev("therapist", "joined", 0),
        ev("client", "joined", 0),
        ev("client", "admitted", 0),
        ev("client", "left", 10),
        ev("client", "joined", 15),
        ev("therapist", "left", 50),
    ]
    assert attendance.together_seconds(events, at(60)) == 45 * 60


def test_removal_ends_admission_until_admitted_again() -> None:
    events = [
        ev("therapist", "joined", 0),
        ev("client", "joined", 0),
        ev("client", "admitted", 0),
        ev("client", "removed", 10),
        ev("client", "joined", 20),  # back, but waiting
        ev("client", "admitted", 30),
    ]
    assert attendance.together_seconds(events, at(40)) == 20 * 60


def test_a_duplicate_join_from_a_replacing_connection_changes_nothing() -> None:
    events = [ev("therapist", "joined", 0), ev("client", "joined", 0), ev("client", "admitted", 0)]
    replaced = [*events, ev("client", "joined", 5)]
    assert attendance.together_seconds(replaced, at(30)) == attendance.together_seconds(events, at(30)) == 30 * 60


def test_time_alone_in_the_room_does_not_count() -> None:
    events = [
        ev("therapist", "joined", 0),
        ev("therapist", "left", 5),
        ev("client", "joined", 10),
        ev("client", "admitted", 10),  # (admitted earlier by a therapist who has gone)
    ]
    assert attendance.together_seconds(events, at(30)) == 0


def test_events_after_until_are_ignored_and_open_intervals_end_at_until() -> None:
    events = [ev("therapist", "joined", 0), ev("client", "joined", 0), ev("client", "admitted", 0)]
    assert attendance.together_seconds([*events, ev("therapist", "left", 90)], at(60)) == 60 * 60


async def test_attendance_needs_a_real_booking(db: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await attendance.record(db, uuid.uuid4(), "c-1", "client", "joined", T0)


async def test_the_database_refuses_unknown_events_and_roles(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await api.ready_therapist()
    (slot,) = (await api.slots(therapist, st, dt.date.today(), dt.date.today() + dt.timedelta(days=2)))[:1]
    status, booking = await api.book(therapist, st, slot["start"])
    assert status == 201
    booking_id = uuid.UUID(booking["id"])
    for role, event in (("client", "shouted"), ("admin", "joined")):
        with pytest.raises(asyncpg.CheckViolationError):
            await attendance.record(db, booking_id, "c-1", role, event, T0)  # type: ignore[arg-type]
    await attendance.record(db, booking_id, "c-1", "client", "joined", T0)
    assert await db.fetchval("SELECT count(*) FROM attendance_events") == 1
