"""Therapist accounts over real HTTP: invite links, login, sessions, idle timeout, CSRF, throttling."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from broker.clock import Clock
from broker.settings import Settings
from tests.support import Api

PASSWORD = "correct horse battery"
COOKIE = "teleroom_session"


class Browserish:
    """An HTTP client that keeps cookies like a browser (on 127.0.0.1 too) and submits our forms."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.session.close()

    def cookie(self) -> str | None:
        for morsel in self.session.cookie_jar:
            if morsel.key == COOKIE:
                return morsel.value
        return None

    async def form_token(self, path: str = "/login") -> str:
        async with self.session.get(self.base + path) as resp:
            assert resp.status == 200, await resp.text()
            match = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
        assert match, f"no CSRF field on {path}"
        return match.group(1)

    async def login(self, email: str, password: str, **extra: str) -> tuple[int, str, aiohttp.ClientResponse]:
        token = await self.form_token()
        data = {"email": email, "password": password, "csrf_token": token, **extra}
        async with self.session.post(self.base + "/login", data=data, allow_redirects=False) as resp:
            return resp.status, await resp.text(), resp

    async def csrf(self) -> str:
        async with self.session.get(self.base + "/api/v1/session") as resp:
            assert resp.status == 200, await resp.text()
            token: str = (await resp.json())["csrf_token"]
            return token

    async def call(
        self, method: str, path: str, *, json_body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base + path, json=json_body, headers=headers or {}, allow_redirects=False
        ) as resp:
            if resp.content_type in ("application/json", "application/problem+json"):
                return resp.status, await resp.json(content_type=None)
            return resp.status, await resp.text()


@pytest.fixture
async def browser_http(base_url: str) -> AsyncIterator[Browserish]:
    client = Browserish(base_url)
    yield client
    await client.close()


@pytest.fixture
async def other_browser(base_url: str) -> AsyncIterator[Browserish]:
    client = Browserish(base_url)
    yield client
    await client.close()


def link_secret(url: str) -> str:
    parts = urlsplit(url)
    assert parts.query == "", "a link's secret must never travel in the query"
    match = re.fullmatch(r"t=(tr[ir]_[A-Za-z0-9_-]+)", parts.fragment)
    assert match, url
    return match.group(1)


async def choose_password(api: Api, secret: str, password: str = PASSWORD) -> tuple[int, Any]:
    return await api.call("POST", "/api/v1/account/password", token=secret, json={"password": password})


async def therapist_with_password(api: Api) -> dict[str, Any]:
    therapist = await api.therapist()
    status, body = await choose_password(api, link_secret(therapist["invite_url"]))
    assert status == 200, body
    return therapist


async def session_type_count(db: asyncpg.Connection, therapist: dict[str, Any]) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM session_types s JOIN therapists t ON t.id = s.therapist_id WHERE t.slug = $1",
        therapist["slug"],
    )
    return count


SESSION_TYPE = {"name": "Intake", "duration_minutes": 50}


async def test_invite_then_password_then_login_gives_a_cookie_the_therapist_api_accepts(
    api: Api, browser_http: Browserish
) -> None:
    therapist = await api.therapist()
    url = urlsplit(therapist["invite_url"])
    assert url.path == "/invite" and url.fragment.startswith("t=tri_")

    status, info = await api.call("GET", "/api/v1/account/password-link", token=link_secret(therapist["invite_url"]))
    assert status == 200 and info["purpose"] == "invite" and info["email"] == therapist["email"]
    await choose_password(api, link_secret(therapist["invite_url"]))

    status, _, resp = await browser_http.login(therapist["email"], PASSWORD)
    assert status == 303 and resp.headers["Location"] == "/dashboard"
    set_cookie = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith(COOKIE + "="))
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert "Secure" not in set_cookie  # plain http on loopback; Secure comes with an https origin

    slug = therapist["slug"]
    status, body = await browser_http.call("GET", f"/api/v1/therapists/{slug}/availability")
    assert status == 200, body
    token = await browser_http.csrf()
    status, body = await browser_http.call(
        "POST", f"/api/v1/therapists/{slug}/session-types", json_body=SESSION_TYPE, headers={"X-CSRF-Token": token}
    )
    assert status == 201, body
    # Another therapist's API is still closed to this session.
    other = await api.therapist()
    status, body = await browser_http.call("GET", f"/api/v1/therapists/{other['slug']}/availability")
    assert status == 403, body


