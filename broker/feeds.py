"""Calendar feeds: a therapist's secret subscription URL, a client's .ics, and external busy calendars.

A feed URL is a bearer secret (`trf_` + 192 random bits) stored only as a hash. Calendar
apps poll it every few minutes, so the common answer must be cheap: the ETag is a hash of
the feed's inputs computed by one aggregate query (no rendering), `If-None-Match` gets a
304 straight away, and rendered bodies are kept in a small per-node cache keyed by ETag.
The body is a pure function of those inputs (see calendars.ical), so the ETag is strong.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections import OrderedDict
from typing import Annotated, Literal

import asyncpg
import msgspec
from aiohttp import web
from msgspec import Meta

from broker import audit, bookings, busy_calendars, credentials
from broker.api import ApiRoutes, Param, read_json, respond
from broker.auth import parse_uuid, require_booking_access, require_therapist
from broker.problems import Problem, not_found
from broker.routes_scheduling import SLUG
from broker.state import API_ROUTES, CLOCK, POOL, SETTINGS
from calendars import ical

MAX_FEEDS = 20
LOOKBACK = dt.timedelta(days=30)
# Bookings are only ever made within a session type's horizon (at most 730 days).
LOOKAHEAD = dt.timedelta(days=800)
REFRESH = dt.timedelta(minutes=15)
CACHE_SECONDS = 300
RENDER_VERSION = "1"
CALENDAR_TYPE = "text/calendar"

INSERT_FEED = "INSERT INTO feeds (id, therapist_id, token_hash, privacy) VALUES ($1, $2, $3, $4) RETURNING created_at"
COUNT_FEEDS = "SELECT count(*) FROM feeds WHERE therapist_id = $1 AND revoked_at IS NULL"
SELECT_FEEDS = """
SELECT id, privacy, created_at FROM feeds WHERE therapist_id = $1 AND revoked_at IS NULL ORDER BY created_at, id
"""
REVOKE_FEED = """
UPDATE feeds SET revoked_at = now() WHERE id = $1 AND therapist_id = $2 AND revoked_at IS NULL RETURNING id
"""
SELECT_FEED_BY_TOKEN = """
SELECT f.id, f.privacy, f.therapist_id, t.name AS therapist_name
FROM feeds f JOIN therapists t ON t.id = f.therapist_id
WHERE f.token_hash = $1 AND f.revoked_at IS NULL
"""
# What the feed's body depends on, cheap to aggregate (no rendering, no string building per row):
# every write to a booking bumps its updated_at, so the sum of hashes of (id, updated_at) changes
# when a booking in the window is added, moved or cancelled (it leaves the set); the session
# type names are a handful of rows. About 5 ms for 5,000 bookings, against 25 ms for an md5 of
# all rows' text.
FEED_DIGEST = """
SELECT count(*) AS n,
       coalesce(sum(hashtextextended(b.id::text || '/' || b.updated_at::text, 0)), 0)::text
       || '/' || coalesce(max(b.updated_at)::text, '')
       || '/' || coalesce((SELECT md5(string_agg(s.id::text || s.name, ',' ORDER BY s.id))
                           FROM session_types s WHERE s.therapist_id = $1), '') AS digest
FROM bookings b
WHERE b.therapist_id = $1 AND b.status = 'confirmed'
  AND b.starts_at >= $2::timestamptz - interval '1 day' AND b.starts_at < $3 AND b.ends_at > $2
"""
FEED_ROWS = """
SELECT b.id, b.starts_at, b.ends_at, b.sequence, b.created_at, b.updated_at, b.client_name,
       st.name AS session_type_name
FROM bookings b JOIN session_types st ON st.id = b.session_type_id
WHERE b.therapist_id = $1 AND b.status = 'confirmed'
  AND b.starts_at >= $2::timestamptz - interval '1 day' AND b.starts_at < $3 AND b.ends_at > $2
