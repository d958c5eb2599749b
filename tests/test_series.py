"""Standing series through real HTTP on a real PostgreSQL: preview, booking, keys, cancel scopes, races."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.support import Api
from tests.test_ical_render import expanded_by_ical_js, expanded_by_icalendar

NEW_YORK = ZoneInfo("America/New_York")
# Tuesday 2 March 2027, 10:00 in New York: New York moves its clocks on 14 March, London on 28 March.
FIRST = dt.datetime(2027, 3, 2, 10, 0, tzinfo=NEW_YORK)
SERIES_TYPE = {"series_frequencies": ["weekly", "biweekly"], "series_max_sessions": 52, "horizon_days": 365}
CLIENT = {"name": "Client Series", "email": "series@example.org"}


async def series_therapist(api: Api, zone: str = "America/New_York", **fields: Any) -> tuple[dict[str, Any], Any]:
    therapist = await api.therapist(timezone=zone)
    await api.availability(therapist)
    return therapist, await api.session_type(therapist, **{**SERIES_TYPE, **fields})


def series_body(st: dict[str, Any], start: dt.datetime, count: int = 6, **extra: Any) -> dict[str, Any]:
    return {
        "session_type": st["id"],
        "start": start.isoformat(),
        "frequency": "weekly",
        "count": count,
        "client_timezone": "Europe/London",
        **extra,
    }


async def preview(api: Api, therapist: dict[str, Any], body: dict[str, Any]) -> tuple[int, Any]:
    return await api.call("POST", f"/api/v1/therapists/{therapist['slug']}/series/preview", json=body)


async def book_series(
    api: Api, therapist: dict[str, Any], body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    return await api.call(
        "POST", f"/api/v1/therapists/{therapist['slug']}/series", json={**body, "client": CLIENT}, headers=headers
    )


async def test_preview_keeps_the_therapists_ten_oclock_and_flags_the_weeks_london_sees_otherwise(api: Api) -> None:
    therapist, st = await series_therapist(api)
    status, body = await preview(api, therapist, series_body(st, FIRST))
    assert status == 200, body
    occ = body["occurrences"]
    assert [dt.datetime.fromisoformat(o["therapist_start"]).hour for o in occ] == [10] * 6
    assert [dt.datetime.fromisoformat(o["client_start"]).hour for o in occ] == [15, 15, 14, 14, 15, 15]
    assert [o["client_time_differs"] for o in occ] == [False, False, True, True, False, False]
    assert [o["status"] for o in occ] == ["free"] * 6
    assert body["client_time_changes"] is True
    assert body["timezone"] == "America/New_York" and body["client_timezone"] == "Europe/London"
    # The offsets on the wire are each day's: EST, then EDT.
    assert occ[0]["therapist_start"].endswith("-05:00") and occ[2]["therapist_start"].endswith("-04:00")


async def test_preview_marks_taken_and_not_offered_sessions(api: Api) -> None:
    therapist, st = await series_therapist(api)
    third = FIRST + dt.timedelta(weeks=2)
    status, taken = await api.book(therapist, st, third.isoformat())
    assert status == 201, taken
    day_off = (FIRST + dt.timedelta(weeks=4)).date().isoformat()
    await api.availability(therapist, overrides=[{"date": day_off, "intervals": []}])
    status, body = await preview(api, therapist, series_body(st, FIRST))
    assert status == 200, body
    assert [o["status"] for o in body["occurrences"]] == ["free", "free", "taken", "free", "not_offered", "free"]


@pytest.mark.parametrize(
    ("therapist_zone", "client_zone", "first"),
    [
        ("America/New_York", "Europe/London", dt.datetime(2027, 3, 2, 10, 0)),
        ("Europe/Berlin", "America/Santiago", dt.datetime(2027, 3, 15, 8, 0)),
        ("Australia/Lord_Howe", "Asia/Kolkata", dt.datetime(2027, 3, 22, 23, 0)),
        ("Pacific/Auckland", "America/New_York", dt.datetime(2027, 3, 25, 1, 0)),
    ],
)
async def test_the_preview_is_exactly_what_booking_creates(
    api: Api, db: asyncpg.Connection, therapist_zone: str, client_zone: str, first: dt.datetime
) -> None:
    therapist, st = await series_therapist(api, therapist_zone)
    start = first.replace(tzinfo=ZoneInfo(therapist_zone))
    status, taken = await api.book(therapist, st, (start + dt.timedelta(weeks=3)).isoformat())
    assert status == 201, taken
    body = {**series_body(st, start, count=10), "client_timezone": client_zone}
    status, shown = await preview(api, therapist, body)
    assert status == 200, shown
    status, made = await book_series(api, therapist, body)
    assert status == 201, made
    free = [o["start"] for o in shown["occurrences"] if o["status"] == "free"]
    booked = [o["start"] for o in made["occurrences"] if o["status"] == "confirmed"]
    assert booked == free and made["booked"] == len(free) == 9
    rows = await db.fetch(
        "SELECT starts_at, series_index FROM bookings WHERE series_id = $1 ORDER BY series_index", uuid.UUID(made["id"])
    )
    assert [r["starts_at"] for r in rows] == [dt.datetime.fromisoformat(s) for s in free]
    assert [r["series_index"] for r in rows] == [o["index"] for o in shown["occurrences"] if o["status"] == "free"]
    for made_occ, shown_occ in zip(made["occurrences"], shown["occurrences"], strict=True):
        assert made_occ["client_start"] == shown_occ["client_start"]


async def test_all_or_nothing_books_none_when_one_is_taken_and_lists_which(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await series_therapist(api)
    third = FIRST + dt.timedelta(weeks=2)
    status, _ = await api.book(therapist, st, third.isoformat())
    assert status == 201
    status, body = await book_series(api, therapist, series_body(st, FIRST, all_or_nothing=True))
    assert status == 409, body
    assert body["code"] == "series_unavailable"
    assert body["occurrences"] == [
        {"index": 2, "start": third.astimezone(dt.UTC).isoformat(), "status": "taken"},
    ]
    assert await db.fetchval("SELECT count(*) FROM series") == 0
    assert await db.fetchval("SELECT count(*) FROM bookings WHERE series_id IS NOT NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM clients WHERE email = $1", CLIENT["email"]) == 0
    # Without all_or_nothing the free ones are booked.
    status, made = await book_series(api, therapist, series_body(st, FIRST))
    assert status == 201, made
    assert made["booked"] == 5
    assert [o["status"] for o in made["occurrences"]] == ["confirmed"] * 2 + ["taken"] + ["confirmed"] * 3


async def test_bad_series_requests_get_stable_codes_and_write_nothing(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await series_therapist(api, series_frequencies=["weekly"], series_max_sessions=8)
    single, plain = await series_therapist(api, series_frequencies=[])
    cases = [
        (therapist, series_body(st, FIRST, count=9), 422, "series_too_long"),
        (therapist, series_body(st, FIRST, frequency="biweekly"), 422, "frequency_not_offered"),
        (single, series_body(plain, FIRST), 422, "frequency_not_offered"),
        (therapist, series_body(st, FIRST + dt.timedelta(minutes=20)), 422, "slot_not_offered"),
        (therapist, series_body(st, dt.datetime(2020, 3, 3, 10, tzinfo=NEW_YORK)), 422, "slot_not_offered"),
        (therapist, series_body(st, FIRST, client_timezone="Mars/Olympus"), 422, "unknown_timezone"),
        (therapist, series_body(st, FIRST, frequency="daily"), 422, "invalid_input"),
        (therapist, series_body(st, FIRST, count=0), 422, "invalid_input"),
    ]
    for who, body, expected, code in cases:
        for call in (preview(api, who, body), book_series(api, who, body)):
            status, answer = await call
            assert (status, answer["code"]) == (expected, code), (body, answer)
    assert await db.fetchval("SELECT count(*) FROM series") == 0
    assert await db.fetchval("SELECT count(*) FROM bookings") == 0


async def test_the_series_key_opens_its_sessions_and_nothing_else(api: Api) -> None:
    therapist, st = await series_therapist(api)
    status, made = await book_series(api, therapist, series_body(st, FIRST))
    assert status == 201, made
    key = made["series_key"]
    assert key.startswith("trw_")
    assert made["manage_url"].endswith(f"#k={key}") and "/manage/" in made["manage_url"]
    ids = [o["booking_id"] for o in made["occurrences"]]
    for booking_id in ids:
        status, booking = await api.call("GET", f"/api/v1/bookings/{booking_id}", token=key)
        assert status == 200, booking
        assert booking["series_id"] == made["id"]
    status, shown = await api.call("GET", f"/api/v1/series/{made['id']}", token=key)
    assert status == 200, shown
    assert [o["booking_id"] for o in shown["occurrences"]] == ids
    assert {o["status"] for o in shown["occurrences"]} == {"confirmed"}
    # Another booking of the same therapist, even of the same client email, stays closed to it ...
    status, other = await api.book(therapist, st, (FIRST + dt.timedelta(days=1)).isoformat())
    assert status == 201
    status, _ = await api.call("GET", f"/api/v1/bookings/{other['id']}", token=key)
    assert status == 404
    # ... and that booking's key opens neither the series nor its sessions.
    status, _ = await api.call("GET", f"/api/v1/series/{made['id']}", token=other["booking_key"])
    assert status == 404
    status, _ = await api.call("GET", f"/api/v1/bookings/{ids[0]}", token=other["booking_key"])
    assert status == 404
    # The therapist sees it; another therapist does not.
    status, _ = await api.call("GET", f"/api/v1/series/{made['id']}", token=therapist["api_token"])
    assert status == 200
    stranger = await api.therapist()
    status, _ = await api.call("GET", f"/api/v1/series/{made['id']}", token=stranger["api_token"])
    assert status == 404
    status, _ = await api.call("GET", f"/api/v1/series/{made['id']}", token="trw_" + "x" * 32)
    assert status == 401


async def test_cancel_one_following_and_all(api: Api) -> None:
    therapist, st = await series_therapist(api)
    status, made = await book_series(api, therapist, series_body(st, FIRST))
    assert status == 201, made
    key, path = made["series_key"], f"/api/v1/series/{made['id']}/cancel"
    ids = [o["booking_id"] for o in made["occurrences"]]
    status, shown = await api.call("POST", path, token=key, json={"scope": "one", "booking": ids[1]})
    assert status == 200, shown
    assert [o["status"] for o in shown["occurrences"]] == ["confirmed", "cancelled"] + ["confirmed"] * 4
    status, shown = await api.call("POST", path, token=key, json={"scope": "following", "booking": ids[3]})
    assert status == 200, shown
    assert [o["status"] for o in shown["occurrences"]] == ["confirmed", "cancelled", "confirmed"] + ["cancelled"] * 3
    # A cancelled session's time is free again for anyone.
    status, _ = await api.book(therapist, st, made["occurrences"][4]["start"])
    assert status == 201
    status, shown = await api.call("POST", path, token=therapist["api_token"], json={"scope": "all"})
    assert status == 200, shown
    assert {o["status"] for o in shown["occurrences"]} == {"cancelled"}
    status, problem = await api.call("POST", path, token=key, json={"scope": "one"})
    assert (status, problem["code"]) == (422, "booking_required")
    status, problem = await api.call("POST", path, token=key, json={"scope": "one", "booking": str(uuid.uuid4())})
    assert (status, problem["code"]) == (422, "not_in_series")


async def test_one_session_is_rescheduled_with_the_series_key(api: Api) -> None:
    therapist, st = await series_therapist(api)
    status, made = await book_series(api, therapist, series_body(st, FIRST))
    assert status == 201, made
    moved = made["occurrences"][2]
    new_start = dt.datetime.fromisoformat(moved["start"]) + dt.timedelta(days=1)
    status, booking = await api.call(
        "POST",
        f"/api/v1/bookings/{moved['booking_id']}/reschedule",
        token=made["series_key"],
        json={"start": new_start.isoformat()},
    )
    assert status == 200, booking
    status, shown = await api.call("GET", f"/api/v1/series/{made['id']}", token=made["series_key"])
    assert status == 200
    assert dt.datetime.fromisoformat(shown["occurrences"][2]["start"]) == new_start
    assert shown["occurrences"][2]["status"] == "confirmed"


async def test_the_therapist_books_a_series_for_a_client_past_notice_and_horizon_but_never_double(
    api: Api, db: asyncpg.Connection
) -> None:
    therapist, st = await series_therapist(api, min_notice_minutes=7 * 24 * 60, horizon_days=14)
    status, _ = await api.book(therapist, st, FIRST.isoformat())
    assert status == 422  # beyond the 14-day horizon for the public
    soon = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(days=10)
    status, single = await api.book(therapist, st, soon.isoformat())
    assert status == 201, single
    client_id = await db.fetchval("SELECT client_id FROM bookings WHERE id = $1", uuid.UUID(single["id"]))
    path = f"/api/v1/therapists/{therapist['slug']}/clients/{client_id}/series"
    tomorrow = soon - dt.timedelta(days=9)  # inside the notice, which the therapist may ignore
    body = {"session_type": st["id"], "start": tomorrow.isoformat(), "frequency": "weekly", "count": 20}
    status, made = await api.call("POST", path, token=therapist["api_token"], json=body)
    assert status == 201, made
    # The client's own booking on day 10 does not collide (day 1 + 7 = day 8, + 14 = day 15), all 20 booked.
    assert made["booked"] == 20
    assert await db.fetchval("SELECT count(*) FROM bookings WHERE client_id = $1", client_id) == 21
    # Double booking never: the same series again finds every session taken.
    status, again = await api.call("POST", path, token=therapist["api_token"], json={**body, "all_or_nothing": True})
    assert (status, again["code"]) == (409, "series_unavailable")
    assert len(again["occurrences"]) == 20
    # The public cannot use this path, nor another therapist.
    status, _ = await api.call("POST", path, json=body)
    assert status == 401
    stranger = await api.therapist()
    status, _ = await api.call("POST", path, token=stranger["api_token"], json=body)
    assert status == 403


async def test_idempotency_key_replays_the_series_and_books_it_once(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await series_therapist(api)
    headers = {"Idempotency-Key": f"series-{uuid.uuid4()}"}
    results = await asyncio.gather(*(book_series(api, therapist, series_body(st, FIRST), headers) for _ in range(4)))
    created = [body for status, body in results if status == 201]
    assert created and all(body == created[0] for body in created), results
    assert {status for status, _ in results} <= {201, 409}
    assert await db.fetchval("SELECT count(*) FROM series") == 1
    assert await db.fetchval("SELECT count(*) FROM bookings") == 6
    status, again = await book_series(api, therapist, series_body(st, FIRST), headers)
    assert status == 201 and again == created[0]
    status, reused = await book_series(api, therapist, series_body(st, FIRST, count=5), headers)
    assert (status, reused["code"]) == (422, "idempotency_key_reused")


async def test_an_all_or_nothing_refusal_is_replayed_for_its_key(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await series_therapist(api)
    status, _ = await api.book(therapist, st, FIRST.isoformat())
    assert status == 201
    headers = {"Idempotency-Key": "refused-series"}
    body = series_body(st, FIRST, all_or_nothing=True)
    first = await book_series(api, therapist, body, headers)
    second = await book_series(api, therapist, body, headers)
    assert first[0] == second[0] == 409 and first[1] == second[1]
    assert await db.fetchval("SELECT count(*) FROM series") == 0


async def test_two_series_racing_for_one_shared_session_get_it_once(api: Api, db: asyncpg.Connection) -> None:
    """50 rounds: a weekly and a fortnightly series share every other session; each is booked once,
    and an all-or-nothing loser leaves no row behind."""
    therapist, st = await series_therapist(api)
    for round_ in range(50):
        start = FIRST + dt.timedelta(days=round_ % 7, hours=round_ // 7)
        weekly = series_body(st, start, count=2)
        fortnightly = series_body(st, start + dt.timedelta(weeks=1), count=2, frequency="biweekly")
        strict = round_ % 2 == 0
        (s1, b1), (s2, b2) = await asyncio.gather(
            book_series(api, therapist, {**weekly, "all_or_nothing": strict}),
            book_series(api, therapist, {**fortnightly, "all_or_nothing": strict}),
        )
        shared = (start + dt.timedelta(weeks=1)).astimezone(dt.UTC)
        held = await db.fetchval(
            "SELECT count(*) FROM bookings WHERE therapist_id = $1 AND starts_at = $2 AND status = 'confirmed'",
            uuid.UUID(therapist["id"]),
            shared,
        )
        assert held == 1, (round_, b1, b2)
        if strict:
            assert sorted([s1, s2]) == [201, 409], (round_, b1, b2)
            loser = b1 if s1 == 409 else b2
            assert loser["code"] == "series_unavailable"
        else:
            assert (s1, s2) == (201, 201), (round_, b1, b2)
            assert b1["booked"] + b2["booked"] == 3
    series_rows = await db.fetchval("SELECT count(*) FROM series")
    assert series_rows == 25 + 50  # every strict round keeps one series, every partial round two
    orphans = await db.fetchval(
        "SELECT count(*) FROM series s WHERE NOT EXISTS (SELECT 1 FROM bookings b WHERE b.series_id = s.id)"
    )
    assert orphans == 0


async def test_the_series_ics_reads_to_the_sessions_booked_in_icalendar_and_ical_js(api: Api) -> None:
    therapist, st = await series_therapist(api)
    status, made = await book_series(api, therapist, series_body(st, FIRST))
    assert status == 201, made
    key, ids = made["series_key"], [o["booking_id"] for o in made["occurrences"]]
    status, _ = await api.call(
        "POST", f"/api/v1/series/{made['id']}/cancel", token=key, json={"scope": "one", "booking": ids[1]}
    )
    assert status == 200
    moved_to = dt.datetime.fromisoformat(made["occurrences"][4]["start"]) + dt.timedelta(days=1, hours=2)
    status, _ = await api.call(
        "POST", f"/api/v1/bookings/{ids[4]}/reschedule", token=key, json={"start": moved_to.isoformat()}
    )
    assert status == 200
    async with api.session.get(
        f"{api.base}/api/v1/series/{made['id']}/ics", headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        assert resp.status == 200 and resp.content_type == "text/calendar"
        body = await resp.read()
    status, shown = await api.call("GET", f"/api/v1/series/{made['id']}", token=key)
    held = sorted(
        dt.datetime.fromisoformat(o["start"]).astimezone(dt.UTC)
        for o in shown["occurrences"]
        if o["status"] == "confirmed"
    )
    assert len(held) == 5 and moved_to.astimezone(dt.UTC) in held
    assert expanded_by_icalendar(body) == held
    assert expanded_by_ical_js(body) == held
    assert key.encode() not in body and b"#k=" not in body
