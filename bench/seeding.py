"""A clinic-network-sized database for the scale runs: many therapists, a million bookings.

`seed(conn, therapists=10_000, bookings=1_000_000)` writes, with COPY, therapists (slug
`scale-00000`...), one 50-minute session type each (10 minutes' buffer, hourly grid), published
hours around the clock, twenty clients each, their bookings (the same number each, one a day,
half in the past and half ahead, so every index holds both) and each booking's audit row. Only
rows the service itself would have written; triggers are left out (the policy a booking was made
under, the schedule version), as a restore would leave them. Needs a role that may set
`session_replication_role` (the database's owner or a superuser), on an empty, migrated database.

    python -m bench.seeding DATABASE_URL [--therapists 10000] [--bookings 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Iterator

import asyncpg
import msgspec

CHUNK = 50_000
CLIENTS_EACH = 20
WEEK = {str(day): [[0, 1440]] for day in range(7)}


def _ids(prefix: str, count: int) -> list[uuid.UUID]:
    """Stable ids, so two seeds of the same size hold the same rows."""
    return [uuid.UUID(bytes=hashlib.md5(f"{prefix}{i}".encode(), usedforsecurity=False).digest()) for i in range(count)]


async def _copy(conn: asyncpg.Connection, table: str, columns: list[str], rows: Iterator[tuple[object, ...]]) -> None:
    chunk: list[tuple[object, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            await conn.copy_records_to_table(table, records=chunk, columns=columns)
            chunk = []
    if chunk:
        await conn.copy_records_to_table(table, records=chunk, columns=columns)


async def seed(conn: asyncpg.Connection, *, therapists: int = 10_000, bookings: int = 1_000_000) -> float:
    """Write the rows (see the module's docstring) and analyse the tables. Returns the seconds taken."""
    began = time.perf_counter()
    each = bookings // therapists
    first_day = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(
        days=each // 2
    )
    therapist_ids = _ids("therapist", therapists)
    type_ids = _ids("session-type", therapists)
    client_ids = _ids("client", therapists * CLIENTS_EACH)
    weekly = msgspec.json.encode(WEEK).decode()
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await _copy(
            conn,
            "therapists",
            ["id", "slug", "name", "email", "timezone"],
            (
                (tid, f"scale-{i:05d}", f"Therapist {i}", f"scale-{i:05d}@example.org", "UTC")
                for i, tid in enumerate(therapist_ids)
            ),
        )
        await _copy(
            conn,
            "session_types",
            [
                "id",
                "therapist_id",
                "name",
                "duration_minutes",
                "buffer_before_minutes",
                "buffer_after_minutes",
                "min_notice_minutes",
                "horizon_days",
                "slot_interval_minutes",
            ],
            ((st, tid, "Session", 50, 0, 10, 0, 365, 60) for st, tid in zip(type_ids, therapist_ids, strict=True)),
        )
        await _copy(
            conn,
            "availability",
            ["therapist_id", "timezone", "weekly", "overrides"],
            ((tid, "UTC", weekly, "{}") for tid in therapist_ids),
        )
        await _copy(
            conn,
            "clients",
            ["id", "therapist_id", "name", "email"],
            (
                (client_ids[t * CLIENTS_EACH + c], tid, f"Client {c}", f"client-{c}@example.org")
                for t, tid in enumerate(therapist_ids)
                for c in range(CLIENTS_EACH)
            ),
        )

        def booking_rows() -> Iterator[tuple[object, ...]]:
            for t, (tid, st) in enumerate(zip(therapist_ids, type_ids, strict=True)):
                hour = dt.timedelta(hours=8 + t % 10)
                for j in range(each):
                    start = first_day + dt.timedelta(days=j) + hour
                    end = start + dt.timedelta(minutes=50)
                    client = client_ids[t * CLIENTS_EACH + j % CLIENTS_EACH]
                    key_hash = hashlib.sha256(f"{t}/{j}".encode()).digest()
                    booking_id = uuid.UUID(bytes=key_hash[:16])
                    yield (
                        booking_id,
                        tid,
                        st,
                        start,
                        end,
                        asyncpg.Range(start, end + dt.timedelta(minutes=10)),
                        "confirmed",
                        f"Client {j % CLIENTS_EACH}",
                        f"client-{j % CLIENTS_EACH}@example.org",
                        key_hash,
                        client,
                    )

        await _copy(
            conn,
            "bookings",
            [
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
                "client_id",
            ],
            booking_rows(),
        )
        await _copy(
            conn,
            "audit_events",
            ["actor_kind", "action", "booking_id", "therapist_id"],
            (("client", "booking.created", row[0], row[1]) for row in booking_rows()),
        )
    for table in ("therapists", "session_types", "availability", "clients", "bookings", "audit_events"):
        await conn.execute(f"ANALYZE {table}")
    return time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database_url")
    parser.add_argument("--therapists", type=int, default=10_000)
    parser.add_argument("--bookings", type=int, default=1_000_000)
    args = parser.parse_args()
    conn = await asyncpg.connect(args.database_url)
    try:
        took = await seed(conn, therapists=args.therapists, bookings=args.bookings)
    finally:
        await conn.close()
    print(f"seeded {args.therapists} therapists and {args.bookings} bookings in {took:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
