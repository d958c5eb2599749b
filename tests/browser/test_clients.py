"""The therapist's client list and client page in Chromium: finding a client, editing details, accessibility."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import asyncpg
from playwright.async_api import Page, expect

from broker.clock import Clock
from tests.browser.support import check_page_at_widths, log_in, set_password_from_invite
from tests.support import Api

PASSWORD = "a calm and long password"


async def therapist_with_clients(api: Api, clock: Clock) -> dict[str, Any]:
    """A therapist with a password and three bookings by two clients (one email in two spellings)."""
    therapist = await api.therapist(timezone="Europe/Berlin", name="Dr Ada Example")
    await set_password_from_invite(api, therapist, PASSWORD)
    await api.availability(therapist)
    session_type = await api.session_type(therapist, name="Individual session")
    today = clock.now().date()
    slots = await api.slots(therapist, session_type, today + dt.timedelta(days=1), today + dt.timedelta(days=3))
    for slot, name, email in (
        (slots[0], "Robin Client", "robin@example.org"),
        (slots[1], "Sam Later", "sam@example.org"),
        (slots[2], "Robin Client", "ROBIN@example.org"),
    ):
        status, body = await api.call(
            "POST",
            f"/api/v1/therapists/{therapist['slug']}/bookings",
            json={"session_type": session_type["id"], "start": slot["start"], "client": {"name": name, "email": email}},
        )
        assert status == 201, body
    return therapist


async def test_client_list_finds_a_client_whose_page_edits_the_details(
    api: Api, clock: Clock, therapist_page: Page, db: asyncpg.Connection
) -> None:
    therapist = await therapist_with_clients(api, clock)
    page = therapist_page
    await log_in(page, therapist["email"], PASSWORD)
    await page.get_by_role("link", name="Your clients").click()
    await expect(page).to_have_url(re.compile(r"/dashboard/clients$"))
    clients = page.locator("#client-list > li")
    await expect(clients).to_have_count(2)
    await expect(clients.first).to_contain_text("Robin Client")

    await page.get_by_label("Find a client").fill("sam")
    await expect(page.locator("#client-list > li:visible")).to_have_count(1)
    await expect(page.get_by_role("status")).to_have_text("1 client of 2 match")
    await page.get_by_label("Find a client").fill("")
    await page.get_by_role("link", name="Robin Client").click()

    await expect(page.get_by_role("heading", name="Robin Client", level=1)).to_be_visible()
    upcoming = page.get_by_role("region", name="Upcoming sessions")
    await expect(upcoming.get_by_role("listitem")).to_have_count(2)
    await expect(page.get_by_role("region", name="Past sessions")).to_contain_text("No past sessions yet.")

    details = page.get_by_role("region", name="Details")
    await details.get_by_label("Email").fill("sam@example.org")
    await details.get_by_role("button", name="Save details").click()
    await expect(details.get_by_role("alert")).to_contain_text("Another of your clients has this email address")
    await expect(details.get_by_label("Email")).to_be_focused()

    await details.get_by_label("Email").fill("robin@example.org")
    await details.get_by_label("Name").fill("Robin Q. Client")
    await details.get_by_label("Phone").fill("+49 30 1234567")
    await details.get_by_label("Notes").fill("Prefers the evening.\nSecond line.")
    await details.get_by_role("button", name="Save details").click()
    await expect(details.get_by_role("status")).to_have_text("The details are saved.")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Robin Q. Client")
    row = await db.fetchrow("SELECT name, phone, location, notes FROM clients WHERE lower(email) = 'robin@example.org'")
    assert dict(row) == {
        "name": "Robin Q. Client",
        "phone": "+49 30 1234567",
        "location": None,
        "notes": "Prefers the evening.\nSecond line.",
    }

    await page.reload()
    await expect(page.get_by_label("Phone")).to_have_value("+49 30 1234567")


async def test_client_list_and_page_are_accessible_at_phone_and_desktop_width(
    api: Api, clock: Clock, therapist_page: Page
) -> None:
    therapist = await therapist_with_clients(api, clock)
    page = therapist_page
    await log_in(page, therapist["email"], PASSWORD, next_path="/dashboard/clients")
    await expect(page.locator("#client-list > li")).to_have_count(2)
    await check_page_at_widths(page, "clients")

    await page.get_by_role("link", name="Robin Client").click()
    await expect(page.get_by_role("heading", name="Robin Client", level=1)).to_be_visible()
    # With an error showing, too: the alert must be as accessible as the rest.
    await page.get_by_label("Name").fill("")
    await page.get_by_role("button", name="Save details").click()
    await expect(page.get_by_role("alert")).to_have_text("Give the client a name.")
    await check_page_at_widths(page, "client")
