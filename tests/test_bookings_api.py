"""The booking API through real HTTP on a real PostgreSQL: races, idempotency, bad input, privacy."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from broker.app import create_app
from broker.clock import Clock
from broker.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support import Api, free_port

TOMORROW = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)


async def _first_slots(api: Api, therapist: dict[str, Any], st: dict[str, Any], n: int = 2) -> list[dict[str, str]]:
    slots = await api.slots(therapist, st, TOMORROW, TOMORROW + dt.timedelta(days=1))
    assert len(slots) >= n
    return slots[:n]


async def test_fifty_concurrent_attempts_at_one_slot_yield_exactly_one_booking(
    api: Api, db: asyncpg.Connection
) -> None:
    therapist, st = await api.ready_therapist()
    (slot,) = await _first_slots(api, therapist, st, 1)
    results = await asyncio.gather(*(api.book(therapist, st, slot["start"], name=f"Client {i}") for i in range(50)))
    statuses = sorted(status for status, _ in results)
    assert statuses.count(201) == 1
    assert statuses.count(409) == 49
    assert all(body["code"] == "slot_unavailable" for status, body in results if status == 409)
    assert await db.fetchval("SELECT count(*) FROM bookings") == 1


async def test_booking_whose_buffer_overlaps_another_is_refused(api: Api) -> None:
    therapist, st = await api.ready_therapist(duration_minutes=50, buffer_after_minutes=15, slot_interval_minutes=15)
    slots = await api.slots(therapist, st, TOMORROW, TOMORROW)
    first = dt.datetime.fromisoformat(slots[0]["start"])
    status, _ = await api.book(therapist, st, first.isoformat())
    assert status == 201
    # 60 minutes later the session itself would fit, but the first booking's 15-minute after-buffer runs to 65.
    status, body = await api.book(therapist, st, (first + dt.timedelta(minutes=60)).isoformat())
    assert (status, body["code"]) == (409, "slot_unavailable")
    status, _ = await api.book(therapist, st, (first + dt.timedelta(minutes=75)).isoformat())
    assert status == 201


async def test_database_refuses_overlap_even_without_the_application_check(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await api.ready_therapist()
    (slot,) = await _first_slots(api, therapist, st, 1)
    status, created = await api.book(therapist, st, slot["start"])
    assert status == 201
    try:
        await db.execute(
            "INSERT INTO bookings (id, therapist_id, session_type_id, starts_at, ends_at, blocked, client_name,"
            " client_email, key_hash, client_id) SELECT $1, therapist_id, session_type_id,"
            " starts_at + interval '5 minutes',"
            " ends_at + interval '5 minutes',"
            " tstzrange(starts_at + interval '5 minutes', ends_at + interval '5 minutes'),"
            " 'x', 'x@example.org', '\\x00', client_id FROM bookings WHERE id = $2",
            uuid.uuid4(),
            uuid.UUID(created["id"]),
        )
    except asyncpg.ExclusionViolationError as exc:
        assert exc.constraint_name == "bookings_no_overlap"
    else:
        raise AssertionError("the exclusion constraint let an overlapping booking in")


async def test_off_grid_past_and_beyond_horizon_times_are_not_offered(api: Api) -> None:
    therapist, st = await api.ready_therapist(horizon_days=7, slot_interval_minutes=60)
    (slot,) = await _first_slots(api, therapist, st, 1)
    start = dt.datetime.fromisoformat(slot["start"])
    for when, reason in [
        (start + dt.timedelta(minutes=7), "not_on_grid"),
        (dt.datetime.now(dt.UTC) - dt.timedelta(days=1), "in_past"),
        (start + dt.timedelta(days=30), "beyond_horizon"),
    ]:
        status, body = await api.book(therapist, st, when.isoformat())
        assert (status, body["code"], body["reason"]) == (422, "slot_not_offered", reason)


async def test_idempotency_key_replays_the_first_answer_and_books_once(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await api.ready_therapist()
    (slot,) = await _first_slots(api, therapist, st, 1)
    headers = {"Idempotency-Key": "retry-me-123"}
    results = await asyncio.gather(*(api.book(therapist, st, slot["start"], headers=headers) for _ in range(5)))
    assert {status for status, _ in results} == {201}
    assert len({body["booking_key"] for _, body in results}) == 1
    assert await db.fetchval("SELECT count(*) FROM bookings") == 1
    # The stored answer holds the booking key, sealed: the plaintext key is nowhere in the database.
    key = results[0][1]["booking_key"]
    sealed = await db.fetchval("SELECT response_sealed FROM idempotency_keys")
    assert key.encode() not in sealed


async def test_idempotency_key_with_a_different_body_is_422(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    first, second = await _first_slots(api, therapist, st, 2)
    headers = {"Idempotency-Key": "k-1"}
    assert (await api.book(therapist, st, first["start"], headers=headers))[0] == 201
    status, body = await api.book(therapist, st, second["start"], headers=headers)
    assert (status, body["code"]) == (422, "idempotency_key_reused")


async def test_idempotency_key_replays_a_refusal_even_after_the_time_is_freed(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    (slot,) = await _first_slots(api, therapist, st, 1)
    status, taken = await api.book(therapist, st, slot["start"], name="First")
    assert status == 201
    headers = {"Idempotency-Key": "retry-after-409"}
    status, refused = await api.book(therapist, st, slot["start"], headers=headers)
    assert (status, refused["code"]) == (409, "slot_unavailable")
    status, _ = await api.call("POST", f"/api/v1/bookings/{taken['id']}/cancel", token=taken["booking_key"])
    assert status == 200
    # The same key and body get the first answer, not a booking made on the retry.
    async with api.session.post(
        api.base + f"/api/v1/therapists/{therapist['slug']}/bookings",
        headers=headers,
        json={
            "session_type": st["id"],
            "start": slot["start"],
            "client": {"name": "Client Example", "email": "client@example.org"},
        },
    ) as resp:
        assert (resp.status, resp.headers.get("Idempotent-Replayed")) == (409, "true")
        assert (await resp.json(content_type=None)) == refused


async def test_reschedule_onto_a_taken_time_leaves_the_booking_untouched(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await api.ready_therapist()
    first, second = await _first_slots(api, therapist, st, 2)
    _, mine = await api.book(therapist, st, first["start"])
    assert (await api.book(therapist, st, second["start"], name="Other"))[0] == 201
    status, body = await api.call(
        "POST", f"/api/v1/bookings/{mine['id']}/reschedule", token=mine["booking_key"], json={"start": second["start"]}
    )
    assert (status, body["code"]) == (409, "slot_unavailable")
    row = await db.fetchrow("SELECT starts_at, sequence, status FROM bookings WHERE id = $1", uuid.UUID(mine["id"]))
    assert row["starts_at"] == dt.datetime.fromisoformat(first["start"])
    assert (row["sequence"], row["status"]) == (0, "confirmed")


async def test_reschedule_moves_the_booking_and_frees_the_old_slot(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    slots = await _first_slots(api, therapist, st, 3)
    _, mine = await api.book(therapist, st, slots[0]["start"])
    status, body = await api.call(
        "POST",
        f"/api/v1/bookings/{mine['id']}/reschedule",
        token=mine["booking_key"],
        json={"start": slots[2]["start"]},
    )
    assert status == 200
    assert dt.datetime.fromisoformat(body["start"]) == dt.datetime.fromisoformat(slots[2]["start"])
    assert body["sequence"] == 1
    free = [s["start"] for s in await api.slots(therapist, st, TOMORROW, TOMORROW + dt.timedelta(days=1))]
    assert slots[0]["start"] in free and slots[2]["start"] not in free


async def test_cancel_is_idempotent_and_frees_the_slot(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    (slot,) = await _first_slots(api, therapist, st, 1)
    _, booking = await api.book(therapist, st, slot["start"])
    path = f"/api/v1/bookings/{booking['id']}/cancel"
    first = await api.call("POST", path, token=booking["booking_key"])
    second = await api.call("POST", path, token=booking["booking_key"])
    assert first[0] == second[0] == 200
    assert first[1]["status"] == second[1]["status"] == "cancelled"
    assert first[1]["cancelled_at"] == second[1]["cancelled_at"]
    assert (await api.book(therapist, st, slot["start"], name="Next client"))[0] == 201


async def test_a_key_for_another_booking_gets_404(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    first, second = await _first_slots(api, therapist, st, 2)
    _, a = await api.book(therapist, st, first["start"])
    _, b = await api.book(therapist, st, second["start"])
    for method, suffix in [("GET", ""), ("POST", "/cancel")]:
        status, body = await api.call(method, f"/api/v1/bookings/{b['id']}{suffix}", token=a["booking_key"])
        assert (status, body["code"]) == (404, "not_found")
    status, _ = await api.call("GET", f"/api/v1/bookings/{b['id']}")
    assert status == 401
    status, _ = await api.call("GET", f"/api/v1/bookings/{b['id']}", token="trk_" + "x" * 32)
    assert status == 401


async def test_another_therapist_cannot_see_or_change_a_booking(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    other = await api.therapist()
    (slot,) = await _first_slots(api, therapist, st, 1)
    _, booking = await api.book(therapist, st, slot["start"])
    assert (await api.call("GET", f"/api/v1/bookings/{booking['id']}", token=other["api_token"]))[0] == 404
    assert (await api.call("GET", f"/api/v1/bookings/{booking['id']}", token=therapist["api_token"]))[0] == 200
    status, body = await api.call("GET", f"/api/v1/therapists/{therapist['slug']}/bookings", token=other["api_token"])
    assert (status, body["code"]) == (403, "forbidden")


async def test_therapist_lists_bookings_in_a_date_range(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    first, second = await _first_slots(api, therapist, st, 2)
    await api.book(therapist, st, first["start"])
    await api.book(therapist, st, second["start"])
    d = TOMORROW.isoformat()
    status, body = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/bookings?from={d}&to={d}", token=therapist["api_token"]
    )
    assert status == 200
    assert [b["start"] for b in body["bookings"]] == sorted(b["start"] for b in body["bookings"])
    assert len(body["bookings"]) >= 1


async def test_markup_and_sql_in_names_are_stored_and_returned_verbatim(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    (slot,) = await _first_slots(api, therapist, st, 1)
    name = "<script>alert(1)</script>'); DROP TABLE bookings;--"
    status, booking = await api.book(therapist, st, slot["start"], name=name)
    assert status == 201
    status, body = await api.call("GET", f"/api/v1/bookings/{booking['id']}", token=booking["booking_key"])
    assert body["client"]["name"] == name


async def test_bad_input_is_a_clear_4xx_and_writes_nothing(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await api.ready_therapist()
    (slot,) = await _first_slots(api, therapist, st, 1)
    path = f"/api/v1/therapists/{therapist['slug']}/bookings"
    good = {"session_type": st["id"], "start": slot["start"], "client": {"name": "A", "email": "a@example.org"}}
    cases: list[tuple[Any, int, str]] = [
        ({**good, "surprise": 1}, 422, "invalid_input"),
        ({**good, "start": 12}, 422, "invalid_input"),
        ({**good, "start": "2026-12-01T10:00:00"}, 422, "invalid_input"),  # no offset
        ({**good, "start": "2026-02-30T10:00:00Z"}, 422, "invalid_input"),
        ({**good, "client_timezone": "Mars/Olympus"}, 422, "unknown_timezone"),
        ({**good, "client": {"name": "A", "email": "not-an-email"}}, 422, "invalid_input"),
        ({**good, "client": {"name": "A\u0000B", "email": "a@example.org"}}, 422, "invalid_text"),
        ({**good, "session_type": str(uuid.uuid4())}, 422, "unknown_session_type"),
        ({**good, "session_type": "1 OR 1=1"}, 422, "unknown_session_type"),
    ]
    for body, status, code in cases:
        got_status, got = await api.call("POST", path, json=body)
        assert (got_status, got["code"]) == (status, code), body
    async with api.session.post(api.base + path, data=b"{not json", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400 and (await r.json(content_type=None))["code"] == "malformed_json"
    big = {**good, "client": {"name": "A" * 100_000, "email": "a@example.org"}}
    status, body = await api.call("POST", path, json=big)
    assert (status, body["code"]) == (413, "body_too_large")
    assert await db.fetchval("SELECT count(*) FROM bookings") == 0
    assert await db.fetchval("SELECT count(*) FROM audit_events WHERE action = 'booking.created'") == 0


async def test_availability_rejects_unknown_zone_and_end_before_start(api: Api) -> None:
    therapist = await api.therapist()
    path = f"/api/v1/therapists/{therapist['slug']}/availability"
    tok = therapist["api_token"]
    for payload, code in [
        ({"timezone": "Nowhere/City", "weekly": []}, "unknown_timezone"),
        ({"timezone": "UTC", "weekly": [{"day": "mon", "start": "17:00", "end": "09:00"}]}, "end_before_start"),
        ({"timezone": "UTC", "weekly": [{"day": "mon", "start": "09:00", "end": "25:00"}]}, "invalid_input"),
        ({"timezone": "UTC", "weekly": [{"day": "funday", "start": "09:00", "end": "10:00"}]}, "invalid_input"),
    ]:
        status, body = await api.call("PUT", path, token=tok, json=payload)
        assert (status, body["code"]) == (422, code), payload
    status, body = await api.call(
        "PUT",
        path,
        token=tok,
        json={
            "timezone": "Europe/Berlin",
            "weekly": [{"day": "mon", "start": "09:00", "end": "24:00"}],
            "overrides": [{"date": "2026-12-24", "intervals": []}],
        },
    )
    assert status == 200 and body["weekly"] == [{"day": "mon", "start": "09:00", "end": "24:00"}]


async def test_creating_therapists_needs_the_admin_token_and_a_free_slug(api: Api) -> None:
    payload = {"slug": "dr-taken", "name": "T", "email": "t@example.org", "timezone": "UTC"}
    assert (await api.call("POST", "/api/v1/therapists", json=payload))[0] == 401
    assert (await api.call("POST", "/api/v1/therapists", json=payload, token="wrong"))[0] == 401
    assert (await api.call("POST", "/api/v1/therapists", json=payload, token=api.admin_token))[0] == 201
    status, body = await api.call(
        "POST", "/api/v1/therapists", json={**payload, "email": "u@example.org"}, token=api.admin_token
    )
    assert (status, body["code"]) == (409, "slug_taken")
    for bad in [{**payload, "slug": "Bad Slug!"}, {**payload, "slug": "x2", "timezone": "Moon/Base"}]:
        assert (await api.call("POST", "/api/v1/therapists", json=bad, token=api.admin_token))[0] == 422


async def test_slot_listing_validates_its_range_and_zone(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    base = f"/api/v1/therapists/{therapist['slug']}/slots?session_type={st['id']}"
    for query, code in [
        ("&from=2026-12-01&to=2027-03-01", "range_too_long"),
        ("&from=2026-12-10&to=2026-12-01", "end_before_start"),
        ("&from=2026-13-01", "invalid_date"),
        ("&tz=Not/AZone", "unknown_timezone"),
    ]:
        status, body = await api.call("GET", base + query)
        assert (status, body["code"]) == (422, code), query
    status, body = await api.call("GET", base + f"&from={TOMORROW}&to={TOMORROW}&tz=Asia/Kolkata")
    assert status == 200 and body["slots"][0]["start"].endswith("+05:30")


async def test_secrets_are_stored_only_as_hashes_and_the_audit_trail_has_ids_only(
    api: Api, db: asyncpg.Connection
) -> None:
    therapist, st = await api.ready_therapist()
    (slot,) = await _first_slots(api, therapist, st, 1)
    _, booking = await api.book(therapist, st, slot["start"])
    await api.call("GET", f"/api/v1/bookings/{booking['id']}", token=booking["booking_key"])
    await api.call("POST", f"/api/v1/bookings/{booking['id']}/cancel", token=therapist["api_token"])
    rows = [r for t in ("bookings", "api_tokens", "audit_events") for r in await db.fetch(f"SELECT * FROM {t}")]
    dump = " ".join(str(tuple(r)) for r in rows)
    assert booking["booking_key"] not in dump and therapist["api_token"] not in dump
    actions = [
        tuple(r)
        for r in await db.fetch(
            "SELECT actor_kind, action FROM audit_events WHERE booking_id = $1 ORDER BY id", uuid.UUID(booking["id"])
        )
    ]
    assert actions == [("client", "booking.created"), ("client", "booking.read"), ("therapist", "booking.cancelled")]
    audit_text = " ".join(str(tuple(r)) for r in await db.fetch("SELECT * FROM audit_events"))
    assert "Client Example" not in audit_text and "client@example.org" not in audit_text
    try:
        await db.execute("DELETE FROM audit_events")
    except asyncpg.InsufficientPrivilegeError:
        pass
    else:
        raise AssertionError("audit_events accepted a DELETE")


async def test_minimum_notice_follows_the_service_clock(api: Api, clock: Clock) -> None:
    therapist, st = await api.ready_therapist(min_notice_minutes=24 * 60)
    slots = await api.slots(therapist, st, TOMORROW, TOMORROW + dt.timedelta(days=2))
    earliest = dt.datetime.fromisoformat(slots[0]["start"])
    assert earliest >= dt.datetime.now(dt.UTC) + dt.timedelta(hours=24)
    clock.advance(dt.timedelta(days=1))
    status, body = await api.book(therapist, st, slots[0]["start"])
    assert (status, body["reason"]) == (422, "too_soon")


async def test_health_readiness_and_unknown_routes(api: Api, http: aiohttp.ClientSession) -> None:
    assert (await api.call("GET", "/healthz"))[0] == 200
    assert (await api.call("GET", "/readyz"))[1] == {"status": "ready"}
    status, body = await api.call("GET", "/api/v1/nothing-here")
    assert (status, body["code"]) == (404, "not_found")
    status, body = await api.call("DELETE", "/api/v1/therapists")
    assert (status, body["code"]) == (405, "method_not_allowed")


async def test_problem_type_is_about_blank_and_title_the_status_phrase(api: Api) -> None:
    """RFC 9457 4.2.1: no problem type URI on a domain we would have to keep serving; `code` says what it was."""
    status, body = await api.call("GET", "/api/v1/nothing-here")
    assert status == 404
    assert body["type"] == "about:blank" and body["title"] == "Not Found" and body["code"] == "not_found", body
    status, body = await api.call("POST", "/api/v1/therapists", token="trm_wrong", json={})
    assert body["type"] == "about:blank" and body["title"] == "Unauthorized" and body["status"] == status == 401, body


@pytest.fixture
async def strict_api(settings: Settings, clock: Clock, http: aiohttp.ClientSession) -> AsyncIterator[Api]:
    """The service with a small booking limit, behind a trusted proxy on loopback."""
    strict = dataclasses.replace(
        settings, port=free_port(), booking_attempts_per_hour=3, trusted_proxies=("127.0.0.1",)
    )
    srv = TestServer(create_app(strict, clock=clock), host="127.0.0.1", port=strict.port)
    await srv.start_server()
    yield Api(http, f"http://127.0.0.1:{strict.port}", ADMIN_TOKEN)
    await srv.close()


async def test_one_address_cannot_flood_the_booking_endpoint(strict_api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await strict_api.ready_therapist()
    slots = await _first_slots(strict_api, therapist, st, 5)
    flooder = {"X-Forwarded-For": "203.0.113.50"}
    for slot in slots[:3]:
        assert (await strict_api.book(therapist, st, slot["start"], headers=flooder))[0] == 201
    async with strict_api.session.post(
        f"{strict_api.base}/api/v1/therapists/{therapist['slug']}/bookings",
        json={"session_type": st["id"], "start": slots[3]["start"], "client": {"name": "F", "email": "f@example.org"}},
        headers=flooder,
    ) as resp:
        assert resp.status == 429
        assert (await resp.json(content_type=None))["code"] == "rate_limited"
        assert int(resp.headers["Retry-After"]) > 0
    # Another client (as our proxy reports it) is not held back by the first one's flood.
    other = {"X-Forwarded-For": "198.51.100.7"}
    assert (await strict_api.book(therapist, st, slots[4]["start"], headers=other))[0] == 201
    assert await db.fetchval("SELECT count(*) FROM bookings") == 4


async def test_where_the_client_will_be_is_kept_with_the_booking_for_its_therapist(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    (slot,) = await _first_slots(api, therapist, st, 1)
    client = {"name": "Robin", "email": "robin@example.org", "location": "Ontario, Canada"}
    status, booking = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={"session_type": st["id"], "start": slot["start"], "client": client},
    )
    assert status == 201, booking
    status, seen = await api.call("GET", f"/api/v1/bookings/{booking['id']}", token=therapist["api_token"])
    assert seen["client"]["location"] == "Ontario, Canada"
    status, body = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={"session_type": st["id"], "start": slot["start"], "client": {**client, "location": "x" * 101}},
    )
    assert (status, body["code"]) == (422, "invalid_input")
