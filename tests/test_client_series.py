"""A client's standing series as the therapist sees them: the client list's `series` and `standing_series`,
and each upcoming session's place in its series on the client record (real HTTP, real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from broker.clock import Clock
from tests.support import Api
from tests.test_clients import client_list

BERLIN = ZoneInfo("Europe/Berlin")
# Monday 4 January 2027, 08:00 UTC; the first series starts on Tuesday at 10:00 in Berlin.
NOW = dt.datetime(2027, 1, 4, 8, 0, tzinfo=dt.UTC)
FIRST = dt.datetime(2027, 1, 5, 10, 0, tzinfo=BERLIN)
SERIES_TYPE = {"series_frequencies": ["weekly", "biweekly"], "series_max_sessions": 52, "horizon_days": 365}


async def setup_therapist(api: Api, clock: Clock) -> tuple[dict[str, Any], dict[str, Any]]:
    clock.advance(NOW - clock.now())
    therapist = await api.therapist(timezone="Europe/Berlin")
    await api.availability(therapist)
    return therapist, await api.session_type(therapist, **SERIES_TYPE)


async def new_client(api: Api, therapist: dict[str, Any], st: dict[str, Any], start: dt.datetime, email: str) -> str:
    """A client record made by a single booking; its id."""
    status, body = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={"session_type": st["id"], "start": start.isoformat(), "client": {"name": email, "email": email}},
    )
    assert status == 201, body
    return next(c["id"] for c in await client_list(api, therapist) if c["email"] == email)


async def row(api: Api, therapist: dict[str, Any], client_id: str) -> dict[str, Any]:
    return next(c for c in await client_list(api, therapist) if c["id"] == client_id)


async def book_for(
    api: Api, therapist: dict[str, Any], st: dict[str, Any], client_id: str, start: dt.datetime, **fields: Any
) -> dict[str, Any]:
    status, body = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/clients/{client_id}/series",
        token=therapist["api_token"],
        json={"session_type": st["id"], "start": start.isoformat(), "frequency": "weekly", "count": 4, **fields},
    )
    assert status == 201, body
    return dict(body)


async def cancel(api: Api, therapist: dict[str, Any], series_id: str, body: dict[str, Any]) -> None:
    status, answer = await api.call(
        "POST", f"/api/v1/series/{series_id}/cancel", token=therapist["api_token"], json=body
    )
    assert status == 200, answer


async def test_client_list_counts_active_series_and_describes_the_soonest(api: Api, clock: Clock) -> None:
    therapist, st = await setup_therapist(api, clock)
    robin = await new_client(api, therapist, st, FIRST - dt.timedelta(hours=1), "robin@example.org")
    sam = await new_client(api, therapist, st, FIRST - dt.timedelta(hours=2), "sam@example.org")
    for c in await client_list(api, therapist):
        assert c["series"] == 0 and c["standing_series"] is None, c

    weekly = await book_for(api, therapist, st, robin, FIRST)
    assert weekly["booked"] == 4
    shown = await row(api, therapist, robin)
    assert shown["series"] == 1
    assert shown["standing_series"] == {
        "id": weekly["id"],
        "frequency": "weekly",
        "remaining": 4,
        "last_start": weekly["occurrences"][3]["start"],
    }
    # The single session booked before the series is still the next session.
    assert dt.datetime.fromisoformat(shown["next_session"]["start"]) == FIRST - dt.timedelta(hours=1)
    assert (await row(api, therapist, sam))["series"] == 0

    # A second series that starts later: two active, the list describes the one that comes first.
    later = await book_for(api, therapist, st, robin, FIRST + dt.timedelta(days=1), frequency="biweekly", count=6)
    shown = await row(api, therapist, robin)
    assert shown["series"] == 2
    assert shown["standing_series"]["id"] == weekly["id"]

    # This one and following from the second session: one left of the weekly series.
    second = weekly["occurrences"][1]["booking_id"]
    await cancel(api, therapist, weekly["id"], {"scope": "following", "booking": second})
    shown = await row(api, therapist, robin)
    assert shown["series"] == 2
    assert shown["standing_series"]["remaining"] == 1
    assert shown["standing_series"]["last_start"] == weekly["occurrences"][0]["start"]

    # Once the weekly series' last session has ended, the biweekly one is the standing series.
    clock.advance(FIRST + dt.timedelta(hours=1) - clock.now())
    shown = await row(api, therapist, robin)
    assert shown["series"] == 1
    assert shown["standing_series"] == {
        "id": later["id"],
        "frequency": "biweekly",
        "remaining": 6,
        "last_start": later["occurrences"][5]["start"],
    }

    # Cancelling all of it leaves no active series.
    await cancel(api, therapist, later["id"], {"scope": "all"})
    shown = await row(api, therapist, robin)
    assert shown["series"] == 0 and shown["standing_series"] is None


async def test_client_record_gives_each_session_its_series_and_place(api: Api, clock: Clock) -> None:
    therapist, st = await setup_therapist(api, clock)
    robin = await new_client(api, therapist, st, FIRST - dt.timedelta(hours=1), "robin@example.org")
    made = await book_for(api, therapist, st, robin, FIRST)
    status, record = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/clients/{robin}", token=therapist["api_token"]
    )
    assert status == 200, record
    places = [(s["series_id"], s["series_index"]) for s in record["upcoming"]]
    assert places == [(None, None)] + [(made["id"], i) for i in range(4)]


async def test_the_therapists_preview_waives_notice_and_horizon_as_booking_does(api: Api, clock: Clock) -> None:
    clock.advance(NOW - clock.now())
    therapist = await api.therapist(timezone="Europe/Berlin")
    await api.availability(therapist)
    st = await api.session_type(therapist, **{**SERIES_TYPE, "min_notice_minutes": 2 * 1440, "horizon_days": 14})
    client_id = await new_client(api, therapist, st, dt.datetime(2027, 1, 12, 9, 0, tzinfo=BERLIN), "w@example.org")
    soon = dt.datetime(2027, 1, 4, 14, 0, tzinfo=BERLIN)  # six hours ahead: inside the two days' notice
    body = {"session_type": st["id"], "start": soon.isoformat(), "frequency": "weekly", "count": 6}
    status, public = await api.call("POST", f"/api/v1/therapists/{therapist['slug']}/series/preview", json=body)
    assert (status, public["code"], public["reason"]) == (422, "slot_not_offered", "too_soon")
    path = f"/api/v1/therapists/{therapist['slug']}/clients/{client_id}/series/preview"
    status, shown = await api.call("POST", path, token=therapist["api_token"], json=body)
    assert status == 200, shown
    # Every week is free, the ones beyond the 14-day horizon included, as booking them would be.
    assert [o["status"] for o in shown["occurrences"]] == ["free"] * 6
    made = await book_for(api, therapist, st, client_id, soon, count=6)
    assert [o["status"] for o in made["occurrences"]] == ["confirmed"] * 6
    other = await api.therapist()
    status, _ = await api.call(
        "POST", path.replace(therapist["slug"], other["slug"]), token=other["api_token"], json=body
    )
    assert status == 404  # another therapist names a client that is not theirs
