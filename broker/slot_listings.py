"""Free slots for the public booking page: computed once, kept in memory, served until they change.

A listing (one therapist, session type, range of dates and zone) is computed from the rules by
`calendars.slots` and kept with the therapist's schedule version (migration 013: PostgreSQL bumps
it in the transaction of every change to their bookings, hours, session types or busy calendars).
Each request reads that version, one indexed row, and serves the kept listing only while it is
unchanged, so a slot taken through any node is never offered again once its booking has committed.

What a listing keeps does not depend on the exact time: it holds every slot that the minimum
notice and horizon could allow at any moment of the hour it was computed in, and each request
cuts it to its own "now" (two binary searches over the kept starts, one slice of the kept JSON).
Concurrent requests for the same listing wait for one computation, at most a few computations run
at once, and the kept listings are bounded in bytes, least recently used going first.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import datetime as dt
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from aiohttp import web
from asyncpg import Range

from broker import availability, schemas, session_types
from broker.bookings import SELECT_BUSY, BusySource
from broker.database import Executor
from broker.therapists import Therapist
from calendars.slots import SessionRules, Span, dates_window, epoch_ceil, epoch_floor, offered_window, slot_starts

SELECT_VERSION = "SELECT version FROM schedule_versions WHERE therapist_id = $1"
# What the kept listings may hold in all (the JSON of their slots plus two 8-byte numbers a slot).
MAX_BYTES = 32 * 1024 * 1024
# Listings computed at once in one process; more wait their turn, so a flood of distinct listings
# queues here instead of filling the event loop and the connection pool.
CONCURRENT_COMPUTATIONS = 2
HOUR = 3600

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Key:
    """Which listing: the therapist's, of one session type, for local dates in a zone, as of an hour."""

    therapist_id: uuid.UUID
    session_type: str
    first: dt.date
    last: dt.date
    zone: str
    hour: int  # seconds since 1970 of the hour "now" is in


class Listing:
    """A computed listing: its slots' starts and their JSON, ready to be cut to a moment."""

    __slots__ = ("blob", "offsets", "prefix", "rules", "size", "starts", "version")

    def __init__(self, version: int, rules: SessionRules, zone: str, tz: ZoneInfo, starts: Sequence[int]) -> None:
        self.version = version
        self.rules = rules
        self.prefix = b'{"timezone":' + _encoder.encode(zone) + b',"slots":['
        length = rules.duration * 60
        fragments = [
            _encoder.encode(
                schemas.Slot(start=dt.datetime.fromtimestamp(t, tz), end=dt.datetime.fromtimestamp(t + length, tz))
            )
            for t in starts
        ]
        self.starts = array("q", starts)
        # Slot i's JSON is blob[offsets[i] : offsets[i + 1] - 1]; one comma between neighbours.
        self.blob = b",".join(fragments)
        self.offsets = array("q", [0])
        for fragment in fragments:
            self.offsets.append(self.offsets[-1] + len(fragment) + 1)
        self.size = len(self.blob) + 16 * len(self.starts) + len(self.prefix) + 200

    def body(self, now: dt.datetime) -> bytes:
        """The JSON of `schemas.SlotList` with the slots a client may book at `now`."""
        offered = offered_window(self.rules, now)
        i = bisect.bisect_left(self.starts, epoch_ceil(offered.start))
        j = bisect.bisect_left(self.starts, epoch_ceil(offered.end))
        if i >= j:
            return self.prefix + b"]}"
        return self.prefix + self.blob[self.offsets[i] : self.offsets[j] - 1] + b"]}"


