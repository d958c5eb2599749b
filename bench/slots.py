"""Slot listings: 62 days of a therapist holding 2,000 bookings, beside references, in one run.

Teleroom runs in a process of its own (`bench.served`) on a fresh database (embedded, or
DATABASE_URL's server). The therapist is open around the clock (UTC), 50-minute sessions with 10
minutes' buffer on an hourly grid, and holds `--bookings` bookings, one every four hours from
tomorrow on (a year of them: the 62 days asked hold about 370). Measured, each `--requests` times:

- pure: `calendars.slots.slot_starts` (what the service computes) for the 62 days in this process,
  with the range's busy time; and for 7 days, to show the cost follows the days asked;
- GET /slots computed: the therapist's schedule version is bumped before each request (outside the
  timing), so every request computes its listing, as the first one after a booking does;
- GET /slots kept: the same request again and again, served from the node's kept listing;
- references: the bare asyncpg query for the window's busy ranges (the floor under any computation
  from the database), and `GET /api/v1/therapists/{slug}` (the cheapest public request).

`--scale` runs a second database beside the first: the same therapist and bookings, plus 10,000
therapists and 1,000,000 bookings (`bench.seeding`), with its own server. The two are measured
alternately, request by request, so a busy machine weighs on both alike; the last table is the
ratio at scale / alone. The busy-time query's plan at scale is printed.

`--flood` measures a bystander's `GET /api/v1/therapists/{slug}` while 40 clients ask for the
widest listing (in waves of 40 at once, each a new listing; without pause, all the same; without
pause, each new), with the per-address limit at its default (60 a minute) and off.

    python -m bench.slots [--bookings 2000] [--requests 300] [--scale] [--flood]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg

from bench import seeding
from bench.harness import Service
from bench.served import free_port, fresh_database, process
from broker.bookings import SELECT_BUSY
from calendars.slots import Availability, Interval, SessionRules, Span, dates_window, slot_starts

DAYS = 62
SLUG = "bench-slots"
DEFAULT_LIMIT = 60  # TELEROOM_SLOT_LISTINGS_PER_MINUTE's default
FLOOD_CLIENTS = 40
FLOOD_SECONDS = 6.0
METRICS = {
    "floor": "asyncpg busy query (floor)",
    "profile": "GET /therapists/{slug} (ref)",
    "pure": "pure slot_starts, 62 days",
    "pure7": "pure slot_starts, 7 days",
    "computed": "GET /slots, computed",
    "kept": "GET /slots, kept",
}


@dataclass
class Timing:
    name: str
    samples: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def line(self, ref: Timing | None = None) -> str:
        text = f"{self.name:34} p50 {self.p(0.5):7.2f} ms   p99 {self.p(0.99):7.2f} ms"
        if ref is not None:
            text += f"   ({self.p(0.5) / ref.p(0.5):5.2f}x / {self.p(0.99) / ref.p(0.99):5.2f}x {ref.name})"
        return text


@dataclass
class Setup:
    """One server and its database, with the therapist whose listing is measured."""

    label: str
    svc: Service
    pool: asyncpg.Pool
    therapist_id: uuid.UUID
    session_type: str
    first: dt.date

    def path(self) -> str:
        last = self.first + dt.timedelta(days=DAYS - 1)
        return f"/api/v1/therapists/{SLUG}/slots?session_type={self.session_type}&from={self.first}&to={last}"


async def prepare(label: str, svc: Service, pool: asyncpg.Pool, bookings: int) -> Setup:
    """The therapist, a client, and `bookings` bookings every four hours from tomorrow (COPY)."""
    therapist, st = await svc.therapist(SLUG, duration=50, interval=60)
    therapist_id = uuid.UUID(therapist["id"])
    first = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    client_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO clients (id, therapist_id, name, email) VALUES ($1, $2, 'C', 'c@example.org')",
        client_id,
        therapist_id,
    )
    base = dt.datetime(first.year, first.month, first.day, tzinfo=dt.UTC)
    rows = []
    for i in range(bookings):
        start = base + dt.timedelta(hours=4 * i)
        end = start + dt.timedelta(minutes=50)
        key_hash = hashlib.sha256(f"{SLUG}/{i}".encode()).digest()
        blocked = asyncpg.Range(start, end + dt.timedelta(minutes=10))
        rows.append((uuid.UUID(bytes=key_hash[:16]), therapist_id, uuid.UUID(st), start, end, blocked, key_hash))
    await pool.copy_records_to_table(
        "bookings",
        records=[(*r[:6], "C", "c@example.org", r[6], client_id) for r in rows],
        columns=[
            "id",
            "therapist_id",
            "session_type_id",
            "starts_at",
            "ends_at",
            "blocked",
            "client_name",
            "client_email",
            "key_hash",
            "client_id",
        ],
    )
    await pool.execute("ANALYZE bookings")
    return Setup(label, svc, pool, therapist_id, st, first)


Step = Callable[[Setup], Awaitable[object]]


async def measure(setups: list[Setup], n: int) -> dict[str, dict[str, Timing]]:
    """Every metric for every setup, `n` times each, the setups taking turns request by request."""
    window = dates_window(setups[0].first, setups[0].first + dt.timedelta(days=DAYS - 1), ZoneInfo("UTC"))
    week = dates_window(setups[0].first, setups[0].first + dt.timedelta(days=6), ZoneInfo("UTC"))
    rules = SessionRules(duration=50, horizon_days=365, slot_interval=60)
    av = Availability(timezone="UTC", weekly={d: (Interval(0, 1440),) for d in range(7)})
    reach = asyncpg.Range(window.start - dt.timedelta(hours=1), window.end + dt.timedelta(hours=1))
    busy = {}
    for s in setups:
        busy[s.label] = [Span(r[0], r[1]) for r in await s.pool.fetch(SELECT_BUSY, s.therapist_id, reach, None)]
        body = await s.svc.call("GET", s.path())
        print(f"[{s.label}] {DAYS} days, {len(busy[s.label])} bookings in range, {len(body['slots'])} free slots")

    async def get(s: Setup, path: str) -> None:
        async with s.svc.http.get(s.svc.base + path) as resp:
            assert resp.status == 200, resp.status
            await resp.read()

    async def bump(s: Setup) -> None:
        await s.pool.execute(
            "UPDATE schedule_versions SET version = version + 1 WHERE therapist_id = $1", s.therapist_id
        )

    async def pure(s: Setup) -> None:
        slot_starts(av, rules, busy[s.label], window)

    async def pure7(s: Setup) -> None:
        slot_starts(av, rules, [b for b in busy[s.label] if b.start < week.end], week)

    async def floor(s: Setup) -> None:
        await s.pool.fetch(SELECT_BUSY, s.therapist_id, reach, None)

    steps: dict[str, tuple[Step, Step | None]] = {
        "floor": (floor, None),
        "profile": (lambda s: get(s, f"/api/v1/therapists/{SLUG}"), None),
        "pure": (pure, None),
        "pure7": (pure7, None),
        "computed": (lambda s: get(s, s.path()), bump),
        "kept": (lambda s: get(s, s.path()), None),
    }
    found = {s.label: {key: Timing(METRICS[key]) for key in steps} for s in setups}
    for key, (step, before) in steps.items():
        for i in range(n + 2):  # two untimed warm-ups
            for s in setups:
                if before is not None:
                    await before(s)
                started = time.perf_counter()
                await step(s)
                if i >= 2:
                    found[s.label][key].samples.append(time.perf_counter() - started)
    return found


def report(t: dict[str, Timing], label: str) -> None:
    print(f"\n[{label}]")
    print(t["floor"].line())
    print(t["profile"].line())
    print(t["pure"].line(t["floor"]))
    print(t["pure7"].line(t["pure"]))
    print(t["computed"].line(t["floor"]))
    print(t["computed"].line(t["profile"]))
    print(t["kept"].line(t["profile"]))


@contextlib.asynccontextmanager
async def served(url: str, data_dir: Path, limit: int = 0) -> AsyncIterator[Service]:
    port = free_port()
    args = ["--database-url", url, "--data-dir", str(data_dir), "--no-delivery"]
    async with process("bench.served", port, [*args, "--slot-listings-per-minute", str(limit)]):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
            yield Service(f"http://127.0.0.1:{port}", url, http)


@contextlib.asynccontextmanager
async def another_database(url: str, suffix: str) -> AsyncIterator[str]:
    """A second fresh database on the server of `url`, dropped afterwards."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") + suffix
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


