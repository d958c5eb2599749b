"""Time to compute 62 days of slots for a therapist with 1,000 existing bookings.

Reported three ways in one run: the pure computation in calendars.slots, the whole
GET /slots request through the service, and, as the reference floor, the bare asyncpg
query that fetches the same 1,000 bookings' busy ranges. Ratios are to that floor.

    python -m bench.slots
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import uuid
from zoneinfo import ZoneInfo

import asyncpg

from bench.harness import running_service, timed
from calendars.slots import Availability, Interval, SessionRules, Span, compute_slots, dates_window

DAYS = 62
BOOKINGS = 1000


async def main() -> None:
    async with running_service() as svc:
        therapist, st = await svc.therapist("bench-slots", duration=50, interval=60)
        therapist_id = uuid.UUID(therapist["id"])
        first = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
        pool = await asyncpg.create_pool(svc.database_url, min_size=1, max_size=2)
        # 1,000 bookings spread over the 62 days, on the hour.
        hours = [
            dt.datetime(first.year, first.month, first.day, tzinfo=dt.UTC) + dt.timedelta(hours=h)
            for h in range(0, DAYS * 24, (DAYS * 24) // BOOKINGS)
        ][:BOOKINGS]
        client_id = uuid.uuid4()
        await pool.execute(
            "INSERT INTO clients (id, therapist_id, name, email) VALUES ($1, $2, 'C', 'c@example.org')",
            client_id,
            therapist_id,
        )
        await pool.executemany(
            "INSERT INTO bookings (id, therapist_id, session_type_id, starts_at, ends_at, blocked, client_name,"
            " client_email, key_hash, client_id) VALUES ($1, $2, $3, $4, $5, $6, 'C', 'c@example.org', $7, $8)",
            [
                (
                    uuid.uuid4(),
                    therapist_id,
                    uuid.UUID(st),
                    h,
                    h + dt.timedelta(minutes=50),
                    asyncpg.Range(h, h + dt.timedelta(minutes=50)),
                    hashlib.sha256(os.urandom(8)).digest(),
                    client_id,
                )
                for h in hours
            ],
        )
        last = first + dt.timedelta(days=DAYS - 1)
        window = dates_window(first, last, ZoneInfo("UTC"))
        busy_rows = await pool.fetch(
            "SELECT lower(blocked) AS s, upper(blocked) AS e FROM bookings WHERE therapist_id = $1", therapist_id
        )
        busy = [Span(r["s"], r["e"]) for r in busy_rows]
        av = Availability(timezone="UTC", weekly={d: (Interval(0, 1440),) for d in range(7)})
        rules = SessionRules(duration=50, slot_interval=60, horizon_days=365)
        now = dt.datetime.now(dt.UTC)
        n_slots = len(compute_slots(av, rules, busy, window, now))

        async def pure() -> None:
            compute_slots(av, rules, busy, window, now)

        async def http() -> None:
            await svc.call("GET", f"/api/v1/therapists/bench-slots/slots?session_type={st}&from={first}&to={last}")

        async def floor() -> None:
            await pool.fetch(
                "SELECT lower(blocked), upper(blocked) FROM bookings WHERE therapist_id = $1 AND status = 'confirmed'"
                " AND blocked && $2",
                therapist_id,
                asyncpg.Range(window.start, window.end),
            )

        t_pure = await timed(pure)
        t_http = await timed(http)
        t_floor = await timed(floor)
        await pool.close()
    print(f"{DAYS} days, {len(busy)} existing bookings, {n_slots} free slots")
    print(f"pure compute_slots       : {t_pure * 1000:8.2f} ms")
    print(f"GET /slots (HTTP)        : {t_http * 1000:8.2f} ms")
    print(f"asyncpg busy query (ref) : {t_floor * 1000:8.2f} ms")
    print(f"ratio compute/query      : {t_pure / t_floor:8.2f}")
    print(f"ratio HTTP/query         : {t_http / t_floor:8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
