"""The item-9 protocol in Chromium, at phone width for the client: a new client gives consent and an
emergency contact, confirms where they are, answers a PHQ-9 one question per screen with item 9
above 0, sees the crisis lines for that place and goes on to the waiting room; the therapist sees
the alert in the room before admitting and on the dashboard, marks it reviewed, and after a second
session sees the trend chart with its table on the client's page."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest
from playwright.async_api import Page, expect

from broker.clock import Clock
from tests.browser.conftest import NewContext
from tests.browser.support import PHONE, assert_accessible, log_in, page_errors, screenshot, set_password_from_invite
from tests.support import Api, next_grid_start

PASSWORD = "correct horse battery staple"
# PHQ-9 answers by item: a total of 13 (Moderate) with item 9 at "Several days".
FIRST = ["More than half the days"] * 4 + ["Several days"] * 4 + ["Several days"]
SECOND = {str(i): 0 for i in range(1, 10)} | {"1": 1, "2": 1}  # 2, Minimal: a reliable improvement and response


async def answer_phq9(page: Page, labels: list[str]) -> None:
    for number, label in enumerate(labels, start=1):
        await expect(page.get_by_text(f"PHQ-9: question {number} of 10")).to_be_visible()
        group = page.get_by_role("group").filter(has=page.locator("legend"))
        await group.get_by_label(label, exact=True).check()
        if number == 2:
            await page.get_by_role("button", name="Back").click()  # back keeps what was chosen
            await expect(page.get_by_label("More than half the days", exact=True)).to_be_checked()
            await page.get_by_role("button", name="Next").click()
            await expect(page.get_by_text("question 2 of 10")).to_be_visible()
            await page.get_by_label(label, exact=True).check()
        if number == 3:
            await assert_accessible(page, "a PHQ-9 question at phone width")
        await page.get_by_role("button", name="Next").click()
    await expect(page.get_by_text("question 10 of 10")).to_be_visible()
    await page.get_by_role("button", name="Send my answers").click()  # the difficulty question is optional


async def test_item_nine_crisis_lines_alert_review_and_trend(
    api: Api, new_context: NewContext, clock: Clock, db: asyncpg.Connection, request: pytest.FixtureRequest
) -> None:
    therapist, session_type = await api.ready_therapist(slot_interval_minutes=5, duration_minutes=30)
    await set_password_from_invite(api, therapist, PASSWORD)
    start = next_grid_start(clock.now() + dt.timedelta(minutes=2), 5)
    booking = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={
            "session_type": session_type["id"],
            "start": start.isoformat(),
            "client": {"name": "Robin Vale", "email": "robin.vale@example.org"},
        },
    )
    assert booking[0] == 201, booking
    booking_id, key = booking[1]["id"], booking[1]["booking_key"]
    status, listed = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/clients", token=therapist["api_token"]
    )
    client_id = listed["clients"][0]["id"]
    status, _ = await api.call(
        "PUT",
        f"/api/v1/therapists/{therapist['slug']}/clients/{client_id}/measures/phq9",
        token=therapist["api_token"],
        json={"schedule": "every_session"},
    )
    assert status == 200

    therapist_page = await (await new_context(name="therapist")).new_page()
    await log_in(therapist_page, therapist["email"], PASSWORD, f"/room/{booking_id}")
    await expect(therapist_page.get_by_text("Nobody is waiting.")).to_be_visible()

    client = await (await new_context(name="client", viewport=PHONE)).new_page()
    await client.goto(f"/join/{booking_id}#k={key}")
    # Consent and emergency details (a new client is stopped here first).
    await expect(
        client.get_by_role("heading", name="Before your first session: consent to therapy by video")
    ).to_be_visible()
    await client.get_by_label("I have read this text and agree to therapy by video on these terms.").check()
    await client.get_by_label("Type your full name to sign").fill("Robin Vale")
    await client.get_by_role("button", name="Accept and continue").click()
    await expect(client.get_by_role("heading", name="Who should your therapist call in an emergency?")).to_be_visible()
    await client.get_by_label("Their name").fill("Alex Vale")
    await client.get_by_label("Their phone number").fill("+1 212 555 0100")
    usual = client.get_by_role("group", name="Where do you usually live?")
    await usual.get_by_label("Country").select_option("US")
    await client.get_by_role("button", name="Save and continue").click()

    # Where they are today, then the questionnaire.
    await expect(client.get_by_role("button", name="Join session")).to_be_visible()
    where = client.get_by_role("group", name="Where are you right now?")
    await expect(where.get_by_label("Country")).to_have_value("US")
    await where.get_by_label("State, province or region").select_option("US-NY")
    await expect(client.locator("#check-camera")).to_have_attribute("data-state", "ok")
    await client.get_by_role("button", name="Join session").click()
    await expect(client.get_by_role("heading", name="A few questions before your session")).to_be_visible()
    await answer_phq9(client, FIRST)

    crisis = client.locator("#crisis-resources")
    await expect(
        crisis.get_by_role("heading", name="If you are in danger or thinking of harming yourself")
    ).to_be_focused()
    await expect(crisis.get_by_role("link", name="988")).to_have_attribute("href", "tel:988")
    await assert_accessible(client, "the crisis lines at phone width")
    await screenshot(client, "measures-crisis")
    await client.get_by_role("button", name="Continue to the waiting room").click()
    await expect(client.get_by_text("Your therapist will let you in.")).to_be_visible()
    await expect(crisis).to_be_visible()  # still there while they wait
    await assert_accessible(client, "the waiting room with the crisis lines")

    # The therapist sees the alert before admitting, and marks it reviewed.
    await expect(therapist_page.locator("#queue li")).to_contain_text("Robin Vale")
    panel = therapist_page.locator("#measures-panel")
    await expect(panel.get_by_text("This client's answers need review.")).to_be_visible()
    await expect(panel.locator("li[data-instrument=phq9]")).to_contain_text("PHQ-9: 13 Moderate")
    dashboard = await (therapist_page.context).new_page()
    await dashboard.goto("/dashboard")
    banner = dashboard.locator("#safety-alerts")
    await expect(banner).to_contain_text("Robin Vale")
    await assert_accessible(dashboard, "the dashboard with an alert")
    await panel.get_by_role("button", name="Mark reviewed").click()
    await expect(panel.get_by_text("Marked reviewed.")).to_be_visible()
    await dashboard.reload()
    await expect(dashboard.locator("#safety-alerts")).to_have_count(0)
    reviewed = await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'safety_alert.reviewed' AND client_id = $1",
        uuid.UUID(client_id),
    )
    assert reviewed == 1

    # A week later, a second session's answers; the client page shows the trend and its table.
    second = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={
            "session_type": session_type["id"],
            "start": (start + dt.timedelta(days=7)).isoformat(),
            "client": {"name": "Robin Vale", "email": "robin.vale@example.org"},
        },
    )
    assert second[0] == 201, second
    clock.advance(dt.timedelta(days=7))
    await api.ready_to_join(second[1]["id"], second[1]["booking_key"], country="US")
    status, body = await api.call(
        "POST",
        f"/api/v1/bookings/{second[1]['id']}/measures/phq9",
        token=second[1]["booking_key"],
        json={"version": 1, "answers": SECOND},
    )
    assert status == 201 and body["crisis_resources"] == []
    await log_in(dashboard, therapist["email"], PASSWORD, f"/dashboard/clients/{client_id}")  # a week: logged out
    result = dashboard.locator("section[data-instrument=phq9]")
    await expect(result.get_by_role("heading", name="PHQ-9: latest 2, Minimal")).to_be_visible()
    chart = result.get_by_role("img", name="PHQ-9 scores over time")
    await expect(chart).to_be_visible()
    table = result.get_by_role("table", name="PHQ-9 scores, oldest first (change from the first score)")
    await expect(table.locator("tbody tr")).to_have_count(2)
    await expect(table.locator("tbody tr").nth(1)).to_contain_text("reliable improvement, response, remission")
    await expect(dashboard.get_by_label("PHQ-9 (Patient Health Questionnaire (PHQ-9))")).to_have_value("every_session")
    await assert_accessible(dashboard, "the client page with the trend")
    await dashboard.set_viewport_size(PHONE)
    await assert_accessible(dashboard, "the client page with the trend at phone width")
    await screenshot(dashboard, "measures-trend")
    assert page_errors(request) == []
