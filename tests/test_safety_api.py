"""Safe to start (issue 11) through the running service: the consent gate on room tokens (on two nodes
too), consent versions, emergency contacts, the location confirmed at each join, the room's emergency
panel, and bad places refused with nothing stored."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from broker.app import create_app
from broker.settings import Settings
from tests.support import Api, free_port, next_grid_start

CONTACT = {"name": "Marguerite Vandersloot", "phone": "+1 212 555 0199", "usual_location": {"country": "US"}}


async def booking_now(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    """A therapist and a booking starting within five minutes (its join window open)."""
    therapist, st = await api.ready_therapist(min_notice_minutes=0, slot_interval_minutes=5, duration_minutes=30)
    start = next_grid_start(dt.datetime.now(dt.UTC), 5)
    status, booking = await api.book(therapist, st, start.isoformat(), name="Client Example")
    assert status == 201, booking
    return therapist, booking


async def token(api: Api, booking: dict[str, Any], bearer: str) -> tuple[int, Any]:
    return await api.call("POST", f"/api/v1/bookings/{booking['id']}/room-token", token=bearer)


async def steps(api: Api, booking: dict[str, Any]) -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v1/bookings/{booking['id']}/join-steps", token=booking["booking_key"])
    assert status == 200, body
    return dict(body)


async def consent(api: Api, booking: dict[str, Any], version: int, name: str = "Client Example") -> tuple[int, Any]:
    return await api.call(
        "POST",
        f"/api/v1/bookings/{booking['id']}/consent",
        token=booking["booking_key"],
        json={"version": version, "typed_name": name},
    )


async def contact(api: Api, booking: dict[str, Any], body: dict[str, Any] = CONTACT) -> tuple[int, Any]:
    return await api.call(
        "PUT", f"/api/v1/bookings/{booking['id']}/emergency-contact", token=booking["booking_key"], json=body
    )


async def locate(api: Api, booking: dict[str, Any], **place: Any) -> tuple[int, Any]:
    return await api.call(
        "POST", f"/api/v1/bookings/{booking['id']}/location", token=booking["booking_key"], json=place
    )


async def panel(api: Api, therapist: dict[str, Any], booking: dict[str, Any]) -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v1/bookings/{booking['id']}/emergency", token=therapist["api_token"])
    assert status == 200, body
    return dict(body)


async def add_licence(api: Api, therapist: dict[str, Any], **fields: Any) -> tuple[int, Any]:
    body = {"kind": "Psychologist", "number": "PSY-000123", **fields}
    return await api.call(
        "POST", f"/api/v1/therapists/{therapist['slug']}/licences", token=therapist["api_token"], json=body
    )


async def test_a_new_client_gets_no_room_token_until_consent_and_emergency_contact(api: Api) -> None:
    therapist, booking = await booking_now(api)
    status, refused = await token(api, booking, booking["booking_key"])
    assert status == 403 and refused["code"] == "consent_required"
    assert refused["missing"] == ["consent", "emergency_contact"]
    status, _ = await token(api, booking, therapist["api_token"])
    assert status == 200  # a therapist is never held back

    first = await steps(api, booking)
    assert first["missing"] == ["consent", "emergency_contact"]
    assert first["consent"]["version"] == 1 and not first["consent"]["accepted"]
    assert "Consent to therapy by video" in first["consent"]["text"]  # the shipped default
    assert first["emergency_contact"] is False

    status, accepted = await consent(api, booking, 1)
    assert status == 201 and accepted["version"] == 1
    status, refused = await token(api, booking, booking["booking_key"])
    assert status == 403 and refused["missing"] == ["emergency_contact"]

    status, _ = await contact(api, booking)
    assert status == 200
    after = await steps(api, booking)
    assert after["missing"] == [] and after["consent"]["accepted"] and after["emergency_contact"] is True
    assert "Vandersloot" not in str(after)  # the client is told that there is one, not who
    status, _ = await token(api, booking, booking["booking_key"])
    assert status == 200


async def test_a_changed_consent_text_asks_again_and_an_outdated_version_is_refused(api: Api) -> None:
    therapist, booking = await booking_now(api)
    await api.ready_to_join(booking["id"], booking["booking_key"])
    assert (await token(api, booking, booking["booking_key"]))[0] == 200

    path = f"/api/v1/therapists/{therapist['slug']}/consent-text"
    status, changed = await api.call("PUT", path, token=therapist["api_token"], json={"text": "New terms.\n\nRead me."})
    assert status == 200 and changed["version"] == 2
    status, same = await api.call("PUT", path, token=therapist["api_token"], json={"text": "New terms.\n\nRead me.\n"})
    assert status == 200 and same["version"] == 2  # the same words are no new version
    status, blank = await api.call("PUT", path, token=therapist["api_token"], json={"text": " \r\n "})
    assert status == 422 and blank["code"] == "consent_text_empty"
    status, listed = await api.call("GET", path, token=therapist["api_token"])
    assert status == 200 and [v["version"] for v in listed["versions"]] == [2, 1]
    assert listed["current"]["text"] == "New terms.\n\nRead me."

    status, refused = await token(api, booking, booking["booking_key"])
    assert status == 403 and refused["missing"] == ["consent"]
    assert (await steps(api, booking))["consent"]["text"] == "New terms.\n\nRead me."
    status, outdated = await consent(api, booking, 1)
    assert status == 409 and outdated["code"] == "consent_outdated" and outdated["current_version"] == 2
    assert (await consent(api, booking, 2))[0] == 201
    assert (await consent(api, booking, 2))[0] == 201  # again: the first acceptance is kept
    assert (await token(api, booking, booking["booking_key"]))[0] == 200


async def test_consent_is_kept_with_the_client_record_for_their_next_booking(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await api.ready_therapist(min_notice_minutes=0, slot_interval_minutes=5, duration_minutes=30)
    start = next_grid_start(dt.datetime.now(dt.UTC), 5)
    status, booking = await api.book(therapist, st, start.isoformat())
    assert status == 201, booking
    await api.ready_to_join(booking["id"], booking["booking_key"])
    start += dt.timedelta(minutes=60)
    status, second = await api.book(therapist, st, start.isoformat())  # same email: same client
    assert status == 201, second
    assert (await steps(api, second))["missing"] == []
    rows = await db.fetch("SELECT typed_name, version FROM client_consents")
    assert [(r["typed_name"], r["version"]) for r in rows] == [("Client Example", 1)]


@pytest.mark.parametrize(
    ("usual", "code"),
    [
        ({"country": "ZZ"}, "invalid_place"),
        ({"country": "US", "region": "CA-ON"}, "invalid_place"),
        ({"country": "US", "region": "US-ZZ"}, "invalid_place"),
        ({"country": "us"}, "invalid_input"),
        ({"country": "US", "unknown": 1}, "invalid_input"),
    ],
)
async def test_a_bad_place_is_refused_and_nothing_is_half_stored(
    api: Api, db: asyncpg.Connection, usual: dict[str, Any], code: str
) -> None:
    therapist, booking = await booking_now(api)
    status, problem = await contact(api, booking, {**CONTACT, "usual_location": usual})
    assert status == 422 and problem["code"] == code, problem
    status, problem = await locate(api, booking, **usual)
    assert status == 422 and problem["code"] == code, problem
    status, problem = await add_licence(api, therapist, jurisdiction=usual["country"] + "-ZZ")
    assert status == 422 and problem["code"] in {"invalid_place", "invalid_input"}, problem
    for table in ("emergency_contacts", "join_locations", "licences"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    assert (
        await db.fetchval("SELECT count(*) FROM audit_events WHERE action LIKE 'emergency%' OR action LIKE 'location%'")
        == 0
    )


async def test_the_emergency_panel_shows_today_s_place_contact_crisis_lines_and_the_licence_warning(
    api: Api, db: asyncpg.Connection
) -> None:
    therapist, booking = await booking_now(api)
    await api.ready_to_join(booking["id"], booking["booking_key"])
    first = await panel(api, therapist, booking)
    assert first["location"] == {
        "country": "DE",
        "country_name": "Germany",
        "region": None,
        "region_name": None,
        "note": None,
        "source": "usual",
        "confirmed_at": None,
    }
    assert first["licence"]["checked"] is False and first["licence_warning"] is False  # no licence recorded

    status, confirmed = await locate(api, booking, country="US", region="US-NY", note="Brooklyn")
    assert status == 201 and confirmed["region_name"] == "New York"
    shown = await panel(api, therapist, booking)
    assert shown["location"]["source"] == "today" and shown["location"]["region"] == "US-NY"
    assert shown["location"]["note"] == "Brooklyn"
    assert shown["emergency_contact"]["name"] == "Contact Example"
    assert [(c["kind"], c["phone"]) for c in shown["crisis_lines"]] == [("crisis", "988"), ("emergency", "911")]

    session_day = dt.datetime.fromisoformat(booking["start"]).astimezone(ZoneInfo(therapist["timezone"])).date()
    assert (await add_licence(api, therapist, jurisdiction="US-NJ"))[0] == 201
    expired = (session_day - dt.timedelta(days=1)).isoformat()
    assert (await add_licence(api, therapist, jurisdiction="US", expires_on=expired))[0] == 201
    shown = await panel(api, therapist, booking)
    assert shown["licence"]["checked"] and shown["licence"]["covered"] is False and shown["licence_warning"]
    assert [p["code"] for p in shown["licence"]["licensed_in"]] == ["US-NJ"]

    status, ny = await add_licence(api, therapist, jurisdiction="US-NY", expires_on=session_day.isoformat())
    assert status == 201 and ny["jurisdiction_name"] == "New York"
    shown = await panel(api, therapist, booking)
    assert shown["licence"]["covered"] is True and not shown["licence_warning"]

    actions = await db.fetch("SELECT action, booking_id, client_id FROM audit_events WHERE action = 'emergency.read'")
    assert len(actions) == 4 and all(str(a["booking_id"]) == booking["id"] and a["client_id"] for a in actions)


async def test_only_the_therapist_reads_emergency_details(api: Api) -> None:
    therapist, booking = await booking_now(api)
    await api.ready_to_join(booking["id"], booking["booking_key"])
    status, _ = await api.call("GET", f"/api/v1/bookings/{booking['id']}/emergency", token=booking["booking_key"])
    assert status == 403
    other = await api.therapist()
    status, _ = await api.call("GET", f"/api/v1/bookings/{booking['id']}/emergency", token=other["api_token"])
    assert status == 404
    status, _ = await api.call("GET", f"/api/v1/bookings/{booking['id']}/join-steps", token=therapist["api_token"])
    assert status == 403  # the join page's view is the client's


async def test_the_client_safety_record_lists_consents_contact_and_confirmed_places(
    api: Api, db: asyncpg.Connection
) -> None:
    therapist, booking = await booking_now(api)
    assert (await consent(api, booking, 1, name="Typed Signature Name"))[0] == 201
    assert (await contact(api, booking))[0] == 200
    assert (await locate(api, booking, country="GB", region="GB-SCT"))[0] == 201
    client_id = await db.fetchval("SELECT client_id FROM bookings WHERE id = $1", uuid.UUID(booking["id"]))
    path = f"/api/v1/therapists/{therapist['slug']}/clients/{client_id}/safety"
    status, record = await api.call("GET", path, token=therapist["api_token"])
    assert status == 200, record
    assert record["consent"]["consented"] and record["consent"]["current_version"] == 1
    assert [c["typed_name"] for c in record["consent"]["accepted"]] == ["Typed Signature Name"]
    assert record["emergency_contact"]["phone"] == "+1 212 555 0199"
    assert record["emergency_contact"]["usual_location"]["country_name"] == "United States"
    assert [(p["region"], p["booking_id"]) for p in record["locations"]] == [("GB-SCT", booking["id"])]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'safety.read' AND client_id = $1", client_id
        )
        == 1
    )
    other = await api.therapist()
    status, _ = await api.call(
        "GET", f"/api/v1/therapists/{other['slug']}/clients/{client_id}/safety", token=other["api_token"]
    )
    assert status == 404


async def test_licences_are_recorded_changed_and_removed(api: Api) -> None:
    therapist, _ = await api.ready_therapist()
    base = f"/api/v1/therapists/{therapist['slug']}/licences"
    status, added = await add_licence(api, therapist, jurisdiction="GB-ENG", expires_on="2030-01-31")
    assert status == 201 and added["jurisdiction"] == "GB-ENG" and added["valid_today"]
    renewed = {"jurisdiction": "GB-ENG", "kind": "HCPC", "number": "PYL0001", "expires_on": "2032-01-31"}
    status, changed = await api.call("PUT", f"{base}/{added['id']}", token=therapist["api_token"], json=renewed)
    assert status == 200 and changed["expires_on"] == "2032-01-31"
    status, listed = await api.call("GET", base, token=therapist["api_token"])
    assert status == 200 and listed["licence_check"] == "warn" and len(listed["licences"]) == 1
    status, _ = await api.call(
        "PUT",
        f"/api/v1/therapists/{therapist['slug']}/licence-check",
        token=therapist["api_token"],
        json={"licence_check": "refuse"},
    )
    assert status == 200
    assert (await api.call("GET", base, token=therapist["api_token"]))[1]["licence_check"] == "refuse"
    status, _ = await api.call("DELETE", f"{base}/{added['id']}", token=therapist["api_token"])
    assert status == 204
    status, _ = await api.call("DELETE", f"{base}/{added['id']}", token=therapist["api_token"])
    assert status == 404


async def test_the_public_coverage_check_names_no_licence(api: Api) -> None:
    therapist, _ = await api.ready_therapist()
    await add_licence(api, therapist, jurisdiction="DE", number="SECRET-NUMBER-42", expires_on="2031-06-30")
    base = f"/api/v1/therapists/{therapist['slug']}/licence-coverage"
    status, inside = await api.call("GET", f"{base}?country=DE&region=DE-BE&date=2031-06-30")
    assert status == 200 and inside["covered"] is True
    status, later = await api.call("GET", f"{base}?country=DE&date=2031-07-01")
    assert status == 200 and later["covered"] is False and later["licensed_in"] == []
    status, outside = await api.call("GET", f"{base}?country=FR&date=2031-01-01")
    assert (
        status == 200 and outside["covered"] is False and outside["licensed_in"] == [{"code": "DE", "name": "Germany"}]
    )
    assert "SECRET-NUMBER-42" not in str((inside, later, outside))
    status, bad = await api.call("GET", f"{base}?country=XX")
    assert status == 422 and bad["code"] == "invalid_place"


async def test_the_place_lists(api: Api) -> None:
    status, listed = await api.call("GET", "/api/v1/places")
    assert status == 200 and {"code": "GB", "name": "United Kingdom"} in listed["countries"]
    status, gb = await api.call("GET", "/api/v1/places/GB")
    assert status == 200 and [r["code"] for r in gb["subdivisions"]] == ["GB-ENG", "GB-NIR", "GB-SCT", "GB-WLS"]
    status, bad = await api.call("GET", "/api/v1/places/ZZ")
    assert status == 422 and bad["code"] == "invalid_place"


@pytest.fixture
async def second_node(settings: Settings) -> AsyncIterator[str]:
    other = dataclasses.replace(settings, port=free_port())
    srv = TestServer(create_app(other), host="127.0.0.1", port=other.port)
    await srv.start_server()
    yield f"http://127.0.0.1:{other.port}"
    await srv.close()


async def test_the_consent_gate_holds_across_nodes(api: Api, second_node: str, http: aiohttp.ClientSession) -> None:
    therapist, booking = await booking_now(api)
    other = Api(http, second_node, api.admin_token)
    for node in (api, other):
        status, refused = await token(node, booking, booking["booking_key"])
        assert status == 403 and refused["code"] == "consent_required"
    assert (await consent(other, booking, 1))[0] == 201  # given on the second node
    assert (await contact(other, booking))[0] == 200
    for node in (api, other):
        assert (await token(node, booking, booking["booking_key"]))[0] == 200
    # A new text on the first node asks again on the second.
    status, _ = await api.call(
        "PUT", f"/api/v1/therapists/{therapist['slug']}/consent-text", token=therapist["api_token"], json={"text": "v2"}
    )
    assert status == 200
    status, refused = await token(other, booking, booking["booking_key"])
    assert status == 403 and refused["missing"] == ["consent"]


async def book_at(api: Api, therapist: dict[str, Any], st: dict[str, Any], start: str, **place: Any) -> tuple[int, Any]:
    client = {"name": "Placed Client", "email": "placed@example.org", **place}
    body = {"session_type": st["id"], "start": start, "client": client}
    return await api.call("POST", f"/api/v1/therapists/{therapist['slug']}/bookings", json=body)


async def test_a_booking_takes_its_place_as_codes_and_refuses_bad_ones(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await api.ready_therapist()
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)
    first, second = (await api.slots(therapist, st, day, day))[:2]
    for place in ({"country": "XX"}, {"country": "US", "region": "DE-BE"}, {"region": "US-NY"}):
        status, problem = await book_at(api, therapist, st, first["start"], **place)
        assert status == 422 and problem["code"] == "invalid_place", problem
    assert await db.fetchval("SELECT count(*) FROM bookings") == 0
    assert await db.fetchval("SELECT count(*) FROM clients") == 0
    status, made = await book_at(api, therapist, st, first["start"], country="US", region="US-NY", location="Albany")
    assert status == 201, made
    status, read = await api.call("GET", f"/api/v1/bookings/{made['id']}", token=made["booking_key"])
    assert read["client"]["country"] == "US" and read["client"]["region"] == "US-NY"
    assert read["client"]["location"] == "Albany"  # the free text stays, as a note
    status, old_style = await book_at(api, therapist, st, second["start"], location="New York")
    assert status == 201, old_style  # free text alone is still taken


async def test_refuse_turns_a_booking_outside_valid_licences_away(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await api.ready_therapist()
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)
    slots = await api.slots(therapist, st, day, day)
    session_day = dt.datetime.fromisoformat(slots[0]["start"]).astimezone(ZoneInfo(therapist["timezone"])).date()
    await add_licence(api, therapist, jurisdiction="DE")
    await add_licence(api, therapist, jurisdiction="US-NY", expires_on=(session_day - dt.timedelta(days=1)).isoformat())
    status, warned = await book_at(api, therapist, st, slots[0]["start"], country="FR")
    assert status == 201, warned  # `warn` (the default) books it; the page said so
    status, _ = await api.call(
        "PUT",
        f"/api/v1/therapists/{therapist['slug']}/licence-check",
        token=therapist["api_token"],
        json={"licence_check": "refuse"},
    )
    assert status == 200
    before = await db.fetchval("SELECT count(*) FROM bookings")
    for place, code in (
        ({"country": "FR"}, "not_licensed_there"),
        ({"country": "US", "region": "US-NY"}, "not_licensed_there"),  # expired the day before the session
        ({}, "location_required"),
    ):
        status, problem = await book_at(api, therapist, st, slots[1]["start"], **place)
        assert status == 422 and problem["code"] == code, problem
    assert await db.fetchval("SELECT count(*) FROM bookings") == before
    status, made = await book_at(api, therapist, st, slots[1]["start"], country="DE", region="DE-HH")
    assert status == 201, made
