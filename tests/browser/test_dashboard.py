"""The therapist's login and dashboard in Chromium: errors, join buttons, idle logout, CSRF, accessibility."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from playwright.async_api import Page, expect

from broker.clock import Clock
from broker.settings import Settings
from tests.browser.support import check_page_at_widths
from tests.support import Api

PASSWORD = "a calm and long password"


def midday_zone(now: dt.datetime) -> str:
    """A fixed-offset zone where it is about noon now, so sessions later today stay on today."""
    offset = 12 - now.astimezone(dt.UTC).hour
    if offset > 14:
        offset -= 24
    if offset == 0:
        return "Etc/GMT"
    # POSIX-style names: Etc/GMT-3 is three hours *ahead* of UTC.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


async def therapist_with_sessions(api: Api, clock: Clock) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A therapist with a password, hours around the clock, and two bookings: later today and tomorrow."""
    now = clock.now()
    therapist = await api.therapist(timezone=midday_zone(now), name="Dr Ada Example")
    secret = urlsplit(therapist["invite_url"]).fragment.removeprefix("t=")
    status, body = await api.call("POST", "/api/v1/account/password", token=secret, json={"password": PASSWORD})
    assert status == 200, body
    await api.availability(therapist)
    session_type = await api.session_type(therapist, name="Individual session", slot_interval_minutes=5)
    slots = await api.slots(
        therapist, session_type, now.date() - dt.timedelta(days=1), now.date() + dt.timedelta(days=2)
    )
    soon = next(s for s in slots if dt.datetime.fromisoformat(s["start"]) >= now + dt.timedelta(minutes=15))
    tomorrow = next(s for s in slots if dt.datetime.fromisoformat(s["start"]) >= now + dt.timedelta(hours=26))
    booked = []
    for slot, name in ((soon, "Robin Client"), (tomorrow, "Sam Later")):
        status, body = await api.book(therapist, session_type, slot["start"], name=name)
        assert status == 201, body
        booked.append(body)
    return therapist, booked


async def log_in(page: Page, email: str, password: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()


async def test_wrong_password_shows_an_error_then_login_shows_todays_sessions_and_join_opens(
    api: Api, clock: Clock, therapist_page: Page
) -> None:
    therapist, (soon, _) = await therapist_with_sessions(api, clock)
    page = therapist_page

    await log_in(page, therapist["email"], "not my password at all")
    await expect(page.get_by_role("alert")).to_contain_text("do not match an account")
    await expect(page).to_have_url(re.compile(r"/login$"))

    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))
    today = page.get_by_role("region", name=re.compile(r"^Today"))
    await expect(today).to_contain_text("Robin Client")
    await expect(page.get_by_role("region", name="Upcoming")).to_contain_text("Sam Later")
    join = today.get_by_role("button", name="Join session")
    await expect(join).to_be_disabled()

    # Move the server to 3 seconds before the join window opens: the page's own timer lights the button.
    opens = dt.datetime.fromisoformat(soon["start"]) - dt.timedelta(minutes=10)
    clock.advance(opens - clock.now() - dt.timedelta(seconds=3))
    await page.reload()
    link = today.get_by_role("link", name="Join session")
    await expect(link).to_have_attribute("href", f"/room/{soon['id']}", timeout=12_000)


async def test_session_types_and_hours_are_edited_through_the_api_with_the_csrf_token(
    api: Api, clock: Clock, therapist_page: Page, db: asyncpg.Connection
) -> None:
    therapist, _ = await therapist_with_sessions(api, clock)
    page = therapist_page
    await log_in(page, therapist["email"], PASSWORD)
    await expect(page).to_have_url(re.compile(r"/dashboard$"))

    types = page.get_by_role("region", name="Session types")
    await types.get_by_label("Name").fill("Couples session")
    await types.get_by_label(re.compile("^Length")).fill("80")
    await types.get_by_role("button", name="Add session type").click()
    await expect(types.get_by_role("list")).to_contain_text("Couples session · 80 min")
    assert await db.fetchval("SELECT count(*) FROM session_types WHERE name = 'Couples session' AND active") == 1

    await types.get_by_role("button", name="Remove Couples session").click()
    await expect(types.get_by_role("list")).not_to_contain_text("Couples session")
    assert await db.fetchval("SELECT count(*) FROM session_types WHERE name = 'Couples session' AND active") == 0

    hours = page.get_by_role("region", name="Weekly hours")
    await hours.get_by_role("button", name="Remove these hours on Sunday").click()
    await hours.get_by_role("button", name="Save hours").click()
    await expect(hours.get_by_role("status")).to_have_text("Your hours are saved.")
    weekly = json.loads(await db.fetchval("SELECT weekly::text FROM availability"))
    assert sorted(weekly) == ["0", "1", "2", "3", "4", "5"], "Sunday (6) is gone, Monday to Saturday stay"


