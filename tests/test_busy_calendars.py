"""External busy calendars through the running service, served by a local ICS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from broker.calendar_fetch import CalendarFetchError, address_refused, mask_url, normalise_redirect
from broker.clock import Clock
from broker.settings import SETTINGS, Settings
from tests.support import Api

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
REFRESH = 5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, busy_refresh_seconds=REFRESH)


class IcsServer:
    """A calendar host: serves `body` with an ETag, answers 304 to a matching If-None-Match."""

    def __init__(self) -> None:
        self.body = b""
        self.etag = '"v1"'
        self.requests: list[dict[str, str]] = []
        self.server: TestServer | None = None
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        await asyncio.sleep(self.delay)
        if request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304, headers={"ETag": self.etag})
        return web.Response(body=self.body, content_type="text/calendar", headers={"ETag": self.etag})

    async def big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/calendar"})
        await response.prepare(request)
        chunk = b"X" * (1024 * 1024)
        for _ in range(6):
            await response.write(chunk)
        return response

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{request.query['to']}")

    def url(self, path: str = "/calendar/ical/private-5ecret0123456789/basic.ics") -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}{path}"


@pytest.fixture
async def ics() -> AsyncIterator[IcsServer]:
    host = IcsServer()
    app = web.Application()
    app.router.add_get("/big.ics", host.big)
    app.router.add_get("/redirect", host.redirect)
    app.router.add_get("/{tail:.*}", host.handle)
    host.server = TestServer(app, host="127.0.0.1")
    await host.server.start_server()
    yield host
    await host.server.close()


def next_dst_change(after: dt.date) -> dt.date:
    """The first day on which Berlin's UTC offset at noon differs from the day before."""
    day = after
    while True:
        noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=BERLIN)
        if noon.utcoffset() != (noon - dt.timedelta(days=1)).utcoffset():
            return day
        day += dt.timedelta(days=1)


def local(day: dt.date, hour: int, minute: int = 0, zone: ZoneInfo = BERLIN) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(dt.UTC)


def stamp(day: dt.date, hour: int, minute: int = 0) -> str:
    return f"{day:%Y%m%d}T{hour:02d}{minute:02d}00"


def busy_calendar(change: dt.date) -> tuple[bytes, list[tuple[dt.datetime, dt.datetime]]]:
    """An ICS around a DST change, and the UTC spans it should block."""
    first = change - dt.timedelta(days=12)  # a Tuesday: the change is on a Sunday
    skipped, moved = change - dt.timedelta(days=5), change + dt.timedelta(days=9)
    all_day = change + dt.timedelta(days=3)
    free_day = change + dt.timedelta(days=4)
    ny_day = change + dt.timedelta(days=5)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Teleroom tests//local ICS host//EN",
        "BEGIN:VEVENT",
        "UID:supervision@example.org",
        "DTSTAMP:20250101T000000Z",
        "SUMMARY:Supervision",
        f"DTSTART;TZID=Europe/Berlin:{stamp(first, 10)}",
        f"DTEND;TZID=Europe/Berlin:{stamp(first, 11)}",
        "RRULE:FREQ=WEEKLY;COUNT=5",
        f"EXDATE;TZID=Europe/Berlin:{stamp(skipped, 10)}",
        "END:VEVENT",
        "BEGIN:VEVENT",
        "UID:supervision@example.org",
        "DTSTAMP:20250101T000000Z",
        f"RECURRENCE-ID;TZID=Europe/Berlin:{stamp(moved, 10)}",
        "SUMMARY:Supervision (moved)",
        f"DTSTART;TZID=Europe/Berlin:{stamp(moved, 14)}",
        f"DTEND;TZID=Europe/Berlin:{stamp(moved, 15, 30)}",
        "END:VEVENT",
        "BEGIN:VEVENT",
        "UID:conference@example.org",
        "DTSTAMP:20250101T000000Z",
        f"DTSTART;VALUE=DATE:{all_day:%Y%m%d}",
        f"DTEND;VALUE=DATE:{all_day + dt.timedelta(days=1):%Y%m%d}",
        "END:VEVENT",
        "BEGIN:VEVENT",
        "UID:free@example.org",
        "DTSTAMP:20250101T000000Z",
        f"DTSTART;TZID=Europe/Berlin:{stamp(free_day, 10)}",
        f"DTEND;TZID=Europe/Berlin:{stamp(free_day, 11)}",
        "TRANSP:TRANSPARENT",
        "END:VEVENT",
        "BEGIN:VEVENT",
        "UID:called-off@example.org",
        "DTSTAMP:20250101T000000Z",
        f"DTSTART;TZID=Europe/Berlin:{stamp(free_day, 12)}",
        f"DTEND;TZID=Europe/Berlin:{stamp(free_day, 13)}",
        "STATUS:CANCELLED",
        "END:VEVENT",
        "BEGIN:VEVENT",
        "UID:new-york@example.org",
        "DTSTAMP:20250101T000000Z",
        f"DTSTART;TZID=America/New_York:{stamp(ny_day, 9)}",
        f"DTEND;TZID=America/New_York:{stamp(ny_day, 10)}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    weekly = [first, change + dt.timedelta(days=2), change + dt.timedelta(days=16)]
    spans = [(local(d, 10), local(d, 11)) for d in weekly]
    spans.append((local(moved, 14), local(moved, 15, 30)))
    spans.append((local(all_day, 0), local(all_day + dt.timedelta(days=1), 0)))
    spans.append((local(ny_day, 9, zone=NEW_YORK), local(ny_day, 10, zone=NEW_YORK)))
    return ("\r\n".join(lines) + "\r\n").encode(), spans


