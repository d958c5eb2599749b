"""Outcome measures through the API: assigning, what is due per schedule, submitting (codes, all or
nothing, once per session), the therapist's results, chart and room summary, and the item-9 protocol:
crisis resources in the answer, an alert until reviewed, an email through a real SMTP server that
says only that answers need review, every read and review audited, nothing in feeds or logs."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from broker import outbox
from broker.clock import Clock
from broker.mail.compose import Composer
from broker.sealing import SEALER
from broker.settings import Settings
from tests.mail_support import SmtpServer, everything, parts, smtp_server, wait_for
from tests.support import Api, next_grid_start

CLIENT = {"name": "Quintessa Marlowe", "email": "quintessa.marlowe@example.org", "phone": "+1 212 5550199"}
CALM = {str(i): 0 for i in range(1, 10)}
DARK = {"1": 2, "2": 3, "3": 1, "4": 2, "5": 0, "6": 2, "7": 1, "8": 0, "9": 2, "difficulty": 2}  # 13, item 9 = 2


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as srv:
        yield srv


@pytest.fixture
def settings(settings: Settings, smtp: SmtpServer) -> Settings:
    return dataclasses.replace(settings, smtp_url=smtp.url, public_origin="https://tr.example.org")


class Practice:
    """A therapist with a client, booking sessions for them a day apart from tomorrow."""

    def __init__(self, api: Api, clock: Clock, therapist: dict[str, Any], session_type: dict[str, Any]) -> None:
        self.api = api
        self.clock = clock
        self.therapist = therapist
        self.session_type = session_type
        self.token = therapist["api_token"]
        self.slug = therapist["slug"]
        self.first = next_grid_start(clock.now() + dt.timedelta(days=1), 60)
        self.client_id = ""

    async def book(self, days: float = 0, email: str = CLIENT["email"]) -> dict[str, Any]:
        start = self.first + dt.timedelta(days=days)
        status, body = await self.api.call(
            "POST",
            f"/api/v1/therapists/{self.slug}/bookings",
            json={
                "session_type": self.session_type["id"],
                "start": start.isoformat(),
                "client": {**CLIENT, "email": email},
            },
        )
        assert status == 201, body
        if not self.client_id:
            status, listed = await self.api.call("GET", f"/api/v1/therapists/{self.slug}/clients", token=self.token)
            self.client_id = listed["clients"][0]["id"]
        return dict(body)

    async def assign(self, instrument: str, schedule: str) -> tuple[int, Any]:
        return await self.api.call(
            "PUT",
            f"/api/v1/therapists/{self.slug}/clients/{self.client_id}/measures/{instrument}",
            token=self.token,
            json={"schedule": schedule},
        )

    async def due(self, booking: dict[str, Any]) -> list[str]:
        status, body = await self.api.call(
            "GET", f"/api/v1/bookings/{booking['id']}/measures", token=booking["booking_key"]
        )
        assert status == 200, body
        return [m["id"] for m in body["measures"]]

    async def submit(
        self, booking: dict[str, Any], instrument: str, answers: dict[str, Any], version: int = 1
    ) -> tuple[int, Any]:
        return await self.api.call(
            "POST",
            f"/api/v1/bookings/{booking['id']}/measures/{instrument}",
            token=booking["booking_key"],
            json={"version": version, "answers": answers},
        )

    async def results(self) -> Any:
        status, body = await self.api.call(
            "GET", f"/api/v1/therapists/{self.slug}/clients/{self.client_id}/measures", token=self.token
        )
        assert status == 200, body
        return body

    async def alerts(self, state: str = "open") -> list[dict[str, Any]]:
        status, body = await self.api.call(
            "GET", f"/api/v1/therapists/{self.slug}/safety-alerts?state={state}", token=self.token
        )
        assert status == 200, body
        return list(body["alerts"])


@pytest.fixture
async def practice(api: Api, clock: Clock) -> Practice:
    therapist, session_type = await api.ready_therapist()
    return Practice(api, clock, therapist, session_type)


async def counts(db: asyncpg.Connection) -> tuple[int, int, int, int]:
    return (
        await db.fetchval("SELECT count(*) FROM measure_responses"),
        await db.fetchval("SELECT count(*) FROM measure_answers"),
        await db.fetchval("SELECT count(*) FROM safety_alerts"),
        await db.fetchval("SELECT count(*) FROM outbox WHERE kind = 'therapist.review_alert'"),
    )


async def test_instruments_are_listed_with_items_options_and_bands(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/instruments")
    assert status == 200
    by_id = {i["id"]: i for i in body["instruments"]}
    assert len(by_id["phq9"]["items"]) == 10 and len(by_id["gad7"]["items"]) == 7
    assert by_id["phq9"]["items"][9] | {"options": []} == {
        "id": "difficulty",
        "text": by_id["phq9"]["items"][9]["text"],
        "scored": False,
        "required": False,
        "options": [],
    }
    assert [o["value"] for o in by_id["gad7"]["items"][0]["options"]] == [0, 1, 2, 3]
    assert by_id["phq9"]["max_total"] == 27 and by_id["phq9"]["bands"][-1] == {"min": 20, "max": 27, "label": "Severe"}


async def test_nothing_is_due_until_assigned_then_every_session_asks_each_session_once(practice: Practice) -> None:
    first = await practice.book()
    assert await practice.due(first) == []
    status, assigned = await practice.assign("phq9", "every_session")
    assert status == 200 and assigned["schedule"] == "every_session"
    status, _ = await practice.assign("gad7", "every_session")
    assert await practice.due(first) == ["gad7", "phq9"]
    status, body = await practice.submit(first, "phq9", CALM)
    assert status == 201 and body["crisis_resources"] == [] and "total" not in body and "band" not in body
    assert await practice.due(first) == ["gad7"]
    status, again = await practice.submit(first, "phq9", CALM)
    assert (status, again["code"]) == (409, "measure_not_due")
    second = await practice.book(days=1)
    assert await practice.due(second) == ["gad7", "phq9"]
    # Unassigned: no longer asked, results kept.
    status, _ = await practice.api.call(
        "DELETE",
        f"/api/v1/therapists/{practice.slug}/clients/{practice.client_id}/measures/gad7",
        token=practice.token,
    )
    assert status == 204
    assert await practice.due(second) == ["phq9"]
    assert len((await practice.results())["responses"]) == 1


async def test_every_other_session_skips_the_session_after_a_completed_one(practice: Practice) -> None:
    sessions = [await practice.book(days=d) for d in range(4)]
    await practice.assign("gad7", "every_other")
    assert await practice.due(sessions[0]) == ["gad7"]
    assert (await practice.submit(sessions[0], "gad7", {str(i): 1 for i in range(1, 8)}))[0] == 201
    assert await practice.due(sessions[1]) == []
    assert await practice.due(sessions[2]) == ["gad7"]  # the previous one (1) has none
    # A cancelled session does not count as the previous one.
    status, _ = await practice.api.call(
        "POST", f"/api/v1/bookings/{sessions[1]['id']}/cancel", token=sessions[1]["booking_key"]
    )
    assert status == 200
    assert await practice.due(sessions[2]) == []  # now its previous session is 0, which has one


async def test_monthly_asks_again_after_28_days_and_once_only_once_until_assigned_again(practice: Practice) -> None:
    first, week, month = await practice.book(), await practice.book(days=7), await practice.book(days=28)
    await practice.assign("phq9", "monthly")
    await practice.assign("gad7", "once")
    assert await practice.due(first) == ["gad7", "phq9"]
    assert (await practice.submit(first, "phq9", CALM))[0] == 201
    assert (await practice.submit(first, "gad7", {str(i): 0 for i in range(1, 8)}))[0] == 201
    assert await practice.due(week) == []
    assert await practice.due(month) == ["phq9"]  # completed more than 28 days before it starts
    practice.clock.advance(dt.timedelta(minutes=1))
    await practice.assign("gad7", "once")  # assigned again: once more
    assert await practice.due(week) == ["gad7"]


async def test_bad_submissions_have_stable_codes_and_store_nothing(practice: Practice, db: asyncpg.Connection) -> None:
    booking = await practice.book()
    await practice.assign("phq9", "every_session")
    cases: list[tuple[str, Any, int, str]] = [
        ("phq9", {k: v for k, v in DARK.items() if k != "4"}, 422, "answers_incomplete"),
        ("phq9", DARK | {"3": 4}, 422, "answer_out_of_range"),
        ("phq9", DARK | {"difficulty": 9}, 422, "answer_out_of_range"),
        ("phq9", DARK | {"10": 1}, 422, "answer_item_unknown"),
        ("phq9", DARK | {"2": "3"}, 422, "invalid_input"),
        ("bdi2", DARK, 404, "instrument_unknown"),
        ("gad7", {str(i): 0 for i in range(1, 8)}, 409, "measure_not_due"),  # not assigned
    ]
    for instrument, answers, status_expected, code in cases:
        status, problem = await practice.submit(booking, instrument, answers)
        assert (status, problem["code"]) == (status_expected, code), (instrument, problem)
    status, problem = await practice.submit(booking, "phq9", DARK, version=2)
    assert (status, problem["code"], problem["version"]) == (409, "instrument_outdated", 1)
    status, problem = await practice.api.call(
        "POST",
        f"/api/v1/bookings/{booking['id']}/measures/phq9",
        token=booking["booking_key"],
        json={"version": 1, "answers": DARK, "total": 0},
    )
    assert (status, problem["code"]) == (422, "invalid_input")
    assert await counts(db) == (0, 0, 0, 0)
    # Another booking's key cannot answer for this one.
    other = await practice.book(days=1, email="someone.else@example.org")
    status, _ = await practice.api.call(
        "POST",
        f"/api/v1/bookings/{booking['id']}/measures/phq9",
        token=other["booking_key"],
        json={"version": 1, "answers": DARK},
    )
    assert status == 404


async def test_a_cancelled_or_ended_session_has_nothing_due(practice: Practice, db: asyncpg.Connection) -> None:
    booking = await practice.book()
    await practice.assign("phq9", "every_session")
    practice.clock.advance(practice.first + dt.timedelta(minutes=51) - practice.clock.now())  # past its end
    assert await practice.due(booking) == []
    assert (await practice.submit(booking, "phq9", CALM))[1]["code"] == "measure_not_due"
    assert await counts(db) == (0, 0, 0, 0)


async def test_two_submissions_racing_for_one_session_store_one_form_whole(
    practice: Practice, db: asyncpg.Connection
) -> None:
    booking = await practice.book()
    await practice.assign("phq9", "every_session")
    outcomes = await asyncio.gather(*(practice.submit(booking, "phq9", DARK) for _ in range(6)))
    assert sorted(s for s, _ in outcomes) == [201] + [409] * 5
    assert await counts(db) == (1, 10, 1, 1)


async def test_item_nine_shows_crisis_resources_raises_one_alert_and_a_discreet_email_until_reviewed(
    practice: Practice, server: TestServer, smtp: SmtpServer, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    booking = await practice.book()
    await practice.assign("phq9", "every_session")
    status, body = await practice.submit(booking, "phq9", DARK)
    assert status == 201
    lines = body["crisis_resources"]
    assert lines and all(line["name"] for line in lines)  # the table's lines (its fallback: no location known)

    therapist_email = practice.therapist["email"]
    subject = "A client's answers need review"
    [message] = await wait_for(
        lambda: [m for m in smtp.inbox.to(therapist_email) if str(m["Subject"]) == subject], what="the review alert"
    )
    text = everything(message)
    assert "https://tr.example.org/dashboard" in text
    for secret in ("Quintessa", "Marlowe", CLIENT["email"], "5550199", "PHQ", "Moderate", "item", "score"):
        assert secret not in text, secret
    assert "13" not in parts(message)["text/plain"].get_content()  # the total

    [alert] = await practice.alerts()
    assert alert["client_id"] == practice.client_id and alert["booking_id"] == booking["id"]
    assert alert["client_name"] == CLIENT["name"] and alert["reviewed_at"] is None
    status, summary = await practice.api.call(
        "GET", f"/api/v1/bookings/{booking['id']}/measure-summary", token=practice.token
    )
    assert status == 200 and [a["id"] for a in summary["alerts"]] == [alert["id"]]
    [latest] = summary["latest"]
    assert (latest["instrument"], latest["latest"]["total"], latest["latest"]["band"]) == ("phq9", 13, "Moderate")

    # A client never reads results, alerts or the summary.
    for path in (
        f"/api/v1/bookings/{booking['id']}/measure-summary",
        f"/api/v1/therapists/{practice.slug}/safety-alerts",
        f"/api/v1/therapists/{practice.slug}/clients/{practice.client_id}/measures",
    ):
        status, _ = await practice.api.call("GET", path, token=booking["booking_key"])
        assert status in (401, 403, 404), path

    review = f"/api/v1/therapists/{practice.slug}/safety-alerts/{alert['id']}/review"
    status, reviewed = await practice.api.call("POST", review, token=practice.token)
    assert status == 200 and reviewed["reviewed_at"] is not None
    status, again = await practice.api.call("POST", review, token=practice.token)
    assert status == 200 and again["reviewed_at"] == reviewed["reviewed_at"]
    assert await practice.alerts() == [] and len(await practice.alerts("all")) == 1
    other = await practice.api.therapist()
    status, _ = await practice.api.call(
        "POST", f"/api/v1/therapists/{other['slug']}/safety-alerts/{alert['id']}/review", token=other["api_token"]
    )
    assert status == 404

    actions = [
        r["action"]
        for r in await db.fetch(
            "SELECT action FROM audit_events WHERE client_id = $1 AND action LIKE ANY($2) ORDER BY id",
            uuid.UUID(practice.client_id),
            ["measure.%", "safety_alert.%"],
        )
    ]
    assert actions[:3] == ["measure.assigned", "measure.completed", "safety_alert.raised"]
    assert "safety_alert.listed" in actions and "measure.results_read" in actions
    assert actions.count("safety_alert.reviewed") == 1  # the second review changed nothing

    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "mail.log")  # not the test's SMTP server
    assert "Quintessa" not in logged and CLIENT["email"] not in logged and "Moderate" not in logged


async def test_the_crisis_resources_are_those_of_where_the_client_is(
    practice: Practice, db: asyncpg.Connection
) -> None:
    booking = await practice.book()
    # The place given with the booking (broker.bookings keeps it as codes).
    await db.execute(
        "UPDATE bookings SET client_country = 'US', client_region = 'US-NY' WHERE id = $1", uuid.UUID(booking["id"])
    )
    await practice.assign("phq9", "every_session")
    status, body = await practice.submit(booking, "phq9", DARK)
    assert status == 201
    assert [(line["kind"], line["phone"]) for line in body["crisis_resources"]][:2] == [
        ("crisis", "988"),
        ("emergency", "911"),
    ]
    # Confirmed at this join in another country: that place wins.
    await db.execute(
        "INSERT INTO join_locations (booking_id, country, region) VALUES ($1, 'GB', 'GB-ENG')", uuid.UUID(booking["id"])
    )
    later = await practice.book(days=1)
    await db.execute("INSERT INTO join_locations (booking_id, country) VALUES ($1, 'GB')", uuid.UUID(later["id"]))
    status, body = await practice.submit(later, "phq9", DARK)
    assert status == 201 and body["crisis_resources"][0]["phone"] == "116 123"


async def test_an_alert_reviewed_before_its_email_goes_is_not_sent(
    practice: Practice, server: TestServer, db: asyncpg.Connection
) -> None:
    booking = await practice.book()
    await practice.assign("phq9", "every_session")
    assert (await practice.submit(booking, "phq9", DARK))[0] == 201
    message_id = await db.fetchval("SELECT id FROM outbox WHERE kind = 'therapist.review_alert'")
    message = await outbox.get(db, message_id)
    composer = Composer(server.app[SEALER], "https://tr.example.org")
    now = practice.clock.now()
    composed = await composer.compose(db, message, now)
    assert composed is not None and composed.to == practice.therapist["email"]
    [alert] = await practice.alerts()
    await practice.api.call(
        "POST", f"/api/v1/therapists/{practice.slug}/safety-alerts/{alert['id']}/review", token=practice.token
    )
    assert await composer.compose(db, message, now) is None


async def test_results_keep_answers_item_by_item_with_the_version_and_mark_the_trend(
    practice: Practice, db: asyncpg.Connection, server: TestServer
) -> None:
    sessions = [await practice.book(days=d) for d in range(3)]
    await practice.assign("phq9", "every_session")
    for booking, score in zip(sessions, (18, 12, 4), strict=True):
        answers = {str(i): 0 for i in range(1, 10)}
        left = score
        for item in map(str, range(1, 9)):
            answers[item] = min(3, left)
            left -= answers[item]
        assert (await practice.submit(booking, "phq9", answers))[0] == 201
        practice.clock.advance(dt.timedelta(days=1))
    found = await practice.results()
    assert [r["total"] for r in found["responses"]] == [18, 12, 4]
    assert found["responses"][0]["answers"] == {"1": 3, "2": 3, "3": 3, "4": 3, "5": 3, "6": 3, "7": 0, "8": 0, "9": 0}
    assert {r["instrument_version"] for r in found["responses"]} == {1}
    marks = [(p["change"], p["reliable_change"], p["response"], p["remission"]) for p in found["trends"]["phq9"]]
    assert marks == [(0, None, False, False), (-6, "improvement", False, False), (-14, "improvement", True, True)]
    assert found["assignments"][0]["instrument"] == "phq9"

    base = f"{practice.api.base}/api/v1/therapists/{practice.slug}/clients/{practice.client_id}/measures/phq9/chart.svg"
    async with practice.api.session.get(base, headers={"Authorization": f"Bearer {practice.token}"}) as resp:
        assert resp.status == 200 and resp.content_type == "image/svg+xml"
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
        svg = await resp.text()
    assert "<title" in svg and "<desc" in svg and "3 PHQ-9 scores" in svg
    other = await practice.api.therapist()
    status, _ = await practice.api.call(
        "GET", f"/api/v1/therapists/{other['slug']}/clients/{practice.client_id}/measures", token=other["api_token"]
    )
    assert status == 404

    # The therapist's calendar feed knows nothing of it.
    status, feed = await practice.api.call(
        "POST", f"/api/v1/therapists/{practice.slug}/feeds", token=practice.token, json={}
    )
    if status == 201:
        async with practice.api.session.get(feed["url"]) as resp:
            text = await resp.text()
        assert "PHQ" not in text and "Moderate" not in text and "review" not in text.lower()
