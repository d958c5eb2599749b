"""The client's booking and manage pages in Chromium: book, add to calendar, reschedule, cancel, see the slot again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import NewContext
from tests.browser.support import check_page_at_widths, page_errors
from tests.support import Api

ZONE = "America/New_York"


async def book_first_free_time(page: Page, slug: str, *, name: str = "Sam Client") -> dict[str, str]:
    """Book the first free time on the page; return the chosen start and the links shown."""
    await page.goto(f"/book/{slug}")
    first_time = page.locator("button.time").first
    await expect(first_time).to_be_visible()
    start = await first_time.get_attribute("data-start")
    assert start is not None
    await first_time.click()
    await page.get_by_label("Your name").fill(name)
    await page.get_by_label("Email").fill("sam@example.org")
    place = page.get_by_role("group", name="Where will you be during sessions?")
    await place.get_by_label("Country").select_option("US")
    await place.get_by_label("State, province or region").select_option("US-NY")
    await page.get_by_role("button", name="Confirm booking").click()
    await expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    return {
        "start": start,
        "join": await page.locator("#join-url").input_value(),
        "manage": await page.locator("#manage-url").input_value(),
    }


async def show_day_of(page: Page, start: str) -> None:
    """Open the booking calendar on the day of `start`, whose first ten characters are that day in the
    page's zone. The calendar opens on the first day with free times, which late in the evening is
    often not the day of a time chosen later."""
    await expect(page.locator("button.time").first).to_be_visible()
    day = page.locator(f'button.day[data-day="{start[:10]}"]')
    if await day.count() == 0:
        await page.get_by_role("button", name="Next month").click()
    await day.click()


async def test_client_books_cancels_and_the_time_is_offered_again(
    api: Api, new_context: NewContext, request: pytest.FixtureRequest
) -> None:
    therapist, _ = await api.ready_therapist(min_notice_minutes=60, slot_interval_minutes=30, duration_minutes=50)
    context = await new_context(timezone_id=ZONE)
    page = await context.new_page()

    await page.goto(f"/book/{therapist['slug']}")
    await expect(page.get_by_label("Times are shown in this time zone")).to_have_value(ZONE)
    await expect(page.locator("button.time").first).to_be_visible()
    assert await page.get_by_role("button", name=re.compile(r"^Book \d")).count() > 0
    await check_page_at_widths(page, "book")

    booked = await book_first_free_time(page, therapist["slug"])
    assert re.search(r"/join/[0-9a-f-]{36}#k=trk_", booked["join"]), booked
    assert re.search(r"/manage/[0-9a-f-]{36}#k=trk_", booked["manage"]), booked
    await check_page_at_widths(page, "booked")
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Add to calendar").click()
    download = await download_info.value
    ics = Path(await download.path()).read_text()
    assert download.suggested_filename.endswith(".ics")
    assert "BEGIN:VEVENT" in ics and "trk_" not in ics

    await page.goto(booked["manage"])
    await expect(page.locator("#b-status")).to_have_text("Confirmed")
    await check_page_at_widths(page, "manage")
    await page.get_by_role("button", name="Reschedule").click()
    later = page.locator(f'button.time:not([data-start="{booked["start"]}"])').first
    new_start = await later.get_attribute("data-start")
    assert new_start is not None
    await later.click()
    await page.get_by_role("button", name="Move my session").click()
    await expect(page.get_by_role("status").filter(has_text="Your session is moved")).to_be_visible()
    await page.goto(f"/book/{therapist['slug']}")
    await show_day_of(page, booked["start"])
    await expect(page.locator(f'button.time[data-start="{booked["start"]}"]')).to_be_visible()
    await show_day_of(page, new_start)
    await expect(page.locator(f'button.time[data-start="{new_start}"]')).to_have_count(0)
    await page.goto(booked["manage"])
    await page.get_by_role("button", name="Cancel session").click()
    await page.get_by_role("button", name="Yes, cancel session").click()
    await expect(page.locator("#b-status")).to_have_text("Cancelled")

    await page.goto(f"/book/{therapist['slug']}")
    await show_day_of(page, new_start)
    await expect(page.locator(f'button.time[data-start="{new_start}"]')).to_be_visible()
    assert page_errors(request) == []


async def test_home_page_is_accessible(client_page: Page) -> None:
    await client_page.goto("/")
    await expect(client_page.get_by_role("link", name="Test my camera and microphone")).to_be_visible()
    await check_page_at_widths(client_page, "home")