async def calendars_of(api: Api, therapist: dict[str, Any]) -> list[dict[str, Any]]:
    status, body = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/busy-calendars", token=therapist["api_token"]
    )
    assert status == 200, body
    return list(body["calendars"])


async def put_calendars(api: Api, therapist: dict[str, Any], urls: list[str]) -> tuple[int, Any]:
    return await api.call(
        "PUT",
        f"/api/v1/therapists/{therapist['slug']}/busy-calendars",
        token=therapist["api_token"],
        json={"urls": urls},
    )


async def wait_for(api: Api, therapist: dict[str, Any], ready: Any) -> dict[str, Any]:
    """Poll the API until `ready(calendar)` holds (the refresher runs in the background)."""
    for _ in range(300):
        calendars = await calendars_of(api, therapist)
        if calendars and ready(calendars[0]):
            return calendars[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"busy calendar never became ready: {calendars}")


def starts(slots: list[dict[str, str]]) -> set[dt.datetime]:
    return {dt.datetime.fromisoformat(s["start"]).astimezone(dt.UTC) for s in slots}


async def test_slots_avoid_exactly_the_external_busy_times_and_survive_the_source_going_down(
    api: Api, ics: IcsServer, clock: Clock
) -> None:
    change = next_dst_change(dt.date.today() + dt.timedelta(days=16))
    body, busy = busy_calendar(change)
    ics.body = body
    therapist, st = await api.ready_therapist(
        duration_minutes=60, buffer_after_minutes=0, slot_interval_minutes=60, horizon_days=400
    )
    first, last = change - dt.timedelta(days=13), change + dt.timedelta(days=17)
    baseline = starts(await api.slots(therapist, st, first, last))

    status, listing = await put_calendars(api, therapist, [ics.url()])
    assert status == 200, listing
    assert listing["calendars"][0]["stale"] is True  # not fetched yet
    calendar = await wait_for(api, therapist, lambda c: c["last_success_at"] is not None)
    assert calendar["stale"] is False and calendar["last_error"] is None
    assert "5ecret" not in calendar["url"] and calendar["url"].startswith("http://127.0.0.1/")

    blocked = starts(await api.slots(therapist, st, first, last))
    hour = dt.timedelta(hours=1)
    expected_gone = {s for s in baseline if any(s < end and start < s + hour for start, end in busy)}
    assert baseline - blocked == expected_gone
    assert len(expected_gone) == 3 + 2 + 24 + 1  # weekly x3, the moved one (1.5 h), a whole day, New York
    assert blocked <= baseline
    # Both sides of the DST change: 10:00 Berlin is a different UTC hour before and after it.
    weekly_hours = {local(change - dt.timedelta(days=12), 10).hour, local(change + dt.timedelta(days=2), 10).hour}
    assert len(weekly_hours) == 2
    assert local(change - dt.timedelta(days=5), 10) in blocked  # the EXDATE leaves that week free
    assert local(change + dt.timedelta(days=9), 10) in blocked  # the moved occurrence frees its old time
    assert local(change + dt.timedelta(days=4), 10) in blocked  # transparent
    assert local(change + dt.timedelta(days=4), 12) in blocked  # cancelled

    status, problem = await api.book(therapist, st, local(change + dt.timedelta(days=2), 10).isoformat())
    assert status == 409 and problem["code"] == "slot_unavailable"

    # The next refresh asks conditionally; an unchanged calendar answers 304 and nothing moves.
    fetched_at = calendar["last_fetched_at"]
    clock.advance(dt.timedelta(seconds=REFRESH + 1))
    await wait_for(api, therapist, lambda c: c["last_fetched_at"] != fetched_at)
    assert ics.requests[-1].get("If-None-Match") == ics.etag
    assert starts(await api.slots(therapist, st, first, last)) == blocked

    # The source goes down: the last good copy stays in force and the API says it is stale, and why.
    assert ics.server is not None
    await ics.server.close()
    clock.advance(dt.timedelta(seconds=REFRESH + 1))
    down = await wait_for(api, therapist, lambda c: c["last_error"] is not None)
    assert down["stale"] is True and "could not be reached" in down["last_error"]
    assert down["last_success_at"] is not None
    assert starts(await api.slots(therapist, st, first, last)) == blocked

    status, booked = await api.book(therapist, st, local(change - dt.timedelta(days=5), 10).isoformat())
    assert status == 201, booked


