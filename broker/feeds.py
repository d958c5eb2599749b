"""Calendar feeds: a therapist's secret subscription URLs (the `feeds` table) and a client's .ics.

A feed URL is a bearer secret (`trf_` + 192 random bits) stored only as a hash. Calendar
apps poll it every few minutes, so the common answer must be cheap: the ETag is a hash of
the feed's inputs computed by one aggregate query (no rendering), `If-None-Match` gets a
304 straight away, and rendered bodies are kept in a small per-node cache keyed by ETag.
The body is a pure function of those inputs (see calendars.ical), so the ETag is strong.
What a feed reads of a booking is `calendars.ical.FeedEvent`, which has no field for a
client's email or phone, a booking key or a join link: no tier can leak what is not there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections import OrderedDict

import asyncpg
import msgspec
from aiohttp import web

from broker import audit, bookings, credentials, therapists
from broker.database import Executor, record_to
from broker.errors import Conflict, NotFound
from broker.principals import Principal
from calendars import ical
from calendars.ical import Privacy

MAX_FEEDS = 20
LOOKBACK = dt.timedelta(days=30)
# Bookings are only ever made within a session type's horizon (at most 730 days).
LOOKAHEAD = dt.timedelta(days=800)
REFRESH = dt.timedelta(minutes=15)
RENDER_VERSION = "1"

INSERT_FEED = """
INSERT INTO feeds (id, therapist_id, token_hash, privacy) VALUES ($1, $2, $3, $4) RETURNING id, privacy, created_at
"""
COUNT_FEEDS = "SELECT count(*) FROM feeds WHERE therapist_id = $1 AND revoked_at IS NULL"
SELECT_FEEDS = """
SELECT id, privacy, created_at FROM feeds WHERE therapist_id = $1 AND revoked_at IS NULL ORDER BY created_at, id
"""
REVOKE_FEED = """
UPDATE feeds SET revoked_at = now() WHERE id = $1 AND therapist_id = $2 AND revoked_at IS NULL RETURNING id
"""
SELECT_FEED_BY_TOKEN = "SELECT id, privacy, therapist_id FROM feeds WHERE token_hash = $1 AND revoked_at IS NULL"
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
WHERE b.therapist_id = $1 AND b.status IN ('confirmed', 'attended', 'no_show')
  AND b.starts_at >= $2::timestamptz - interval '1 day' AND b.starts_at < $3 AND b.ends_at > $2
"""
# The feed's own projection of bookings: exactly the fields of `ical.FeedEvent`, nothing more.
FEED_EVENTS = """
SELECT b.id::text AS booking_id, b.starts_at AS start, b.ends_at AS end, b.sequence,
       b.created_at AS created, b.updated_at AS updated, st.name AS session_type, b.client_name
FROM bookings b JOIN session_types st ON st.id = b.session_type_id
WHERE b.therapist_id = $1 AND b.status IN ('confirmed', 'attended', 'no_show')
  AND b.starts_at >= $2::timestamptz - interval '1 day' AND b.starts_at < $3 AND b.ends_at > $2
ORDER BY b.starts_at, b.id
"""


class Feed(msgspec.Struct, frozen=True):
    """An active feed as its therapist sees it listed (the URL is never shown again)."""

    id: uuid.UUID
    privacy: Privacy
    created_at: dt.datetime


class NewFeed(msgspec.Struct, frozen=True):
    """A feed just created, with its secret token: handed out once."""

    feed: Feed
    token: str


class _FeedOwner(msgspec.Struct, frozen=True):
    id: uuid.UUID
    privacy: Privacy
    therapist_id: uuid.UUID


class _Digest(msgspec.Struct, frozen=True):
    n: int
    digest: str


class FeedAnswer(msgspec.Struct, frozen=True):
    """A poll's answer: the ETag, and the body unless the caller's copy is current (`body` None: 304)."""

    etag: str
    body: bytes | None


