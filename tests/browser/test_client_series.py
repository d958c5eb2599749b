"""The therapist's side of standing series in Chromium: booking a weekly series for an existing client
from the client page (refused all or nothing while a week is taken, then booked), cancelling it from
the second session on, and the client list's summary of it; axe at phone and desktop width."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from playwright.async_api import Page, expect

from broker.clock import Clock
from tests.browser.support import check_page_at_widths, log_in, page_errors, set_password_from_invite
from tests.support import Api

PASSWORD = "a calm and long password"
BERLIN = ZoneInfo("Europe/Berlin")
# Monday 4 January 2027, 08:00 UTC; the series starts on Tuesday 5 January in Berlin.
NOW = dt.datetime(2027, 1, 4, 8, 0, tzinfo=dt.UTC)


async def book_single(api: Api, therapist: dict[str, str], type_id: str, start: dt.datetime, name: str) -> None:
    email = f"{name.split()[0].lower()}@example.org"
    status, body = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={"session_type": type_id, "start": start.isoformat(), "client": {"name": name, "email": email}},
    )
    assert status == 201, body


async def test_therapist_books_a_weekly_series_for_a_client_and_cancels_from_the_second_session(
    api: Api, clock: Clock, therapist_page: Page, db: asyncpg.Connection, request: pytest.FixtureRequest
) -> None:
    clock.advance(NOW - clock.now())
    therapist = await api.therapist(timezone="Europe/Berlin", name="Dr Ada Example")
    await set_password_from_invite(api, therapist, PASSWORD)
    await api.availability(therapist)
    st = await api.session_type(therapist, name="Individual session", series_frequencies=["weekly"])
    await book_single(api, therapist, st["id"], dt.datetime(2027, 1, 4, 15, 0, tzinfo=BERLIN), "Robin Client")
    # Another client holds Tuesday 19 January at 10:00: the third week of a 10:00 series.
    await book_single(api, therapist, st["id"], dt.datetime(2027, 1, 19, 10, 0, tzinfo=BERLIN), "Sam Other")

    page = therapist_page
    await log_in(page, therapist["email"], PASSWORD, next_path="/dashboard/clients")
    await page.get_by_role("link", name="Robin Client").click()
    await expect(page.get_by_role("heading", name="Robin Client", level=1)).to_be_visible()
    form = page.get_by_role("region", name="Book a series")
    await form.get_by_label("Session type").select_option(label="Individual session (50 min)")
    await form.get_by_label("How often").select_option(label="Every week")
    await form.get_by_label("Date of the first session").fill("2027-01-05")
    await form.get_by_label("Start time").fill("10:00")
    await form.get_by_label("Number of sessions").fill("4")
    await form.get_by_label("Book only if every session is free").check()
    await form.get_by_role("button", name="Preview dates").click()
    dates = form.get_by_role("list").filter(has=page.locator("li.occurrence"))
    await expect(dates.get_by_role("listitem")).to_have_count(4)
    await expect(dates.get_by_role("listitem").nth(0)).to_have_text("Tue 5 Jan 2027, 10:00–10:50 Free")
    await expect(dates.get_by_role("listitem").nth(2)).to_have_text("Tue 19 Jan 2027, 10:00–10:50 Taken")

    await form.get_by_role("button", name="Book all 4 sessions").click()
    refused = form.get_by_role("alert")
    await expect(refused).to_contain_text("Nothing was booked: 1 of the 4 sessions is not free.")
    await expect(refused.get_by_role("listitem")).to_have_text(["Tue 19 Jan 2027, 10:00: Taken"])
    await check_page_at_widths(page, "client-series-refused")
    assert await db.fetchval("SELECT count(*) FROM series") == 0

    await form.get_by_label("Start time").fill("11:00")
    await form.get_by_role("button", name="Preview dates").click()
    await expect(dates.get_by_role("listitem").filter(has_text="Free")).to_have_count(4)
    await form.get_by_role("button", name="Book all 4 sessions").click()
    await expect(form.get_by_role("status")).to_have_text(
        "Booked 4 sessions, every week, from Tue 5 Jan 2027, 11:00–11:50."
    )
    link = await form.get_by_label("The client's link to their sessions").input_value()
    assert re.search(r"/manage/[0-9a-f-]{36}#k=trw_", link), link

    upcoming = page.get_by_role("region", name="Upcoming sessions")
    sessions = upcoming.locator("li.session")
    await expect(sessions).to_have_count(5)
    await expect(sessions.nth(2)).to_contain_text("Tue 12 Jan 2027, 11:00–11:50")
    await expect(sessions.nth(2)).to_contain_text("session 2 of 4, every week")
    await expect(sessions.nth(0).get_by_role("button")).to_have_count(1)  # a single session: plain Cancel
    await check_page_at_widths(page, "client-series-booked")

    await sessions.nth(2).get_by_role("button", name="Cancel this and following").click()
    await expect(upcoming.get_by_role("heading", name="Cancel this session and the 2 after it?")).to_be_focused()
    await check_page_at_widths(page, "client-series-cancel", shoot=False)
    await upcoming.get_by_role("button", name="Yes, cancel").click()
    await expect(upcoming.get_by_role("status")).to_have_text("3 sessions cancelled.")
    await expect(sessions.filter(has_text="Booked")).to_have_count(2)
    for i in (2, 3, 4):
        await expect(sessions.nth(i)).to_contain_text("Cancelled")
        await expect(sessions.nth(i).get_by_role("button")).to_have_count(0)
    await expect(sessions.nth(1).get_by_role("button", name="Cancel this and following")).to_be_visible()
    statuses = await db.fetch("SELECT status FROM bookings WHERE series_id IS NOT NULL ORDER BY series_index")
    assert [r["status"] for r in statuses] == ["confirmed", "cancelled", "cancelled", "cancelled"]

    await page.get_by_role("link", name="All clients").click()
    robin = page.locator("#client-list > li", has_text="Robin Client")
    await expect(robin).to_contain_text("Every week, 1 left, until Tue 5 Jan 2027")
    await expect(page.locator("#client-list > li", has_text="Sam Other")).to_contain_text("SeriesNone")
    assert page_errors(request) == []
