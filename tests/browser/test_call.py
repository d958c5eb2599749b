"""The session itself in Chromium: book, log in, join, wait, admit, and see each other."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable

import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from tests.browser.conftest import NewContext
from tests.browser.support import (
    check_page_at_widths,
    log_in,
    page_errors,
    set_password_from_invite,
    video_is_playing,
)
from tests.support import Api

PASSWORD = "correct horse battery staple"


async def wait_until(condition: Callable[[], bool], what: str, seconds: float = 15) -> None:
    for _ in range(int(seconds * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"gave up waiting: {what}")


async def book_soonest_time(page: Page, slug: str) -> str:
    """Book, through the page, the first free time at least 20 seconds away; return the join link."""
    await page.goto(f"/book/{slug}")
    await expect(page.locator("button.time").first).to_be_visible()
    index = await page.evaluate(
        """() => [...document.querySelectorAll('button.time')]
                 .findIndex(b => new Date(b.dataset.start) - Date.now() > 20000)"""
    )
    assert index >= 0
    await page.locator("button.time").nth(index).click()
    await page.get_by_label("Your name").fill("Sam Client")
    await page.get_by_label("Email").fill("sam@example.org")
    await page.get_by_role("button", name="Confirm booking").click()
    await expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    return await page.locator("#join-url").input_value()


async def test_client_waits_therapist_admits_and_both_see_each_other(
    api: Api, new_context: NewContext, request: pytest.FixtureRequest
) -> None:
    therapist, _ = await api.ready_therapist(
        min_notice_minutes=0, slot_interval_minutes=5, duration_minutes=30, buffer_after_minutes=0
    )
    await set_password_from_invite(api, therapist, PASSWORD)
    client = await (await new_context(name="client", timezone_id="Europe/Berlin")).new_page()
    therapist_page = await (await new_context(name="therapist", timezone_id="Europe/Berlin")).new_page()

    join_url = await book_soonest_time(client, therapist["slug"])
    match = re.search(r"/join/([0-9a-f-]{36})#k=", join_url)
    assert match, join_url
    booking_id = match.group(1)
    # Consent and emergency contact given beforehand (their steps: tests/browser/test_safety.py).
    await api.ready_to_join(booking_id, join_url.split("#k=", 1)[1])

    await log_in(therapist_page, therapist["email"], PASSWORD, f"/room/{booking_id}")
    await expect(therapist_page.get_by_text("Nobody is waiting.")).to_be_visible()

    sockets: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    await client.route_web_socket(re.compile(r"/ws(\?|$)"), through)
    await client.goto(join_url)
    await expect(client.get_by_role("button", name="Join session")).to_be_visible()
    await expect(client.locator("#check-camera")).to_have_attribute("data-state", "ok")
    await expect(client.locator("#check-net")).to_have_attribute("data-state", "ok")
    await check_page_at_widths(client, "join")
    where = client.get_by_role("group", name="Where are you right now?")
    await expect(where.get_by_label("Country")).to_have_value("DE")  # prefilled: the usual place
    await where.get_by_label("State, province or region").select_option("DE-BE")
    await client.get_by_role("button", name="Join session").click()
    await expect(client.get_by_text("Your therapist will let you in.")).to_be_visible()
    await check_page_at_widths(client, "waiting")

    entry = therapist_page.locator("#queue li")
    await expect(entry).to_contain_text("Sam Client")
    await expect(entry).to_contain_text("Berlin, Germany")
    await check_page_at_widths(therapist_page, "room")
    await therapist_page.get_by_role("button", name="Admit").click()

    await video_is_playing(client, "#remote")
    await video_is_playing(therapist_page, "#remote")
    await expect(client.locator("#conn")).to_have_text("Connected")
    await expect(therapist_page.locator("#conn")).to_have_text("Connected")
    await expect(therapist_page.locator("#client-location")).to_contain_text("Berlin, Germany")
    await check_page_at_widths(client, "call")
    await check_page_at_widths(therapist_page, "room-call")

    # The network drops the client's signaling socket: it comes back with a fresh token on its
    # own, is not sent to the waiting room again, and the video keeps playing.
    await sockets[-1].close(code=1001, reason="network changed")
    await wait_until(lambda: len(sockets) == 2, "the client opened a new signaling socket")
    await expect(client.locator("#conn")).to_have_text("Connected")
    await expect(client.get_by_text("Your therapist will let you in.")).to_be_hidden()
    await expect(therapist_page.get_by_text("Nobody is waiting.")).to_be_visible()
    await expect(therapist_page.locator("#conn")).to_have_text("Connected")
    await expect(therapist_page.locator("#stage-note")).to_be_hidden()
    await video_is_playing(client, "#remote")
    await video_is_playing(therapist_page, "#remote")

    await client.get_by_role("button", name="Mute").click()
    await expect(client.get_by_role("button", name="Unmute")).to_be_visible()
    await therapist_page.get_by_role("button", name="End session").click()
    await expect(client.get_by_role("heading", name="The session has ended")).to_be_visible()
    assert page_errors(request) == []


async def test_join_page_counts_down_before_the_window_opens(
    api: Api, client_page: Page, request: pytest.FixtureRequest
) -> None:
    therapist, session_type = await api.ready_therapist(min_notice_minutes=0)
    tomorrow = dt.date.today() + dt.timedelta(days=2)
    slots = await api.slots(therapist, session_type, tomorrow, tomorrow)
    status, booking = await api.book(therapist, session_type, slots[0]["start"])
    assert status == 201, booking
    await api.ready_to_join(booking["id"], booking["booking_key"])

    await client_page.goto(booking["join_url"])
    await expect(client_page.get_by_role("heading", name=re.compile("The session room opens at"))).to_be_visible()
    await expect(client_page.get_by_role("timer")).to_have_text(re.compile(r"^\d+:\d\d:\d\d$"))
    await check_page_at_widths(client_page, "join-early")
    assert page_errors(request) == []


async def test_device_check_page_works_for_anyone(client_page: Page, request: pytest.FixtureRequest) -> None:
    await client_page.goto("/test")
    await expect(client_page.locator("#check-camera")).to_have_attribute("data-state", "ok")
    await expect(client_page.locator("#check-mic")).to_have_attribute("data-state", "ok")
    await expect(client_page.locator("#check-net")).to_have_attribute("data-state", "ok")
    await check_page_at_widths(client_page, "test")
    assert page_errors(request) == []