ORDER BY b.starts_at, b.id
"""

routes = ApiRoutes("calendars")
FEED_ID = Param("id", "path", "Feed id", required=True)
PrivacyTier = Literal["busy", "initials", "full"]


class FeedIn(msgspec.Struct, forbid_unknown_fields=True):
    privacy: Annotated[
        PrivacyTier, Meta(description="busy: only 'Busy'; initials: session type and client initials; full: + name")
    ]


class FeedCreated(msgspec.Struct):
    id: str
    url: Annotated[str, Meta(description="the secret feed address; shown once, stored only as a hash")]
    webcal_url: str
    privacy: PrivacyTier
    created_at: dt.datetime


class FeedOut(msgspec.Struct):
    id: str
    privacy: PrivacyTier
    created_at: dt.datetime


class FeedList(msgspec.Struct):
    feeds: list[FeedOut]


class FeedCache:
    """Rendered feed bodies by (feed, ETag), least recently used out first, bounded in entries and bytes."""

    def __init__(self, max_entries: int = 64, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[uuid.UUID, tuple[str, bytes]] = OrderedDict()
        self._bytes = 0

    def get(self, feed_id: uuid.UUID, etag: str) -> bytes | None:
        entry = self._entries.get(feed_id)
        if entry is None or entry[0] != etag:
            return None
        self._entries.move_to_end(feed_id)
        return entry[1]

    def put(self, feed_id: uuid.UUID, etag: str, body: bytes) -> None:
        self.drop(feed_id)
        if len(body) > self.max_bytes // 4:
            return
        self._entries[feed_id] = (etag, body)
        self._bytes += len(body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, old) = self._entries.popitem(last=False)
            self._bytes -= len(old)

    def drop(self, feed_id: uuid.UUID) -> None:
        entry = self._entries.pop(feed_id, None)
        if entry is not None:
            self._bytes -= len(entry[1])


FEED_CACHE = web.AppKey("feed_cache", FeedCache)


def feed_urls(origin: str, token: str) -> tuple[str, str]:
    url = f"{origin}/calendar/{token}.ics"
    return url, "webcal://" + url.split("://", 1)[1]


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/feeds",
    summary="Create a calendar subscription feed with a privacy tier; its URL is shown once",
    auth="therapist",
    body=FeedIn,
    response=FeedCreated,
    status=201,
    params=[SLUG],
    errors=(401, 403, 404, 409, 422),
)
async def create_feed(request: web.Request) -> web.Response:
    _, therapist = await require_therapist(request, request.match_info["slug"])
    body = await read_json(request, FeedIn)
    assert body is not None
    token = credentials.new_secret(credentials.FEED_TOKEN)
    feed_id = uuid.uuid4()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM therapists WHERE id = $1 FOR UPDATE", therapist["id"])
        if await conn.fetchval(COUNT_FEEDS, therapist["id"]) >= MAX_FEEDS:
            raise Problem(409, "too_many_feeds", f"At most {MAX_FEEDS} feeds; revoke one you no longer use.")
        created = await conn.fetchval(
            INSERT_FEED, feed_id, therapist["id"], credentials.secret_hash(token), body.privacy
        )
    request.app.logger.info("feed %s created for therapist %s", feed_id, therapist["id"])
    url, webcal = feed_urls(request.app[SETTINGS].origin, token)
    out = FeedCreated(id=str(feed_id), url=url, webcal_url=webcal, privacy=body.privacy, created_at=created)
    return respond(out, status=201)


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/feeds",
    summary="The therapist's active feeds (without their secret URLs)",
    auth="therapist",
    response=FeedList,
    params=[SLUG],
    errors=(401, 403, 404),
)
async def list_feeds(request: web.Request) -> web.Response:
    _, therapist = await require_therapist(request, request.match_info["slug"])
    rows = await request.app[POOL].fetch(SELECT_FEEDS, therapist["id"])
    return respond(
        FeedList(feeds=[FeedOut(id=str(r["id"]), privacy=r["privacy"], created_at=r["created_at"]) for r in rows])
    )


@routes.route(
    "DELETE",
    "/api/v1/therapists/{slug}/feeds/{id}",
    summary="Revoke a feed; its URL answers 404 from then on",
    auth="therapist",
    status=204,
    params=[SLUG, FEED_ID],
    errors=(401, 403, 404),
)
async def revoke_feed(request: web.Request) -> web.Response:
    _, therapist = await require_therapist(request, request.match_info["slug"])
    feed_id = parse_uuid(request.match_info["id"], "feed")
    if await request.app[POOL].fetchval(REVOKE_FEED, feed_id, therapist["id"]) is None:
        raise not_found("feed")
    request.app[FEED_CACHE].drop(feed_id)
    request.app.logger.info("feed %s revoked", feed_id)
    return web.Response(status=204)


def _window(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    # Whole UTC days, so the window (and with it the ETag) only moves once a day.
    start = (now - LOOKBACK).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + LOOKAHEAD


def _etag(feed: asyncpg.Record, origin: str, start: dt.datetime, n: int, digest: str) -> str:
    material = "|".join(
        (RENDER_VERSION, str(feed["id"]), feed["privacy"], feed["therapist_name"], origin, start.isoformat())
    )
    return '"' + hashlib.sha256(f"{material}|{n}|{digest}".encode()).hexdigest()[:32] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison, a list of tags, or `*`."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return any(t == "*" or t.removeprefix("W/") == etag for t in tags)


def _feed_events(rows: list[asyncpg.Record]) -> list[ical.FeedEvent]:
    return [
        ical.FeedEvent(
            booking_id=str(r["id"]),
            start=r["starts_at"],
            end=r["ends_at"],
            sequence=r["sequence"],
            created=r["created_at"],
            updated=r["updated_at"],
            session_type=r["session_type_name"],
            client_name=r["client_name"],
        )
        for r in rows
    ]


async def serve_feed(request: web.Request) -> web.Response:
    """GET /calendar/{token}.ics: the feed, or 304 when the caller's copy is current. Unknown/revoked: 404."""
    token = request.match_info["token"]
    if not token.startswith(credentials.FEED_TOKEN):
        raise not_found("feed")
    app = request.app
    origin = app[SETTINGS].origin
    start, end = _window(app[CLOCK].now())
    rows: list[asyncpg.Record] = []
    async with app[POOL].acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        feed = await conn.fetchrow(SELECT_FEED_BY_TOKEN, credentials.secret_hash(token))
        if feed is None:
            raise not_found("feed")
        totals = await conn.fetchrow(FEED_DIGEST, feed["therapist_id"], start, end)
        etag = _etag(feed, origin, start, totals["n"], totals["digest"])
        headers = {"ETag": etag, "Cache-Control": f"private, max-age={CACHE_SECONDS}"}
        if _matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers=headers)
        body = app[FEED_CACHE].get(feed["id"], etag)
        if body is None:
            rows = list(await conn.fetch(FEED_ROWS, feed["therapist_id"], start, end))
    if body is None:
        info = ical.FeedInfo(
            therapist_name=feed["therapist_name"], privacy=feed["privacy"], origin=origin, refresh=REFRESH
        )
        body = await asyncio.to_thread(ical.render_feed, _feed_events(rows), info)
        app[FEED_CACHE].put(feed["id"], etag, body)
    headers["Content-Disposition"] = 'inline; filename="teleroom.ics"'
    return web.Response(body=body, headers=headers, content_type=CALENDAR_TYPE, charset="utf-8")


