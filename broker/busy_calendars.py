"""External busy calendars: the API, the background fetcher and the busy source for slots.

A therapist gives us ICS addresses (their Google, iCloud or Outlook "secret address").
Every node runs a small worker that claims due calendars with `FOR UPDATE SKIP LOCKED`,
fetches them with conditional requests, size and time limits and an address guard, and
replaces the calendar's expanded busy spans in one transaction. Slots and bookings read
only those stored spans, so a source that is down or slow never slows the booking page:
the last good copy stays in force and the API reports the calendar as stale, and why.

The URLs are secrets: kept in clear because we must fetch them, never logged, never put
in an error message, and shown by the API only masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from asyncpg import Range
from msgspec import Meta

from broker.api import ApiRoutes, read_json, respond
from broker.auth import require_therapist
from broker.problems import invalid
from broker.routes_scheduling import SLUG
from broker.state import API_ROUTES, BUSY_SOURCES, CLOCK, POOL, SETTINGS
from calendars import busy
from calendars.slots import Span

log = logging.getLogger("teleroom.busy_calendars")

MAX_CALENDARS = 10
MAX_BYTES = 5 * 1024 * 1024
FETCH_SECONDS = 10.0
MAX_REDIRECTS = 3
CLAIM_BATCH = 4
LEASE = dt.timedelta(seconds=120)
DEFAULT_HORIZON_DAYS = 60
USER_AGENT = "Teleroom busy-calendar fetcher"

SELECT_CALENDARS = """
SELECT id, url, last_fetched_at, last_success_at, last_error, next_fetch_at
FROM busy_calendars WHERE therapist_id = $1 ORDER BY position
"""
DELETE_OTHER_CALENDARS = "DELETE FROM busy_calendars WHERE therapist_id = $1 AND NOT (url = ANY($2::text[]))"
UPSERT_CALENDAR = """
INSERT INTO busy_calendars (id, therapist_id, position, url, next_fetch_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (therapist_id, url) DO UPDATE SET position = EXCLUDED.position
"""
CLAIM_DUE = """
UPDATE busy_calendars c SET next_fetch_at = $2
FROM (
    SELECT id FROM busy_calendars WHERE next_fetch_at <= $1
    ORDER BY next_fetch_at LIMIT $3 FOR UPDATE SKIP LOCKED
) due
WHERE c.id = due.id
RETURNING c.id, c.therapist_id, c.url, c.etag, c.last_modified
"""
SELECT_CONTEXT = """
SELECT t.timezone,
       coalesce((SELECT max(horizon_days) FROM session_types s WHERE s.therapist_id = t.id AND s.active), $2)
           AS horizon_days
FROM therapists t WHERE t.id = $1
"""
RECORD_SUCCESS = """
UPDATE busy_calendars
SET etag = $2, last_modified = $3, body = coalesce($4, body), last_fetched_at = $5, last_success_at = $5,
    last_error = NULL, next_fetch_at = $6
WHERE id = $1
RETURNING id
"""
RECORD_FAILURE = """
UPDATE busy_calendars SET last_fetched_at = $2, last_error = $3, next_fetch_at = $4 WHERE id = $1
"""
SELECT_BODY = "SELECT body FROM busy_calendars WHERE id = $1"
DELETE_SPANS = "DELETE FROM busy_events WHERE calendar_id = $1"
INSERT_SPANS = """
INSERT INTO busy_events (calendar_id, therapist_id, span)
SELECT $1, $2, tstzrange(s, e) FROM unnest($3::timestamptz[], $4::timestamptz[]) AS u(s, e)
"""
SELECT_BUSY = "SELECT lower(span) AS start, upper(span) AS end FROM busy_events WHERE therapist_id = $1 AND span && $2"

routes = ApiRoutes("calendars")
WAKE = web.AppKey("busy_calendars_wake", asyncio.Event)

CalendarUrl = Annotated[str, Meta(min_length=8, max_length=2048, description="http(s) or webcal ICS address")]


class BusyCalendarsIn(msgspec.Struct, forbid_unknown_fields=True):
    urls: Annotated[list[CalendarUrl], Meta(max_length=MAX_CALENDARS)]


class BusyCalendarOut(msgspec.Struct):
    id: str
    url: Annotated[str, Meta(description="masked: the secret part of the address is never shown again")]
    stale: Annotated[bool, Meta(description="true until the first good fetch, after a failure, or when old")]
    last_fetched_at: dt.datetime | None
    last_success_at: dt.datetime | None
    last_error: str | None
    next_fetch_at: dt.datetime


class BusyCalendarList(msgspec.Struct):
    calendars: list[BusyCalendarOut]
    refresh_seconds: int


# --- addresses ----------------------------------------------------------------------------------


class CalendarFetchError(Exception):
    """A fetch failed; the message is fit to show the therapist (it never contains the URL)."""


class RefusedAddress(OSError):
    """A host resolved to an address we do not fetch from (private, loopback, ...)."""


def normalise_url(raw: str) -> str:
    """Check an address a therapist gave; webcal:// is https://. 422 for anything else."""
    text = raw.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in {"webcal", "webcals"}:
        scheme = "https"
    if scheme not in {"http", "https"}:
        raise invalid("Calendar addresses must start with https://, http:// or webcal://.", code="invalid_url")
    try:
        port = parts.port
    except ValueError:
        raise invalid("A calendar address has an invalid port.", code="invalid_url") from None
    if not parts.hostname or port == 0:
        raise invalid("A calendar address must name a host.", code="invalid_url")
    return urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))


