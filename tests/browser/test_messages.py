"""The therapist's Messages and Webhooks pages in Chromium (issue 10): booking notices that persist,
an email preview, a webhook registered against a loopback receiver with its secret shown once, the
delivery log after a booking, "Send again", a receiver that answers 410 Gone, and axe at both widths."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Locator, Page, expect
from standardwebhooks.webhooks import Webhook

from broker.clock import Clock
from broker.settings import Settings
from tests.browser.support import check_page_at_widths, log_in, page_errors, set_password_from_invite
from tests.support import Api

PASSWORD = "a calm and long password"
WAIT_SECONDS = 15  # every wait in this file is bounded by this


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings, with webhooks allowed to reach the loopback receiver below."""
    return dataclasses.replace(settings, allow_private_webhook_urls=True)


@dataclasses.dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A loopback webhook receiver: `/hook` accepts (204), `/gone` answers 410 Gone. Keeps what came."""

    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.received: list[Delivery] = []
        self.arrived = asyncio.Condition()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        delivery = Delivery(request.path, dict(request.headers), await request.read())
        async with self.arrived:
            self.received.append(delivery)
            self.arrived.notify_all()
        return web.Response(status=410 if request.path == "/gone" else 204)

    async def wait_for(self, count: int, path: str = "/hook") -> list[Delivery]:
        """The first `count` deliveries to `path`, waiting at most WAIT_SECONDS for them."""

        def enough() -> bool:
            return len([d for d in self.received if d.path == path]) >= count

        async with asyncio.timeout(WAIT_SECONDS), self.arrived:
            await self.arrived.wait_for(enough)
        return [d for d in self.received if d.path == path][:count]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    server = TestServer(app, host="127.0.0.1")
    found = Receiver(server)
    app.router.add_post("/hook", found.handle)
    app.router.add_post("/gone", found.handle)
    await server.start_server()
    yield found
    await server.close()


async def refresh_until(found: Callable[[], Awaitable[int]], refresh: Locator) -> None:
    """Click `refresh` until `found()` counts something, for at most WAIT_SECONDS."""
    async with asyncio.timeout(WAIT_SECONDS):
        while not await found():
            await refresh.click()
            await asyncio.sleep(0.2)


async def therapist_with_a_type(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    therapist = await api.therapist(name="Dr Ada Example", timezone="Europe/Berlin")
    await set_password_from_invite(api, therapist, PASSWORD)
    await api.availability(therapist)
    return therapist, await api.session_type(therapist, name="Individual session")


async def book_tomorrow(api: Api, clock: Clock, therapist: dict[str, Any], session_type: dict[str, Any]) -> str:
    today = clock.now().date()
    slots = await api.slots(therapist, session_type, today + dt.timedelta(days=1), today + dt.timedelta(days=2))
    status, body = await api.book(therapist, session_type, slots[0]["start"], name="Robin Client")
    assert status == 201, body
    return str(body["id"])


async def test_the_pages_and_email_previews_need_a_login(http: aiohttp.ClientSession, base_url: str) -> None:
    for path in ("/dashboard/messages", "/dashboard/webhooks"):
        async with http.get(base_url + path, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == f"/login?next={path}"
    async with http.get(base_url + "/dashboard/messages/previews/reminder", allow_redirects=False) as resp:
        assert resp.status == 401
        assert "a reminder" not in await resp.text()


async def test_therapist_turns_on_booking_notices_and_previews_a_reminder(
    api: Api, therapist_page: Page, request: pytest.FixtureRequest
) -> None:
    therapist, _ = await therapist_with_a_type(api)
    page = therapist_page
    await log_in(page, therapist["email"], PASSWORD)
    await page.get_by_role("navigation", name="Your pages").get_by_role("link", name="Messages").click()
    await expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()

    notices = page.get_by_role("region", name="Booking notices")
    turn_on = notices.get_by_label("Email me about new bookings and cancellations")
    await expect(turn_on).to_be_enabled()
    await expect(turn_on).not_to_be_checked()
    await expect(notices.get_by_label("Only the time (nothing about the client)")).to_be_checked()
    await turn_on.check()
    await notices.get_by_label("The time and the client's initials").check()
    await notices.get_by_label("Name the session type in clients' emails").check()
    await notices.get_by_role("button", name="Save booking notices").click()
    await expect(notices.get_by_role("status")).to_contain_text("Saved. You will get an email for each new booking")

    status, saved = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/notifications", token=therapist["api_token"]
    )
    assert status == 200, saved
    assert saved == {"notify_bookings": True, "notice_detail": "initials", "email_session_type": True}
    await page.reload()
    await expect(turn_on).to_be_enabled()
    await expect(turn_on).to_be_checked()
    await expect(notices.get_by_label("The time and the client's initials")).to_be_checked()
    await expect(notices.get_by_label("Name the session type in clients' emails")).to_be_checked()

    previews = page.get_by_role("region", name="Email previews")
    await previews.get_by_role("button", name=re.compile(r"^Preview: Reminder")).click()
    await expect(page.get_by_role("heading", name=re.compile(r"^Preview: Reminder"))).to_be_focused()
    await expect(page.locator("#preview-subject")).to_have_text(re.compile(r"\S"))
    await expect(page.locator("#preview-text")).to_contain_text("reminder")
    # The HTML version renders in its sandboxed frame with the email's own inline styles, and its
    # document may do nothing else (no script, opaque origin, framed only by our pages).
    frame = page.frame_locator("#preview-html")
    await expect(frame.locator("body")).to_contain_text("a reminder")
    await expect(frame.locator("body")).to_have_css("max-width", "560px")
    assert await page.locator("#preview-html").get_attribute("sandbox") == ""
    shown = await page.request.get(await page.locator("#preview-html").get_attribute("src") or "")
    assert shown.ok and "a reminder" in await shown.text()
    policy = shown.headers["content-security-policy"]
    assert policy.startswith("sandbox;") and "default-src 'none'" in policy and "script-src" not in policy
    assert "frame-ancestors 'self'" in policy
    assert (await page.request.get("/dashboard/messages/previews/no-such-email")).status == 404
    logged = "\n".join(log.dump() for log in request.node.__dict__["_page_logs"])
    assert "Content Security Policy" not in logged, logged
    await expect(page.get_by_role("region", name="Messages that could not be delivered")).to_contain_text(
        "None: every message so far was delivered"
    )
    await check_page_at_widths(page, "messages")
    assert page_errors(request) == []


async def test_therapist_registers_a_webhook_and_sends_a_delivery_again(
    api: Api, clock: Clock, therapist_page: Page, receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    therapist, session_type = await therapist_with_a_type(api)
    page = therapist_page
    await log_in(page, therapist["email"], PASSWORD)
    await page.get_by_role("navigation", name="Your pages").get_by_role("link", name="Webhooks").click()
    await expect(page.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()
    await expect(page.locator("#endpoints")).to_contain_text("No endpoints yet")

    form = page.get_by_role("region", name="Add an endpoint")
    await form.get_by_role("button", name="Add endpoint").click()
    await expect(form.get_by_role("alert")).to_contain_text("starting with https://")
    await expect(form.get_by_label("Address (URL)")).to_be_focused()
    await form.get_by_label("Address (URL)").fill(receiver.url("/hook"))
    await form.get_by_label("A series of sessions is booked").uncheck()
    await form.get_by_label("Description").fill("Practice software")
    await form.get_by_role("button", name="Add endpoint").click()

    secret_box = page.get_by_role("region", name="Signing secret")
    await expect(secret_box.get_by_role("heading", name="Signing secret")).to_be_focused()
    await expect(secret_box).to_contain_text("it is shown only once")
    secret = await secret_box.get_by_label("Secret").input_value()
    assert secret.startswith("whsec_")
    await check_page_at_widths(page, "webhooks-secret", shoot=False)
    await secret_box.get_by_role("button", name="I have saved it, hide the secret").click()
    await expect(secret_box).to_be_hidden()
    await page.reload()
    await expect(page.locator('#endpoints[aria-busy="false"]')).to_be_attached()
    assert secret not in await page.content(), "the secret is shown once"

    endpoint = page.locator("article.endpoint").filter(has_text="Practice software")
    await expect(endpoint).to_contain_text("On")
    await expect(endpoint).to_contain_text("Nothing sent yet")
    status, listed = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/webhooks", token=therapist["api_token"]
    )
    assert status == 200 and len(listed["webhooks"]) == 1, listed
    assert "series.created" not in listed["webhooks"][0]["events"]
    assert secret not in str(listed), "the secret is shown once, never listed"

    # A booking made through the API reaches the receiver, signed with the secret the page showed.
    await book_tomorrow(api, clock, therapist, session_type)
    (first,) = await receiver.wait_for(1)
    sent = Webhook(secret).verify(first.body, first.headers)
    assert sent["type"] == "booking.created"
    delivery_id = first.headers["webhook-id"]

    row = endpoint.locator(f'tr[data-delivery="{delivery_id}"]')
    await expect(row).to_have_count(0)  # the log is as it was when the page loaded
    refresh = endpoint.get_by_role("button", name="Refresh delivery log of Practice software")
    # The worker records the outcome just after the receiver answered: refresh until the log shows it.
    await refresh_until(lambda: row.and_(page.locator('[data-state="delivered"]')).count(), refresh)
    await expect(row.locator("td.status-code")).to_have_text("204")
    await expect(row.locator("td.attempts")).to_have_text("1")
    await expect(row).to_contain_text("booking.created")
    await expect(row).to_contain_text("Delivered")
    await check_page_at_widths(page, "webhooks")

    await row.get_by_role("button", name=re.compile(r"^Send again: booking\.created")).click()
    await expect(endpoint.get_by_role("status")).to_contain_text("Queued to send again")
    again = (await receiver.wait_for(2))[1]
    assert again.headers["webhook-id"] == delivery_id, "sent again under the same webhook-id"
    Webhook(secret).verify(again.body, again.headers)
    sent_twice = row.and_(page.locator('[data-state="delivered"]')).filter(
        has=page.locator("td.attempts", has_text=re.compile(r"^2$"))
    )
    await refresh_until(sent_twice.count, refresh)
    await expect(row).to_contain_text("Delivered")
    await expect(endpoint.get_by_role("region", name="Delivery log").locator("tbody tr")).to_have_count(1)
    assert page_errors(request) == []


async def test_a_gone_receiver_switches_the_endpoint_off_which_the_therapist_switches_on_rotates_and_deletes(
    api: Api, clock: Clock, therapist_page: Page, receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    therapist, session_type = await therapist_with_a_type(api)
    status, created = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/webhooks",
        token=therapist["api_token"],
        json={"url": receiver.url("/gone"), "events": ["booking.created"], "description": "Old system"},
    )
    assert status == 201, created
    await book_tomorrow(api, clock, therapist, session_type)
    await receiver.wait_for(1, path="/gone")

    page = therapist_page
    await log_in(page, therapist["email"], PASSWORD, next_path="/dashboard/webhooks")
    endpoint = page.locator("article.endpoint").filter(has_text="Old system")
    # The worker records the 410 just after the receiver answered it: reload until the page shows it.
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            await expect(page.locator('#endpoints[aria-busy="false"]')).to_be_attached()
            if await endpoint.filter(has_text="Not sending").count():
                break
            await asyncio.sleep(0.2)
            await page.reload()
    await expect(endpoint.get_by_role("heading", level=3)).to_contain_text("Off")
    await expect(endpoint.locator("td.status-code")).to_have_text("410")
    await expect(endpoint.get_by_role("button", name="Switch on Old system")).to_be_visible()
    await check_page_at_widths(page, "webhooks-gone", shoot=False)

    await page.get_by_role("navigation", name="Account").get_by_role("link", name="Messages").click()
    failed = page.get_by_role("region", name="Messages that could not be delivered")
    await expect(failed.locator("tbody tr")).to_have_count(1)
    await expect(failed.locator("tbody tr")).to_contain_text("410")
    await check_page_at_widths(page, "messages-failed", shoot=False)

    # Back on Webhooks: switch it on again, rotate its secret, and delete it after confirming.
    await page.get_by_role("navigation", name="Account").get_by_role("link", name="Webhooks").click()
    await endpoint.get_by_role("button", name="Switch on Old system").click()
    await expect(page.locator("#endpoints-message")).to_have_text("Old system is switched on.")
    await expect(endpoint.get_by_role("heading", level=3)).to_contain_text("On")
    await expect(endpoint).not_to_contain_text("Not sending")

    await endpoint.get_by_role("button", name="Rotate secret of Old system").click()
    secret_box = page.get_by_role("region", name="Signing secret")
    await expect(secret_box).to_contain_text("signs with both the old and the new secret")
    rotated = await secret_box.get_by_label("Secret").input_value()
    assert rotated.startswith("whsec_")
    await expect(endpoint).to_contain_text("The previous secret also signs until")
    await secret_box.get_by_role("button", name="I have saved it, hide the secret").click()
    await expect(secret_box).to_be_hidden()
    await expect(page.locator("#secret-value")).to_have_value("")  # not left in the page either

    await endpoint.get_by_role("button", name="Delete Old system").click()
    confirm = endpoint.get_by_role("button", name="Yes, delete endpoint")
    await expect(confirm).to_be_focused()
    await endpoint.get_by_role("button", name="Keep it").click()
    await expect(confirm).to_be_hidden()
    await endpoint.get_by_role("button", name="Delete Old system").click()
    await confirm.click()
    await expect(page.locator("#endpoints-message")).to_have_text("Old system is deleted.")
    await expect(page.locator("#endpoints")).to_contain_text("No endpoints yet")
    status, listed = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/webhooks", token=therapist["api_token"]
    )
    assert status == 200 and listed["webhooks"] == [], listed
    assert page_errors(request) == []
