"""A standing series in Chromium: a London client books six weekly sessions with a New York therapist
(the DST note shows for the weeks between the two changes) and cancels one from the manage page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.async_api import expect

from broker.clock import Clock
from tests.browser.conftest import NewContext
from tests.browser.support import check_page_at_widths, page_errors
from tests.support import Api

# Monday 1 March 2027: New York moves its clocks on 14 March, London on 28 March.
NOW = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)


async def test_client_books_a_six_week_series_sees_the_dst_note_and_cancels_one_session(
    api: Api, new_context: NewContext, clock: Clock, request: pytest.FixtureRequest
) -> None:
    clock.advance(NOW - clock.now())
    therapist = await api.therapist(timezone="America/New_York", name="Dr Nova York")
    await api.availability(therapist)
    await api.session_type(
        therapist, min_notice_minutes=60, series_frequencies=["weekly", "biweekly"], series_max_sessions=12
    )
    context = await new_context(name="client", timezone_id="Europe/London")
    page = await context.new_page()
    await page.clock.set_fixed_time(NOW)

    await page.goto(f"/book/{therapist['slug']}")
    first_time = page.locator("button.time").first
    await expect(first_time).to_be_visible()
    await first_time.click()
    await page.get_by_label("Your name").fill("Sam Series")
    await page.get_by_label("Email").fill("sam.series@example.org")
    await page.get_by_label("Every week").check()
    await expect(page.get_by_label("Number of sessions")).to_have_value("6")
    await expect(page.locator("#series-preview li")).to_have_count(6)
    note = page.locator("#series-dst-note")
    await expect(note).to_be_visible()
    await expect(note).to_contain_text("Daylight-saving time")
    # The two weeks between New York's change and London's are marked.
    await expect(page.locator("#series-preview li", has_text="*")).to_have_count(2)
    await check_page_at_widths(page, "series-preview")

    await page.get_by_role("button", name="Book 6 sessions").click()
    await expect(page.get_by_role("heading", name="Your sessions are booked")).to_be_visible()
    await expect(page.locator("#series-dates li")).to_have_count(6)
    manage = await page.locator("#series-manage-url").input_value()
    assert re.search(r"/manage/[0-9a-f-]{36}#k=trw_", manage), manage
    await check_page_at_widths(page, "series-booked")

    await page.goto(manage)
    sessions = page.locator("#series-sessions li")
    await expect(sessions).to_have_count(6)
    await expect(sessions.filter(has_text="Booked")).to_have_count(6)
    await check_page_at_widths(page, "series-manage")
    third = sessions.nth(2)
    await third.get_by_role("button").filter(has_text=re.compile(r"^Cancel$")).click()
    await expect(page.get_by_role("heading", name="Cancel this session?")).to_be_focused()
    await page.get_by_role("button", name="Yes, cancel").click()
    await expect(page.get_by_role("status").filter(has_text="That session is cancelled")).to_be_visible()
    await expect(sessions.nth(2)).to_contain_text("Cancelled")
    await expect(sessions.filter(has_text="Booked")).to_have_count(5)
    assert page_errors(request) == []
