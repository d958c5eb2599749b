"""Outcome measures: questionnaire definitions as data, scoring, what is due per session, and results.

An instrument (PHQ-9, GAD-7, ...) is a JSON file in `broker/instruments/` (`<id>.json`): its items,
the answer options, how it is scored (a sum of the scored items), the severity bands, the reliable
change threshold, the remission rule and which answers start the safety protocol. The files are
read and checked once (`catalogue`); a file that breaks a rule stops the process at start with
`InstrumentError`, not a client in the middle of a questionnaire. Adding an instrument is adding a
file.

A therapist assigns instruments to a client with a schedule (`Schedule`); a booking's client sees
what is due for that session (`due_for_booking`) and submits all answers of one instrument at once
(`complete`): scored here, stored item by item with the instrument's version, and, when a safety
item is answered above its threshold, an alert raised in the same transaction
(`broker.safety_alerts`). Answers, scores and alerts are the therapist's only; every read of them
is audited by client id.

The trend marks, against the first score (the baseline): a reliable change (the difference is at
least the instrument's `reliable_change`), a response (at least 50 % below the baseline) and
remission (below `remission_below`, where the instrument has such a rule).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from collections.abc import Mapping
from importlib import resources
from typing import Literal

import asyncpg
import msgspec

from broker import audit, safety_alerts
from broker.database import Executor, record_to
from broker.errors import Conflict, NotFound, invalid
from broker.principals import Principal

Schedule = Literal["every_session", "every_other", "monthly", "once"]
SCHEDULES: tuple[Schedule, ...] = ("every_session", "every_other", "monthly", "once")
MONTHLY = dt.timedelta(days=28)
ID_PATTERN = r"^[a-z0-9_]{1,40}$"
_ID = re.compile(ID_PATTERN)
MAX_RESPONSES = 500  # per client, in a results answer


class InstrumentError(ValueError):
    """A definition file that breaks a rule (a gap between bands, an unknown safety item, ...)."""


# --- definitions -------------------------------------------------------------------------------


class Option(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    value: int
    label: str


class Item(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    text: str
    scored: bool = True
    required: bool = True
    options: list[Option] | None = None  # None: the instrument's options


class Band(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    min: int
    max: int
    label: str


class SafetyRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An answer to `item` above `above` starts the safety protocol."""

    item: str
    above: int


