"""Subscription feeds and the client's .ics, through the running service, read by icalendar and ical.js."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import icalendar
import pytest

from broker.clock import Clock
from tests.support import Api

ROOT = Path(__file__).resolve().parent.parent
PARSER = ROOT / "tests" / "js" / "parse_ics.mjs"
PHONE = "+49 30 1234567"
EMAIL = "ada.client@example.org"
CLIENT = "Ada Lovelace"


def ical_js(body: bytes) -> dict[str, Any]:
    """Events as ical.js (the parser behind Thunderbird's calendar) reads them, via node."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the ical.js cross-check needs it")
    if not (ROOT / "node_modules" / "ical.js").is_dir():
        pytest.skip("node_modules/ical.js is missing: run `npm install` in the repository root")
    done = subprocess.run(["node", str(PARSER)], input=body, capture_output=True, check=True, timeout=60)
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def unfolded(body: bytes) -> str:
    """The text with RFC 5545 3.1 line folding undone, so a folded secret cannot hide from a search."""
    return body.decode().replace("\r\n ", "").replace("\r\n\t", "")


def events_of(body: bytes) -> dict[str, icalendar.Event]:
    cal = icalendar.Calendar.from_ical(body)
    return {str(e["UID"]): e for e in cal.walk("VEVENT")}


async def book(api: Api, therapist: dict[str, Any], st: dict[str, Any], start: str) -> dict[str, Any]:
    status, body = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={
            "session_type": st["id"],
            "start": start,
            "client": {"name": CLIENT, "email": EMAIL, "phone": PHONE},
        },
    )
    assert status == 201, body
    return dict(body)


async def new_feed(api: Api, therapist: dict[str, Any], privacy: str) -> dict[str, Any]:
    status, body = await api.call(
        "POST", f"/api/v1/therapists/{therapist['slug']}/feeds", token=therapist["api_token"], json={"privacy": privacy}
    )
    assert status == 201, body
    return dict(body)


async def get_feed(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, Any]:
    async with http.get(url, headers=headers or {}) as resp:
        return resp.status, await resp.read(), resp.headers


async def setup_bookings(api: Api, count: int = 3) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    therapist, st = await api.ready_therapist(buffer_after_minutes=0)
    day = dt.date.today() + dt.timedelta(days=2)
    slots = await api.slots(therapist, st, day, day)
    made = [await book(api, therapist, st, slots[i * 2]["start"]) for i in range(count)]
    return therapist, st, made


def uid_of(booking: dict[str, Any], base_url: str) -> str:
    host = base_url.split("://", 1)[1].rsplit(":", 1)[0]
    return f"{booking['id']}@{host}"


async def test_feed_lists_every_confirmed_booking_once_with_right_times(
    api: Api, http: aiohttp.ClientSession, base_url: str
) -> None:
    therapist, _, made = await setup_bookings(api)
    feed = await new_feed(api, therapist, "initials")
    assert feed["url"].startswith(base_url + "/calendar/trf_") and feed["url"].endswith(".ics")
    assert feed["webcal_url"] == "webcal://" + feed["url"].split("://", 1)[1]
    status, body, headers = await get_feed(http, feed["url"])
    assert status == 200
    assert headers["Content-Type"].startswith("text/calendar")
    assert "private" in headers["Cache-Control"]

    by_uid = events_of(body)
    assert sorted(by_uid) == sorted(uid_of(b, base_url) for b in made)
    for booking in made:
        event = by_uid[uid_of(booking, base_url)]
        assert event.decoded("DTSTART") == dt.datetime.fromisoformat(booking["start"])
        assert event.decoded("DTEND") == dt.datetime.fromisoformat(booking["end"])
        assert str(event["STATUS"]) == "CONFIRMED"
        assert "DTSTAMP" in event and "LAST-MODIFIED" in event and int(event["SEQUENCE"]) == 0
    cal = icalendar.Calendar.from_ical(body)
    assert str(cal["VERSION"]) == "2.0" and str(cal["PRODID"])

    js = ical_js(body)
    assert js["calendar"]["refresh-interval"] and js["calendar"]["x-published-ttl"]
    assert js["calendar"]["x-wr-calname"] == "Teleroom – Dr Ada Example"
    js_events = {e["uid"]: e for e in js["events"]}
    assert len(js["events"]) == len(made) == len(js_events)
    for booking in made:
        event = js_events[uid_of(booking, base_url)]
        assert dt.datetime.fromisoformat(event["start"]) == dt.datetime.fromisoformat(booking["start"])
        assert dt.datetime.fromisoformat(event["end"]) == dt.datetime.fromisoformat(booking["end"])
        assert event["summary"] == "Individual session – A.L."
        assert event["description"].endswith(f"{base_url}/dashboard")