async def flood(s: Setup, svc: Service, mode: str) -> tuple[Timing, dict[int, int]]:
    """A bystander's latency while FLOOD_CLIENTS clients ask for the widest listing.

    `waves`: every second all of them at once, each a listing of its own (nothing kept helps);
    `same`: without pause, all the same listing; `distinct`: without pause, each a new listing."""
    statuses: dict[int, int] = {}
    stop = asyncio.Event()
    asked = 0

    async def ask(offset: int) -> None:
        first = s.first + dt.timedelta(days=offset % 300)
        path = (
            f"/api/v1/therapists/{SLUG}/slots?session_type={s.session_type}"
            f"&from={first}&to={first + dt.timedelta(days=DAYS)}"
        )
        async with svc.http.get(svc.base + path) as resp:
            await resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1

    async def client() -> None:
        nonlocal asked
        while not stop.is_set():
            asked += 1
            await ask(asked if mode == "distinct" else 0)

    async def waves() -> None:
        wave = 0
        while not stop.is_set():
            wave += 1
            await asyncio.gather(*(ask(wave * FLOOD_CLIENTS + i) for i in range(FLOOD_CLIENTS)))
            await asyncio.sleep(1.0)

    tasks = [asyncio.create_task(waves())] if mode == "waves" else []
    tasks += [asyncio.create_task(client()) for _ in range(FLOOD_CLIENTS if mode != "waves" else 0)]
    bystander = Timing("bystander GET /therapists/{slug}")
    deadline = time.monotonic() + FLOOD_SECONDS
    while time.monotonic() < deadline:
        started = time.perf_counter()
        async with svc.http.get(svc.base + f"/api/v1/therapists/{SLUG}") as resp:
            await resp.read()
            assert resp.status == 200
        bystander.samples.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*tasks)
    return bystander, statuses


