"""Slot listings kept in memory: never staler than the last committed change, on any node.

Two nodes share one PostgreSQL; each keeps its own listings (`broker.slot_listings`). Every change
to what a therapist can offer, made through either node or plain SQL, must show in the next listing
from both: a kept listing may never offer a slot a committed booking took.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestServer

from broker import availability, schemas, session_types
from broker.app import create_app
from broker.clock import Clock
from broker.routes.therapists import SLOT_LIMIT
from broker.settings import Settings
from broker.slot_listings import SLOT_LISTINGS, SlotListings
from calendars.slots import compute_slots, dates_window
from tests.support import Api, free_port

START = dt.datetime(2031, 3, 3, 9, 17, 23, 250_000, tzinfo=dt.UTC)  # a Monday, mid-hour, odd seconds


class SetClock(Clock):
    """A clock that reads what the test sets (the service reads `now()` only)."""

    def __init__(self, at: dt.datetime) -> None:
        super().__init__()
        self.at = at

    def now(self) -> dt.datetime:
        return self.at


@pytest.fixture
def clock() -> SetClock:
    return SetClock(START)


@pytest.fixture
async def node_b(settings: Settings, clock: SetClock) -> AsyncIterator[TestServer]:
    """A second node on the same database, with the same clock."""
    other = dataclasses.replace(settings, port=free_port())
    srv = TestServer(create_app(other, clock=clock), host="127.0.0.1", port=other.port)
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture
def b(node_b: TestServer, http: aiohttp.ClientSession, api: Api) -> Api:
    return Api(http, f"http://127.0.0.1:{node_b.port}", api.admin_token)


def listings(node: TestServer) -> SlotListings:
    return node.app[SLOT_LISTINGS]


DAY = START.date() + dt.timedelta(days=1)


async def starts(api: Api, therapist: dict[str, Any], st: dict[str, Any], days: int = 2) -> list[str]:
    return [s["start"] for s in await api.slots(therapist, st, DAY, DAY + dt.timedelta(days=days - 1))]


async def test_a_booking_through_one_node_is_gone_from_the_others_kept_listing_at_once(
    api: Api, b: Api, node_b: TestServer
) -> None:
    therapist, st = await api.ready_therapist()
    for round_ in range(8):
        before = await starts(b, therapist, st)
        hits = listings(node_b).hits
        assert await starts(b, therapist, st) == before and listings(node_b).hits == hits + 1  # kept
        status, _ = await api.book(therapist, st, before[round_ * 3], name=f"C{round_}")
        assert status == 201
        after = await starts(b, therapist, st)
        assert after == [s for s in before if s != before[round_ * 3]]


async def test_listings_racing_bookings_on_two_nodes_never_offer_a_committed_booking(
    api: Api, b: Api, db: asyncpg.Connection
) -> None:
    therapist, st = await api.ready_therapist()
    free = await starts(api, therapist, st, days=3)
    booked: set[str] = set()

    async def book(i: int) -> None:
        node = api if i % 2 else b
        status, _ = await node.book(therapist, st, free[i], name=f"C{i}")
        assert status == 201
        booked.add(free[i])

    async def watch(node: Api) -> None:
        for _ in range(30):
            taken = set(booked)  # committed before this listing was asked for
            offered = set(await starts(node, therapist, st, days=3))
            assert not offered & taken
            await asyncio.sleep(0)

    await asyncio.gather(*(book(i) for i in range(0, 40, 2)), watch(api), watch(b), watch(api), watch(b))
    assert set(await starts(b, therapist, st, days=3)) == set(free) - booked


async def test_cancel_reschedule_series_hours_and_session_types_change_the_other_nodes_listing(
    api: Api, b: Api, clock: SetClock
) -> None:
    therapist, st = await api.ready_therapist(series_frequencies=["weekly"])
    free = await starts(b, therapist, st)
    _, mine = await api.book(therapist, st, free[0])
    assert free[0] not in await starts(b, therapist, st)

    status, _ = await api.call(
        "POST", f"/api/v1/bookings/{mine['id']}/reschedule", token=mine["booking_key"], json={"start": free[5]}
    )
    assert status == 200
    now_free = await starts(b, therapist, st)
    assert free[0] in now_free and free[5] not in now_free

    status, _ = await api.call("POST", f"/api/v1/bookings/{mine['id']}/cancel", token=mine["booking_key"])
    assert status == 200
    assert await starts(b, therapist, st) == free

    status, made = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/series",
        json={
            "session_type": st["id"],
            "start": free[2],
            "frequency": "weekly",
            "count": 2,
            "client": {"name": "Series Client", "email": "series@example.org"},
        },
    )
    assert status == 201, made
    assert free[2] not in await starts(b, therapist, st)

    await api.availability(therapist, weekly=[{"day": "tue", "start": "10:00", "end": "12:00"}])
    assert len(await starts(b, therapist, st)) == 2  # Tuesday 10:00 and 11:00, Berlin time

    status, _ = await api.call(
        "DELETE", f"/api/v1/therapists/{therapist['slug']}/session-types/{st['id']}", token=therapist["api_token"]
    )
    assert status == 204
    status, body = await b.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/slots?session_type={st['id']}&from={DAY}&to={DAY}"
    )
    assert (status, body["code"]) == (422, "unknown_session_type")


async def test_busy_time_written_by_plain_sql_is_seen_by_a_kept_listing(
    api: Api, b: Api, db: asyncpg.Connection
) -> None:
    therapist, st = await api.ready_therapist()
    free = await starts(b, therapist, st)
    at = dt.datetime.fromisoformat(free[1])
    calendar = uuid.uuid4()
    async with db.transaction():
        await db.execute(
            "INSERT INTO busy_calendars (id, therapist_id, position, url, next_fetch_at) VALUES ($1, $2, 0, $3, $4)",
            calendar,
            uuid.UUID(therapist["id"]),
            "https://calendar.example.org/busy.ics",
            START + dt.timedelta(days=365),
        )
        await db.execute(
            "INSERT INTO busy_events (calendar_id, therapist_id, span) VALUES ($1, $2, tstzrange($3, $4))",
            calendar,
            uuid.UUID(therapist["id"]),
            at,
            at + dt.timedelta(minutes=5),
        )
    assert free[1] not in await starts(b, therapist, st)
    await db.execute("DELETE FROM busy_events WHERE calendar_id = $1", calendar)
    assert await starts(b, therapist, st) == free


async def test_a_kept_listing_is_cut_to_each_moment_exactly_as_a_fresh_one(
    api: Api, clock: SetClock, node_b: TestServer, b: Api, database_url: str
) -> None:
    """Within the hour a listing is kept for, later requests see the notice move on: the same JSON a
    fresh computation from the rules gives at that instant."""
    therapist, st = await api.ready_therapist(min_notice_minutes=90, slot_interval_minutes=15, horizon_days=2)
    week = [{"day": d, "start": "08:00", "end": "20:00"} for d in ("mon", "tue", "wed")]
    await api.availability(therapist, weekly=week)
    slug, first, last = therapist["slug"], START.date(), START.date() + dt.timedelta(days=3)
    path = f"/api/v1/therapists/{slug}/slots?session_type={st['id']}&from={first}&to={last}&tz=America/New_York"
    conn = await asyncpg.connect(database_url)
    try:
        av, _ = await availability.load(conn, uuid.UUID(therapist["id"]), therapist["timezone"])
        rules = (await session_types.active(conn, uuid.UUID(therapist["id"]), st["id"])).rules
    finally:
        await conn.close()
    tz = ZoneInfo("America/New_York")
    computed = listings(node_b).misses
    for minutes in (0, 1, 13, 14, 15, 16, 29, 30, 31, 42):
        clock.at = START + dt.timedelta(minutes=minutes, seconds=minutes % 3)
        async with b.session.get(b.base + path) as resp:
            assert resp.status == 200 and resp.content_type == "application/json"
            got = await resp.read()
        slots = compute_slots(av, rules, (), dates_window(first, last, tz), clock.at)
        expected = msgspec.json.encode(
            schemas.SlotList(
                timezone="America/New_York",
                slots=[schemas.Slot(start=s.start.astimezone(tz), end=s.end.astimezone(tz)) for s in slots],
            )
        )
        assert got == expected, minutes
    assert listings(node_b).misses == computed + 1  # one computation served the whole hour
    # The horizon, too: two days from each moment, never a slot beyond it.
    last_start = dt.datetime.fromisoformat(msgspec.json.decode(got)["slots"][-1]["start"])
    assert clock.at + dt.timedelta(days=2) - dt.timedelta(minutes=15) <= last_start < clock.at + dt.timedelta(days=2)


async def test_forty_identical_listings_at_once_are_computed_once(api: Api, b: Api, node_b: TestServer) -> None:
    therapist, st = await api.ready_therapist()
    kept = listings(node_b)
    before = kept.misses, kept.hits
    path = (
        f"/api/v1/therapists/{therapist['slug']}/slots?session_type={st['id']}"
        f"&from={DAY}&to={DAY + dt.timedelta(days=62)}"
    )
    answers = await asyncio.gather(*(b.call("GET", path) for _ in range(40)))
    assert {status for status, _ in answers} == {200}
    assert len({msgspec.json.encode(body) for _, body in answers}) == 1
    assert kept.computed == 1
    assert (kept.misses - before[0]) + (kept.hits - before[1]) == 40


def test_kept_listings_stay_within_their_byte_budget() -> None:
    from calendars.slots import SessionRules

    kept = SlotListings(max_bytes=100_000)
    rules = SessionRules(duration=50)
    tz = ZoneInfo("Europe/Berlin")
    for i in range(50):
        key = _key(i)
        kept._keep(key, _listing(rules, tz, 200))
        assert kept._bytes <= 100_000
    assert 0 < len(kept._kept) < 50
    assert _key(49) in kept._kept and _key(0) not in kept._kept  # the least recently used went first


def _key(i: int) -> Any:
    from broker.slot_listings import Key

    return Key(uuid.UUID(int=i), "type", dt.date(2031, 1, 1), dt.date(2031, 1, 2), "UTC", 0)


def _listing(rules: Any, tz: ZoneInfo, n: int) -> Any:
    from broker.slot_listings import Listing

    return Listing(1, rules, "Europe/Berlin", tz, [1_900_000_000 + 3600 * k for k in range(n)])


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return dataclasses.replace(settings, slot_listings_per_minute=5)


async def test_slot_listings_beyond_the_limit_are_429_and_other_requests_still_answer(
    limited: Settings, clock: SetClock, http: aiohttp.ClientSession
) -> None:
    srv = TestServer(create_app(limited, clock=clock), host="127.0.0.1", port=limited.port)
    await srv.start_server()
    try:
        api = Api(http, f"http://127.0.0.1:{limited.port}", "test-admin-token-0123456789abcdef")
        assert srv.app[SLOT_LIMIT].limit == 5
        therapist, st = await api.ready_therapist()
        path = f"/api/v1/therapists/{therapist['slug']}/slots?session_type={st['id']}&from={DAY}&to={DAY}"
        statuses = []
        for _ in range(7):
            async with http.get(api.base + path) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert int(resp.headers["Retry-After"]) >= 1
                    assert (await resp.json(content_type=None))["code"] == "rate_limited"
        assert statuses == [200] * 5 + [429] * 2
        # Refused before the therapist is even looked up: an unknown one is 429 too, not 404.
        async with http.get(api.base + "/api/v1/therapists/no-such-one/slots?session_type=x") as resp:
            assert resp.status == 429
        status, _ = await api.call("GET", f"/api/v1/therapists/{therapist['slug']}")
        assert status == 200
    finally:
        await srv.close()


async def test_a_schedule_version_is_bumped_at_commit_so_crossing_changes_cannot_deadlock(
    api: Api, database_url: str
) -> None:
    """A series cancelled occurrence by occurrence while a client cancels one of them: each transaction
    waits for the other's row at most once. Were the counter locked at each statement (not at
    commit), the client's transaction would hold the occurrence and wait for the counter while the
    series' held the counter and waited for the occurrence: a deadlock."""
    therapist, st = await api.ready_therapist()
    free = await starts(api, therapist, st)
    ids = []
    for start in free[:2]:
        status, made = await api.book(therapist, st, start)
        assert status == 201
        ids.append(uuid.UUID(made["id"]))
    therapist_id = uuid.UUID(therapist["id"])
    series, client = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    cancel = "UPDATE bookings SET status = 'cancelled' WHERE id = $1"
    try:
        before = await series.fetchval("SELECT version FROM schedule_versions WHERE therapist_id = $1", therapist_id)
        series_tx, client_tx = series.transaction(), client.transaction()
        await series_tx.start()
        await client_tx.start()
        await series.execute(cancel, ids[0])
        await asyncio.wait_for(client.execute(cancel, ids[1]), 5)  # not waiting for the series' counter
        second = asyncio.create_task(series.execute(cancel, ids[1]))  # waits for the client's row
        await asyncio.sleep(0.2)
        assert not second.done()
        await asyncio.wait_for(client_tx.commit(), 5)
        await asyncio.wait_for(second, 5)
        await series_tx.commit()
        after = await series.fetchval("SELECT version FROM schedule_versions WHERE therapist_id = $1", therapist_id)
        assert after == before + 2  # once a transaction, however many rows it changed
    finally:
        await series.close()
        await client.close()