async def test_uids_stay_and_sequence_grows_after_reschedule(
    api: Api, http: aiohttp.ClientSession, base_url: str
) -> None:
    therapist, st, made = await setup_bookings(api, count=2)
    feed = await new_feed(api, therapist, "busy")
    _, first, _ = await get_feed(http, feed["url"])
    _, again, _ = await get_feed(http, feed["url"])
    assert first == again
    moved = made[0]
    day = dt.date.today() + dt.timedelta(days=3)
    target = (await api.slots(therapist, st, day, day))[0]["start"]
    status, body = await api.call(
        "POST", f"/api/v1/bookings/{moved['id']}/reschedule", token=moved["booking_key"], json={"start": target}
    )
    assert status == 200, body
    _, after, _ = await get_feed(http, feed["url"])
    before_events, after_events = events_of(first), events_of(after)
    assert sorted(before_events) == sorted(after_events)
    uid = uid_of(moved, base_url)
    assert int(after_events[uid]["SEQUENCE"]) > int(before_events[uid]["SEQUENCE"])
    assert after_events[uid].decoded("DTSTART") == dt.datetime.fromisoformat(target)
    js = {e["uid"]: e for e in ical_js(after)["events"]}
    assert js[uid]["sequence"] == 1
    assert dt.datetime.fromisoformat(js[uid]["start"]) == dt.datetime.fromisoformat(target)


async def test_cancelled_booking_leaves_the_feed(api: Api, http: aiohttp.ClientSession, base_url: str) -> None:
    therapist, _, made = await setup_bookings(api, count=2)
    feed = await new_feed(api, therapist, "full")
    gone = made[1]
    status, body = await api.call("POST", f"/api/v1/bookings/{gone['id']}/cancel", token=gone["booking_key"])
    assert status == 200, body
    _, feed_body, _ = await get_feed(http, feed["url"])
    assert sorted(events_of(feed_body)) == [uid_of(made[0], base_url)]
    assert [e["uid"] for e in ical_js(feed_body)["events"]] == [uid_of(made[0], base_url)]


async def test_no_tier_reveals_contact_details_keys_or_tokens(api: Api, http: aiohttp.ClientSession) -> None:
    therapist, _, made = await setup_bookings(api, count=2)
    expected = {"busy": "Busy", "initials": "Individual session – A.L.", "full": f"Individual session – {CLIENT}"}
    for privacy, summary in expected.items():
        feed = await new_feed(api, therapist, privacy)
        _, body, _ = await get_feed(http, feed["url"])
        for text in (body.decode(), unfolded(body)):
            for secret in (EMAIL, PHONE, "ada.client", "trk_", "trf_", "tra_", "eyJ", "#k=", "/join/"):
                assert secret not in text, (privacy, secret)
            for booking in made:
                assert booking["booking_key"] not in text
        if privacy != "full":
            assert "Lovelace" not in unfolded(body)
        assert {str(e["SUMMARY"]) for e in events_of(body).values()} == {summary}
        assert {e["summary"] for e in ical_js(body)["events"]} == {summary}


async def test_unchanged_feed_answers_304_and_a_change_answers_200(api: Api, http: aiohttp.ClientSession) -> None:
    therapist, st, _ = await setup_bookings(api, count=1)
    feed = await new_feed(api, therapist, "busy")
    status, body, headers = await get_feed(http, feed["url"])
    etag = headers["ETag"]
    assert status == 200 and etag.startswith('"')
    status, empty, again = await get_feed(http, feed["url"], {"If-None-Match": etag})
    assert status == 304 and empty == b"" and again["ETag"] == etag
    day = dt.date.today() + dt.timedelta(days=4)
    await book(api, therapist, st, (await api.slots(therapist, st, day, day))[0]["start"])
    status, changed, new_headers = await get_feed(http, feed["url"], {"If-None-Match": etag})
    assert status == 200 and new_headers["ETag"] != etag
    assert len(events_of(changed)) == len(events_of(body)) + 1