async def test_idle_session_ends_and_the_page_says_so(
    api: Api, clock: Clock, therapist_page: Page, settings: Settings
) -> None:
    therapist, _ = await therapist_with_sessions(api, clock)
    page = therapist_page
    await log_in(page, therapist["email"], PASSWORD)
    await expect(page).to_have_url(re.compile(r"/dashboard$"))
    # The dashboard's own API calls touch the session; let them finish before time moves on,
    # or one landing after the jump would count as activity.
    await page.wait_for_load_state("networkidle")

    clock.advance(dt.timedelta(minutes=settings.session_idle_minutes, seconds=5))
    await page.reload()
    await expect(page).to_have_url(re.compile(r"/login\?ended=idle$"))
    await expect(page.get_by_role("status")).to_contain_text(
        f"ended because you were inactive for {settings.session_idle_minutes} minutes"
    )


ATTACK = """<!doctype html><html><body>
<form id="f" method="post" action="{target}" enctype="text/plain">
  <input name='{{"name": "Forged", "duration_minutes": 50, "x": "' value='"}}'>
</form>
<script>document.getElementById("f").submit();</script>
</body></html>"""


async def test_a_form_posted_from_another_origin_is_refused(
    api: Api, clock: Clock, therapist_page: Page, db: asyncpg.Connection, base_url: str
) -> None:
    therapist, _ = await therapist_with_sessions(api, clock)
    page = therapist_page
    await log_in(page, therapist["email"], PASSWORD)
    await expect(page).to_have_url(re.compile(r"/dashboard$"))

    # Same site (127.0.0.1, so the cookie rides along even with SameSite), different origin (port).
    attacker = "http://127.0.0.1:9/attack"
    target = f"{base_url}/api/v1/therapists/{therapist['slug']}/session-types"
    await page.route(
        attacker, lambda route: route.fulfill(status=200, content_type="text/html", body=ATTACK.format(target=target))
    )
    async with page.expect_response(target) as answer:
        await page.goto(attacker)
    response = await answer.value
    assert response.status == 403
    assert (await response.json())["code"] == "csrf_failed"
    assert await db.fetchval("SELECT count(*) FROM session_types WHERE name = 'Forged'") == 0
    # And the therapist is still logged in: nothing else happened on their behalf.
    await page.goto("/dashboard")
    await expect(page).to_have_url(re.compile(r"/dashboard$"))


async def test_login_and_dashboard_are_accessible_at_phone_and_desktop_width(
    api: Api, clock: Clock, therapist_page: Page
) -> None:
    therapist, _ = await therapist_with_sessions(api, clock)
    page = therapist_page
    await page.goto("/login")
    await check_page_at_widths(page, "login")

    await log_in(page, therapist["email"], PASSWORD)
    await expect(page).to_have_url(re.compile(r"/dashboard$"))
    await expect(page.get_by_role("button", name="Add hours on Monday")).to_be_visible()
    await check_page_at_widths(page, "dashboard")


async def test_invite_page_sets_the_password_and_opens_the_dashboard(api: Api, therapist_page: Page) -> None:
    therapist = await api.therapist(name="Dr New Person")
    page = therapist_page
    invite = urlsplit(therapist["invite_url"])
    await page.goto(f"{invite.path}#{invite.fragment}")
    await expect(page.get_by_text("Hello Dr New Person")).to_be_visible()
    assert "#" not in page.url, "the secret leaves the address bar once read"
    await check_page_at_widths(page, "invite")
    await page.get_by_label(re.compile("^New password")).fill(PASSWORD)
    await page.get_by_label("Repeat the password").fill(PASSWORD)
    await page.get_by_role("button", name="Save password and log in").click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))
    await expect(page.get_by_role("heading", name="Hello, Dr New Person")).to_be_visible()