class Instrument(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    version: int
    title: str
    name: str
    about: str
    instructions: str
    options: list[Option]
    items: list[Item]
    scoring: Literal["sum"]
    bands: list[Band]
    reliable_change: int
    remission_below: int | None
    safety: list[SafetyRule]

    def options_of(self, item: Item) -> list[Option]:
        return item.options if item.options is not None else self.options

    @property
    def max_total(self) -> int:
        return sum(max(o.value for o in self.options_of(i)) for i in self.items if i.scored)

    def band_of(self, total: int) -> str:
        for band in self.bands:
            if band.min <= total <= band.max:
                return band.label
        raise ValueError(f"{total} is outside {self.id}'s range 0-{self.max_total}")


def check(instrument: Instrument, expected_id: str | None = None) -> Instrument:
    """`instrument` if it keeps every rule a definition must keep, else InstrumentError naming the rule."""

    def fail(rule: str) -> InstrumentError:
        return InstrumentError(f"instrument {instrument.id!r}: {rule}")

    if not _ID.match(instrument.id) or (expected_id is not None and instrument.id != expected_id):
        raise fail(f"its id must match {ID_PATTERN} and its file name")
    if instrument.version < 1:
        raise fail("version must be 1 or more")
    ids = [i.id for i in instrument.items]
    if len(set(ids)) != len(ids) or not all(_ID.match(i) for i in ids):
        raise fail(f"item ids must be unique and match {ID_PATTERN}")
    if not any(i.scored for i in instrument.items):
        raise fail("it needs a scored item")
    for item in instrument.items:
        options = instrument.options_of(item)
        values = [o.value for o in options]
        if len(options) < 2 or len(set(values)) != len(values) or min(values) < 0 or max(values) > 100:
            raise fail(f"item {item.id}: two or more options with distinct values 0-100")
        if not item.text.strip() or not all(o.label.strip() for o in options):
            raise fail(f"item {item.id}: text and option labels must not be empty")
        if item.scored and not item.required:
            raise fail(f"item {item.id}: a scored item is required (no score from an incomplete form)")
    top = instrument.max_total
    expected_min = 0
    for band in instrument.bands:
        if band.min != expected_min or band.max < band.min or not band.label.strip():
            raise fail(f"bands must be contiguous from 0, each min the previous max + 1 (at {band.label!r})")
        expected_min = band.max + 1
    if expected_min != top + 1:
        raise fail(f"the bands must end at the highest total, {top}")
    if not 1 <= instrument.reliable_change <= top:
        raise fail("reliable_change must be between 1 and the highest total")
    if instrument.remission_below is not None and not 1 <= instrument.remission_below <= top:
        raise fail("remission_below must be between 1 and the highest total")
    by_id = {i.id: i for i in instrument.items}
    for rule in instrument.safety:
        target = by_id.get(rule.item)
        if target is None or not target.scored:
            raise fail(f"safety item {rule.item!r} must be a scored item")
        if not 0 <= rule.above < max(o.value for o in instrument.options_of(target)):
            raise fail(f"safety item {rule.item!r}: `above` must be below its highest option")
    return instrument


def load(text: bytes | str, expected_id: str | None = None) -> Instrument:
    """One definition file's text, decoded strictly and checked."""
    try:
        instrument = msgspec.json.decode(text, type=Instrument, strict=True)
    except msgspec.ValidationError as exc:
        raise InstrumentError(f"instrument {expected_id!r}: {exc}") from None
    return check(instrument, expected_id)


@functools.cache
def catalogue() -> Mapping[str, Instrument]:
    """Every shipped instrument by id, read and checked once."""
    found: dict[str, Instrument] = {}
    folder = resources.files("broker") / "instruments"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            found[entry.name.removesuffix(".json")] = load(entry.read_bytes(), entry.name.removesuffix(".json"))
    return found


def instrument(instrument_id: str) -> Instrument:
    """The shipped instrument with this id; NotFound `instrument_unknown` for any other."""
    found = catalogue().get(instrument_id)
    if found is None:
        raise NotFound("instrument", code="instrument_unknown")
    return found


# --- scoring -----------------------------------------------------------------------------------


class Scored(msgspec.Struct, frozen=True):
    """A complete form, scored: the answers as given (item id -> value), the total, its band, and
    whether a safety item was answered above its threshold."""

    answers: dict[str, int]
    total: int
    band: str
    safety: bool


def score(instrument: Instrument, answers: Mapping[str, int]) -> Scored:
    """Score a form; InvalidInput `answer_item_unknown`, `answer_out_of_range` or `answers_incomplete`
    (every required item must be answered: there is no score from an incomplete form)."""
    by_id = {i.id: i for i in instrument.items}
    unknown = sorted(set(answers) - set(by_id))
    if unknown:
        raise invalid(f"{instrument.title} has no item {unknown[0]!r}.", code="answer_item_unknown", items=unknown)
    for item_id, value in answers.items():
        allowed = [o.value for o in instrument.options_of(by_id[item_id])]
        if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
            raise invalid(
                f"The answer to item {item_id} must be one of {allowed}.", code="answer_out_of_range", item=item_id
            )
    missing = [i.id for i in instrument.items if i.required and i.id not in answers]
    if missing:
        raise invalid(
            f"Every question needs an answer; {len(missing)} are missing.", code="answers_incomplete", missing=missing
        )
    total = sum(answers[i.id] for i in instrument.items if i.scored)
    safety = any(answers[r.item] > r.above for r in instrument.safety)
    return Scored(answers=dict(answers), total=total, band=instrument.band_of(total), safety=safety)


# --- the trend ---------------------------------------------------------------------------------

Direction = Literal["improvement", "deterioration"]


class TrendPoint(msgspec.Struct, frozen=True):
    """One score on the trend, with what it means against the first (the baseline)."""

    response_id: uuid.UUID
    completed_at: dt.datetime
    total: int
    band: str
    change: int  # total minus the baseline's (0 for the baseline)
    reliable_change: Direction | None  # |change| at least the instrument's threshold
    response: bool  # at least 50 % below the baseline
    remission: bool  # below remission_below (after the baseline)


def trend(instrument: Instrument, scores: list[tuple[uuid.UUID, dt.datetime, int, str]]) -> list[TrendPoint]:
    """The trend of (response id, completed at, total, band), oldest first, marked against the first."""
    points: list[TrendPoint] = []
    if not scores:
        return points
    baseline = scores[0][2]
    for index, (response_id, at, total, band) in enumerate(scores):
        change = total - baseline
        later = index > 0
        reliable: Direction | None = None
        if later and abs(change) >= instrument.reliable_change:
            reliable = "improvement" if change < 0 else "deterioration"
        points.append(
            TrendPoint(
                response_id=response_id,
                completed_at=at,
                total=total,
                band=band,
                change=change,
                reliable_change=reliable,
                response=later and baseline > 0 and total * 2 <= baseline,
                remission=later and instrument.remission_below is not None and total < instrument.remission_below,
            )
        )
    return points


# --- what is due -------------------------------------------------------------------------------


class DueFacts(msgspec.Struct, frozen=True):
    """What decides whether an assigned instrument is due for one session."""

    instrument: str
    schedule: Schedule
    assigned_at: dt.datetime
    done_here: bool  # completed for this session already
    done_previous: bool  # completed for the client's previous session (not cancelled)
    last_completed: dt.datetime | None
    done_since_assigned: bool


def is_due(facts: DueFacts, session_start: dt.datetime) -> bool:
    """Whether the client should complete this instrument for the session starting at `session_start`."""
    if facts.done_here:
        return False
    if facts.schedule == "every_session":
        return True
    if facts.schedule == "every_other":
        return not facts.done_previous
    if facts.schedule == "monthly":
        return facts.last_completed is None or facts.last_completed <= session_start - MONTHLY
    return not facts.done_since_assigned


SELECT_BOOKING = """
SELECT id, therapist_id, client_id, status, starts_at, ends_at FROM bookings WHERE id = $1
"""
# For each of the client's assignments (or one, $4): the facts is_due needs about booking $1.
SELECT_DUE_FACTS = """
SELECT a.instrument, a.schedule, a.assigned_at,
       EXISTS (SELECT 1 FROM measure_responses r WHERE r.booking_id = $1 AND r.instrument = a.instrument) AS done_here,
       EXISTS (
           SELECT 1 FROM measure_responses r
           WHERE r.instrument = a.instrument AND r.booking_id = (
               SELECT p.id FROM bookings p
               WHERE p.client_id = a.client_id AND p.id <> $1 AND p.starts_at < $2
                 AND p.status NOT IN ('cancelled', 'late_cancelled')
               ORDER BY p.starts_at DESC LIMIT 1)
       ) AS done_previous,
       (SELECT max(r.completed_at) FROM measure_responses r
        WHERE r.client_id = a.client_id AND r.instrument = a.instrument) AS last_completed,
       EXISTS (SELECT 1 FROM measure_responses r
               WHERE r.client_id = a.client_id AND r.instrument = a.instrument AND r.completed_at >= a.assigned_at
       ) AS done_since_assigned
FROM measure_assignments a
WHERE a.client_id = $3 AND ($4::text IS NULL OR a.instrument = $4)
ORDER BY a.instrument
"""
LOCK_ASSIGNMENT = "SELECT 1 FROM measure_assignments WHERE client_id = $1 AND instrument = $2 FOR UPDATE"


class _Booking(msgspec.Struct, frozen=True):
    id: uuid.UUID
    therapist_id: uuid.UUID
    client_id: uuid.UUID | None
    status: str
    starts_at: dt.datetime
    ends_at: dt.datetime


async def _booking(conn: Executor, booking_id: uuid.UUID) -> _Booking:
    row = await conn.fetchrow(SELECT_BOOKING, booking_id)
    if row is None:
        raise NotFound("booking")
    return record_to(_Booking, row)


def _open(booking: _Booking, now: dt.datetime) -> bool:
    """Questionnaires belong to a session still ahead or under way."""
    return booking.client_id is not None and booking.status == "confirmed" and now < booking.ends_at


async def due_for_booking(conn: Executor, booking_id: uuid.UUID, now: dt.datetime) -> list[Instrument]:
    """The instruments the booking's client should complete for this session now (none for a cancelled
    or ended session), in a stable order."""
    booking = await _booking(conn, booking_id)
    if not _open(booking, now):
        return []
    rows = await conn.fetch(SELECT_DUE_FACTS, booking.id, booking.starts_at, booking.client_id, None)
    known = catalogue()
    return [
        known[f.instrument]
        for f in (record_to(DueFacts, r) for r in rows)
        if f.instrument in known and is_due(f, booking.starts_at)
    ]


# --- storing a completed form ------------------------------------------------------------------

INSERT_RESPONSE = """
INSERT INTO measure_responses (id, client_id, booking_id, instrument, instrument_version, total, band, completed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
INSERT_ANSWERS = """
INSERT INTO measure_answers (response_id, item, value) SELECT $1, * FROM unnest($2::text[], $3::smallint[])
"""
ONCE_PER_BOOKING = "measure_responses_once_per_booking"


class Completed(msgspec.Struct, frozen=True):
    """A stored form: its id, when, and whether it raised a safety alert (no score: that is the therapist's)."""

    response_id: uuid.UUID
    instrument: str
    completed_at: dt.datetime
    safety: bool
    client_id: uuid.UUID


def _not_due(instrument: Instrument) -> Conflict:
    return Conflict(f"{instrument.title} is not due for this session.", code="measure_not_due")


async def complete(
    conn: asyncpg.Connection,
    booking_id: uuid.UUID,
    instrument_id: str,
    version: int,
    answers: Mapping[str, int],
    now: dt.datetime,
    actor: Principal,
) -> Completed:
    """Store a completed form for the booking's session: all of it or nothing.

    NotFound `instrument_unknown`; Conflict `instrument_outdated` (answered another version of the
    questions) or `measure_not_due`; InvalidInput from `score`. A safety answer raises an alert, its
    dashboard notice and its email in the same transaction."""
    found = instrument(instrument_id)
    if version != found.version:
        raise Conflict(
            f"These questions changed; please answer version {found.version}.",
            code="instrument_outdated",
            version=found.version,
        )
    scored = score(found, answers)
    response_id = uuid.uuid4()
    async with conn.transaction():
        booking = await _booking(conn, booking_id)
        if not _open(booking, now) or booking.client_id is None:
            raise _not_due(found)
        # Submissions for one client and instrument queue here, so two sessions' due checks cannot race.
        if await conn.fetchval(LOCK_ASSIGNMENT, booking.client_id, found.id) is None:
            raise _not_due(found)
        [facts] = [
            record_to(DueFacts, r)
            for r in await conn.fetch(SELECT_DUE_FACTS, booking.id, booking.starts_at, booking.client_id, found.id)
        ]
        if not is_due(facts, booking.starts_at):
            raise _not_due(found)
        try:
            async with conn.transaction():
                await conn.execute(
                    INSERT_RESPONSE,
                    response_id,
                    booking.client_id,
                    booking.id,
                    found.id,
                    found.version,
                    scored.total,
                    scored.band,
                    now,
                )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != ONCE_PER_BOOKING:
                raise
            raise _not_due(found) from None
        items = list(scored.answers)
        await conn.execute(INSERT_ANSWERS, response_id, items, [scored.answers[i] for i in items])
        await audit.record(
            conn,
            actor,
            "measure.completed",
            booking_id=booking.id,
            therapist_id=booking.therapist_id,
            client_id=booking.client_id,
        )
        if scored.safety:
            await safety_alerts.raise_alert(
                conn,
                therapist_id=booking.therapist_id,
                client_id=booking.client_id,
                booking_id=booking.id,
                response_id=response_id,
                now=now,
                actor=actor,
            )
    return Completed(response_id, found.id, now, scored.safety, booking.client_id)


# --- the therapist's side: assignments and results ---------------------------------------------

UPSERT_ASSIGNMENT = """
INSERT INTO measure_assignments (client_id, instrument, schedule, assigned_at, created_at)
SELECT c.id, $3, $4, $5, $5 FROM clients c WHERE c.id = $1 AND c.therapist_id = $2
ON CONFLICT (client_id, instrument) DO UPDATE SET schedule = EXCLUDED.schedule, assigned_at = EXCLUDED.assigned_at
RETURNING instrument, schedule, assigned_at, created_at
"""
DELETE_ASSIGNMENT = """
DELETE FROM measure_assignments a USING clients c
WHERE a.client_id = c.id AND c.id = $1 AND c.therapist_id = $2 AND a.instrument = $3
"""
CLIENT_EXISTS = "SELECT 1 FROM clients WHERE id = $1 AND therapist_id = $2"
SELECT_ASSIGNMENTS = """
SELECT instrument, schedule, assigned_at, created_at FROM measure_assignments WHERE client_id = $1 ORDER BY instrument
"""
SELECT_RESPONSES = """
SELECT r.id, r.booking_id, r.instrument, r.instrument_version, r.total, r.band, r.completed_at,
       coalesce(jsonb_object_agg(a.item, a.value) FILTER (WHERE a.item IS NOT NULL), '{}')::text AS answers
FROM measure_responses r
LEFT JOIN measure_answers a ON a.response_id = r.id
WHERE r.client_id = $1 AND ($2::text IS NULL OR r.instrument = $2)
GROUP BY r.id
ORDER BY r.completed_at, r.id
LIMIT $3
"""


class Assignment(msgspec.Struct, frozen=True):
    instrument: str
    schedule: Schedule
    assigned_at: dt.datetime
    created_at: dt.datetime


class Response(msgspec.Struct, frozen=True):
    """A stored form as the therapist reads it: answers item by item, the total and band."""

    id: uuid.UUID
    booking_id: uuid.UUID
    instrument: str
    instrument_version: int
    total: int
    band: str
    completed_at: dt.datetime
    answers: dict[str, int]


class Results(msgspec.Struct, frozen=True):
    """A client's assignments, responses (oldest first) and the trend per instrument."""

    assignments: list[Assignment]
    responses: list[Response]
    trends: dict[str, list[TrendPoint]]


async def _client_of(conn: Executor, therapist_id: uuid.UUID, client_id: uuid.UUID) -> None:
    if await conn.fetchval(CLIENT_EXISTS, client_id, therapist_id) is None:
        raise NotFound("client")


async def assign(
    conn: asyncpg.Connection,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID,
    instrument_id: str,
    schedule: Schedule,
    now: dt.datetime,
    actor: Principal,
) -> Assignment:
    """Ask the client to complete an instrument on `schedule` (replacing an earlier schedule); audited."""
    found = instrument(instrument_id)
    async with conn.transaction():
        row = await conn.fetchrow(UPSERT_ASSIGNMENT, client_id, therapist_id, found.id, schedule, now)
        if row is None:
            raise NotFound("client")
        await audit.record(conn, actor, "measure.assigned", therapist_id=therapist_id, client_id=client_id)
    return record_to(Assignment, row)


async def unassign(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, client_id: uuid.UUID, instrument_id: str, actor: Principal
) -> None:
    """Stop asking for an instrument (its results stay); audited. Unassigning what is not assigned is no error."""
    found = instrument(instrument_id)
    async with conn.transaction():
        await _client_of(conn, therapist_id, client_id)
        await conn.execute(DELETE_ASSIGNMENT, client_id, therapist_id, found.id)
        await audit.record(conn, actor, "measure.unassigned", therapist_id=therapist_id, client_id=client_id)


def _response(row: asyncpg.Record) -> Response:
    values = dict(row.items())
    values["answers"] = msgspec.json.decode(values["answers"])
    return msgspec.convert(values, Response)


def trends_of(responses: list[Response]) -> dict[str, list[TrendPoint]]:
    """Each known instrument's trend, from responses oldest first."""
    known = catalogue()
    by_instrument: dict[str, list[tuple[uuid.UUID, dt.datetime, int, str]]] = {}
    for r in responses:
        by_instrument.setdefault(r.instrument, []).append((r.id, r.completed_at, r.total, r.band))
    return {i: trend(known[i], scores) for i, scores in by_instrument.items() if i in known}


async def results(
    conn: asyncpg.Connection,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID,
    reader: Principal,
    *,
    instrument_id: str | None = None,
) -> Results:
    """A client's assignments, answers and trends, for their therapist; the read is audited."""
    if instrument_id is not None:
        instrument(instrument_id)
    async with conn.transaction(isolation="repeatable_read"):
        await _client_of(conn, therapist_id, client_id)
        assignments = [record_to(Assignment, r) for r in await conn.fetch(SELECT_ASSIGNMENTS, client_id)]
        responses = [_response(r) for r in await conn.fetch(SELECT_RESPONSES, client_id, instrument_id, MAX_RESPONSES)]
        await audit.record(conn, reader, "measure.results_read", therapist_id=therapist_id, client_id=client_id)
    return Results(assignments=assignments, responses=responses, trends=trends_of(responses))


class Latest(msgspec.Struct, frozen=True):
    """The latest score of one instrument, with the trend's marks for it."""

    instrument: str
    title: str
    point: TrendPoint
    scores: int  # how many the trend holds


class SessionSummary(msgspec.Struct, frozen=True):
    """What the room shows the therapist: the client's latest scores and their open alerts."""

    client_id: uuid.UUID | None
    latest: list[Latest]
    alerts: list[safety_alerts.Alert]


async def session_summary(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, booking_id: uuid.UUID, reader: Principal
) -> SessionSummary:
    """For the therapist in a session's room: the client's latest score per instrument and open alerts (audited)."""
    async with conn.transaction(isolation="repeatable_read"):
        booking = await _booking(conn, booking_id)
        if booking.therapist_id != therapist_id:
            raise NotFound("booking")
        if booking.client_id is None:
            return SessionSummary(client_id=None, latest=[], alerts=[])
        responses = [_response(r) for r in await conn.fetch(SELECT_RESPONSES, booking.client_id, None, MAX_RESPONSES)]
        alerts = await safety_alerts.open_for_client(conn, therapist_id, booking.client_id)
        await audit.record(
            conn,
            reader,
            "measure.results_read",
            booking_id=booking.id,
            therapist_id=therapist_id,
            client_id=booking.client_id,
        )
    known = catalogue()
    latest = [
        Latest(instrument=i, title=known[i].title, point=points[-1], scores=len(points))
        for i, points in trends_of(responses).items()
    ]
    return SessionSummary(client_id=booking.client_id, latest=latest, alerts=alerts)


# Where the client is for this session, most trusted first: what they confirmed at this join
# (broker.join_locations), else the place given with the booking, else where they usually are (the
# emergency details). A region goes with the country it came with.
SELECT_PLACE = """
SELECT CASE WHEN j.country IS NOT NULL THEN j.country WHEN b.client_country IS NOT NULL THEN b.client_country
            ELSE e.usual_country END AS country,
       CASE WHEN j.country IS NOT NULL THEN j.region WHEN b.client_country IS NOT NULL THEN b.client_region
            ELSE e.usual_region END AS region
FROM bookings b
LEFT JOIN LATERAL (
    SELECT country, region FROM join_locations WHERE booking_id = b.id ORDER BY confirmed_at DESC, id DESC LIMIT 1
) j ON true
LEFT JOIN emergency_contacts e ON e.client_id = b.client_id
WHERE b.id = $1
"""


async def client_place(conn: Executor, booking_id: uuid.UUID) -> tuple[str | None, str | None]:
    """Where the booking's client is (country, region as ISO 3166 codes), for the crisis resources."""
    row = await conn.fetchrow(SELECT_PLACE, booking_id)
    return (None, None) if row is None else (row["country"], row["region"])