async def test_revoked_feed_and_unknown_token_are_404(api: Api, http: aiohttp.ClientSession, base_url: str) -> None:
    therapist, _, _ = await setup_bookings(api, count=1)
    feed = await new_feed(api, therapist, "busy")
    assert (await get_feed(http, feed["url"]))[0] == 200
    status, body = await api.call(
        "DELETE", f"/api/v1/therapists/{therapist['slug']}/feeds/{feed['id']}", token=therapist["api_token"]
    )
    assert status == 204, body
    status, problem, _ = await get_feed(http, feed["url"])
    assert status == 404 and json.loads(problem)["code"] == "not_found"
    for token in ("trf_" + "A" * 32, "nonsense"):
        assert (await get_feed(http, f"{base_url}/calendar/{token}.ics"))[0] == 404
    status, _ = await api.call(
        "DELETE", f"/api/v1/therapists/{therapist['slug']}/feeds/{feed['id']}", token=therapist["api_token"]
    )
    assert status == 404


async def test_feed_list_shows_no_secret_and_only_the_owner_manages_feeds(api: Api) -> None:
    therapist, _, _ = await setup_bookings(api, count=1)
    other = await api.therapist()
    feed = await new_feed(api, therapist, "initials")
    path = f"/api/v1/therapists/{therapist['slug']}/feeds"
    status, listing = await api.call("GET", path, token=therapist["api_token"])
    assert status == 200
    assert [f["id"] for f in listing["feeds"]] == [feed["id"]]
    token = feed["url"].rsplit("/", 1)[1].removesuffix(".ics")
    assert token not in json.dumps(listing) and "url" not in listing["feeds"][0]
    assert (await api.call("GET", path, token=other["api_token"]))[0] == 403
    assert (await api.call("POST", path, token=other["api_token"], json={"privacy": "busy"}))[0] == 403
    assert (await api.call("GET", path))[0] == 401
    status, problem = await api.call("POST", path, token=therapist["api_token"], json={"privacy": "everything"})
    assert status == 422, problem


async def test_feed_keeps_thirty_days_of_past_bookings(api: Api, http: aiohttp.ClientSession, clock: Clock) -> None:
    therapist, _, _ = await setup_bookings(api, count=1)
    feed = await new_feed(api, therapist, "busy")
    clock.advance(dt.timedelta(days=20))
    assert len(events_of((await get_feed(http, feed["url"]))[1])) == 1
    clock.advance(dt.timedelta(days=15))
    assert events_of((await get_feed(http, feed["url"]))[1]) == {}


async def test_client_ics_has_time_therapist_and_links_without_the_key(api: Api, base_url: str) -> None:
    therapist, _, made = await setup_bookings(api, count=1)
    booking = made[0]
    path = f"/api/v1/bookings/{booking['id']}/ics"
    assert (await api.call("GET", path))[0] == 401
    status, text = await api.call("GET", path, token=booking["booking_key"])
    assert status == 200
    body = text.encode()
    flat = unfolded(body)
    assert booking["booking_key"] not in flat and "#k=" not in flat and EMAIL not in flat
    (event,) = events_of(body).values()
    assert event.decoded("DTSTART") == dt.datetime.fromisoformat(booking["start"])
    assert str(event["SUMMARY"]) == "Individual session with Dr Ada Example"
    description = str(event["DESCRIPTION"])
    assert f"{base_url}/join/{booking['id']}" in description
    assert f"{base_url}/manage/{booking['id']}" in description
    (js_event,) = ical_js(body)["events"]
    assert dt.datetime.fromisoformat(js_event["end"]) == dt.datetime.fromisoformat(booking["end"])
    assert (await api.call("GET", path, token=therapist["api_token"]))[0] == 200


async def test_a_live_room_token_appears_in_no_tier(api: Api, http: aiohttp.ClientSession, clock: Clock) -> None:
    therapist, _, made = await setup_bookings(api, count=1)
    booking = made[0]
    clock.advance(dt.datetime.fromisoformat(booking["start"]) - dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    tokens = []
    await api.ready_to_join(booking["id"], booking["booking_key"])
    for bearer in (booking["booking_key"], therapist["api_token"]):
        status, body = await api.call("POST", f"/api/v1/bookings/{booking['id']}/room-token", token=bearer)
        assert status == 200, body
        tokens.append(body["token"])
    for privacy in ("busy", "initials", "full"):
        feed = await new_feed(api, therapist, privacy)
        _, feed_body, _ = await get_feed(http, feed["url"])
        assert len(events_of(feed_body)) == 1
        for text in (feed_body.decode(), unfolded(feed_body)):
            for token in tokens:
                assert token not in text and token.split(".")[2] not in text
