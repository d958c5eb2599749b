"""The pages around the main flows: forgot password, a link without its key, a therapist that does not exist."""

from __future__ import annotations

import datetime as dt

from playwright.async_api import Page, expect

from tests.browser.support import check_page_at_widths
from tests.support import Api


async def test_forgot_password_answers_the_same_for_any_email_and_is_accessible(client_page: Page) -> None:
    page = client_page
    await page.goto("/forgot")
    await check_page_at_widths(page, "forgot")
    await page.get_by_label("Email").fill("nobody-here@example.org")
    await page.get_by_role("button", name="Get a reset link").click()
    # Whether or not the address has an account, the page says the same thing.
    await expect(page.get_by_role("status")).to_be_visible()
    await check_page_at_widths(page, "forgot-sent", shoot=False)


async def test_a_manage_link_without_its_key_says_what_is_missing(client_page: Page, api: Api) -> None:
    therapist, st = await api.ready_therapist()
    slot = (
        await api.slots(therapist, st, dt.date.today() + dt.timedelta(days=1), dt.date.today() + dt.timedelta(days=1))
    )[0]
    _, booking = await api.book(therapist, st, slot["start"])
    await client_page.goto(f"/manage/{booking['id']}")  # the #k=... part lost, e.g. by a mail client
    await expect(client_page.get_by_text("This link is missing its private key")).to_be_visible()
    await check_page_at_widths(client_page, "manage-no-key", shoot=False)


async def test_an_unknown_booking_page_is_a_friendly_404(client_page: Page) -> None:
    response = await client_page.goto("/book/no-such-therapist")
    assert response is not None and response.status == 404
    await expect(client_page.get_by_role("link", name="Go to the Teleroom home page")).to_be_visible()
    await check_page_at_widths(client_page, "not-found", shoot=False)