async def test_secure_cookie_behind_an_https_origin(
    database_url: str, settings: Settings, clock: Clock, http: aiohttp.ClientSession
) -> None:
    import dataclasses

    from aiohttp.test_utils import TestServer

    from broker.app import create_app
    from tests.support import free_port

    https = dataclasses.replace(settings, public_origin="https://teleroom.example.org", port=free_port())
    server = TestServer(create_app(https, clock=clock), host=https.host, port=https.port)
    await server.start_server()
    try:
        async with http.get(f"http://{server.host}:{server.port}/login") as resp:
            assert resp.status == 200
            cookie = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith(COOKIE + "="))
        assert "Secure" in cookie and "HttpOnly" in cookie
    finally:
        await server.close()


async def test_wrong_password_is_401_and_never_says_whether_the_email_exists(
    api: Api, browser_http: Browserish
) -> None:
    therapist = await therapist_with_password(api)
    invited_only = await api.therapist()  # has an account but never chose a password

    answers = []
    for email, password in (
        (therapist["email"], "not the password"),
        ("nobody-here@example.org", "not the password"),
        (invited_only["email"], PASSWORD),
    ):
        status, page, _ = await browser_http.login(email, password)
        error = re.search(r'id="login-error">([^<]*)<', page)
        answers.append((status, error.group(1) if error else None))
    assert answers[0][0] == 401 and answers[0][1]
    assert answers[0] == answers[1] == answers[2]
    assert browser_http.cookie() is not None
    status, _ = await browser_http.call("GET", "/api/v1/session")
    assert status == 401


async def test_sixth_failed_login_within_15_minutes_is_429_with_retry_after(
    api: Api, browser_http: Browserish, clock: Clock
) -> None:
    therapist = await therapist_with_password(api)
    for _ in range(5):
        status, _, _ = await browser_http.login(therapist["email"], "wrong password!")
        assert status == 401
    status, page, resp = await browser_http.login(therapist["email"], PASSWORD)
    assert status == 429, "even the right password waits while the account is throttled"
    assert 0 < int(resp.headers["Retry-After"]) <= 15 * 60
    assert "Too many attempts" in page
    # An unknown email is throttled the same way, so the 429 reveals nothing either.
    for _ in range(5):
        await browser_http.login("ghost@example.org", "wrong password!")
    status, _, _ = await browser_http.login("ghost@example.org", "wrong password!")
    assert status == 429

    clock.advance(dt.timedelta(minutes=15, seconds=1))
    status, _, resp = await browser_http.login(therapist["email"], PASSWORD)
    assert status == 303


async def test_failures_from_one_address_across_many_emails_are_throttled(api: Api, browser_http: Browserish) -> None:
    for i in range(20):
        status, _, _ = await browser_http.login(f"guess{i}@example.org", "wrong password!")
        assert status == 401
    status, _, resp = await browser_http.login("guess-more@example.org", "wrong password!")
    assert status == 429 and "Retry-After" in resp.headers


