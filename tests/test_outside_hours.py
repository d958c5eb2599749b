"""Booked sessions that changed hours or a day off leave outside availability: listed, never cancelled."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from broker.clock import Clock
from tests.support import ALL_WEEK, Api
from tests.test_accounts import PASSWORD, Browserish, therapist_with_password

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
async def browser_http(base_url: str) -> AsyncIterator[Browserish]:
    client = Browserish(base_url)
    yield client
    await client.close()


def berlin(day: dt.date, hour: int, minute: int = 0) -> str:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN).isoformat()


def a_weekday_ahead(clock: Clock, weekday: int, days: int = 3) -> dt.date:
    """The first `weekday` (0 = Monday) at least `days` ahead in Berlin."""
    day = clock.now().astimezone(BERLIN).date() + dt.timedelta(days=days)
    return day + dt.timedelta(days=(weekday - day.weekday()) % 7)


async def put_hours(
    api: Api, therapist: dict[str, Any], weekly: list[dict[str, str]], overrides: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    status, body = await api.call(
        "PUT",
        f"/api/v1/therapists/{therapist['slug']}/availability",
        token=therapist["api_token"],
        json={"timezone": "Europe/Berlin", "weekly": weekly, "overrides": overrides or []},
    )
    assert status == 200, body
    return dict(body)


async def outside_ids(api: Api, therapist: dict[str, Any]) -> list[str]:
    status, body = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/bookings/outside-hours", token=therapist["api_token"]
    )
    assert status == 200, body
    return [b["id"] for b in body["bookings"]]


async def booked(api: Api, therapist: dict[str, Any], session_type: dict[str, Any], start: str, name: str) -> str:
    status, body = await api.book(therapist, session_type, start, name=name)
    assert status == 201, body
    return str(body["id"])


async def test_a_day_off_lists_the_session_it_leaves_outside_and_keeps_it_booked(api: Api, clock: Clock) -> None:
    therapist, session_type = await api.ready_therapist(horizon_days=60)
    day = a_weekday_ahead(clock, 2)
    kept = await booked(api, therapist, session_type, berlin(day, 10), "Ada Stays")
    other = await booked(api, therapist, session_type, berlin(day + dt.timedelta(days=1), 10), "Bo Elsewhere")
    assert await outside_ids(api, therapist) == []

    saved = await put_hours(api, therapist, ALL_WEEK, [{"date": day.isoformat(), "intervals": []}])
    assert [b["id"] for b in saved["outside_hours"]] == [kept]
    assert saved["outside_hours"][0]["client"]["name"] == "Ada Stays"
    assert saved["overrides"] == [{"date": day.isoformat(), "intervals": []}]  # the answer is still the hours
    assert await outside_ids(api, therapist) == [kept]
    status, booking = await api.call("GET", f"/api/v1/bookings/{kept}", token=therapist["api_token"])
    assert status == 200 and booking["status"] == "confirmed", "a day off never cancels a session"
    assert other not in await outside_ids(api, therapist)

    saved = await put_hours(api, therapist, ALL_WEEK)  # the day off withdrawn
    assert saved["outside_hours"] == []
    assert await outside_ids(api, therapist) == []


async def test_shorter_hours_list_the_sessions_they_no_longer_hold(api: Api, clock: Clock) -> None:
    therapist, session_type = await api.ready_therapist(horizon_days=60)
    day = a_weekday_ahead(clock, 3)
    morning = await booked(api, therapist, session_type, berlin(day, 9), "Morning Client")
    noon = await booked(api, therapist, session_type, berlin(day, 12), "Noon Client")
    evening = await booked(api, therapist, session_type, berlin(day, 18), "Evening Client")
    # 09:30-17:00: 09:00 starts too early, 12:00 stays inside (though off the new 09:30 grid),
    # and 18:00 is after hours.
    weekly = [{"day": d["day"], "start": "09:30", "end": "17:00"} for d in ALL_WEEK]
    saved = await put_hours(api, therapist, weekly)
    assert [b["id"] for b in saved["outside_hours"]] == [morning, evening]
    assert await outside_ids(api, therapist) == [morning, evening]
    assert noon not in await outside_ids(api, therapist)
    # A session that ends exactly when the hours end is inside them.
    weekly = [{"day": d["day"], "start": "09:00", "end": "18:50"} for d in ALL_WEEK]
    assert (await put_hours(api, therapist, weekly))["outside_hours"] == []


async def test_cancelled_and_past_sessions_are_not_listed(api: Api, clock: Clock) -> None:
    therapist, session_type = await api.ready_therapist(horizon_days=60)
    day = a_weekday_ahead(clock, 4)
    cancelled = await booked(api, therapist, session_type, berlin(day, 10), "Gone Client")
    later = await booked(api, therapist, session_type, berlin(day, 14), "Later Client")
    status, body = await api.call("POST", f"/api/v1/bookings/{cancelled}/cancel", token=therapist["api_token"], json={})
    assert status == 200, body
    await put_hours(api, therapist, ALL_WEEK, [{"date": day.isoformat(), "intervals": []}])
    assert await outside_ids(api, therapist) == [later]
    # Once the session has started it is no longer upcoming: nothing left to move.
    start = dt.datetime.fromisoformat(berlin(day, 14))
    clock.advance(start - clock.now() + dt.timedelta(minutes=1))
    assert await outside_ids(api, therapist) == []


async def test_a_session_across_midnight_is_inside_until_the_next_day_is_taken_off(api: Api, clock: Clock) -> None:
    therapist = await api.therapist()
    monday = a_weekday_ahead(clock, 0)
    tuesday = monday + dt.timedelta(days=1)
    weekly = [{"day": "mon", "start": "20:00", "end": "24:00"}, {"day": "tue", "start": "00:00", "end": "08:00"}]
    await put_hours(api, therapist, weekly)
    session_type = await api.session_type(
        therapist, duration_minutes=50, slot_interval_minutes=30, buffer_after_minutes=0, horizon_days=60
    )
    late = berlin(monday, 23, 30)
    offered = await api.slots(therapist, session_type, monday, monday)
    assert dt.datetime.fromisoformat(late) in [dt.datetime.fromisoformat(s["start"]) for s in offered]
    night = await booked(api, therapist, session_type, late, "Night Owl")
    assert await outside_ids(api, therapist) == []

    saved = await put_hours(api, therapist, weekly, [{"date": tuesday.isoformat(), "intervals": []}])
    assert [b["id"] for b in saved["outside_hours"]] == [night]
    slots = await api.slots(therapist, session_type, monday, monday)
    assert berlin(monday, 22, 30) in [
        dt.datetime.fromisoformat(s["start"]).astimezone(BERLIN).isoformat() for s in slots
    ]
    assert late not in [dt.datetime.fromisoformat(s["start"]).astimezone(BERLIN).isoformat() for s in slots]
    status, body = await api.call(
        "POST", f"/api/v1/bookings/{night}/reschedule", token=therapist["api_token"], json={"start": late}
    )
    assert status == 422 and body["code"] == "slot_not_offered", body


async def test_listing_is_audited_per_session_and_only_for_the_listed(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, session_type = await api.ready_therapist(horizon_days=60)
    day = a_weekday_ahead(clock, 2)
    outside = await booked(api, therapist, session_type, berlin(day, 10), "Listed Client")
    inside = await booked(api, therapist, session_type, berlin(day + dt.timedelta(days=1), 10), "Unlisted Client")
    await put_hours(api, therapist, ALL_WEEK, [{"date": day.isoformat(), "intervals": []}])
    await outside_ids(api, therapist)
    listed = await db.fetch(
        "SELECT booking_id, actor_kind FROM audit_events WHERE action = 'booking.listed' AND therapist_id = $1",
        uuid.UUID(therapist["id"]),
    )
    assert {r["booking_id"] for r in listed} == {uuid.UUID(outside)}
    assert len(listed) == 2  # the PUT answer and the GET each read it once
    assert uuid.UUID(inside) not in {r["booking_id"] for r in listed}


async def test_another_therapists_token_cannot_list_them(api: Api, clock: Clock) -> None:
    therapist, _ = await api.ready_therapist()
    stranger = await api.therapist()
    status, body = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/bookings/outside-hours", token=stranger["api_token"]
    )
    assert status == 403, body


async def test_dashboard_shows_the_session_a_saved_day_off_leaves_outside(
    api: Api, browser_http: Browserish, clock: Clock
) -> None:
    therapist = await therapist_with_password(api)
    await api.availability(therapist)
    session_type = await api.session_type(therapist, horizon_days=60)
    day = a_weekday_ahead(clock, 1)
    await booked(api, therapist, session_type, berlin(day, 11), "Hal Outside")
    await browser_http.login(therapist["email"], PASSWORD)

    async with browser_http.session.get(browser_http.base + "/dashboard") as resp:
        page = await resp.text()
    assert re.search(r'<section class="card" id="outside-hours"[^>]* hidden>', page), "empty: the section is hidden"

    await put_hours(api, therapist, ALL_WEEK, [{"date": day.isoformat(), "intervals": []}])
    async with browser_http.session.get(browser_http.base + "/dashboard") as resp:
        assert resp.status == 200
        page = await resp.text()
    section = re.search(r'<section class="card" id="outside-hours"([^>]*)>(.*?)</section>', page, re.S)
    assert section, "the dashboard has a section for sessions outside the hours"
    assert "hidden" not in section.group(1)
    assert "Sessions outside your hours" in section.group(2)
    assert "Hal Outside" in section.group(2)
    assert "11:00–11:50" in section.group(2)
    assert f"{day:%a} {day.day} {day:%b}" in section.group(2)
