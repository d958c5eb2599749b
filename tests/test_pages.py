"""The page routes over plain HTTP: who may see what, and the headers each page sends."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import aiohttp

from tests.support import Api


async def page(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], str]:
    async with http.get(url, allow_redirects=False) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def test_room_page_sends_an_anonymous_visitor_to_login(http: aiohttp.ClientSession, base_url: str) -> None:
    booking = uuid.uuid4()
    status, headers, _ = await page(http, f"{base_url}/room/{booking}")
    assert status == 303
    assert headers["Location"] == f"/login?next=/room/{booking}"


async def test_room_page_is_not_opened_by_a_booking_key(api: Api, http: aiohttp.ClientSession, base_url: str) -> None:
    therapist, session_type = await api.ready_therapist()
    slots = await api.slots(therapist, session_type, *_tomorrow())
    _, booking = await api.book(therapist, session_type, slots[0]["start"])
    async with http.get(
        f"{base_url}/room/{booking['id']}",
        headers={"Authorization": f"Bearer {booking['booking_key']}"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303


def _tomorrow() -> tuple[dt.date, dt.date]:
    day = dt.date.today() + dt.timedelta(days=1)
    return day, day


async def test_unknown_therapist_and_malformed_booking_ids_get_a_friendly_404(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    for path in ("/book/nobody-here", "/join/not-a-uuid", "/manage/123"):
        status, headers, body = await page(http, base_url + path)
        assert status == 404, path
        assert headers["Content-Type"].startswith("text/html")
        assert "couldn't find" in body


async def test_only_the_call_pages_may_use_camera_and_microphone(
    api: Api, http: aiohttp.ClientSession, base_url: str
) -> None:
    therapist, _ = await api.ready_therapist()
    booking = uuid.uuid4()
    media = {"/test", f"/join/{booking}"}
    for path in ("/", f"/book/{therapist['slug']}", f"/manage/{booking}", *media):
        status, headers, body = await page(http, base_url + path)
        assert status == 200, path
        allowed = "camera=(self), microphone=(self)" in headers["Permissions-Policy"]
        assert allowed == (path in media), path
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["Referrer-Policy"] == "no-referrer"
        # No inline script: every <script> loads a file of ours.
        for tag in re.findall(r"<script\b[^>]*>", body):
            assert re.search(r'src="/static/[a-z-]+\.js"', tag), (path, tag)


async def test_booking_page_escapes_the_therapist_name(api: Api, http: aiohttp.ClientSession, base_url: str) -> None:
    therapist = await api.therapist(name="<script>alert(1)</script> Dr Evil")
    await api.availability(therapist)
    status, _, body = await page(http, f"{base_url}/book/{therapist['slug']}")
    assert status == 200
    assert "<script>alert(1)" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Dr Evil" in body


async def test_api_reference_page_is_served_under_the_csp_with_no_inline_script(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    status, headers, body = await page(http, f"{base_url}/api")
    assert status == 200
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";")[0]
    tags = re.findall(r"<script\b[^>]*>", body)
    assert tags == ['<script type="module" src="/static/api-reference.js">'], tags
    assert "<style" not in body and " style=" not in body
    assert 'href="/api/v1/openapi.json"' in body
    # Everything it links or loads comes from the instance itself (no CDN).
    assert not re.search(r'(?:src|href)="(?:https?:)?//', body), body
    async with http.get(f"{base_url}/static/api-reference.js") as resp:
        assert resp.status == 200 and 'fetch("/api/v1/openapi.json"' in await resp.text()