async def test_cookie_post_without_the_csrf_token_is_403_and_changes_nothing(
    api: Api, browser_http: Browserish, db: asyncpg.Connection
) -> None:
    therapist = await therapist_with_password(api)
    await browser_http.login(therapist["email"], PASSWORD)
    path = f"/api/v1/therapists/{therapist['slug']}/session-types"
    token = await browser_http.csrf()

    for headers in (
        {},
        {"X-CSRF-Token": "forged"},
        {"X-CSRF-Token": token, "Origin": "http://evil.example"},
    ):
        status, body = await browser_http.call("POST", path, json_body=SESSION_TYPE, headers=headers)
        assert status == 403 and body["code"] == "csrf_failed", (headers, body)
    status, body = await browser_http.call(
        "PUT",
        f"/api/v1/therapists/{therapist['slug']}/availability",
        json_body={"timezone": "UTC", "weekly": [], "overrides": []},
    )
    assert status == 403 and body["code"] == "csrf_failed"
    assert await session_type_count(db, therapist) == 0
    assert await db.fetchval("SELECT count(*) FROM availability") == 0

    # A bearer-token call is not a browser's doing: the cookie riding along does not matter.
    status, body = await browser_http.call(
        "POST", path, json_body=SESSION_TYPE, headers={"Authorization": f"Bearer {therapist['api_token']}"}
    )
    assert status == 201, body
    # And public endpoints that never look at the cookie keep working for a logged-in therapist.
    status, body = await browser_http.call("GET", f"/api/v1/therapists/{therapist['slug']}")
    assert status == 200


async def test_logout_needs_the_token_and_ends_the_session(
    api: Api, browser_http: Browserish, other_browser: Browserish
) -> None:
    therapist = await therapist_with_password(api)
    await browser_http.login(therapist["email"], PASSWORD)
    stolen = browser_http.cookie()
    assert stolen is not None

    async with browser_http.session.post(browser_http.base + "/logout", allow_redirects=False) as resp:
        assert resp.status == 403
    status, _ = await browser_http.call("GET", "/api/v1/session")
    assert status == 200, "a forged logout must not log anyone out"

    token = await browser_http.csrf()
    async with browser_http.session.post(
        browser_http.base + "/logout", data={"csrf_token": token}, allow_redirects=False
    ) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/login?ended=logout"
    status, _ = await browser_http.call("GET", f"/api/v1/therapists/{therapist['slug']}/availability")
    assert status == 401
    # The old cookie value, replayed from elsewhere, opens nothing any more.
    status, _ = await other_browser.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/availability", headers={"Cookie": f"{COOKIE}={stolen}"}
    )
    assert status == 401