def mask_url(url: str) -> str:
    """`https://calendar.google.com/…/basic.ics`-like: the host and at most a short harmless tail."""
    parts = urlsplit(url)
    tail = parts.path.rsplit("/", 1)[-1]
    shown = tail if tail.lower().endswith(".ics") and len(tail) <= 16 else ""
    return f"{parts.scheme}://{parts.hostname}/…{('/' + shown) if shown else ''}"


def address_refused(address: str) -> bool:
    """Private, loopback, link-local, multicast, reserved, shared or unspecified: not the public internet."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_loopback


class GuardedResolver(ThreadedResolver):
    """Resolves once and refuses if ANY address is off limits; aiohttp connects to exactly these.

    Checking and connecting with the same answer closes the DNS-rebinding gap (a name that
    resolves to a public address for the check and to 127.0.0.1 for the connection).
    """

    def __init__(self, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        if not self.allow_private and any(address_refused(r["host"]) for r in results):
            raise RefusedAddress("refused address")
        return results


def _check_literal_host(url: str, allow_private: bool) -> None:
    # aiohttp does not consult the resolver for IP literals, so those are checked here.
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return
    if not allow_private and address_refused(host):
        raise CalendarFetchError("The address points into a private or local network, which is not allowed.")


# --- fetching -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetched:
    body: bytes | None  # None: 304, the stored copy is still current
    etag: str | None
    last_modified: str | None


async def fetch_calendar(
    session: aiohttp.ClientSession,
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    allow_private: bool,
    max_bytes: int = MAX_BYTES,
    seconds: float = FETCH_SECONDS,
) -> Fetched:
    """GET an ICS with If-None-Match / If-Modified-Since, following at most 3 re-checked redirects."""
    headers = {"Accept": "text/calendar, */*;q=0.5", "User-Agent": USER_AGENT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        async with asyncio.timeout(seconds):
            for _ in range(MAX_REDIRECTS + 1):
                _check_literal_host(url, allow_private)
                async with session.get(url, headers=headers, allow_redirects=False) as resp:
                    if resp.status in {301, 302, 303, 307, 308}:
                        location = resp.headers.get("Location", "")
                        url = normalise_redirect(url, location)
                        continue
                    if resp.status == 304:
                        return Fetched(None, etag, last_modified)
                    if resp.status != 200:
                        raise CalendarFetchError(f"The calendar server answered HTTP {resp.status}.")
                    if resp.content_length is not None and resp.content_length > max_bytes:
                        raise CalendarFetchError(f"The calendar is larger than {max_bytes // (1024 * 1024)} MiB.")
                    body = bytearray()
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        body += chunk
                        if len(body) > max_bytes:
                            raise CalendarFetchError(f"The calendar is larger than {max_bytes // (1024 * 1024)} MiB.")
                    return Fetched(bytes(body), resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
            raise CalendarFetchError(f"The calendar address redirected more than {MAX_REDIRECTS} times.")
    except TimeoutError:
        raise CalendarFetchError(f"The calendar server did not answer within {seconds:g} seconds.") from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, RefusedAddress):
            raise CalendarFetchError(
                "The address points into a private or local network, which is not allowed."
            ) from None
        raise CalendarFetchError("The calendar server could not be reached.") from None
    except aiohttp.ClientError:
        raise CalendarFetchError("The calendar server broke off the connection.") from None


def normalise_redirect(current: str, location: str) -> str:
    if not location:
        raise CalendarFetchError("The calendar server redirected without saying where.")
    target = urljoin(current, location)
    scheme = urlsplit(target).scheme.lower()
    if scheme not in {"http", "https"}:
        raise CalendarFetchError("The calendar server redirected to an address that is not http(s).")
    return target


# --- the worker ---------------------------------------------------------------------------------


async def refresh_due(app: web.Application, session: aiohttp.ClientSession) -> int:
    """Claim due calendars (each runs once across all nodes), fetch and store them. Returns how many."""
    pool = app[POOL]
    now = app[CLOCK].now()
    claimed = await pool.fetch(CLAIM_DUE, now, now + LEASE, CLAIM_BATCH)
    await asyncio.gather(*(_refresh_one(app, session, row) for row in claimed))
    return len(claimed)


async def _refresh_one(app: web.Application, session: aiohttp.ClientSession, row: asyncpg.Record) -> None:
    settings = app[SETTINGS]
    pool = app[POOL]
    calendar_id = row["id"]
    try:
        fetched = await fetch_calendar(
            session,
            row["url"],
            etag=row["etag"],
            last_modified=row["last_modified"],
            allow_private=settings.allow_private_calendar_urls,
        )
        body = fetched.body if fetched.body is not None else await pool.fetchval(SELECT_BODY, calendar_id)
        if body is None:  # a 304 without a copy of ours: ask again, unconditionally
            fetched = await fetch_calendar(
                session, row["url"], etag=None, last_modified=None, allow_private=settings.allow_private_calendar_urls
            )
            body = fetched.body or b""
        context = await pool.fetchrow(SELECT_CONTEXT, row["therapist_id"], DEFAULT_HORIZON_DAYS)
        if context is None:
            return
        now = app[CLOCK].now()
        window = Span(now - dt.timedelta(days=1), now + dt.timedelta(days=min(context["horizon_days"], 731) + 2))
        spans = await asyncio.to_thread(busy.busy_spans, body, window, context["timezone"])
    except (CalendarFetchError, busy.CalendarError) as exc:
        await _record_failure(app, calendar_id, str(exc))
        return
    except Exception as exc:
        # The type only: messages of network errors quote the address, which is the therapist's secret.
        log.error("busy calendar %s: unexpected %s while refreshing", calendar_id, type(exc).__name__)
        await _record_failure(app, calendar_id, "Something went wrong on our side while reading this calendar.")
        return
    now = app[CLOCK].now()
    async with pool.acquire() as conn, conn.transaction():
        stored = await conn.fetchval(
            RECORD_SUCCESS,
            calendar_id,
            fetched.etag,
            fetched.last_modified,
            fetched.body,
            now,
            now + dt.timedelta(seconds=settings.busy_refresh_seconds),
        )
        if stored is None:  # removed by the therapist while we were fetching
            return
        await conn.execute(DELETE_SPANS, calendar_id)
        await conn.execute(
            INSERT_SPANS, calendar_id, row["therapist_id"], [s.start for s in spans], [s.end for s in spans]
        )
    log.info("busy calendar %s refreshed: %d busy spans", calendar_id, len(spans))


async def _record_failure(app: web.Application, calendar_id: uuid.UUID, message: str) -> None:
    now = app[CLOCK].now()
    retry = now + dt.timedelta(seconds=app[SETTINGS].busy_refresh_seconds)
    await app[POOL].execute(RECORD_FAILURE, calendar_id, now, message[:300], retry)
    log.info("busy calendar %s failed to refresh", calendar_id)


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """One refresher task per node; it wakes on a short tick and whenever a therapist changes the list."""
    wake = app[WAKE]
    settings = app[SETTINGS]
    tick = max(1.0, min(settings.busy_refresh_seconds / 4, 30.0))
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(settings.allow_private_calendar_urls), use_dns_cache=False, limit=8
    )
    session = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def run() -> None:
        while True:
            try:
                while await refresh_due(app, session) == CLAIM_BATCH:
                    pass
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("busy calendar refresher: database unavailable, retrying")
            wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await wake.wait()

    task = asyncio.create_task(run(), name="busy-calendar-refresher")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await session.close()


# --- busy source and API ------------------------------------------------------------------------


async def stored_busy(conn: asyncpg.Connection | asyncpg.Pool, therapist_id: uuid.UUID, span: Span) -> list[Span]:
    """The busy source slots and bookings consult: the stored spans of the last good copies."""
    rows = await conn.fetch(SELECT_BUSY, therapist_id, Range(span.start, span.end))
    return [Span(r["start"], r["end"]) for r in rows]


def _out(row: asyncpg.Record, now: dt.datetime, refresh_seconds: int) -> BusyCalendarOut:
    success = row["last_success_at"]
    old = success is not None and now - success > dt.timedelta(seconds=3 * refresh_seconds)
    return BusyCalendarOut(
        id=str(row["id"]),
        url=mask_url(row["url"]),
        stale=success is None or row["last_error"] is not None or old,
        last_fetched_at=row["last_fetched_at"],
        last_success_at=success,
        last_error=row["last_error"],
        next_fetch_at=row["next_fetch_at"],
    )


async def _listing(request: web.Request, therapist_id: uuid.UUID) -> web.Response:
    refresh = request.app[SETTINGS].busy_refresh_seconds
    now = request.app[CLOCK].now()
    rows = await request.app[POOL].fetch(SELECT_CALENDARS, therapist_id)
    return respond(BusyCalendarList(calendars=[_out(r, now, refresh) for r in rows], refresh_seconds=refresh))


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/busy-calendars",
    summary="The therapist's external busy calendars (addresses masked), with freshness",
    auth="therapist",
    response=BusyCalendarList,
    params=[SLUG],
    errors=(401, 403, 404),
)
async def list_calendars(request: web.Request) -> web.Response:
    _, therapist = await require_therapist(request, request.match_info["slug"])
    return await _listing(request, therapist["id"])


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/busy-calendars",
    summary="Replace the external busy calendars (at most 10 ICS addresses); new ones are fetched now",
    auth="therapist",
    body=BusyCalendarsIn,
    response=BusyCalendarList,
    params=[SLUG],
    errors=(401, 403, 404, 422),
)
async def put_calendars(request: web.Request) -> web.Response:
    _, therapist = await require_therapist(request, request.match_info["slug"])
    body = await read_json(request, BusyCalendarsIn)
    assert body is not None
    urls = list(dict.fromkeys(normalise_url(u) for u in body.urls))
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM therapists WHERE id = $1 FOR UPDATE", therapist["id"])
        await conn.execute(DELETE_OTHER_CALENDARS, therapist["id"], urls)
        for position, url in enumerate(urls):
            await conn.execute(UPSERT_CALENDAR, uuid.uuid4(), therapist["id"], position, url, now)
    request.app[WAKE].set()
    request.app.logger.info("therapist %s set %d busy calendars", therapist["id"], len(urls))
    return await _listing(request, therapist["id"])


def setup(app: web.Application) -> None:
    """Mount the API, start the refresher and register the busy source (called from broker.feeds)."""

    app[WAKE] = asyncio.Event()
    app[API_ROUTES].append(routes)
    routes.install(app)
    app[BUSY_SOURCES].append(stored_busy)
    app.cleanup_ctx.append(worker_ctx)
