"""The cancellation policy in Chromium: shown before booking, the late-fee warning on the manage page,
a late cancellation, and the therapist waiving its fee under "Needs review" (phone and desktop, axe)."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import NewContext
from tests.browser.support import check_page_at_widths, log_in, page_errors, set_password_from_invite
from tests.browser.test_booking_pages import book_first_free_time
from tests.support import Api

PASSWORD = "a calm and long password"
POLICY = {
    "window_hours": 24,
    "text": "Please cancel at least a day ahead: late cancellations are charged.",
    "late_cancel_fee": {"amount": "60.00", "currency": "EUR"},
    "no_show_fee": {"amount": "80.00", "currency": "EUR"},
}


async def test_client_sees_the_policy_cancels_late_and_the_therapist_waives_the_fee(
    api: Api, new_context: NewContext, therapist_page: Page, request: pytest.FixtureRequest
) -> None:
    therapist = await api.therapist(name="Dr Ada Example")
    await set_password_from_invite(api, therapist, PASSWORD)
    await api.availability(therapist)
    await api.session_type(therapist, min_notice_minutes=60, slot_interval_minutes=30, policy=POLICY)

    context = await new_context(timezone_id="Europe/Berlin")
    page = await context.new_page()
    await page.goto(f"/book/{therapist['slug']}")
    policy = page.locator("#policy")
    await expect(policy).to_contain_text(POLICY["text"])
    await expect(policy).to_contain_text(re.compile(r"less than 24 hours before the start is a late cancellation"))
    await expect(policy).to_contain_text("60.00")
    await check_page_at_widths(page, "book-policy", shoot=False)

    # The first free time is within a day: cancelling it is late.
    booked = await book_first_free_time(page, therapist["slug"], name="Robin Late")
    await page.goto(booked["manage"])
    await expect(page.locator("#b-status")).to_have_text("Confirmed")
    warning = page.locator("#policy-late")
    await expect(warning).to_be_visible()
    await expect(warning).to_contain_text(re.compile(r"late cancellation: under the policy a fee of .*60\.00"))
    await page.get_by_role("button", name="Cancel session").click()
    await expect(page.locator("#cancel-fee")).to_contain_text("60.00")
    await check_page_at_widths(page, "manage-late-fee")
    await page.get_by_role("button", name="Yes, cancel session").click()
    await expect(page.locator("#b-status")).to_have_text(re.compile(r"^Cancelled late"))
    await expect(warning).to_be_hidden()

    await log_in(therapist_page, therapist["email"], PASSWORD)
    review = therapist_page.get_by_role("region", name="Needs review")
    item = review.locator("li.review-item").filter(has_text="Robin Late")
    await expect(item).to_contain_text("Late cancellation")
    await expect(item).to_contain_text("60.00")
    await check_page_at_widths(therapist_page, "dashboard-review")
    await item.get_by_role("button", name="Waive").click()
    await expect(item.get_by_role("alert")).to_contain_text("Give a reason")
    await item.get_by_label("Reason (Robin Late)").fill("First time; they called ahead")
    await item.get_by_role("button", name="Waive").click()
    await expect(review).to_contain_text("No late cancellations or no-shows waiting for a decision")

    status, found = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/review", token=therapist["api_token"]
    )
    assert status == 200 and found["fees"] == []
    start_day = booked["start"][:10]
    status, csv_text = await api.call(
        "GET",
        f"/api/v1/therapists/{therapist['slug']}/sessions.csv?from={start_day}&to={start_day}",
        token=therapist["api_token"],
    )
    assert status == 200 and "late_cancelled" in csv_text and "First time; they called ahead" in csv_text
    assert page_errors(request) == []