async def test_malformed_calendar_is_reported_and_blocks_nothing(api: Api, ics: IcsServer) -> None:
    ics.body = b"<!doctype html><title>Sign in</title>"
    therapist, _ = await api.ready_therapist()
    await put_calendars(api, therapist, [ics.url()])
    calendar = await wait_for(api, therapist, lambda c: c["last_error"] is not None)
    assert calendar["stale"] is True and "not an iCalendar file" in calendar["last_error"]
    assert ics.url() not in calendar["last_error"]


async def test_oversized_calendar_is_refused(api: Api, ics: IcsServer) -> None:
    therapist, _ = await api.ready_therapist()
    await put_calendars(api, therapist, [ics.url("/big.ics")])
    calendar = await wait_for(api, therapist, lambda c: c["last_error"] is not None)
    assert "larger than 5 MiB" in calendar["last_error"]


async def test_put_replaces_the_list_and_refuses_bad_addresses(api: Api, ics: IcsServer) -> None:
    therapist, _ = await api.ready_therapist()
    status, body = await put_calendars(api, therapist, [ics.url("/a.ics"), ics.url("/b.ics")])
    assert status == 200 and len(body["calendars"]) == 2
    status, body = await put_calendars(api, therapist, [ics.url("/b.ics")])
    assert status == 200 and len(body["calendars"]) == 1
    for bad in (
        ["ftp://example.org/x.ics"],
        ["javascript:alert(1)"],
        [f"https://e{i}.example.org/c.ics" for i in range(11)],
    ):
        status, problem = await put_calendars(api, therapist, bad)
        assert status == 422, problem
    other = await api.therapist()
    status, _ = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/busy-calendars", token=other["api_token"]
    )
    assert status == 403
    status, body = await put_calendars(api, therapist, [])
    assert status == 200 and body["calendars"] == []


@pytest.fixture
def guarded_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, allow_private_calendar_urls=False)


