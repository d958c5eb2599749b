"""Licences: where a therapist may practise, and whether a place is covered on a session's date.

This module owns `licences` and `safety_settings`. A licence names a jurisdiction (an ISO 3166-1
country or ISO 3166-2 subdivision: `places.covers` says what it covers), its kind, number and
expiry; it is valid for a session on or before its expiry date (in the therapist's time zone). A
place is covered on a day when a licence valid that day covers it. Where it is not, the booking page
says so and the room warns the therapist before admitting; with the therapist's setting
`licence_check` = `refuse` a booking there is refused (`not_licensed_there`).

A therapist with no licence recorded is not checked at all (`Coverage.checked` false): there is
nothing to compare with, and a therapist who never entered one should not see every client flagged.
Licence numbers are the therapist's: the public coverage answer names no licence.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

from broker import audit, places
from broker.database import Executor, record_to
from broker.errors import InvalidInput, NotFound, invalid
from broker.principals import Principal

LicenceCheck = Literal["warn", "refuse"]
LICENCE_CHECKS: tuple[LicenceCheck, ...] = ("warn", "refuse")
DEFAULT_CHECK: LicenceCheck = "warn"

SELECT_ALL = "SELECT * FROM licences WHERE therapist_id = $1 ORDER BY jurisdiction, expires_on NULLS LAST, id"
SELECT_ONE = "SELECT * FROM licences WHERE id = $1 AND therapist_id = $2"
INSERT = """
INSERT INTO licences (id, therapist_id, jurisdiction, kind, number, expires_on) VALUES ($1, $2, $3, $4, $5, $6)
RETURNING *
"""
UPDATE = """
UPDATE licences SET jurisdiction = $3, kind = $4, number = $5, expires_on = $6, updated_at = now()
WHERE id = $1 AND therapist_id = $2
RETURNING *
"""
DELETE = "DELETE FROM licences WHERE id = $1 AND therapist_id = $2"
SELECT_SETTING = "SELECT licence_check FROM safety_settings WHERE therapist_id = $1"
UPSERT_SETTING = """
INSERT INTO safety_settings (therapist_id, licence_check) VALUES ($1, $2)
ON CONFLICT (therapist_id) DO UPDATE SET licence_check = EXCLUDED.licence_check, updated_at = now()
"""
# What a booking's check needs, in one round trip: the setting and, only when it refuses, the licences.
SELECT_FOR_BOOKING = """
SELECT coalesce(s.licence_check, 'warn') AS licence_check, l.jurisdiction, l.expires_on
FROM (SELECT $1::uuid AS therapist_id) t
LEFT JOIN safety_settings s ON s.therapist_id = t.therapist_id
LEFT JOIN licences l ON l.therapist_id = t.therapist_id AND s.licence_check = 'refuse'
"""
# Whether `check_booking` can refuse anything for the therapist `$2` (their setting is `refuse` and
# they hold a licence), as an expression another statement can carry: a new booking's insert
# (`broker.bookings.BOOK`) answers it, and refuses to insert when the booking skipped
# `check_booking` because this node saw it false last time and it is true now.
REFUSES = """EXISTS (
    SELECT FROM safety_settings s JOIN licences l ON l.therapist_id = s.therapist_id
    WHERE s.therapist_id = $2 AND s.licence_check = 'refuse'
)"""
MAX_LICENCES = 200


class Licence(msgspec.Struct, frozen=True):
    """A licence to practise in one jurisdiction."""

    id: uuid.UUID
    therapist_id: uuid.UUID
    jurisdiction: str
    kind: str
    number: str
    expires_on: dt.date | None
    created_at: dt.datetime
    updated_at: dt.datetime

    def valid_on(self, day: dt.date) -> bool:
        """Valid for a session on `day`: not expired by then (the expiry date itself still counts)."""
        return self.expires_on is None or day <= self.expires_on

    def covers(self, where: places.Place, day: dt.date) -> bool:
        return self.valid_on(day) and places.covers(self.jurisdiction, where)


class _Scope(msgspec.Struct, frozen=True):
    """What coverage needs of a licence (a row of SELECT_FOR_BOOKING)."""

    jurisdiction: str
    expires_on: dt.date | None

    def covers(self, where: places.Place, day: dt.date) -> bool:
        return (self.expires_on is None or day <= self.expires_on) and places.covers(self.jurisdiction, where)


class LicenceIn(msgspec.Struct, frozen=True):
    """A licence as given: the jurisdiction is checked (`places.jurisdiction`) before it is stored."""

    jurisdiction: str
    kind: str
    number: str
    expires_on: dt.date | None = None


class Coverage(msgspec.Struct, frozen=True):
    """Whether a place is covered on a day. `checked` false: no licence recorded, nothing was checked;
    `covered` None: no place to check. `licensed_in`: the jurisdictions valid that day (no numbers)."""

    checked: bool
    covered: bool | None
    licence_check: LicenceCheck
    day: dt.date
    licensed_in: list[str]

    @property
    def outside(self) -> bool:
        """The place is known and no valid licence covers it: warn (or refuse)."""
        return self.checked and self.covered is False


def licensed(found: Iterable[Licence | _Scope], where: places.Place, day: dt.date) -> bool:
    """Whether any of these licences, valid on `day`, covers `where`."""
    return any(licence.covers(where, day) for licence in found)


def not_licensed_there(where: places.Place, day: dt.date) -> InvalidInput:
    return invalid(
        "This therapist is not licensed to see clients where you will be on that date. "
        "Please contact them before booking.",
        code="not_licensed_there",
        place=where.code,
        date=day.isoformat(),
    )


async def list_for(conn: Executor, therapist_id: uuid.UUID) -> list[Licence]:
    """The therapist's licences by jurisdiction."""
    return [record_to(Licence, r) for r in await conn.fetch(SELECT_ALL, therapist_id)]