async def flood_report(s: Setup, url: str, data_dir: Path) -> None:
    for limit in (DEFAULT_LIMIT, 0):
        for mode in ("waves", "same", "distinct"):
            async with served(url, data_dir, limit) as server:  # a fresh node: the limit's count starts at 0
                timing, statuses = await flood(s, server, mode)
            print(f"\n[flood: {FLOOD_CLIENTS} clients, {mode}, limit {limit or 'off'}] answers {statuses}")
            print(timing.line() + f"   max {max(timing.samples) * 1000:7.2f} ms")


async def with_scale(alone: Setup, args: argparse.Namespace, url: str, data_dir: Path) -> None:
    """The same therapist in a database of 10,000 therapists and 1,000,000 bookings, measured beside it."""
    async with another_database(url, "_scale") as scale_url, served(scale_url, data_dir) as svc:
        pool = await asyncpg.create_pool(scale_url, min_size=1, max_size=2)
        try:
            big = await prepare("at scale", svc, pool, args.bookings)
            async with pool.acquire() as conn:
                took = await seeding.seed(conn, therapists=args.scale_therapists, bookings=args.scale_bookings)
                reach = asyncpg.Range(big.first, big.first + dt.timedelta(days=DAYS))
                plan = await conn.fetch("EXPLAIN " + SELECT_BUSY, big.therapist_id, reach, None)
            print(f"seeded {args.scale_therapists} therapists, {args.scale_bookings} bookings in {took:.0f} s")
            print("busy-time query plan at scale:\n  " + "\n  ".join(r[0] for r in plan))
            found = await measure([alone, big], args.requests)
            for label in (alone.label, big.label):
                report(found[label], label)
            print(f"\n{'at scale / alone':34} {'p50':>8} {'p99':>8}")
            for key in METRICS:
                a, b = found[big.label][key], found[alone.label][key]
                print(f"{a.name:34} {a.p(0.5) / b.p(0.5):7.2f}x {a.p(0.99) / b.p(0.99):7.2f}x")
        finally:
            await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--scale", action="store_true", help="beside 10,000 therapists and 1,000,000 bookings")
    parser.add_argument("--scale-therapists", type=int, default=10_000)
    parser.add_argument("--scale-bookings", type=int, default=1_000_000)
    parser.add_argument("--flood", action="store_true", help="a bystander's latency under 40 clients listing slots")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="teleroom-bench-") as tmp:
        data_dir = Path(tmp)
        async with fresh_database(data_dir) as url, served(url, data_dir) as svc:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            try:
                alone = await prepare(f"{args.bookings} bookings", svc, pool, args.bookings)
                if args.scale:
                    await with_scale(alone, args, url, data_dir)
                else:
                    report((await measure([alone], args.requests))[alone.label], alone.label)
                if args.flood:
                    await flood_report(alone, url, data_dir)
            finally:
                await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
