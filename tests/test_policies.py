"""Cancellation policies and session outcomes, through the API: every rule and every error code."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import Any

import asyncpg

from broker import attendance
from broker.clock import Clock
from broker.outcomes import client_seconds, safe_cell
from tests.support import Api, next_grid_start

POLICY = {
    "window_hours": 24,
    "text": "Cancel at least 24 hours ahead, or the session is charged.",
    "late_cancel_fee": {"amount": "60.00", "currency": "EUR"},
    "no_show_fee": {"amount": "80.00", "currency": "EUR"},
}


async def setup_policy(api: Api, policy: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    return await api.ready_therapist(policy=POLICY if policy is None else policy)


async def book_at(
    api: Api, therapist: dict[str, Any], session_type: dict[str, Any], start: dt.datetime, email: str = "c@example.org"
) -> dict[str, Any]:
    status, body = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={
            "session_type": session_type["id"],
            "start": start.isoformat(),
            "client": {"name": "Client Example", "email": email},
        },
    )
    assert status == 201, body
    return dict(body)


def hours_ahead(clock: Clock, hours: float) -> dt.datetime:
    return next_grid_start(clock.now() + dt.timedelta(hours=hours), 60)


async def cancel(api: Api, booking: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
    return await api.call(
        "POST", f"/api/v1/bookings/{booking['id']}/cancel", token=token or booking["booking_key"], json={}
    )


async def outcome(api: Api, therapist: dict[str, Any], booking: dict[str, Any], status: str) -> tuple[int, Any]:
    return await api.call(
        "POST", f"/api/v1/bookings/{booking['id']}/outcome", token=therapist["api_token"], json={"status": status}
    )


async def review(api: Api, therapist: dict[str, Any]) -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v1/therapists/{therapist['slug']}/review", token=therapist["api_token"])
    assert status == 200, body
    return dict(body)


async def decide(
    api: Api, therapist: dict[str, Any], booking: dict[str, Any], decision: str, reason: str = "Agreed by phone"
) -> tuple[int, Any]:
    return await api.call(
        "POST",
        f"/api/v1/bookings/{booking['id']}/fee-decision",
        token=therapist["api_token"],
        json={"decision": decision, "reason": reason},
    )


async def settings(api: Api, therapist: dict[str, Any], **options: bool) -> None:
    body = {"waive_first_late_cancellation": False, "suggest_waiver_when_rebooked": False, **options}
    status, answer = await api.call(
        "PUT", f"/api/v1/therapists/{therapist['slug']}/policy-settings", token=therapist["api_token"], json=body
    )
    assert status == 200 and answer == body, answer


# --- The policy, shown and versioned ----------------------------------------------------------------


async def test_public_profile_shows_each_session_types_policy(api: Api) -> None:
    therapist, with_policy = await setup_policy(api)
    without = await api.session_type(therapist, name="Consultation")
    status, body = await api.call("GET", f"/api/v1/therapists/{therapist['slug']}")
    assert status == 200
    shown = {t["id"]: t["policy"] for t in body["session_types"]}
    assert shown[with_policy["id"]] == {"version": 1, **POLICY}
    assert shown[without["id"]] is None


async def test_changing_a_policy_makes_a_new_version_and_bookings_keep_theirs(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    path = f"/api/v1/therapists/{therapist['slug']}/session-types/{session_type['id']}/policy"
    early = await book_at(api, therapist, session_type, hours_ahead(clock, 72))

    status, same = await api.call("PUT", path, token=therapist["api_token"], json=POLICY)
    assert status == 200 and same["version"] == 1, "the same terms are no new version"
    stricter = {**POLICY, "window_hours": 48}
    status, changed = await api.call("PUT", path, token=therapist["api_token"], json=stricter)
    assert status == 200 and changed["version"] == 2 and changed["window_hours"] == 48
    late = await book_at(api, therapist, session_type, hours_ahead(clock, 96))

    for booking, version in ((early, 1), (late, 2)):
        status, body = await api.call("GET", f"/api/v1/bookings/{booking['id']}", token=booking["booking_key"])
        assert status == 200 and body["policy"]["version"] == version
    status, history = await api.call("GET", path + "/versions", token=therapist["api_token"])
    assert status == 200 and [v["version"] for v in history["versions"]] == [1, 2]


async def test_a_policy_of_another_therapists_session_type_is_not_found(api: Api) -> None:
    mine, _ = await setup_policy(api)
    _, theirs = await setup_policy(api)
    path = f"/api/v1/therapists/{mine['slug']}/session-types/{theirs['id']}/policy"
    status, body = await api.call("PUT", path, token=mine["api_token"], json=POLICY)
    assert status == 404 and body["code"] == "not_found"
    status, body = await api.call("GET", path + "/versions", token=mine["api_token"])
    assert status == 404


async def test_bad_policies_are_422(api: Api) -> None:
    therapist, session_type = await setup_policy(api)
    path = f"/api/v1/therapists/{therapist['slug']}/session-types/{session_type['id']}/policy"
    for bad in (
        {**POLICY, "window_hours": 721},
        {**POLICY, "window_hours": -1},
        {**POLICY, "late_cancel_fee": {"amount": "60.00", "currency": "eur"}},
        {**POLICY, "late_cancel_fee": {"amount": "-5", "currency": "EUR"}},
        {**POLICY, "no_show_fee": {"amount": "1.2345", "currency": "EUR"}},
        {**POLICY, "text": "x" * 4001},
        {**POLICY, "surprise": True},
    ):
        status, body = await api.call("PUT", path, token=therapist["api_token"], json=bad)
        assert status == 422 and body["code"] == "invalid_input", (bad, body)


# --- Cancelling: the window, late cancellations, idempotency -----------------------------------------


async def test_manage_view_says_whether_cancelling_now_is_late_and_the_fee(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    far = await book_at(api, therapist, session_type, hours_ahead(clock, 72))
    near = await book_at(api, therapist, session_type, hours_ahead(clock, 5))
    status, body = await api.call("GET", f"/api/v1/bookings/{far['id']}", token=far["booking_key"])
    assert status == 200 and body["cancel_now"]["late"] is False and body["cancel_now"]["fee"] is None
    assert dt.datetime.fromisoformat(body["cancel_now"]["late_from"]) == dt.datetime.fromisoformat(
        body["start"]
    ) - dt.timedelta(hours=24)
    status, body = await api.call("GET", f"/api/v1/bookings/{near['id']}", token=near["booking_key"])
    assert body["cancel_now"] == {
        "late": True,
        "fee": {"amount": "60.00", "currency": "EUR"},
        "late_from": body["cancel_now"]["late_from"],
    }


async def test_cancelling_outside_the_window_is_an_ordinary_cancellation(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    booking = await book_at(api, therapist, session_type, hours_ahead(clock, 30))
    status, body = await cancel(api, booking)
    assert status == 200 and body["status"] == "cancelled"


async def test_a_clients_cancellation_inside_the_window_is_late_frees_the_time_and_repeats_idempotently(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, session_type = await setup_policy(api)
    start = hours_ahead(clock, 3)
    booking = await book_at(api, therapist, session_type, start)
    status, body = await cancel(api, booking)
    assert status == 200 and body["status"] == "late_cancelled" and body["cancelled_at"]
    again_status, again = await cancel(api, booking)
    assert again_status == 200 and again["status"] == "late_cancelled" and again["sequence"] == body["sequence"]
    # The time is free again, for anyone.
    await book_at(api, therapist, session_type, start, email="someone.else@example.org")
    actions = await db.fetch(
        "SELECT action FROM audit_events WHERE booking_id = $1 AND action LIKE 'booking.%cancelled' ORDER BY id",
        uuid.UUID(booking["id"]),
    )
    assert [r["action"] for r in actions] == ["booking.late_cancelled"]


async def test_the_therapist_cancelling_inside_the_window_is_not_late(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    booking = await book_at(api, therapist, session_type, hours_ahead(clock, 3))
    status, body = await cancel(api, booking, token=therapist["api_token"])
    assert status == 200 and body["status"] == "cancelled"


async def test_without_a_window_no_cancellation_is_late(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api, {**POLICY, "window_hours": 0})
    booking = await book_at(api, therapist, session_type, hours_ahead(clock, 1))
    status, body = await api.call("GET", f"/api/v1/bookings/{booking['id']}", token=booking["booking_key"])
    assert body["cancel_now"] == {"late": False, "fee": None, "late_from": None}
    status, body = await cancel(api, booking)
    assert status == 200 and body["status"] == "cancelled"


# --- Outcomes ----------------------------------------------------------------------------------------


async def test_outcome_before_the_start_is_outcome_too_early(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    booking = await book_at(api, therapist, session_type, hours_ahead(clock, 2))
    status, body = await outcome(api, therapist, booking, "no_show")
    assert status == 409 and body["code"] == "outcome_too_early"


async def test_outcome_of_a_cancelled_booking_is_outcome_not_allowed(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    booking = await book_at(api, therapist, session_type, hours_ahead(clock, 2))
    await cancel(api, booking)
    clock.advance(dt.timedelta(hours=3))
    status, body = await outcome(api, therapist, booking, "attended")
    assert status == 409 and body["code"] == "outcome_not_allowed"


async def test_only_the_therapist_records_an_outcome_and_a_bad_status_is_422(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    booking = await book_at(api, therapist, session_type, hours_ahead(clock, 1))
    clock.advance(dt.timedelta(hours=2))
    status, body = await api.call(
        "POST", f"/api/v1/bookings/{booking['id']}/outcome", token=booking["booking_key"], json={"status": "attended"}
    )
    assert status == 403
    status, body = await outcome(api, therapist, booking, "late_cancelled")
    assert status == 422 and body["code"] == "invalid_input"


async def test_after_the_start_the_therapist_marks_a_no_show_then_corrects_it(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, session_type = await setup_policy(api)
    booking = await book_at(api, therapist, session_type, hours_ahead(clock, 1))
    clock.advance(dt.timedelta(hours=1, minutes=70))
    status, body = await outcome(api, therapist, booking, "no_show")
    assert status == 200 and body["status"] == "no_show"
    status, body = await cancel(api, booking)
    assert status == 409 and body["code"] == "booking_finished"
    status, body = await outcome(api, therapist, booking, "attended")
    assert status == 200 and body["status"] == "attended"
    actions = await db.fetch(
        "SELECT action, actor_kind FROM audit_events WHERE booking_id = $1 AND action IN "
        "('booking.no_show', 'booking.attended') ORDER BY id",
        uuid.UUID(booking["id"]),
    )
    assert [(r["action"], r["actor_kind"]) for r in actions] == [
        ("booking.no_show", "therapist"),
        ("booking.attended", "therapist"),
    ]


async def test_therapists_list_filters_by_the_new_statuses(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    booking = await book_at(api, therapist, session_type, hours_ahead(clock, 2))
    await cancel(api, booking)
    day = (clock.now() + dt.timedelta(hours=2)).date()
    q = f"?from={day - dt.timedelta(days=1)}&to={day + dt.timedelta(days=1)}"
    base = f"/api/v1/therapists/{therapist['slug']}/bookings{q}"
    status, body = await api.call("GET", base + "&status=late_cancelled", token=therapist["api_token"])
    assert status == 200 and [b["id"] for b in body["bookings"]] == [booking["id"]]
    status, body = await api.call("GET", base + "&status=maybe", token=therapist["api_token"])
    assert status == 422


# --- Attendance evidence and automatic marking ----------------------------------------------------------


async def test_a_session_attended_together_is_marked_attended_when_the_review_is_read(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, session_type = await setup_policy(api)
    start = hours_ahead(clock, 1)
    booking = await book_at(api, therapist, session_type, start)
    booking_id = uuid.UUID(booking["id"])
    for minute, role, event in ((0, "therapist", "joined"), (1, "client", "joined"), (2, "client", "admitted")):
        await attendance.record(db, booking_id, f"{role}-1", role, event, start + dt.timedelta(minutes=minute))
    await attendance.record(db, booking_id, "client-1", "client", "left", start + dt.timedelta(minutes=47))
    clock.advance(dt.timedelta(hours=3))

    found = await review(api, therapist)
    assert found["marked_attended"] == 1
    assert booking["id"] not in [i["booking_id"] for i in found["outcomes"]]
    status, body = await api.call("GET", f"/api/v1/bookings/{booking['id']}", token=therapist["api_token"])
    assert status == 200 and body["status"] == "attended"
    actor = await db.fetchval(
        "SELECT actor_kind FROM audit_events WHERE booking_id = $1 AND action = 'booking.attended'", booking_id
    )
    assert actor == "system"
    assert (await review(api, therapist))["marked_attended"] == 0


async def test_a_started_session_without_attendance_waits_for_the_therapist_with_its_evidence(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, session_type = await setup_policy(api)
    start = hours_ahead(clock, 1)
    never = await book_at(api, therapist, session_type, start)
    waited = await book_at(api, therapist, session_type, start + dt.timedelta(hours=1), email="w@example.org")
    waited_id = uuid.UUID(waited["id"])
    second_start = start + dt.timedelta(hours=1)
    await attendance.record(db, waited_id, "client-1", "client", "joined", second_start + dt.timedelta(minutes=2))
    await attendance.record(db, waited_id, "client-1", "client", "left", second_start + dt.timedelta(minutes=14))
    clock.advance(dt.timedelta(hours=4))

    found = await review(api, therapist)
    to_mark = {i["booking_id"]: i for i in found["outcomes"]}
    assert found["marked_attended"] == 0
    assert to_mark[never["id"]]["evidence"] == {
        "therapist_joined": False,
        "client_joined": False,
        "client_minutes": 0.0,
        "together_minutes": 0.0,
    }
    assert to_mark[waited["id"]]["evidence"]["client_joined"] is True
    assert to_mark[waited["id"]]["evidence"]["client_minutes"] == 12.0

    status, _ = await outcome(api, therapist, never, "no_show")
    assert status == 200
    fees = {i["booking_id"]: i for i in (await review(api, therapist))["fees"]}
    assert fees[never["id"]]["status"] == "no_show"
    assert fees[never["id"]]["fee"] == {"amount": "80.00", "currency": "EUR"}
    assert fees[never["id"]]["evidence"]["client_joined"] is False


def test_client_minutes_count_from_join_to_leave_waiting_room_included() -> None:
    t0 = dt.datetime(2030, 1, 1, 9, tzinfo=dt.UTC)
    events = [
        attendance.AttendanceEvent("c", "client", "joined", t0),
        attendance.AttendanceEvent("c", "client", "admitted", t0 + dt.timedelta(minutes=5)),
        attendance.AttendanceEvent("c", "client", "left", t0 + dt.timedelta(minutes=20)),
        attendance.AttendanceEvent("c", "client", "joined", t0 + dt.timedelta(minutes=30)),
    ]
    assert client_seconds(events, t0 + dt.timedelta(minutes=40)) == 30 * 60


# --- Needs review: decisions, options ---------------------------------------------------------------------


async def test_a_late_cancellation_is_reviewed_then_waived_with_a_reason_and_audited(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, session_type = await setup_policy(api)
    booking = await book_at(api, therapist, session_type, hours_ahead(clock, 4))
    await cancel(api, booking)
    found = await review(api, therapist)
    [item] = found["fees"]
    assert item["booking_id"] == booking["id"] and item["status"] == "late_cancelled"
    assert item["fee"] == {"amount": "60.00", "currency": "EUR"} and item["decision"] is None
    assert item["policy_version"] == 1 and item["suggestion"] is None

    status, body = await decide(api, therapist, booking, "waive", reason="Illness")
    assert status == 200 and body["decision"] == "waive" and body["reason"] == "Illness"
    assert body["decided_by"] == "therapist"
    assert (await review(api, therapist))["fees"] == []
    status, body = await decide(api, therapist, booking, "charge", reason="Changed my mind")
    assert status == 200 and body["decision"] == "charge"
    actions = await db.fetch(
        "SELECT action, actor_kind FROM audit_events WHERE booking_id = $1 AND action LIKE 'fee.%' ORDER BY id",
        uuid.UUID(booking["id"]),
    )
    assert [(r["action"], r["actor_kind"]) for r in actions] == [
        ("fee.waived", "therapist"),
        ("fee.charged", "therapist"),
    ]


async def test_fee_decision_needs_a_fee_a_reason_and_the_therapist(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    confirmed = await book_at(api, therapist, session_type, hours_ahead(clock, 4))
    status, body = await decide(api, therapist, confirmed, "charge")
    assert status == 409 and body["code"] == "no_fee_due"
    status, body = await decide(api, therapist, confirmed, "waive", reason="")
    assert status == 422
    await cancel(api, confirmed)
    status, body = await api.call(
        "POST",
        f"/api/v1/bookings/{confirmed['id']}/fee-decision",
        token=confirmed["booking_key"],
        json={"decision": "waive", "reason": "please"},
    )
    assert status == 403
    # A late cancellation under a policy without a late fee has nothing to decide.
    free_therapist, free_type = await setup_policy(api, {"window_hours": 24, "text": "Please tell me early."})
    free = await book_at(api, free_therapist, free_type, hours_ahead(clock, 4))
    status, body = await cancel(api, free)
    assert body["status"] == "late_cancelled"
    status, body = await decide(api, free_therapist, free, "charge")
    assert status == 409 and body["code"] == "no_fee_due"
    assert (await review(api, free_therapist))["fees"] == []


async def test_with_the_option_on_each_clients_first_late_cancellation_is_waived(
    api: Api, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, session_type = await setup_policy(api)
    await settings(api, therapist, waive_first_late_cancellation=True)
    first = await book_at(api, therapist, session_type, hours_ahead(clock, 3), email="Pat@Example.org")
    second = await book_at(api, therapist, session_type, hours_ahead(clock, 5), email="pat@example.org")
    other = await book_at(api, therapist, session_type, hours_ahead(clock, 7), email="sam@example.org")
    for booking in (first, second, other):
        status, body = await cancel(api, booking)
        assert status == 200 and body["status"] == "late_cancelled"
    pending = [i["booking_id"] for i in (await review(api, therapist))["fees"]]
    assert pending == [second["id"]], "Pat's first and Sam's first were waived; Pat's second waits"
    row = await db.fetchrow(
        "SELECT decision, decided_by FROM fee_decisions WHERE booking_id = $1", uuid.UUID(first["id"])
    )
    assert row is not None and (row["decision"], row["decided_by"]) == ("waive", "system")
    actor = await db.fetchval(
        "SELECT actor_kind FROM audit_events WHERE booking_id = $1 AND action = 'fee.waived'", uuid.UUID(first["id"])
    )
    assert actor == "system"


async def test_with_the_option_on_a_rebooked_late_cancellation_is_suggested_for_waiving(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    start = hours_ahead(clock, 6)
    taken = await book_at(api, therapist, session_type, start)
    kept_empty = await book_at(api, therapist, session_type, start + dt.timedelta(hours=2))
    await cancel(api, taken)
    await cancel(api, kept_empty)
    await book_at(api, therapist, session_type, start, email="next@example.org")

    plain = {i["booking_id"]: i["suggestion"] for i in (await review(api, therapist))["fees"]}
    assert plain == {taken["id"]: None, kept_empty["id"]: None}, "no suggestions until the option is on"
    await settings(api, therapist, suggest_waiver_when_rebooked=True)
    found = await review(api, therapist)
    suggested = {i["booking_id"]: i["suggestion"] for i in found["fees"]}
    assert suggested[taken["id"]]["decision"] == "waive" and suggested[taken["id"]]["code"] == "rebooked"
    assert suggested[kept_empty["id"]] is None
    assert found["settings"] == {"waive_first_late_cancellation": False, "suggest_waiver_when_rebooked": True}


async def test_policy_settings_read_back_and_reject_unknown_fields(api: Api) -> None:
    therapist, _ = await setup_policy(api)
    path = f"/api/v1/therapists/{therapist['slug']}/policy-settings"
    status, body = await api.call("GET", path, token=therapist["api_token"])
    assert status == 200 and body == {"waive_first_late_cancellation": False, "suggest_waiver_when_rebooked": False}
    status, body = await api.call("PUT", path, token=therapist["api_token"], json={"waive_everything": True})
    assert status == 422


# --- The billing export -------------------------------------------------------------------------------------


async def test_sessions_csv_lists_status_fee_and_decision_with_formulas_neutralised(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    start = hours_ahead(clock, 4)
    status, sneaky = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={
            "session_type": session_type["id"],
            "start": start.isoformat(),
            "client": {"name": '=HYPERLINK("http://evil.example","x")', "email": "e@example.org"},
        },
    )
    assert status == 201
    plain = await book_at(api, therapist, session_type, start + dt.timedelta(hours=30))
    await cancel(api, sneaky)
    await decide(api, therapist, sneaky, "charge", reason="+ by policy")

    day = start.date()
    dates = f"from={day - dt.timedelta(days=1)}&to={day + dt.timedelta(days=3)}"
    path = f"/api/v1/therapists/{therapist['slug']}/sessions.csv?{dates}"
    async with api.session.get(api.base + path, headers={"Authorization": f"Bearer {therapist['api_token']}"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/csv"
        assert "attachment" in resp.headers["Content-Disposition"]
        text = await resp.text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["status"] for r in rows] == ["late_cancelled", "confirmed"]
    first, second = rows
    assert first["client"] == '\'=HYPERLINK("http://evil.example","x")'
    assert (first["fee_amount"], first["fee_currency"], first["fee_decision"]) == ("60.00", "EUR", "charge")
    assert first["decision_reason"] == "'+ by policy"
    assert first["policy_version"] == "1"
    assert (second["fee_amount"], second["fee_decision"]) == ("", "")
    assert second["client_email"] == "c@example.org" and plain["status"] == "confirmed"
    status, body = await api.call(
        "GET",
        f"/api/v1/therapists/{therapist['slug']}/sessions.csv?from=2030-01-01&to=2029-01-01",
        token=therapist["api_token"],
    )
    assert status == 422 and body["code"] == "end_before_start"


def test_safe_cell_prefixes_every_formula_start() -> None:
    for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(text) == "'" + text
    assert safe_cell("Ann") == "Ann" and safe_cell(None) == "" and safe_cell(3) == "3"


async def test_a_session_marked_attended_keeps_its_room_its_feed_event_and_its_time(api: Api, clock: Clock) -> None:
    therapist, session_type = await setup_policy(api)
    start = hours_ahead(clock, 1)
    booking = await book_at(api, therapist, session_type, start)
    status, feed = await api.call(
        "POST", f"/api/v1/therapists/{therapist['slug']}/feeds", token=therapist["api_token"], json={"privacy": "busy"}
    )
    assert status == 201, feed
    clock.advance(start - clock.now() + dt.timedelta(minutes=10))
    status, body = await outcome(api, therapist, booking, "attended")
    assert status == 200 and body["status"] == "attended"
    await api.ready_to_join(booking["id"], booking["booking_key"])
    status, token = await api.call("POST", f"/api/v1/bookings/{booking['id']}/room-token", token=booking["booking_key"])
    assert status == 200, token
    async with api.session.get(feed["url"]) as resp:
        assert resp.status == 200
        assert booking["id"] in await resp.text()