def _checked(body: LicenceIn) -> LicenceIn:
    return msgspec.structs.replace(body, jurisdiction=places.jurisdiction(body.jurisdiction))


async def add(conn: Executor, therapist_id: uuid.UUID, body: LicenceIn, actor: Principal) -> Licence:
    """Record a licence (`invalid_place` for a code ISO 3166 does not know); audited."""
    body = _checked(body)
    if len(await list_for(conn, therapist_id)) >= MAX_LICENCES:
        raise invalid(f"At most {MAX_LICENCES} licences can be recorded.", code="too_many_licences")
    row = await conn.fetchrow(
        INSERT, uuid.uuid4(), therapist_id, body.jurisdiction, body.kind, body.number, body.expires_on
    )
    assert row is not None
    await audit.record(conn, actor, "licence.added", therapist_id=therapist_id)
    return record_to(Licence, row)


async def replace(
    conn: Executor, therapist_id: uuid.UUID, licence_id: uuid.UUID, body: LicenceIn, actor: Principal
) -> Licence:
    """Change a licence (a renewal: a new expiry); NotFound for another therapist's or an unknown one."""
    body = _checked(body)
    row = await conn.fetchrow(
        UPDATE, licence_id, therapist_id, body.jurisdiction, body.kind, body.number, body.expires_on
    )
    if row is None:
        raise NotFound("licence")
    await audit.record(conn, actor, "licence.changed", therapist_id=therapist_id)
    return record_to(Licence, row)


async def remove(conn: Executor, therapist_id: uuid.UUID, licence_id: uuid.UUID, actor: Principal) -> None:
    result: str = await conn.execute(DELETE, licence_id, therapist_id)
    if result != "DELETE 1":
        raise NotFound("licence")
    await audit.record(conn, actor, "licence.removed", therapist_id=therapist_id)


async def setting(conn: Executor, therapist_id: uuid.UUID) -> LicenceCheck:
    """What a booking outside the therapist's licences gets: `warn` (the default) or `refuse`."""
    found: LicenceCheck | None = await conn.fetchval(SELECT_SETTING, therapist_id)
    return found or DEFAULT_CHECK


async def change_setting(conn: Executor, therapist_id: uuid.UUID, value: LicenceCheck, actor: Principal) -> None:
    await conn.execute(UPSERT_SETTING, therapist_id, value)
    await audit.record(conn, actor, "licence_check.changed", therapist_id=therapist_id)


def coverage_of(found: Sequence[Licence], where: places.Place | None, day: dt.date, check: LicenceCheck) -> Coverage:
    """Whether `where` is covered on `day` by these licences (pure: see `Coverage`)."""
    valid = sorted({licence.jurisdiction for licence in found if licence.valid_on(day)})
    return Coverage(
        checked=bool(found),
        covered=None if where is None or not found else licensed(found, where, day),
        licence_check=check,
        day=day,
        licensed_in=valid,
    )


async def coverage(conn: Executor, therapist_id: uuid.UUID, where: places.Place | None, day: dt.date) -> Coverage:
    """Whether the therapist's licences cover `where` on `day`, and what the therapist's setting does then."""
    return coverage_of(await list_for(conn, therapist_id), where, day, await setting(conn, therapist_id))


async def check_booking(
    conn: Executor, therapist_id: uuid.UUID, where: places.Place | None, days: Sequence[dt.date]
) -> None:
    """Refuse a booking outside the therapist's valid licences, when their setting says `refuse`.

    `days`: the session dates in the therapist's zone (for a series its first and last). Invalid
    `not_licensed_there` when a day's place is not covered; `location_required` when the setting
    refuses, licences are recorded and no place was given. With `warn` (the default), or no
    licence recorded, nothing is refused: one small query on the booking path."""
    rows = await conn.fetch(SELECT_FOR_BOOKING, therapist_id)
    if not rows or rows[0]["licence_check"] != "refuse":
        return
    scopes = [record_to(_Scope, r) for r in rows if r["jurisdiction"] is not None]
    if not scopes:
        return
    if where is None:
        raise invalid(
            "Please say which country (and, where asked, which region) you will be in for your sessions.",
            code="location_required",
        )
    for day in days:
        if not licensed(scopes, where, day):
            raise not_licensed_there(where, day)
