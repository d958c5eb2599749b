"""Therapists, their availability and session types: storage and the rules that guard them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import msgspec

from broker import credentials, schemas
from broker.problems import Problem, invalid, not_found
from broker.zones import zone
from calendars.slots import WEEKDAYS, Availability, Interval, SessionRules

INSERT_THERAPIST = """
INSERT INTO therapists (id, slug, name, email, timezone) VALUES ($1, $2, $3, $4, $5)
"""
INSERT_API_TOKEN = "INSERT INTO api_tokens (token_hash, therapist_id) VALUES ($1, $2)"
SELECT_AVAILABILITY = "SELECT timezone, weekly, overrides, updated_at FROM availability WHERE therapist_id = $1"
UPSERT_AVAILABILITY = """
INSERT INTO availability (therapist_id, timezone, weekly, overrides, updated_at)
VALUES ($1, $2, $3::jsonb, $4::jsonb, now())
ON CONFLICT (therapist_id) DO UPDATE
SET timezone = EXCLUDED.timezone, weekly = EXCLUDED.weekly, overrides = EXCLUDED.overrides, updated_at = now()
RETURNING updated_at
"""
INSERT_SESSION_TYPE = """
INSERT INTO session_types (id, therapist_id, name, duration_minutes, buffer_before_minutes,
    buffer_after_minutes, min_notice_minutes, horizon_days, slot_interval_minutes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING *
"""
SELECT_SESSION_TYPES = """
SELECT * FROM session_types WHERE therapist_id = $1 AND active ORDER BY created_at, id
"""
SELECT_SESSION_TYPE = "SELECT * FROM session_types WHERE id = $1 AND therapist_id = $2 AND active"
ARCHIVE_SESSION_TYPE = "UPDATE session_types SET active = false WHERE id = $1 AND therapist_id = $2 AND active"


class NewTherapist(msgspec.Struct):
    id: uuid.UUID
    api_token: str


async def create_therapist(conn: asyncpg.Connection, body: schemas.TherapistIn) -> NewTherapist:
    """Insert a therapist and its first API token, atomically. 409 `slug_taken` / `email_taken`."""
    zone(body.timezone)
    therapist_id = uuid.uuid4()
    token = credentials.new_secret(credentials.API_TOKEN)
    try:
        async with conn.transaction():
            await conn.execute(INSERT_THERAPIST, therapist_id, body.slug, body.name, body.email, body.timezone)
            await conn.execute(INSERT_API_TOKEN, credentials.secret_hash(token), therapist_id)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "therapists_slug_key":
            raise Problem(409, "slug_taken", f"The slug {body.slug!r} is already taken.") from None
        if exc.constraint_name == "therapists_email_key":
            raise Problem(409, "email_taken", "A therapist with this email already exists.") from None
        raise
    return NewTherapist(id=therapist_id, api_token=token)


def parse_wall(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def format_wall(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def availability_from_wire(body: schemas.AvailabilityIn) -> Availability:
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


def availability_to_wire(av: Availability, updated_at: dt.datetime | None) -> schemas.AvailabilityOut:
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


async def save_availability(
    conn: asyncpg.Connection | asyncpg.Pool, therapist_id: uuid.UUID, av: Availability
) -> dt.datetime:
    weekly, overrides = _availability_json(av)
    updated: dt.datetime = await conn.fetchval(UPSERT_AVAILABILITY, therapist_id, av.timezone, weekly, overrides)
    return updated


async def load_availability(
    conn: asyncpg.Connection | asyncpg.Pool, therapist_id: uuid.UUID, default_zone: str
) -> tuple[Availability, dt.datetime | None]:
    """The therapist's rules; none published yet means no availability at all."""
    row = await conn.fetchrow(SELECT_AVAILABILITY, therapist_id)
    if row is None:
        return Availability(timezone=default_zone), None
    weekly_raw: dict[str, list[list[int]]] = msgspec.json.decode(row["weekly"])
    overrides_raw: dict[str, list[list[int]]] = msgspec.json.decode(row["overrides"])
    av = Availability(
        timezone=row["timezone"],
        weekly={int(day): tuple(Interval(s, e) for s, e in ivs) for day, ivs in weekly_raw.items()},
        overrides={
            dt.date.fromisoformat(day): tuple(Interval(s, e) for s, e in ivs) for day, ivs in overrides_raw.items()
        },
    )
    return av, row["updated_at"]


async def add_session_type(
    conn: asyncpg.Connection | asyncpg.Pool, therapist_id: uuid.UUID, body: schemas.SessionTypeIn
) -> schemas.SessionTypeOut:
    row = await conn.fetchrow(
        INSERT_SESSION_TYPE,
        uuid.uuid4(),
        therapist_id,
        body.name,
        body.duration_minutes,
        body.buffer_before_minutes,
        body.buffer_after_minutes,
        body.min_notice_minutes,
        body.horizon_days,
        body.slot_interval_minutes or body.duration_minutes,
    )
    return session_type_out(row)


async def session_types(
    conn: asyncpg.Connection | asyncpg.Pool, therapist_id: uuid.UUID
) -> list[schemas.SessionTypeOut]:
    return [session_type_out(r) for r in await conn.fetch(SELECT_SESSION_TYPES, therapist_id)]


async def session_type(conn: asyncpg.Connection | asyncpg.Pool, therapist_id: uuid.UUID, raw_id: str) -> asyncpg.Record:
    """An active session type of this therapist, or 422 `unknown_session_type`."""
    try:
        type_id = uuid.UUID(raw_id)
    except ValueError:
        type_id = None
    row = await conn.fetchrow(SELECT_SESSION_TYPE, type_id, therapist_id) if type_id else None
    if row is None:
        raise invalid("This therapist offers no such session type.", code="unknown_session_type")
    return row


async def archive_session_type(conn: asyncpg.Pool, therapist_id: uuid.UUID, raw_id: str) -> None:
    try:
        type_id = uuid.UUID(raw_id)
    except ValueError:
        raise not_found("session type") from None
    if await conn.execute(ARCHIVE_SESSION_TYPE, type_id, therapist_id) == "UPDATE 0":
        raise not_found("session type")


def session_type_out(row: asyncpg.Record) -> schemas.SessionTypeOut:
    return schemas.SessionTypeOut(
        id=str(row["id"]),
        name=row["name"],
        duration_minutes=row["duration_minutes"],
        buffer_before_minutes=row["buffer_before_minutes"],
        buffer_after_minutes=row["buffer_after_minutes"],
        min_notice_minutes=row["min_notice_minutes"],
        horizon_days=row["horizon_days"],
        slot_interval_minutes=row["slot_interval_minutes"],
    )


def rules_of(row: Any) -> SessionRules:
    return SessionRules(
        duration=row["duration_minutes"],
        buffer_before=row["buffer_before_minutes"],
        buffer_after=row["buffer_after_minutes"],
        min_notice=row["min_notice_minutes"],
        horizon_days=row["horizon_days"],
        slot_interval=row["slot_interval_minutes"],
    )
