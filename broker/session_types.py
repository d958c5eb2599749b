"""Session types a therapist offers (length, buffers, notice, horizon): the `session_types` table."""

from __future__ import annotations

import uuid

import msgspec

from broker import policies, schemas
from broker.database import Executor, record_to
from broker.errors import NotFound, invalid
from calendars.slots import SessionRules

INSERT_SESSION_TYPE = """
INSERT INTO session_types (id, therapist_id, name, duration_minutes, buffer_before_minutes,
    buffer_after_minutes, min_notice_minutes, horizon_days, slot_interval_minutes,
    series_frequencies, series_max_sessions, reminder_minutes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
RETURNING *
"""
SELECT_SESSION_TYPES = """
SELECT * FROM session_types WHERE therapist_id = $1 AND active ORDER BY created_at, id
"""
SELECT_ACTIVE = "SELECT * FROM session_types WHERE id = $1 AND therapist_id = $2 AND active"
SELECT_ANY = "SELECT * FROM session_types WHERE id = $1"
SET_REMINDERS = """
UPDATE session_types SET reminder_minutes = $3 WHERE id = $1 AND therapist_id = $2 AND active RETURNING *
"""
ARCHIVE_SESSION_TYPE = "UPDATE session_types SET active = false WHERE id = $1 AND therapist_id = $2 AND active"


class SessionType(msgspec.Struct, frozen=True):
    id: uuid.UUID
    therapist_id: uuid.UUID
    name: str
    duration_minutes: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    min_notice_minutes: int
    horizon_days: int
    slot_interval_minutes: int
    active: bool
    series_frequencies: list[schemas.Frequency]
    series_max_sessions: int
    # The current cancellation policy (broker/policies.py), where the reader loaded it.
    policy: policies.Policy | None = None
    # When clients' email reminders go out, in minutes before the start (broker/mail/notices.py).
    reminder_minutes: list[int] = msgspec.field(default_factory=lambda: [1440, 60])

    @property
    def rules(self) -> SessionRules:
        """What `calendars.slots` needs to offer and check times of this type."""
        return SessionRules(
            duration=self.duration_minutes,
            buffer_before=self.buffer_before_minutes,
            buffer_after=self.buffer_after_minutes,
            min_notice=self.min_notice_minutes,
            horizon_days=self.horizon_days,
            slot_interval=self.slot_interval_minutes,
        )

    def to_wire(self) -> schemas.SessionTypeOut:
        return schemas.SessionTypeOut(
            id=str(self.id),
            name=self.name,
            duration_minutes=self.duration_minutes,
            buffer_before_minutes=self.buffer_before_minutes,
            buffer_after_minutes=self.buffer_after_minutes,
            min_notice_minutes=self.min_notice_minutes,
            horizon_days=self.horizon_days,
            slot_interval_minutes=self.slot_interval_minutes,
            series_frequencies=list(self.series_frequencies),
            series_max_sessions=self.series_max_sessions,
            policy=self.policy.to_wire() if self.policy is not None else None,
            reminder_minutes=list(self.reminder_minutes),
        )


async def add(conn: Executor, therapist_id: uuid.UUID, body: schemas.SessionTypeIn) -> SessionType:
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
        sorted(set(body.series_frequencies)),
        body.series_max_sessions,
        sorted(set(body.reminder_minutes), reverse=True),
    )
    added = record_to(SessionType, row)
    if body.policy is not None:
        added = msgspec.structs.replace(added, policy=await policies.first_version(conn, added.id, body.policy))
    return added


async def offered(conn: Executor, therapist_id: uuid.UUID) -> list[SessionType]:
    """The session types a therapist offers now, oldest first, each with its current policy."""
    found = [record_to(SessionType, r) for r in await conn.fetch(SELECT_SESSION_TYPES, therapist_id)]
    current = await policies.current(conn, [t.id for t in found])
    return [msgspec.structs.replace(t, policy=current.get(t.id)) for t in found]


async def active(conn: Executor, therapist_id: uuid.UUID, raw_id: str) -> SessionType:
    """An active session type of this therapist, or invalid input `unknown_session_type`."""
    try:
        type_id = uuid.UUID(raw_id)
    except ValueError:
        type_id = None
    row = await conn.fetchrow(SELECT_ACTIVE, type_id, therapist_id) if type_id else None
    if row is None:
        raise invalid("This therapist offers no such session type.", code="unknown_session_type")
    return record_to(SessionType, row)


async def get(conn: Executor, type_id: uuid.UUID) -> SessionType:
    """A session type by id, archived or not (a booking keeps the type it was made with)."""
    row = await conn.fetchrow(SELECT_ANY, type_id)
    if row is None:
        raise NotFound("session type")
    return record_to(SessionType, row)


async def set_reminders(conn: Executor, therapist_id: uuid.UUID, raw_id: str, minutes: list[int]) -> SessionType:
    """Change when clients' reminders of this type go out (bookings made from now on). Minutes are
    checked by the wire type (1..20160, at most 5); duplicates collapse."""
    try:
        type_id = uuid.UUID(raw_id)
    except ValueError:
        raise NotFound("session type") from None
    row = await conn.fetchrow(SET_REMINDERS, type_id, therapist_id, sorted(set(minutes), reverse=True))
    if row is None:
        raise NotFound("session type")
    return record_to(SessionType, row)


async def archive(conn: Executor, therapist_id: uuid.UUID, raw_id: str) -> None:
    try:
        type_id = uuid.UUID(raw_id)
    except ValueError:
        raise NotFound("session type") from None
    if await conn.execute(ARCHIVE_SESSION_TYPE, type_id, therapist_id) == "UPDATE 0":
        raise NotFound("session type")
