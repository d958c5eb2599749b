"""A therapist's feed of 5,000 bookings through the service, next to bare icalendar, and the cost of a 304.

Four figures in one run, each the median of several:

* bare icalendar: the same 5,000 events built and serialised by icalendar alone, in process
  (no database, no HTTP) — the floor any icalendar-based feed sits on;
* service, cold: GET /calendar/<token>.ics with the per-node body cache emptied first
  (token lookup, ETag query, row query, rendering in a thread, HTTP);
* service, warm: the same GET when the body is cached (what a second subscriber polling an
  unchanged feed without a validator costs);
* service, 304: the GET a calendar app makes with If-None-Match on an unchanged feed.

    python -m bench.feed [--bookings 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import os
import time
import uuid

import asyncpg
import icalendar

from bench.harness import Running, running_service, timed
from broker.feeds import FEED_CACHE


async def insert_bookings(svc: Running, therapist_id: str, session_type: str, n: int) -> None:
    """n confirmed 15-minute bookings back to back from tomorrow, in one COPY."""
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    now = dt.datetime.now(dt.UTC)
    records = []
    for i in range(n):
        begins = start + dt.timedelta(minutes=15 * i)
        ends = begins + dt.timedelta(minutes=15)
        records.append(
            (
                uuid.uuid4(),
                uuid.UUID(therapist_id),
                uuid.UUID(session_type),
                begins,
                ends,
                asyncpg.Range(begins, ends),
                "confirmed",
                f"Client Number{i}",
                f"client{i}@example.org",
                hashlib.sha256(os.urandom(24)).digest(),
                now,
                now,
            )
        )
    conn = await asyncpg.connect(svc.database_url)
    try:
        await conn.copy_records_to_table(
            "bookings",
            records=records,
            columns=[
                "id",
                "therapist_id",
                "session_type_id",
                "starts_at",
                "ends_at",
                "blocked",
                "status",
                "client_name",
                "client_email",
                "key_hash",
                "created_at",
                "updated_at",
            ],
        )
    finally:
        await conn.close()


async def bare_rows(svc: Running, therapist_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(svc.database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT id, starts_at, ends_at, sequence, created_at, updated_at, client_name FROM bookings"
                " WHERE therapist_id = $1",
                uuid.UUID(therapist_id),
            )
        )
    finally:
        await conn.close()


def bare_icalendar(rows: list[asyncpg.Record]) -> bytes:
    """The same calendar and event properties the service writes, built with icalendar and nothing else."""
    cal = icalendar.Calendar()
    for name, value in (("prodid", "-//bench//bare icalendar//EN"), ("version", "2.0"), ("calscale", "GREGORIAN")):
        cal.add(name, value)
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", "Teleroom – Bench")
    cal.add("name", "Teleroom – Bench")
    cal.add("refresh-interval", dt.timedelta(minutes=15), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", icalendar.vDuration(dt.timedelta(minutes=15)))
    for row in rows:
        event = icalendar.Event()
        event.add("uid", f"{row['id']}@127.0.0.1")
        event.add("dtstamp", row["updated_at"].replace(microsecond=0))
        event.add("created", row["created_at"].replace(microsecond=0))
        event.add("last-modified", row["updated_at"].replace(microsecond=0))
        event.add("sequence", row["sequence"])
        event.add("dtstart", row["starts_at"])
        event.add("dtend", row["ends_at"])
        event.add("summary", f"S – {row['client_name'][0]}.N.")
        event.add("status", "CONFIRMED")
        event.add("transp", "OPAQUE")
        event.add("class", "PRIVATE")
        event.add("description", "Details in your Teleroom dashboard: http://127.0.0.1:8080/dashboard")
        event.add("url", "http://127.0.0.1:8080/dashboard")
        cal.add_component(event)
    body: bytes = cal.to_ical()
    return body


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    async with running_service() as svc:
        therapist, st = await svc.therapist("bench-feed")
        began = time.perf_counter()
        await insert_bookings(svc, therapist["id"], st, args.bookings)
        setup_seconds = time.perf_counter() - began
        feed = await svc.call(
            "POST", "/api/v1/therapists/bench-feed/feeds", therapist["api_token"], {"privacy": "initials"}
        )
        url = feed["url"]
        rows = await bare_rows(svc, therapist["id"])

        async def bare() -> None:
            await asyncio.to_thread(bare_icalendar, rows)

        async def get(headers: dict[str, str] | None = None, *, cold: bool = False) -> tuple[int, int, str]:
            if cold:
                svc.app[FEED_CACHE].drop(uuid.UUID(feed["id"]))
            async with svc.http.get(url, headers=headers or {}) as resp:
                body = await resp.read()
                return resp.status, len(body), resp.headers["ETag"]

        status, size, etag = await get(cold=True)
        assert status == 200, status
        assert (await get({"If-None-Match": etag}))[0] == 304
        bare_size = len(bare_icalendar(rows))

        t_bare = await timed(bare, args.repeat)
        t_cold = await timed(lambda: get(cold=True), args.repeat)
        t_warm = await timed(get, args.repeat)
        t_304 = await timed(lambda: get({"If-None-Match": etag}), max(args.repeat, 20))

    print(f"bookings={args.bookings} (inserted by COPY in {setup_seconds:.2f}s) repeat={args.repeat}")
    print(f"bare icalendar       : {t_bare * 1000:9.1f} ms  ({bare_size / 1e6:.2f} MB)")
    print(f"service GET, cold    : {t_cold * 1000:9.1f} ms  ({size / 1e6:.2f} MB)")
    print(f"service GET, cached  : {t_warm * 1000:9.1f} ms")
    print(f"service GET, 304     : {t_304 * 1000:9.2f} ms")
    print(f"ratio cold / bare    : {t_cold / t_bare:9.2f}")
    print(f"ratio cached / bare  : {t_warm / t_bare:9.3f}")
    print(f"ratio 304 / bare     : {t_304 / t_bare:9.4f}")
    print(f"ratio 304 / cold     : {t_304 / t_cold:9.4f}")


if __name__ == "__main__":
    asyncio.run(main())
