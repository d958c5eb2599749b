"""Safe to start (issue 11) in Chromium at phone width: a new client is stopped at the consent step,
accepts it, gives an emergency contact, confirms where they are and reaches the waiting room; the
therapist sees the emergency panel and the licence warning before admitting. axe-core on every step."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.async_api import expect

from tests.browser.conftest import NewContext
from tests.browser.support import PHONE, assert_accessible, log_in, page_errors, set_password_from_invite
from tests.support import Api, next_grid_start

PASSWORD = "correct horse battery staple"


async def test_a_new_client_walks_through_consent_contact_and_location_and_the_therapist_is_warned(
    api: Api, new_context: NewContext, request: pytest.FixtureRequest
) -> None:
    therapist, st = await api.ready_therapist(min_notice_minutes=0, slot_interval_minutes=5, duration_minutes=30)
    await set_password_from_invite(api, therapist, PASSWORD)
    status, _ = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/licences",
        token=therapist["api_token"],
        json={"jurisdiction": "US-NJ", "kind": "Psychologist", "number": "NJ-1"},
    )
    assert status == 201
    start = next_grid_start(dt.datetime.now(dt.UTC), 5)
    status, booking = await api.book(therapist, st, start.isoformat(), name="Robin Phone")
    assert status == 201, booking

    client = await (await new_context(name="client", viewport=PHONE)).new_page()
    await client.goto(booking["join_url"])
    consent = client.get_by_role("heading", name="Before your first session: consent to therapy by video")
    await expect(consent).to_be_visible()
    await expect(consent).to_be_focused()
    await expect(client.get_by_role("region", name="Consent text")).to_contain_text("Emergencies")
    await assert_accessible(client, "consent step at phone width")
    await client.get_by_role("button", name="Accept and continue").click()  # nothing ticked: the form says so
    await expect(consent).to_be_visible()
    await client.get_by_label("I have read this text").check()
    await client.get_by_label("Type your full name to sign").fill("Robin Q. Phone")
    await client.get_by_role("button", name="Accept and continue").click()

    contact = client.get_by_role("heading", name="Who should your therapist call in an emergency?")
    await expect(contact).to_be_focused()
    await client.get_by_label("Their name").fill("Alex Phone")
    await client.get_by_label("Their phone number").fill("+1 212 555 0142")
    usual = client.get_by_role("group", name="Where do you usually live?")
    await usual.get_by_label("Country").select_option("US")
    await usual.get_by_label("State, province or region").select_option("US-NY")
    await assert_accessible(client, "emergency contact step at phone width")
    await client.get_by_role("button", name="Save and continue").click()

    await expect(client.get_by_role("button", name="Join session")).to_be_visible()
    where = client.get_by_role("group", name="Where are you right now?")
    await expect(where.get_by_label("Country")).to_have_value("US")  # prefilled: the usual place
    await expect(where.get_by_label("State, province or region")).to_have_value("US-NY")
    await expect(client.locator("#check-camera")).to_have_attribute("data-state", "ok")
    await assert_accessible(client, "location confirmation at phone width")
    await client.get_by_role("button", name="Join session").click()
    await expect(client.get_by_text("Your therapist will let you in.")).to_be_visible()

    therapist_page = await (await new_context(name="therapist", viewport=PHONE)).new_page()
    await log_in(therapist_page, therapist["email"], PASSWORD, f"/room/{booking['id']}")
    entry = therapist_page.locator("#queue li")
    await expect(entry).to_contain_text("Robin Phone")
    await expect(entry).to_contain_text("New York, United States")
    warning = therapist_page.locator("#licence-warning")
    await expect(warning).to_be_visible()
    await expect(warning).to_contain_text("New York")
    await expect(warning).to_contain_text("New Jersey")
    panel = therapist_page.get_by_role("region", name="Emergency")
    await expect(panel).to_contain_text("Alex Phone")
    await expect(panel).to_contain_text("+1 212 555 0142")
    await expect(panel).to_contain_text("988")
    await expect(panel).to_contain_text("confirmed today")
    await assert_accessible(therapist_page, "room with the emergency panel at phone width")
    await therapist_page.get_by_role("button", name="Admit").click()
    await expect(client.get_by_text("Your therapist will let you in.")).to_be_hidden()

    # The Safety page lists the licence; the client page keeps the consent record and the contact.
    await therapist_page.goto("/dashboard/safety")
    await expect(therapist_page.locator("#licences")).to_contain_text("New Jersey (US-NJ)")
    await expect(therapist_page.get_by_label("Consent text")).to_have_value(re.compile("Consent to therapy by video"))
    await assert_accessible(therapist_page, "Safety page at phone width")
    status, listed = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/clients", token=therapist["api_token"]
    )
    assert status == 200
    await therapist_page.goto(f"/dashboard/clients/{listed['clients'][0]['id']}")
    safety = therapist_page.get_by_role("region", name="Consent and emergency details")
    await expect(safety).to_contain_text('signed "Robin Q. Phone"')
    await expect(safety).to_contain_text("Alex Phone, +1 212 555 0142")
    await expect(safety).to_contain_text("New York, United States, confirmed")
    await assert_accessible(therapist_page, "client page at phone width")
    assert page_errors(request) == []
