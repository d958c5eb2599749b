"""Bookings per second through the HTTP API, next to raw asyncpg inserts into the same table.

Both sides write confirmed bookings on distinct slots with the same concurrency into the same
`bookings` table, so the exclusion constraint does the same work; the ratio is what the API
(validation, slot check, key hashing, audit row, JSON, HTTP) costs on top of the bare insert.

    python -m bench.booking [--bookings 600] [--concurrency 16]
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

from bench.harness import Running, running_service


async def through_api(svc: Running, n: int, concurrency: int) -> float:
    _, st = await svc.therapist("bench-api")
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    times = [start + dt.timedelta(minutes=15 * i) for i in range(n)]
    queue: asyncio.Queue[dt.datetime] = asyncio.Queue()
    for t in times:
        queue.put_nowait(t)

    async def worker() -> None:
        while not queue.empty():
            when = queue.get_nowait()
            body = {"session_type": st, "start": when.isoformat(), "client": {"name": "C", "email": "c@example.org"}}
            async with svc.http.post(f"{svc.base}/api/v1/therapists/bench-api/bookings", json=body) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"booking failed: {resp.status} {await resp.text()}")

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - began)


async def raw_inserts(svc: Running, n: int, concurrency: int) -> float:
    therapist, st = await svc.therapist("bench-raw")
    pool = await asyncpg.create_pool(svc.database_url, min_size=concurrency, max_size=concurrency)
    therapist_id = uuid.UUID(therapist["id"])
    session_type = uuid.UUID(st)
    client_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO clients (id, therapist_id, name, email) VALUES ($1, $2, 'C', 'c@example.org')",
        client_id,
        therapist_id,
    )
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    queue: asyncio.Queue[dt.datetime] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(start + dt.timedelta(minutes=15 * i))

    async def worker() -> None:
        async with pool.acquire() as conn:
            while not queue.empty():
                when = queue.get_nowait()
                end = when + dt.timedelta(minutes=15)
                await conn.execute(
                    "INSERT INTO bookings (id, therapist_id, session_type_id, starts_at, ends_at, blocked,"
                    " client_name, client_email, key_hash, client_id)"
                    " VALUES ($1, $2, $3, $4, $5, $6, 'C', 'c@example.org', $7, $8)",
                    uuid.uuid4(),
                    therapist_id,
                    session_type,
                    when,
                    end,
                    asyncpg.Range(when, end),
                    hashlib.sha256(os.urandom(24)).digest(),
                    client_id,
                )

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = n / (time.perf_counter() - began)
    await pool.close()
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    async with running_service() as svc:
        api_rate = await through_api(svc, args.bookings, args.concurrency)
        raw_rate = await raw_inserts(svc, args.bookings, args.concurrency)
    print(f"bookings={args.bookings} concurrency={args.concurrency}")
    print(f"HTTP API      : {api_rate:8.0f} bookings/s")
    print(f"raw asyncpg   : {raw_rate:8.0f} inserts/s")
    print(f"ratio API/raw : {api_rate / raw_rate:8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