@routes.route(
    "GET",
    "/api/v1/bookings/{id}/ics",
    summary="The booking as one calendar event for the client (links carry no key)",
    auth=("booking", "therapist"),
    params=[Param("id", "path", "Booking id", required=True)],
    errors=(401, 404),
    content_type=CALENDAR_TYPE,
)
async def booking_ics(request: web.Request) -> web.Response:
    booking_id = parse_uuid(request.match_info["id"], "booking")
    principal = await require_booking_access(request, booking_id)
    pool = request.app[POOL]
    row = await bookings.fetch_booking(pool, booking_id)
    await audit.record(pool, principal, "booking.ics", booking_id=booking_id, therapist_id=row["therapist_id"])
    event = ical.ClientEvent(
        booking_id=str(row["id"]),
        start=row["starts_at"],
        end=row["ends_at"],
        sequence=row["sequence"],
        created=row["created_at"],
        updated=row["updated_at"],
        session_type=row["session_type_name"],
        therapist_name=row["therapist_name"],
        origin=request.app[SETTINGS].origin,
        cancelled=row["status"] == "cancelled",
    )
    return web.Response(
        body=ical.render_client_event(event),
        content_type=CALENDAR_TYPE,
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="teleroom-session.ics"'},
    )


def setup(app: web.Application) -> None:
    """Mount feeds, the client .ics and busy calendars; register external busy time as a busy source."""

    app[FEED_CACHE] = FeedCache()
    app[API_ROUTES].append(routes)
    routes.install(app)
    # The match_info key must be `token`: the access logger then logs the route pattern, not the secret.
    app.router.add_get("/calendar/{token}.ics", serve_feed)
    busy_calendars.setup(app)
