"""Client records through the API: matched by email on booking, listed, read, edited, audited, and kept apart."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import asyncpg

from broker import database
from broker.clock import Clock
from tests.support import Api, with_database


async def book(
    api: Api,
    therapist: dict[str, Any],
    session_type: dict[str, Any],
    start: str,
    *,
    name: str = "Robin Client",
    email: str = "robin@example.org",
    phone: str | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    client: dict[str, Any] = {"name": name, "email": email}
    if phone is not None:
        client["phone"] = phone
    if location is not None:
        client["location"] = location
    status, body = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={"session_type": session_type["id"], "start": start, "client": client},
    )
    assert status == 201, body
    return dict(body)


async def slots(api: Api, therapist: dict[str, Any], session_type: dict[str, Any], n: int) -> list[str]:
    today = dt.datetime.now(dt.UTC).date()
    found = await api.slots(therapist, session_type, today + dt.timedelta(days=1), today + dt.timedelta(days=3))
    assert len(found) >= n
    return [s["start"] for s in found[:n]]


async def client_list(api: Api, therapist: dict[str, Any]) -> list[dict[str, Any]]:
    status, body = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/clients", token=therapist["api_token"]
    )
    assert status == 200, body
    return list(body["clients"])


async def client_record(api: Api, therapist: dict[str, Any], client_id: str) -> dict[str, Any]:
    status, body = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/clients/{client_id}", token=therapist["api_token"]
    )
    assert status == 200, body
    return dict(body)


async def patch(api: Api, therapist: dict[str, Any], client_id: str, changes: dict[str, Any]) -> tuple[int, Any]:
    return await api.call(
        "PATCH",
        f"/api/v1/therapists/{therapist['slug']}/clients/{client_id}",
        token=therapist["api_token"],
        json=changes,
    )


async def test_first_booking_creates_a_client_and_later_ones_match_by_email_in_any_case(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    first, second, third = await slots(api, therapist, st, 3)
    a = await book(api, therapist, st, first, email="Robin@Example.org")
    b = await book(api, therapist, st, second, email="robin@EXAMPLE.ORG")
    await book(api, therapist, st, third, name="Sam Other", email="sam@example.org")

    listed = await client_list(api, therapist)
    assert [c["name"] for c in listed] == ["Robin Client", "Sam Other"]
    robin = listed[0]
    assert robin["email"] == "Robin@Example.org", "the record keeps the email as first given"
    assert robin["next_session"]["id"] == a["id"]
    record = await client_record(api, therapist, robin["id"])
    assert [s["id"] for s in record["upcoming"]] == [a["id"], b["id"]]
    assert record["past"] == []


async def test_a_later_booking_fills_empty_fields_but_never_overwrites_the_therapists_edits(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    first, second, third = await slots(api, therapist, st, 3)
    await book(api, therapist, st, first, name="Robin")
    (robin,) = await client_list(api, therapist)
    assert (robin["phone"], robin["location"]) == (None, None)

    status, body = await patch(api, therapist, robin["id"], {"name": "Robin Q. Client", "notes": "prefers video off"})
    assert status == 200, body
    await book(api, therapist, st, second, name="R", phone="+49 30 1234", location="Berlin")
    await book(api, therapist, st, third, name="Robbie", phone="+1 555 0000", location="Ohio")

    record = await client_record(api, therapist, robin["id"])
    assert record["name"] == "Robin Q. Client"
    assert record["notes"] == "prefers video off"
    assert (record["phone"], record["location"]) == ("+49 30 1234", "Berlin"), "filled once, then kept"
    assert len(record["upcoming"]) == 3


async def test_client_list_shows_the_next_session_and_the_last_attended(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, st = await api.ready_therapist()
    first, second, third = await slots(api, therapist, st, 3)
    attended = await book(api, therapist, st, first)
    missed = await book(api, therapist, st, second)
    later = await book(api, therapist, st, third)
    # The client was admitted to the first session's room; the second passed without them.
    await db.execute(
        "INSERT INTO attendance_events (booking_id, participant, role, event, at) VALUES ($1, 'c1', 'client', $2, $3)",
        uuid.UUID(attended["id"]),
        "admitted",
        dt.datetime.fromisoformat(first),
    )
    clock.advance(dt.datetime.fromisoformat(missed["end"]) - clock.now() + dt.timedelta(minutes=1))

    (robin,) = await client_list(api, therapist)
    assert robin["last_attended"]["id"] == attended["id"]
    assert robin["next_session"]["id"] == later["id"]
    record = await client_record(api, therapist, robin["id"])
    assert [(s["id"], s["status"], s["client_admitted"]) for s in record["past"]] == [
        (missed["id"], "confirmed", False),
        (attended["id"], "confirmed", True),
    ]
    assert [s["id"] for s in record["upcoming"]] == [later["id"]]


async def test_client_page_lists_cancelled_sessions_with_their_status(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    first, second = await slots(api, therapist, st, 2)
    a = await book(api, therapist, st, first)
    b = await book(api, therapist, st, second)
    status, body = await api.call("POST", f"/api/v1/bookings/{a['id']}/cancel", token=a["booking_key"], json={})
    assert status == 200, body

    (robin,) = await client_list(api, therapist)
    assert robin["next_session"]["id"] == b["id"], "a cancelled session is not the next one"
    record = await client_record(api, therapist, robin["id"])
    assert [(s["id"], s["status"]) for s in record["upcoming"]] == [(a["id"], "cancelled"), (b["id"], "confirmed")]


async def test_editing_details_and_an_email_another_client_has_is_409(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    first, second, third = await slots(api, therapist, st, 3)
    await book(api, therapist, st, first, email="robin@example.org")
    await book(api, therapist, st, second, name="Sam", email="sam@example.org")
    robin, _sam = await client_list(api, therapist)

    status, body = await patch(api, therapist, robin["id"], {"email": "SAM@example.org"})
    assert (status, body["code"]) == (409, "client_email_taken")
    status, body = await patch(
        api, therapist, robin["id"], {"email": "robin.new@example.org", "phone": "+44 20 7946", "location": "Wales"}
    )
    assert status == 200, body
    assert (body["name"], body["email"], body["phone"], body["location"]) == (
        "Robin Client",
        "robin.new@example.org",
        "+44 20 7946",
        "Wales",
    )
    status, body = await patch(api, therapist, robin["id"], {"phone": "", "location": None})
    assert status == 200, body
    assert (body["phone"], body["location"]) == (None, None)

    # Bookings from now on match the new address; the old one makes a client of its own.
    await book(api, therapist, st, third, email="Robin.New@example.org")
    record = await client_record(api, therapist, robin["id"])
    assert len(record["upcoming"]) == 2


async def test_bad_edits_are_422_and_unknown_clients_404(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    (first,) = await slots(api, therapist, st, 1)
    await book(api, therapist, st, first)
    (robin,) = await client_list(api, therapist)
    for changes in ({"email": "not-an-email"}, {"name": ""}, {"nickname": "R"}, {"notes": "x" * 5001}, {"name": None}):
        status, body = await patch(api, therapist, robin["id"], changes)
        assert (status, body["code"]) == (422, "invalid_input"), (changes, body)
    for path_id in (str(uuid.uuid4()), "not-a-uuid"):
        status, body = await api.call(
            "GET", f"/api/v1/therapists/{therapist['slug']}/clients/{path_id}", token=therapist["api_token"]
        )
        assert (status, body["code"]) == (404, "not_found")
        status, body = await patch(api, therapist, path_id, {"name": "X"})
        assert (status, body["code"]) == (404, "not_found")


async def test_a_booking_key_opens_only_its_own_booking_though_both_are_one_clients(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    first, second = await slots(api, therapist, st, 2)
    a = await book(api, therapist, st, first)
    b = await book(api, therapist, st, second)
    (robin,) = await client_list(api, therapist)
    assert len((await client_record(api, therapist, robin["id"]))["upcoming"]) == 2, "one client, two bookings"

    status, body = await api.call("GET", f"/api/v1/bookings/{a['id']}", token=a["booking_key"])
    assert status == 200, body
    for method, path in (
        ("GET", f"/api/v1/bookings/{b['id']}"),
        ("POST", f"/api/v1/bookings/{b['id']}/cancel"),
        ("POST", f"/api/v1/bookings/{b['id']}/room-token"),
    ):
        status, body = await api.call(method, path, token=a["booking_key"], json={} if method == "POST" else None)
        assert (status, body["code"]) == (404, "not_found"), (method, path)
    for method, path in (
        ("GET", f"/api/v1/therapists/{therapist['slug']}/clients"),
        ("GET", f"/api/v1/therapists/{therapist['slug']}/clients/{robin['id']}"),
        ("PATCH", f"/api/v1/therapists/{therapist['slug']}/clients/{robin['id']}"),
    ):
        status, body = await api.call(
            method, path, token=a["booking_key"], json={"name": "X"} if method == "PATCH" else None
        )
        assert status == 403, (method, path, body)
    status, body = await api.call("GET", f"/api/v1/bookings/{b['id']}", token=b["booking_key"])
    assert (status, body["status"]) == (200, "confirmed")


async def test_one_therapists_clients_never_appear_for_another(api: Api) -> None:
    ada, ada_st = await api.ready_therapist()
    bo, bo_st = await api.ready_therapist()
    (ada_slot,) = await slots(api, ada, ada_st, 1)
    (bo_slot,) = await slots(api, bo, bo_st, 1)
    await book(api, ada, ada_st, ada_slot, name="Robin at Ada's")
    await book(api, bo, bo_st, bo_slot, name="Robin at Bo's")

    (at_ada,) = await client_list(api, ada)
    (at_bo,) = await client_list(api, bo)
    assert at_ada["id"] != at_bo["id"], "the same email is a separate record for each therapist"
    assert (at_ada["name"], at_bo["name"]) == ("Robin at Ada's", "Robin at Bo's")

    # Bo's token on Ada's slug is refused; on Bo's own slug Ada's client is not found.
    status, _ = await api.call("GET", f"/api/v1/therapists/{ada['slug']}/clients", token=bo["api_token"])
    assert status == 403
    status, body = await api.call(
        "GET", f"/api/v1/therapists/{bo['slug']}/clients/{at_ada['id']}", token=bo["api_token"]
    )
    assert (status, body["code"]) == (404, "not_found")
    status, body = await patch(api, bo, at_ada["id"], {"name": "Taken over"})
    assert (status, body["code"]) == (404, "not_found")
    assert (await client_record(api, ada, at_ada["id"]))["name"] == "Robin at Ada's"


async def test_every_read_and_change_of_a_client_is_audited_by_id(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await api.ready_therapist()
    (first,) = await slots(api, therapist, st, 1)
    booking = await book(api, therapist, st, first)
    (robin,) = await client_list(api, therapist)
    await client_record(api, therapist, robin["id"])
    status, _ = await patch(api, therapist, robin["id"], {"notes": "first session went well"})
    assert status == 200

    rows = await db.fetch(
        "SELECT actor_kind, actor_id, action, booking_id FROM audit_events WHERE client_id = $1 ORDER BY id",
        uuid.UUID(robin["id"]),
    )
    assert [(r["actor_kind"], r["action"]) for r in rows] == [
        ("client", "client.created"),
        ("therapist", "client.listed"),
        ("therapist", "client.read"),
        ("therapist", "client.updated"),
    ]
    assert {r["actor_id"] for r in rows[1:]} == {therapist["id"]}
    listed = await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'booking.listed' AND booking_id = $1",
        uuid.UUID(booking["id"]),
    )
    assert listed == 1, "the client page reads the booking it lists"
    # Audit rows carry ids only: nothing of the notes, the name or the email.
    text = await db.fetchval("SELECT string_agg(a::text, ' ') FROM audit_events a")
    assert "first session" not in text and "Robin" not in text and "robin@" not in text


async def test_two_first_bookings_of_one_client_racing_make_one_record(api: Api, db: asyncpg.Connection) -> None:
    therapist, st = await api.ready_therapist()
    starts = await slots(api, therapist, st, 8)
    await asyncio.gather(
        *(book(api, therapist, st, s, email=f"{'RACE' if i % 2 else 'race'}@example.org") for i, s in enumerate(starts))
    )
    assert await db.fetchval("SELECT count(*) FROM clients") == 1
    assert await db.fetchval("SELECT count(DISTINCT client_id) FROM bookings") == 1


async def test_migration_makes_one_client_per_therapist_and_email_from_existing_bookings(pg_url: str) -> None:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f"CREATE DATABASE {name}")
    conn = await asyncpg.connect(with_database(pg_url, name))
    try:
        files = database.migration_files()
        for version, _, sql in files:
            if version < 7:
                await conn.execute(sql)
        ada, bo, st_a, st_b = (uuid.uuid4() for _ in range(4))
        for t, st, slug in ((ada, st_a, "dr-ada"), (bo, st_b, "dr-bo")):
            await conn.execute(
                "INSERT INTO therapists (id, slug, name, email, timezone) VALUES ($1, $2, 'T', $3, 'UTC')",
                t,
                slug,
                f"{slug}@example.org",
            )
            await conn.execute(
                "INSERT INTO session_types (id, therapist_id, name, duration_minutes, buffer_before_minutes,"
                " buffer_after_minutes, min_notice_minutes, horizon_days, slot_interval_minutes)"
                " VALUES ($1, $2, 'S', 50, 0, 0, 0, 30, 60)",
                st,
                t,
            )
        base = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
        rows = [  # therapist, session type, hour, name, email, phone, created
            (ada, st_a, 0, "Robin", "robin@example.org", None, base - dt.timedelta(days=9)),
            (ada, st_a, 1, "Robin C", "ROBIN@example.org", "+1 555", base - dt.timedelta(days=2)),
            (ada, st_a, 2, "Sam", "sam@example.org", None, base - dt.timedelta(days=5)),
            (bo, st_b, 0, "Robin at Bo", "robin@example.org", None, base - dt.timedelta(days=1)),
        ]
        for t, st, hour, client_name, email, phone, created in rows:
            start = base + dt.timedelta(hours=hour)
            end = start + dt.timedelta(minutes=50)
            await conn.execute(
                "INSERT INTO bookings (id, therapist_id, session_type_id, starts_at, ends_at, blocked, client_name,"
                " client_email, client_phone, key_hash, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                uuid.uuid4(),
                t,
                st,
                start,
                end,
                asyncpg.Range(start, end),
                client_name,
                email,
                phone,
                uuid.uuid4().bytes,
                created,
            )
        (sql,) = [sql for version, _, sql in files if version == 7]
        await conn.execute(sql)

        made = await conn.fetch(
            "SELECT therapist_id, name, email, phone, created_at FROM clients ORDER BY therapist_id = $1 DESC, name",
            ada,
        )
        assert [(r["therapist_id"], r["name"], r["email"], r["phone"]) for r in made] == [
            (ada, "Robin C", "ROBIN@example.org", "+1 555"),  # details from the latest booking
            (ada, "Sam", "sam@example.org", None),
            (bo, "Robin at Bo", "robin@example.org", None),
        ]
        assert made[0]["created_at"] == base - dt.timedelta(days=9), "created when the first booking was"
        pairs = await conn.fetch(
            "SELECT b.client_name, c.name FROM bookings b JOIN clients c ON c.id = b.client_id"
            " WHERE c.therapist_id = b.therapist_id ORDER BY b.client_name"
        )
        assert [(p["client_name"], p["name"]) for p in pairs] == [
            ("Robin", "Robin C"),
            ("Robin C", "Robin C"),
            ("Robin at Bo", "Robin at Bo"),
            ("Sam", "Sam"),
        ]
    finally:
        await conn.close()
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