async def test_idle_session_ends_and_the_login_page_says_why(
    api: Api, browser_http: Browserish, clock: Clock, settings: Settings
) -> None:
    therapist = await therapist_with_password(api)
    await browser_http.login(therapist["email"], PASSWORD)
    availability = f"/api/v1/therapists/{therapist['slug']}/availability"
    # Activity keeps it alive: two gaps of 14 minutes are fine.
    for _ in range(2):
        clock.advance(dt.timedelta(minutes=settings.session_idle_minutes - 1))
        status, _ = await browser_http.call("GET", availability)
        assert status == 200

    clock.advance(dt.timedelta(minutes=settings.session_idle_minutes, seconds=1))
    status, body = await browser_http.call("GET", availability)
    assert status == 401, body
    async with browser_http.session.get(browser_http.base + "/dashboard", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/login?ended=idle"
    async with browser_http.session.get(browser_http.base + "/login?ended=idle") as resp:
        page = await resp.text()
    assert f"inactive for {settings.session_idle_minutes} minutes" in page


async def test_invite_link_expires_after_7_days(api: Api, clock: Clock) -> None:
    therapist = await api.therapist()
    secret = link_secret(therapist["invite_url"])
    clock.advance(dt.timedelta(days=7, minutes=1))
    status, body = await choose_password(api, secret)
    assert status == 410 and body["code"] == "link_expired"
    status, body = await api.call("GET", "/api/v1/account/password-link", token=secret)
    assert status == 410 and body["code"] == "link_expired"


async def test_invite_link_works_once(api: Api, db: asyncpg.Connection) -> None:
    therapist = await api.therapist()
    secret = link_secret(therapist["invite_url"])
    status, _ = await choose_password(api, secret)
    assert status == 200
    first_hash = await db.fetchval("SELECT password_hash FROM therapist_passwords")
    assert first_hash.startswith("$argon2id$")
    status, body = await choose_password(api, secret, "a different password")
    assert status == 410 and body["code"] == "link_used"
    assert await db.fetchval("SELECT password_hash FROM therapist_passwords") == first_hash


async def test_weak_password_is_422_and_leaves_the_link_usable(api: Api) -> None:
    therapist = await api.therapist()
    secret = link_secret(therapist["invite_url"])
    status, body = await choose_password(api, secret, "short")
    assert status == 422 and body["code"] == "weak_password"
    status, _ = await choose_password(api, secret)
    assert status == 200


async def reset_link_emailed(settings: Settings, address: str) -> str:
    """The reset link in the email to `address` (no SMTP in tests: the .eml files under the data dir)."""
    folder = settings.data_dir / "mail"
    async with asyncio.timeout(15):
        while True:
            for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
                message = message_from_bytes(path.read_bytes(), policy=email_policy.default)
                if message["To"] == address and message["Subject"] == "Reset your password":
                    assert isinstance(message, EmailMessage)
                    body = message.get_body(("plain",))
                    assert body is not None
                    return next(w for w in body.get_content().split() if "/reset#t=" in w)
            await asyncio.sleep(0.1)


async def test_forgot_password_emails_a_link_and_answers_the_same_for_unknown_emails(
    api: Api, browser_http: Browserish, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    therapist = await therapist_with_password(api)
    pages = []
    for email in (therapist["email"], "nobody@example.org"):
        token = await browser_http.form_token("/forgot")
        async with browser_http.session.post(
            browser_http.base + "/forgot", data={"email": email, "csrf_token": token}
        ) as resp:
            assert resp.status == 200
            pages.append(re.sub(r'value="[^"]*"', "", await resp.text()))
    assert pages[0] == pages[1]

    url = await reset_link_emailed(settings, therapist["email"])
    err = capfd.readouterr().err
    assert therapist["email"] not in err and url not in err  # the log names ids only
    assert urlsplit(url).path == "/reset" and urlsplit(url).fragment.startswith("t=trr_")
    emails = list((settings.data_dir / "mail").glob("*.eml"))
    assert not any(b"nobody@example.org" in p.read_bytes() for p in emails)
    status, _ = await choose_password(api, link_secret(url), "a brand new password")
    assert status == 200
    status, _, _ = await browser_http.login(therapist["email"], "a brand new password")
    assert status == 303


async def test_choosing_a_new_password_ends_other_sessions(
    api: Api, browser_http: Browserish, other_browser: Browserish, settings: Settings
) -> None:
    therapist = await therapist_with_password(api)
    await browser_http.login(therapist["email"], PASSWORD)
    token = await other_browser.form_token("/forgot")
    async with other_browser.session.post(
        other_browser.base + "/forgot", data={"email": therapist["email"], "csrf_token": token}
    ) as resp:
        assert resp.status == 200
    url = await reset_link_emailed(settings, therapist["email"])
    status, _ = await choose_password(api, link_secret(url), "another fine password")
    assert status == 200
    status, _ = await browser_http.call("GET", "/api/v1/session")
    assert status == 401
    async with browser_http.session.get(browser_http.base + "/dashboard", allow_redirects=False) as resp:
        assert resp.headers["Location"] == "/login?ended=password_changed"


async def test_login_redirects_only_to_our_own_pages(api: Api, browser_http: Browserish) -> None:
    therapist = await therapist_with_password(api)
    status, _, resp = await browser_http.login(therapist["email"], PASSWORD, next="https://evil.example/")
    assert status == 303 and resp.headers["Location"] == "/dashboard"


async def run_cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        # The installed console script, as an operator runs it (`python -m broker.cli` would load
        # the CLI module twice, and the hooks the web package registers land on the other copy).
        str(Path(sys.executable).parent / "teleroom"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    printed: dict[str, Any] = json.loads(out)
    return printed


async def test_cli_therapist_add_prints_an_invite_url_and_password_link_replaces_it(
    api: Api, database_url: str, tmp_path: Any, settings: Settings
) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "TELEROOM_DATA_DIR": str(tmp_path)}
    env["TELEROOM_PUBLIC_ORIGIN"] = settings.origin
    added = await run_cli(
        env,
        *("therapist", "add", "--slug", "dr-cli-invite", "--name", "Dr Cli"),
        *("--email", "cli@example.org", "--timezone", "Europe/Paris"),
    )
    assert added["invite_url"].startswith(settings.origin + "/invite#t=tri_")

    # Lost it? A new link retires the old one; with no password yet it is still an invite.
    fresh = await run_cli(env, "password-link", "--slug", "dr-cli-invite")
    assert fresh["purpose"] == "invite" and fresh["url"] != added["invite_url"]
    status, body = await choose_password(api, link_secret(added["invite_url"]))
    assert status == 410 and body["code"] == "link_used"
    status, body = await choose_password(api, link_secret(fresh["url"]))
    assert status == 200, body
    again = await run_cli(env, "password-link", "--slug", "dr-cli-invite")
    assert again["purpose"] == "reset" and urlsplit(again["url"]).path == "/reset"


async def test_dashboard_shows_a_client_waiting_in_the_room_over_real_signaling(
    api: Api, browser_http: Browserish, http: aiohttp.ClientSession, clock: Clock, settings: Settings
) -> None:
    therapist = await therapist_with_password(api)
    await api.availability(therapist)
    session_type = await api.session_type(therapist, slot_interval_minutes=5)
    now = clock.now()
    slots = await api.slots(
        therapist, session_type, now.date() - dt.timedelta(days=1), now.date() + dt.timedelta(days=1)
    )
    start = next(s["start"] for s in slots if dt.datetime.fromisoformat(s["start"]) >= now)
    status, booking = await api.book(therapist, session_type, start, name="Wren Waiting")
    assert status == 201, booking
    await browser_http.login(therapist["email"], PASSWORD)

    async with browser_http.session.get(browser_http.base + "/dashboard") as resp:
        page = await resp.text()
    assert "Wren Waiting" in page and "Nobody is waiting right now" in page

    await api.ready_to_join(booking["id"], booking["booking_key"])
    status, room = await api.call("POST", f"/api/v1/bookings/{booking['id']}/room-token", token=booking["booking_key"])
    assert status == 200, room
    async with http.ws_connect(room["signaling_url"], headers={"Origin": settings.origin}) as ws:
        await ws.send_json({"type": "join", "token": room["token"], "location": "Lisbon, Portugal"})
        joined = await ws.receive_json(timeout=10)
        assert joined["type"] == "joined" and joined["state"] == "waiting"
        async with browser_http.session.get(browser_http.base + "/dashboard") as resp:
            page = await resp.text()
        assert "Wren Waiting (" in page and "is in the waiting room" in page


async def test_logging_in_again_replaces_the_browsers_previous_session(
    api: Api, browser_http: Browserish, other_browser: Browserish
) -> None:
    therapist = await therapist_with_password(api)
    await browser_http.login(therapist["email"], PASSWORD)
    first = browser_http.cookie()
    await browser_http.login(therapist["email"], PASSWORD)
    assert browser_http.cookie() != first, "a login always gets a new session id (no fixation)"
    status, _ = await other_browser.call("GET", "/api/v1/session", headers={"Cookie": f"{COOKIE}={first}"})
    assert status == 401
    status, _ = await browser_http.call("GET", "/api/v1/session")
    assert status == 200
