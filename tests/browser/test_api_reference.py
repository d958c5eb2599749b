"""The API reference page renders this instance's OpenAPI document, readable and accessible at both widths."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser.support import check_page_at_widths


async def test_api_reference_lists_operations_parameters_and_auth(client_page: Page) -> None:
    page = client_page
    await page.goto("/api")
    book = page.locator("#op-post-api-v1-therapists-slug-bookings")
    await expect(book.get_by_role("heading", name="POST /api/v1/therapists/{slug}/bookings")).to_be_visible()
    await expect(book.get_by_text("Idempotency-Key", exact=True)).to_be_visible()
    await expect(book.get_by_role("heading", name="Request body (application/json)")).to_be_visible()
    # The table of contents links to it, and the request body's fields are resolved from components.
    contents = page.get_by_role("navigation", name="Contents")
    await expect(contents.get_by_role("link", name="POST /api/v1/therapists/{slug}/bookings")).to_be_visible()
    await expect(book.get_by_text("start", exact=True).first).to_be_visible()
    therapists = page.locator("#op-post-api-v1-therapists")
    await expect(therapists.get_by_role("link", name="adminToken")).to_be_visible()
    await expect(page.get_by_role("heading", name="Errors")).to_be_visible()
    await expect(page.get_by_role("status")).to_be_hidden()
    await check_page_at_widths(page, "api-reference", shoot=False)