class FeedCache:
    """Rendered feed bodies by (feed, ETag), least recently used out first, bounded in entries and bytes."""

    def __init__(self, max_entries: int = 64, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[uuid.UUID, tuple[str, bytes]] = OrderedDict()
        self._bytes = 0

    def get(self, feed_id: uuid.UUID, etag: str) -> bytes | None:
        """The cached body of this feed if it was rendered for this ETag."""
        entry = self._entries.get(feed_id)
        if entry is None or entry[0] != etag:
            return None
        self._entries.move_to_end(feed_id)
        return entry[1]

    def put(self, feed_id: uuid.UUID, etag: str, body: bytes) -> None:
        """Keep a rendered body (not one larger than a quarter of the budget), evicting the oldest."""
        self.drop(feed_id)
        if len(body) > self.max_bytes // 4:
            return
        self._entries[feed_id] = (etag, body)
        self._bytes += len(body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, old) = self._entries.popitem(last=False)
            self._bytes -= len(old)

    def drop(self, feed_id: uuid.UUID) -> None:
        """Forget a feed's body (it was revoked)."""
        entry = self._entries.pop(feed_id, None)
        if entry is not None:
            self._bytes -= len(entry[1])


# Per node: a node that loses it only renders again.
FEED_CACHE = web.AppKey("feed_cache", FeedCache)


def feed_urls(origin: str, token: str) -> tuple[str, str]:
    """The feed's https URL and the same as webcal:// (which calendar apps open as a subscription)."""
    url = f"{origin}/calendar/{token}.ics"
    return url, "webcal://" + url.split("://", 1)[1]


async def create(pool: asyncpg.Pool, therapist_id: uuid.UUID, privacy: Privacy) -> NewFeed:
    """A new feed with a fresh token; Conflict `too_many_feeds` beyond MAX_FEEDS active ones."""
    token = credentials.new_secret(credentials.FEED_TOKEN)
    async with pool.acquire() as conn, conn.transaction():
        await therapists.lock(conn, therapist_id)
        if await conn.fetchval(COUNT_FEEDS, therapist_id) >= MAX_FEEDS:
            raise Conflict(f"At most {MAX_FEEDS} feeds; revoke one you no longer use.", code="too_many_feeds")
        row = await conn.fetchrow(INSERT_FEED, uuid.uuid4(), therapist_id, credentials.secret_hash(token), privacy)
    feed = record_to(Feed, row)
    return NewFeed(feed=feed, token=token)


async def active(conn: Executor, therapist_id: uuid.UUID) -> list[Feed]:
    """A therapist's feeds that have not been revoked, oldest first."""
    return [record_to(Feed, r) for r in await conn.fetch(SELECT_FEEDS, therapist_id)]


async def revoke(conn: Executor, cache: FeedCache, therapist_id: uuid.UUID, feed_id: uuid.UUID) -> None:
    """Revoke one of the therapist's feeds: its URL answers 404 from then on. NotFound if none."""
    if await conn.fetchval(REVOKE_FEED, feed_id, therapist_id) is None:
        raise NotFound("feed")
    cache.drop(feed_id)


def _window(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    # Whole UTC days, so the window (and with it the ETag) only moves once a day.
    start = (now - LOOKBACK).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + LOOKAHEAD


def _etag(feed: _FeedOwner, therapist_name: str, origin: str, start: dt.datetime, totals: _Digest) -> str:
    material = "|".join((RENDER_VERSION, str(feed.id), feed.privacy, therapist_name, origin, start.isoformat()))
    return '"' + hashlib.sha256(f"{material}|{totals.n}|{totals.digest}".encode()).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison, a list of tags, or `*`."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return any(t == "*" or t.removeprefix("W/") == etag for t in tags)


async def poll(
    pool: asyncpg.Pool, cache: FeedCache, token: str, *, origin: str, now: dt.datetime, if_none_match: str | None
) -> FeedAnswer:
    """A calendar app's poll of a feed URL: its body, or only the ETag when the app's copy is current.

    NotFound for a token that is unknown or revoked (or not a feed token at all)."""
    if not token.startswith(credentials.FEED_TOKEN):
        raise NotFound("feed")
    start, end = _window(now)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(SELECT_FEED_BY_TOKEN, credentials.secret_hash(token))
        if row is None:
            raise NotFound("feed")
        feed = record_to(_FeedOwner, row)
        therapist = await therapists.by_id(conn, feed.therapist_id)
        totals = record_to(_Digest, await conn.fetchrow(FEED_DIGEST, feed.therapist_id, start, end))
        etag = _etag(feed, therapist.name, origin, start, totals)
        if matches(if_none_match, etag):
            return FeedAnswer(etag=etag, body=None)
        body = cache.get(feed.id, etag)
        if body is not None:
            return FeedAnswer(etag=etag, body=body)
        events = [record_to(ical.FeedEvent, r) for r in await conn.fetch(FEED_EVENTS, feed.therapist_id, start, end)]
    info = ical.FeedInfo(therapist_name=therapist.name, privacy=feed.privacy, origin=origin, refresh=REFRESH)
    body = await asyncio.to_thread(ical.render_feed, events, info)
    cache.put(feed.id, etag, body)
    return FeedAnswer(etag=etag, body=body)


async def client_ics(conn: Executor, booking_id: uuid.UUID, reader: Principal, origin: str) -> bytes:
    """A booking as one event for the client's own calendar (links carry no key); the read is audited."""
    booking = await bookings.get(conn, booking_id)
    await audit.record(conn, reader, "booking.ics", booking_id=booking_id, therapist_id=booking.therapist_id)
    event = ical.ClientEvent(
        booking_id=str(booking.id),
        start=booking.starts_at,
        end=booking.ends_at,
        sequence=booking.sequence,
        created=booking.created_at,
        updated=booking.updated_at,
        session_type=booking.session_type_name,
        therapist_name=booking.therapist_name,
        origin=origin,
        cancelled=booking.status in bookings.CANCELLED,
    )
    return ical.render_client_event(event)
