"""External busy calendars: the `busy_calendars` and `busy_events` tables, the refresher and the busy source.

A therapist gives us ICS addresses (their Google, iCloud or Outlook "secret address").
Every node runs a small worker that claims due calendars with `FOR UPDATE SKIP LOCKED`,
fetches them (`broker.calendar_fetch`: conditional requests, size and time limits, an
address guard) and replaces the calendar's expanded busy spans in one transaction. Slots
and bookings read only those stored spans, so a source that is down or slow never slows the
booking page: the last good copy stays in force and the calendar is reported stale, and why.

The URLs are secrets: kept in clear because we must fetch them, never logged, never put
in an error message, and shown only masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Sequence

import aiohttp
import asyncpg
import msgspec
from aiohttp import web
from asyncpg import Range

from broker import session_types, therapists
from broker.calendar_fetch import CalendarFetchError, Fetched, fetch_calendar, guarded_session, normalise_url
from broker.clock import CLOCK
from broker.database import HEALTH, POOL, Executor, record_to
from broker.errors import NotFound
from broker.settings import SETTINGS
from calendars import busy
from calendars.slots import Span

log = logging.getLogger("teleroom.busy_calendars")

MAX_CALENDARS = 10
CLAIM_BATCH = 4
LEASE = dt.timedelta(seconds=120)
DEFAULT_HORIZON_DAYS = 60
MAX_HORIZON_DAYS = 731
MAX_ERROR_CHARS = 300

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
SELECT_OLDEST_SUCCESS = "SELECT min(coalesce(last_success_at, created_at)) FROM busy_calendars"
DELETE_SPANS = "DELETE FROM busy_events WHERE calendar_id = $1"
INSERT_SPANS = """
INSERT INTO busy_events (calendar_id, therapist_id, span)
SELECT $1, $2, tstzrange(s, e) FROM unnest($3::timestamptz[], $4::timestamptz[]) AS u(s, e)
"""
SELECT_BUSY = "SELECT lower(span) AS start, upper(span) AS end FROM busy_events WHERE therapist_id = $1 AND span && $2"
# Whether the therapist `$2` has any calendar, as an expression another statement can carry: a new
# booking's insert (`broker.bookings.BOOK`) answers it, and refuses to insert when the
# booking skipped `stored_busy` because this node saw no calendar last time and one exists now.
HAS_CALENDARS = "EXISTS (SELECT FROM busy_calendars bc WHERE bc.therapist_id = $2)"

# Set when a therapist changes their list, so this node's refresher fetches new addresses at once;
# whoever starts `worker_ctx` creates it.
WAKE = web.AppKey("busy_calendars_wake", asyncio.Event)


class BusyCalendar(msgspec.Struct, frozen=True):
    """One external calendar and how its last fetches went (the URL is the therapist's secret)."""

    id: uuid.UUID
    url: str
    last_fetched_at: dt.datetime | None
    last_success_at: dt.datetime | None
    last_error: str | None
    next_fetch_at: dt.datetime

    def stale(self, now: dt.datetime, refresh_seconds: int) -> bool:
        """Not yet fetched, failing, or not fetched successfully for three refresh periods."""
        if self.last_success_at is None or self.last_error is not None:
            return True
        return now - self.last_success_at > dt.timedelta(seconds=3 * refresh_seconds)


class _Claim(msgspec.Struct, frozen=True):
    """A calendar this node has claimed to fetch, with the validators of its stored copy."""

    id: uuid.UUID
    therapist_id: uuid.UUID
    url: str
    etag: str | None
    last_modified: str | None


class _Span(msgspec.Struct, frozen=True):
    start: dt.datetime
    end: dt.datetime


# --- the therapist's list -----------------------------------------------------------------------


async def listing(conn: Executor, therapist_id: uuid.UUID) -> list[BusyCalendar]:
    """A therapist's busy calendars in the order they gave them."""
    return [record_to(BusyCalendar, r) for r in await conn.fetch(SELECT_CALENDARS, therapist_id)]


async def replace(
    pool: asyncpg.Pool, therapist_id: uuid.UUID, urls: Sequence[str], now: dt.datetime
) -> list[BusyCalendar]:
    """Make `urls` the therapist's busy calendars (checked, deduplicated); new ones are due at once.

    Calendars that stay keep their stored copy and history; removed ones go with their spans."""
    wanted = list(dict.fromkeys(normalise_url(u) for u in urls))
    async with pool.acquire() as conn, conn.transaction():
        await therapists.lock(conn, therapist_id)
        await conn.execute(DELETE_OTHER_CALENDARS, therapist_id, wanted)
        for position, url in enumerate(wanted):
            await conn.execute(UPSERT_CALENDAR, uuid.uuid4(), therapist_id, position, url, now)
    log.info("therapist %s set %d busy calendars", therapist_id, len(wanted))
    return await listing(pool, therapist_id)


async def oldest_success(conn: Executor) -> dt.datetime | None:
    """Since when the stalest calendar has had no fresh copy (a never-fetched one: since it was
    added); None when there are no calendars. For the staleness metric."""
    oldest: dt.datetime | None = await conn.fetchval(SELECT_OLDEST_SUCCESS)
    return oldest


async def stored_busy(conn: Executor, therapist_id: uuid.UUID, span: Span) -> list[Span]:
    """The busy source slots and bookings consult: the stored spans of the last good copies."""
    rows = await conn.fetch(SELECT_BUSY, therapist_id, Range(span.start, span.end))
    return [Span(s.start, s.end) for s in (record_to(_Span, r) for r in rows)]


# --- the refresher ------------------------------------------------------------------------------


async def refresh_due(app: web.Application, session: aiohttp.ClientSession) -> int:
    """Claim due calendars (each runs once across all nodes), fetch and store them. Returns how many."""
    now = app[CLOCK].now()
    rows = await app[POOL].fetch(CLAIM_DUE, now, now + LEASE, CLAIM_BATCH)
    claimed = [record_to(_Claim, r) for r in rows]
    await asyncio.gather(*(_refresh_one(app, session, claim) for claim in claimed))
    return len(claimed)


async def _window(pool: asyncpg.Pool, therapist_id: uuid.UUID, now: dt.datetime) -> tuple[Span, str] | None:
    """The span worth expanding (as far ahead as the therapist's longest horizon) and their zone."""
    try:
        therapist = await therapists.by_id(pool, therapist_id)
    except NotFound:  # deleted meanwhile; its calendars go with it
        return None
    horizon = max((s.horizon_days for s in await session_types.offered(pool, therapist_id)), default=None)
    days = min(horizon or DEFAULT_HORIZON_DAYS, MAX_HORIZON_DAYS)
    return Span(now - dt.timedelta(days=1), now + dt.timedelta(days=days + 2)), therapist.timezone


async def _fetch(app: web.Application, session: aiohttp.ClientSession, claim: _Claim) -> tuple[Fetched, bytes]:
    """The calendar's current text: fetched, or our stored copy when the server answers 304."""
    allow_private = app[SETTINGS].allow_private_calendar_urls
    fetched = await fetch_calendar(
        session, claim.url, etag=claim.etag, last_modified=claim.last_modified, allow_private=allow_private
    )
    if fetched.body is not None:
        return fetched, fetched.body
    stored: bytes | None = await app[POOL].fetchval(SELECT_BODY, claim.id)
    if stored is not None:
        return fetched, stored
    # A 304 without a copy of ours: ask again, unconditionally.
    fetched = await fetch_calendar(session, claim.url, etag=None, last_modified=None, allow_private=allow_private)
    return fetched, fetched.body or b""


async def _refresh_one(app: web.Application, session: aiohttp.ClientSession, claim: _Claim) -> None:
    pool = app[POOL]
    try:
        fetched, body = await _fetch(app, session, claim)
        found = await _window(pool, claim.therapist_id, app[CLOCK].now())
        if found is None:
            return
        window, timezone = found
        spans = await asyncio.to_thread(busy.busy_spans, body, window, timezone)
    except (CalendarFetchError, busy.CalendarError) as exc:
        await _record_failure(app, claim.id, str(exc))
        return
    except Exception as exc:
        # The type only: messages of network errors quote the address, which is the therapist's secret.
        log.error("busy calendar %s: unexpected %s while refreshing", claim.id, type(exc).__name__)
        await _record_failure(app, claim.id, "Something went wrong on our side while reading this calendar.")
        return
    now = app[CLOCK].now()
    next_fetch = now + dt.timedelta(seconds=app[SETTINGS].busy_refresh_seconds)
    async with pool.acquire() as conn, conn.transaction():
        stored = await conn.fetchval(
            RECORD_SUCCESS, claim.id, fetched.etag, fetched.last_modified, fetched.body, now, next_fetch
        )
        if stored is None:  # removed by the therapist while we were fetching
            return
        await conn.execute(DELETE_SPANS, claim.id)
        await conn.execute(INSERT_SPANS, claim.id, claim.therapist_id, [s.start for s in spans], [s.end for s in spans])
    log.info("busy calendar %s refreshed: %d busy spans", claim.id, len(spans))


async def _record_failure(app: web.Application, calendar_id: uuid.UUID, message: str) -> None:
    now = app[CLOCK].now()
    retry = now + dt.timedelta(seconds=app[SETTINGS].busy_refresh_seconds)
    await app[POOL].execute(RECORD_FAILURE, calendar_id, now, message[:MAX_ERROR_CHARS], retry)
    log.info("busy calendar %s failed to refresh", calendar_id)


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """One refresher task per node; it wakes on a short tick and whenever a therapist changes the list."""
    wake = app[WAKE]
    settings = app[SETTINGS]
    tick = max(1.0, min(settings.busy_refresh_seconds / 4, 30.0))
    session = guarded_session(settings.allow_private_calendar_urls)

    async def run() -> None:
        while True:
            try:
                while await refresh_due(app, session) == CLAIM_BATCH:
                    pass
            except (
                OSError,
                TimeoutError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
            ) as exc:
                app[HEALTH].failed(type(exc).__name__)  # one log line per outage, not per tick
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