async def test_private_addresses_are_refused_unless_allowed(
    guarded_settings: Settings, ics: IcsServer, http: Any
) -> None:
    from broker.app import create_app
    from tests.conftest import ADMIN_TOKEN

    app = create_app(guarded_settings, clock=Clock())
    server = TestServer(app, host=guarded_settings.host, port=guarded_settings.port)
    await server.start_server()
    try:
        api = Api(http, f"http://{server.host}:{server.port}", ADMIN_TOKEN)
        therapist, _ = await api.ready_therapist()
        via_name = ics.url().replace("127.0.0.1", "localhost")  # refused by the resolver, not by a string check
        for url in (ics.url(), via_name):
            await put_calendars(api, therapist, [url])
            calendar = await wait_for(api, therapist, lambda c: c["last_error"] is not None)
            assert "private or local network" in calendar["last_error"], url
            assert calendar["stale"] is True
        assert ics.requests == []  # nothing ever reached the private address
    finally:
        await server.close()


def test_address_guard_refuses_every_non_public_range() -> None:
    for address in (
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "ff02::1",
    ):
        assert address_refused(address), address
    for address in ("93.184.216.34", "2606:4700:4700::1111", "8.8.8.8"):
        assert not address_refused(address), address


def test_redirects_are_rechecked_and_only_to_http() -> None:
    assert normalise_redirect("https://a.example.org/x.ics", "/y.ics") == "https://a.example.org/y.ics"
    for location in ("file:///etc/passwd", "gopher://a.example.org/", ""):
        with pytest.raises(CalendarFetchError):
            normalise_redirect("https://a.example.org/x.ics", location)


def test_masked_url_keeps_host_and_drops_the_secret() -> None:
    masked = mask_url("https://calendar.google.com/calendar/ical/abc%40group/private-0123456789abcdef/basic.ics")
    assert masked == "https://calendar.google.com/…/basic.ics"
    assert mask_url("https://p01-caldav.icloud.com/published/2/MTIzNDU2Nzg5MDEyMzQ1Njc4OTA") == (
        "https://p01-caldav.icloud.com/…"
    )


async def test_a_due_calendar_is_fetched_once_when_two_nodes_reach_for_it(
    settings: Settings, ics: IcsServer, db: Any
) -> None:
    import aiohttp

    from broker.app import create_app
    from broker.busy_calendars import refresh_due
    from broker.calendar_fetch import GuardedResolver
    from tests.support import free_port

    ics.body = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nEND:VCALENDAR\r\n"
    ics.delay = 0.5  # node 2 looks while node 1's fetch is still in flight
    quiet = dataclasses.replace(settings, busy_refresh_seconds=86400)  # the nodes' own workers stay idle
    nodes = [create_app(dataclasses.replace(quiet, port=free_port()), clock=Clock()) for _ in range(2)]
    servers = [TestServer(app, host="127.0.0.1", port=app[SETTINGS].port) for app in nodes]
    for server in servers:
        await server.start_server()
    try:
        therapist_id = uuid.uuid4()
        await db.execute(
            "INSERT INTO therapists (id, slug, name, email, timezone) VALUES ($1, 'two-nodes', 'T', 't@x.org', 'UTC')",
            therapist_id,
        )
        await db.execute(
            "INSERT INTO busy_calendars (id, therapist_id, position, url, next_fetch_at) VALUES ($1, $2, 0, $3, now())",
            uuid.uuid4(),
            therapist_id,
            ics.url(),
        )
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(True))
        async with aiohttp.ClientSession(connector=connector) as session:
            first = asyncio.create_task(refresh_due(nodes[0], session))
            async with asyncio.timeout(10):  # a fetch that never starts fails here, not at the suite's limit
                while not ics.requests and not first.done():  # node 1's fetch is in flight...
                    await asyncio.sleep(0.01)
            assert await refresh_due(nodes[1], session) == 0  # ...so node 2 finds nothing due
            await first
        assert len(ics.requests) == 1
        assert await db.fetchval("SELECT last_success_at IS NOT NULL FROM busy_calendars") is True
    finally:
        for server in servers:
            await server.close()