class SlotListings:
    """The listings this process keeps, and the computations under way."""

    def __init__(self, max_bytes: int = MAX_BYTES, concurrent: int = CONCURRENT_COMPUTATIONS) -> None:
        self.max_bytes = max_bytes
        self._kept: collections.OrderedDict[Key, Listing] = collections.OrderedDict()
        self._bytes = 0
        self._computing: dict[tuple[Key, int], asyncio.Task[Listing]] = {}
        self._turns = asyncio.Semaphore(concurrent)
        self.hits = 0  # requests served from a kept listing
        self.misses = 0  # requests that waited for a computation (their own or one under way)
        self.computed = 0  # computations

    async def body(
        self,
        pool: asyncpg.Pool,
        therapist: Therapist,
        session_type: str,
        first: dt.date,
        last: dt.date,
        zone: str,
        now: dt.datetime,
        sources: Sequence[BusySource],
    ) -> bytes:
        """The slot list's JSON: kept if the therapist's schedule is unchanged since, computed if not."""
        version: int = await pool.fetchval(SELECT_VERSION, therapist.id) or 0
        key = Key(therapist.id, session_type, first, last, zone, epoch_floor(now) // HOUR * HOUR)
        kept = self._kept.get(key)
        if kept is not None and kept.version >= version:
            self._kept.move_to_end(key)
            self.hits += 1
            return kept.body(now)
        self.misses += 1
        task = self._computing.get((key, version))
        if task is None:
            task = asyncio.create_task(self._compute(pool, therapist, key, version, sources))
            self._computing[(key, version)] = task
            task.add_done_callback(lambda done: self._finished(key, version, done))
        # Shielded: a caller that goes away does not cancel the listing others wait for.
        listing = await asyncio.shield(task)
        return listing.body(now)

    def _finished(self, key: Key, version: int, task: asyncio.Task[Listing]) -> None:
        del self._computing[(key, version)]
        if task.cancelled() or task.exception() is not None:
            return  # the error went to every caller that waited; nothing is kept
        self._keep(key, task.result())

    def _keep(self, key: Key, listing: Listing) -> None:
        old = self._kept.get(key)
        if old is not None:
            if old.version > listing.version:
                return
            self._bytes -= old.size
        self._kept[key] = listing
        self._kept.move_to_end(key)
        self._bytes += listing.size
        while self._bytes > self.max_bytes and self._kept:
            _, dropped = self._kept.popitem(last=False)
            self._bytes -= dropped.size

    async def _compute(
        self, pool: asyncpg.Pool, therapist: Therapist, key: Key, version: int, sources: Sequence[BusySource]
    ) -> Listing:
        self.computed += 1
        async with self._turns:
            async with pool.acquire() as conn:
                session_type = await session_types.active(conn, therapist.id, key.session_type)
                rules = session_type.rules
                av, _ = await availability.load(conn, therapist.id, therapist.timezone)
                tz = ZoneInfo(key.zone)
                # Every slot the notice and horizon allow at some moment of the hour.
                hour = dt.datetime.fromtimestamp(key.hour, dt.UTC)
                dates = dates_window(key.first, key.last, tz)
                span = Span(
                    max(dates.start, offered_window(rules, hour).start),
                    min(dates.end, offered_window(rules, hour + dt.timedelta(seconds=HOUR)).end),
                )
                if span.start >= span.end:
                    return Listing(version, rules, key.zone, tz, ())
                busy = await _busy(conn, therapist.id, rules, span, sources)
            return Listing(version, rules, key.zone, tz, slot_starts(av, rules, busy, span))


async def _busy(
    conn: Executor, therapist_id: uuid.UUID, rules: SessionRules, span: Span, sources: Sequence[BusySource]
) -> list[Span]:
    """Busy time that can touch a slot starting in `span` (its buffers included): the bookings that
    hold time (`bookings.SELECT_BUSY`, on the exclusion constraint's index) and the extra sources."""
    reach = Span(
        span.start - dt.timedelta(minutes=rules.buffer_before + rules.duration),
        span.end + dt.timedelta(minutes=rules.duration + rules.buffer_after),
    )
    rows = await conn.fetch(SELECT_BUSY, therapist_id, Range(reach.start, reach.end), None)
    busy = [Span(r[0], r[1]) for r in rows]  # two timestamps a row: record_to's checks cost more than the rest
    for source in sources:
        busy.extend(await source(conn, therapist_id, reach))
    return busy


# The process's listings (created by the slot route's setup).
SLOT_LISTINGS = web.AppKey("slot_listings", SlotListings)
