"""What the booking path keeps or does early to stay quick, shown still right (issue 13, speed).

A node keeps therapists by slug and answers an Idempotency-Key's claim with the answer it expects;
a new booking's notice carries what this node knows of the therapist and the hooks' messages are
written by the booking's one statement, which makes sure that knowledge still holds. Each test
here would fail if one of those shortcuts gave a wrong answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestServer

from broker.clock import Clock
from broker.errors import NotFound
from broker.notices import NOTICES, Notice
from broker.outbox import NewMessage
from broker.therapists import BySlug
from tests.support import Api, next_grid_start


async def test_a_changed_duration_under_the_kept_rules_is_what_the_key_replays(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, st = await api.ready_therapist()
    first = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    status, _ = await api.book(therapist, st, first.isoformat())  # this node now keeps the rules
    assert status == 201
    # Another node (here: SQL) shortens the session; the kept rules predict a 50-minute answer.
    await db.execute("UPDATE session_types SET duration_minutes = 40 WHERE id = $1", uuid.UUID(st["id"]))
    later = first + dt.timedelta(days=1)
    headers = {"Idempotency-Key": "kept-rules-changed"}
    status, made = await api.book(therapist, st, later.isoformat(), headers=headers)
    assert status == 201, made
    assert dt.datetime.fromisoformat(made["end"]) - later == dt.timedelta(minutes=40)
    status, replayed = await api.book(therapist, st, later.isoformat(), headers=headers)
    assert (status, replayed) == (201, made)
    ends = await db.fetch("SELECT ends_at - starts_at AS length FROM bookings WHERE starts_at = $1", later)
    assert [r["length"] for r in ends] == [dt.timedelta(minutes=40)]


async def test_a_keyed_booking_on_kept_rules_replays_its_answer_and_a_lost_slot_replays_409(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    start = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(days=2), 60).isoformat()
    assert (await api.book(therapist, st, next_grid_start(dt.datetime.now(dt.UTC), 60).isoformat()))[0] == 201
    status, made = await api.book(therapist, st, start, headers={"Idempotency-Key": "first"})
    assert status == 201
    assert await api.book(therapist, st, start, headers={"Idempotency-Key": "first"}) == (201, made)
    status, refused = await api.book(therapist, st, start, headers={"Idempotency-Key": "second"})
    assert (status, refused["code"]) == (409, "slot_unavailable")
    status, again = await api.book(therapist, st, start, headers={"Idempotency-Key": "second"})
    assert (status, again["code"]) == (409, "slot_unavailable")


class Owing:
    """A hook that owes one message per notice (due in a month: no worker sends it meanwhile) and
    keeps the notices it saw."""

    def __init__(self) -> None:
        self.seen: list[Notice] = []

    async def __call__(self, conn: asyncpg.Connection, notice: Notice) -> list[NewMessage]:
        self.seen.append(notice)
        return [
            NewMessage(
                channel="email",
                kind="test.owed",
                recipient="therapist",
                due_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=30),
                therapist_id=notice.therapist_id,
                booking_id=notice.booking_ids[0],
            )
        ]


async def test_the_messages_a_hook_returns_are_queued_with_the_booking_and_its_notice_carries_the_insert(
    api: Api, clock: Clock, server: TestServer, db: asyncpg.Connection
) -> None:
    hook = Owing()
    server.app[NOTICES].hooks.append(hook)
    therapist, st = await api.ready_therapist(reminder_minutes=[120, 30])
    start = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    status, made = await api.book(therapist, st, start.isoformat())
    assert status == 201
    assert (await api.book(therapist, st, start.isoformat()))[0] == 409
    # The hooks run before the booking is written; the refused booking's messages were never queued.
    owed = await db.fetch("SELECT booking_id FROM outbox WHERE kind = 'test.owed'")
    assert [r["booking_id"] for r in owed] == [uuid.UUID(made["id"])]
    notice, refused = hook.seen
    assert refused.booking_ids != notice.booking_ids
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE booking_id = $1", refused.booking_ids[0]) == 0
    assert (notice.start, notice.end) == (start, start + dt.timedelta(minutes=50))
    assert notice.reminder_minutes == (120, 30)
    assert notice.notify_therapist is not None and notice.listeners == ()
    assert notice.secret == made["booking_key"]


async def test_a_therapist_kept_by_slug_is_read_again_after_its_time_and_an_unknown_slug_is_never_kept(
    api: Api, db: asyncpg.Connection
) -> None:
    now = [0.0]
    kept = BySlug(seconds=60.0, clock=lambda: now[0])
    with pytest.raises(NotFound):
        await kept.get(db, "dr-not-yet")
    therapist = await api.therapist(slug="dr-not-yet")
    assert (await kept.get(db, "dr-not-yet")).id == uuid.UUID(therapist["id"])
    await db.execute("UPDATE therapists SET name = 'Dr Renamed' WHERE slug = 'dr-not-yet'")
    now[0] = 59.0
    assert (await kept.get(db, "dr-not-yet")).name == therapist["name"]
    now[0] = 60.0
    assert (await kept.get(db, "dr-not-yet")).name == "Dr Renamed"


async def test_the_least_recently_used_therapist_goes_first(api: Api, db: asyncpg.Connection) -> None:
    kept = BySlug(entries=2)
    slugs = [(await api.therapist())["slug"] for _ in range(3)]
    for slug in slugs:
        await kept.get(db, slug)
    await db.execute("UPDATE therapists SET name = 'Changed' WHERE slug = ANY($1)", slugs)
    assert (await kept.get(db, slugs[2])).name != "Changed"
    assert (await kept.get(db, slugs[0])).name == "Changed"  # it was dropped, so read again


async def test_a_calendar_added_elsewhere_after_a_booking_here_still_blocks_its_time(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, st = await api.ready_therapist()
    first = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    assert (await api.book(therapist, st, first.isoformat()))[0] == 201  # this node saw no calendar
    # Another node stores a busy calendar (the refresher's work, here SQL) holding a later hour.
    busy = first + dt.timedelta(days=1)
    calendar_id, therapist_id = uuid.uuid4(), uuid.UUID(therapist["id"])
    await db.execute(
        "INSERT INTO busy_calendars (id, therapist_id, position, url, next_fetch_at)"
        " VALUES ($1, $2, 0, 'https://calendar.invalid/busy.ics', now() + interval '1 day')",
        calendar_id,
        therapist_id,
    )
    await db.execute(
        "INSERT INTO busy_events (calendar_id, therapist_id, span) VALUES ($1, $2, tstzrange($3, $4))",
        calendar_id,
        therapist_id,
        busy,
        busy + dt.timedelta(hours=1),
    )
    status, refused = await api.book(therapist, st, busy.isoformat())
    assert (status, refused["code"]) == (409, "slot_unavailable")
    assert (await api.book(therapist, st, (busy + dt.timedelta(hours=2)).isoformat()))[0] == 201
    status, refused = await api.book(therapist, st, busy.isoformat())  # now known here: checked first
    assert (status, refused["code"]) == (409, "slot_unavailable")


async def test_a_licence_rule_set_elsewhere_after_a_booking_here_still_refuses(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, st = await api.ready_therapist()
    first = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    assert (await api.book(therapist, st, first.isoformat()))[0] == 201  # no rule that refuses, seen here
    # Another node records a licence and turns on `refuse` (here: SQL).
    therapist_id = uuid.UUID(therapist["id"])
    await db.execute(
        "INSERT INTO licences (id, therapist_id, jurisdiction, kind, number) VALUES ($1, $2, 'DE', 'Psych', '1')",
        uuid.uuid4(),
        therapist_id,
    )
    await db.execute("INSERT INTO safety_settings (therapist_id, licence_check) VALUES ($1, 'refuse')", therapist_id)
    later = (first + dt.timedelta(days=1)).isoformat()
    status, refused = await api.book(therapist, st, later)  # the client names no place
    assert (status, refused["code"]) == (422, "location_required")
    assert await db.fetchval("SELECT count(*) FROM bookings WHERE therapist_id = $1", therapist_id) == 1


async def test_who_hears_and_when_changed_elsewhere_after_a_booking_here_is_what_the_next_booking_tells(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    """This node keeps the reminder minutes, the notice setting and the listening endpoints from its
    last booking; changed by another node (here: SQL), the next booking's messages follow the store."""
    therapist, st = await api.ready_therapist(reminder_minutes=[120])
    therapist_id = uuid.UUID(therapist["id"])
    first = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    status, made = await api.book(therapist, st, first.isoformat())
    assert status == 201

    async def told(booking_id: str) -> list[tuple[str, str, object]]:
        rows = await db.fetch(
            "SELECT channel, kind, payload->'minutes' AS minutes FROM outbox WHERE booking_id = $1"
            " ORDER BY channel, kind, minutes",
            uuid.UUID(booking_id),
        )
        return [(r["channel"], r["kind"], r["minutes"]) for r in rows]

    assert await told(made["id"]) == [("email", "client.confirmation", None), ("email", "client.reminder", "120")]
    await db.execute("UPDATE therapists SET notify_bookings = true WHERE id = $1", therapist_id)
    await db.execute("UPDATE session_types SET reminder_minutes = '{45}' WHERE id = $1", uuid.UUID(st["id"]))
    await db.execute(
        "INSERT INTO webhook_endpoints (id, therapist_id, url, events, secret_sealed)"
        " VALUES ($1, $2, 'https://hooks.example.org/in', '{booking.created}', '\\x00')",
        uuid.uuid4(),
        therapist_id,
    )
    status, later = await api.book(therapist, st, (first + dt.timedelta(days=1)).isoformat())
    assert status == 201
    assert await told(later["id"]) == [
        ("email", "client.confirmation", None),
        ("email", "client.reminder", "45"),
        ("email", "therapist.notice", None),
    ]
    # A webhook message names its bookings in its payload alone.
    hooked = await db.fetch("SELECT payload FROM outbox WHERE channel = 'webhook' AND therapist_id = $1", therapist_id)
    assert [later["id"]] == [b["id"] for r in hooked for b in msgspec.json.decode(r["payload"])["data"]["bookings"]]


async def test_one_key_sent_at_once_on_changed_rules_books_once_without_a_deadlock(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    """A keyed booking claims its key in its one statement after the times lock; one that finds the
    rules changed falls back to a transaction, which takes the lock before its claim too. Sent
    together, the same key gets one booking and one answer, and PostgreSQL counts no deadlock."""
    therapist, st = await api.ready_therapist()
    first = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    assert (await api.book(therapist, st, first.isoformat()))[0] == 201  # this node keeps the rules
    await db.execute("UPDATE session_types SET duration_minutes = 40 WHERE id = $1", uuid.UUID(st["id"]))
    deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    before = await db.fetchval(deadlocks)
    later = (first + dt.timedelta(days=1)).isoformat()
    headers = {"Idempotency-Key": "sent-eight-times"}
    answers = await asyncio.gather(*(api.book(therapist, st, later, headers=headers) for _ in range(8)))
    assert {status for status, _ in answers} == {201}
    assert len({made["booking_key"] for _, made in answers}) == 1
    assert (
        await db.fetchval("SELECT count(*) FROM bookings WHERE starts_at = $1", dt.datetime.fromisoformat(later)) == 1
    )
    assert await db.fetchval(deadlocks) == before
