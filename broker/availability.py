"""A therapist's weekly hours and date overrides, in their own zone: the `availability` table.

Rules are wall-clock minutes in the therapist's zone; `calendars.slots` turns them into instants.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from broker import schemas
from broker.database import Executor, record_to
from broker.errors import invalid
from broker.zones import zone
from calendars.slots import WEEKDAYS, Availability, Interval

SELECT_AVAILABILITY = "SELECT timezone, weekly, overrides, updated_at FROM availability WHERE therapist_id = $1"
UPSERT_AVAILABILITY = """
INSERT INTO availability (therapist_id, timezone, weekly, overrides, updated_at)
VALUES ($1, $2, $3::jsonb, $4::jsonb, now())
ON CONFLICT (therapist_id) DO UPDATE
SET timezone = EXCLUDED.timezone, weekly = EXCLUDED.weekly, overrides = EXCLUDED.overrides, updated_at = now()
RETURNING updated_at
"""


def parse_wall(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def format_wall(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def from_wire(body: schemas.AvailabilityIn) -> Availability:
    """Check and convert the wire rules; 422 for an unknown zone, end before start or a repeated date."""
    zone(body.timezone)
    weekly: dict[int, list[Interval]] = {}
    for i, rule in enumerate(body.weekly):
        weekly.setdefault(WEEKDAYS.index(rule.day), []).append(_interval(rule.start, rule.end, f"weekly[{i}]"))
    overrides: dict[dt.date, tuple[Interval, ...]] = {}
    for i, override in enumerate(body.overrides):
        if override.date in overrides:
            raise invalid(f"`overrides[{i}]` repeats the date {override.date.isoformat()}.")
        overrides[override.date] = tuple(
            _interval(iv.start, iv.end, f"overrides[{i}].intervals[{j}]") for j, iv in enumerate(override.intervals)
        )
    return Availability(
        timezone=body.timezone,
        weekly={day: tuple(ivs) for day, ivs in weekly.items()},
        overrides=overrides,
    )


def _interval(start: str, end: str, where: str) -> Interval:
    s, e = parse_wall(start), parse_wall(end)
    if s == 24 * 60 or e <= s:
        raise invalid(f"`{where}`: end {end} must be after start {start}.", code="end_before_start")
    return Interval(s, e)


def to_wire(av: Availability, updated_at: dt.datetime | None) -> schemas.AvailabilityOut:
    weekly = [
        schemas.WeeklyRule(day=WEEKDAYS[day], start=format_wall(iv.start), end=format_wall(iv.end))  # type: ignore[arg-type]
        for day in sorted(av.weekly)
        for iv in av.weekly[day]
    ]
    overrides = [
        schemas.DateOverride(
            date=day,
            intervals=[schemas.WallInterval(start=format_wall(iv.start), end=format_wall(iv.end)) for iv in ivs],
        )
        for day, ivs in sorted(av.overrides.items())
    ]
    return schemas.AvailabilityOut(timezone=av.timezone, weekly=weekly, overrides=overrides, updated_at=updated_at)


def _availability_json(av: Availability) -> tuple[str, str]:
    weekly = {str(day): [[iv.start, iv.end] for iv in ivs] for day, ivs in av.weekly.items()}
    overrides = {day.isoformat(): [[iv.start, iv.end] for iv in ivs] for day, ivs in av.overrides.items()}
    return msgspec.json.encode(weekly).decode(), msgspec.json.encode(overrides).decode()


async def save(conn: Executor, therapist_id: uuid.UUID, av: Availability) -> dt.datetime:
    weekly, overrides = _availability_json(av)
    updated: dt.datetime = await conn.fetchval(UPSERT_AVAILABILITY, therapist_id, av.timezone, weekly, overrides)
    return updated


class _Stored(msgspec.Struct, frozen=True):
    """The row: rules as JSON objects of minute pairs, keyed by weekday number and by ISO date."""

    timezone: str
    weekly: str
    overrides: str
    updated_at: dt.datetime


async def load(conn: Executor, therapist_id: uuid.UUID, default_zone: str) -> tuple[Availability, dt.datetime | None]:
    """The therapist's rules; none published yet means no availability at all."""
    row = await conn.fetchrow(SELECT_AVAILABILITY, therapist_id)
    if row is None:
        return Availability(timezone=default_zone), None
    stored = record_to(_Stored, row)
    weekly_raw = msgspec.json.decode(stored.weekly, type=dict[int, list[tuple[int, int]]])
    overrides_raw = msgspec.json.decode(stored.overrides, type=dict[dt.date, list[tuple[int, int]]])
    av = Availability(
        timezone=stored.timezone,
        weekly={day: tuple(Interval(s, e) for s, e in ivs) for day, ivs in weekly_raw.items()},
        overrides={day: tuple(Interval(s, e) for s, e in ivs) for day, ivs in overrides_raw.items()},
    )
    return av, stored.updated_at
