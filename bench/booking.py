"""Bookings per second through Teleroom's API beside the stack's floor, in one run.

Three servers, each in a process of its own, on one fresh database (embedded, or DATABASE_URL's
server), are hit by the same client with the same requests at the same concurrency:

- floor: `bench.floor`, a bare aiohttp handler that decodes the same body and makes the same
  booking insert plus an audit row in one transaction (nothing checked, nobody told);
- API: Teleroom (`bench.served`) as it runs, notice hooks included (outbox rows, webhooks);
- API silent: Teleroom without notice hooks, so the difference is what telling people costs.

Each round books `--bookings` distinct slots of a fresh therapist on every server in turn, so no
therapist ever holds more than that; rates are medians over the rounds, latencies pooled, and the
ratio to the floor is the project's own measure (issue 13 asks at least 0.6). `--profile DIR`
records the API servers with py-spy during their rounds (collapsed stacks, one file a round).
`--scale` then seeds 10,000 therapists and 1,000,000 bookings (`bench.seeding`) into the same
database and runs the rounds again: each round's therapist still ends with `--bookings`, now among
a million others, and the last table compares the two runs.

    python -m bench.booking [--bookings 2000] [--concurrency 32] [--rounds 3] [--idempotency] [--scale]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from bench import seeding
from bench.harness import Service
from bench.served import free_port, fresh_database, process


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """User and system CPU time of every PostgreSQL process on this machine so far (processes
    that ended are not counted: run nothing else against PostgreSQL meanwhile)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(entry.name))
        except OSError:  # it ended meanwhile
            continue
    return total


@dataclass
class Figures:
    """One server's runs: a rate per round, every booking's latency, and the server's CPU time."""

    name: str
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu: float = 0.0  # seconds of the server process
    db_cpu: float = 0.0  # seconds of PostgreSQL's processes meanwhile
    booked: int = 0

    @property
    def cpu_ms(self) -> float:
        """Server CPU per booking: unlike the rate, it barely moves when other work shares the machine."""
        return 1000 * self.cpu / self.booked

    @property
    def db_cpu_ms(self) -> float:
        """PostgreSQL's CPU per booking, all its processes together."""
        return 1000 * self.db_cpu / self.booked

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def latency_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_table(first_column: str, figures: Iterable[Figures]) -> None:
    """Rate, p50, p99 and server CPU per booking, a row per server (bench.cluster, bench.workers)."""
    print(f"{first_column:<12} {'bookings/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/booking':>15}")
    for f in figures:
        print(f"{f.name:<12} {f.rate:>11.0f} {f.latency_ms(0.5):>8.1f} {f.latency_ms(0.99):>8.1f} {f.cpu_ms:>15.2f}")


async def drive(
    http: aiohttp.ClientSession,
    base: str,
    slug: str,
    session_type: str,
    n: int,
    concurrency: int,
    *,
    keyed: bool,
    into: Figures,
) -> None:
    """Book `n` consecutive 15-minute slots from tomorrow 00:00 UTC with `concurrency` workers."""
    first = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = iter([first + dt.timedelta(minutes=15 * i) for i in range(n)])
    url = f"{base}/api/v1/therapists/{slug}/bookings"

    async def worker() -> None:
        for when in starts:
            body = {
                "session_type": session_type,
                "start": when.isoformat(),
                "client": {"name": "C", "email": "c@example.org"},
            }
            headers = {"Idempotency-Key": str(uuid.uuid4())} if keyed else None
            began = time.perf_counter()
            async with http.post(url, json=body, headers=headers) as resp:
                answer = await resp.read()
                if resp.status != 201:
                    raise RuntimeError(f"{into.name}: booking failed: {resp.status} {answer[:300]!r}")
            into.latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    into.rates.append(n / (time.perf_counter() - began))


@contextlib.contextmanager
def py_spy(pid: int, out: Path | None) -> Iterator[None]:
    """Sample `pid` with py-spy (collapsed stacks into `out`) while the block runs; nothing if `out` is None."""
    if out is None:
        yield
        return
    exe = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if exe is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    spy = subprocess.Popen(  # a fixed tool on our own child's pid
        [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches before the load starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)


@contextlib.asynccontextmanager
async def servers(silent: bool, deliver: bool) -> AsyncIterator[tuple[str, dict[str, tuple[str, int]]]]:
    """The database and the servers: yields its URL and each server's name -> (base URL, pid)."""
    with tempfile.TemporaryDirectory(prefix="teleroom-bench-") as tmp:
        async with fresh_database(Path(tmp)) as url, contextlib.AsyncExitStack() as stack:
            found: dict[str, tuple[str, int]] = {}
            wanted = [("API", ["--database-url", url, "--data-dir", f"{tmp}/api"])]
            if silent:
                wanted.append(("API silent", ["--database-url", url, "--data-dir", f"{tmp}/silent", "--silent"]))
            for name, args in wanted:
                if not deliver:
                    args.append("--no-delivery")
                Path(args[3]).mkdir()
                port = free_port()
                found[name] = (
                    f"http://127.0.0.1:{port}",
                    await stack.enter_async_context(process("bench.served", port, args)),
                )
            port = free_port()
            found["floor"] = (
                f"http://127.0.0.1:{port}",
                await stack.enter_async_context(process("bench.floor", port, ["--database-url", url])),
            )
            yield url, found


async def run_rounds(
    args: argparse.Namespace, http: aiohttp.ClientSession, admin: Service, found: dict[str, tuple[str, int]], phase: str
) -> list[Figures]:
    """`args.rounds` rounds, each booking `args.bookings` slots of a fresh therapist on every server in turn."""
    figures = {name: Figures(name) for name in found}
    for round_ in range(args.rounds):
        for name, (base, pid) in found.items():
            slug = f"bench-{phase}-{round_}-{name.replace(' ', '-').lower()}"
            _, session_type = await admin.therapist(slug)
            out = args.profile / f"{slug}.txt" if args.profile and name != "floor" else None
            used, db_used = cpu_seconds(pid), postgres_cpu_seconds()
            with py_spy(pid, out):
                await drive(
                    http,
                    base,
                    slug,
                    session_type,
                    args.bookings,
                    args.concurrency,
                    keyed=args.idempotency,
                    into=figures[name],
                )
            figures[name].cpu += cpu_seconds(pid) - used
            figures[name].db_cpu += postgres_cpu_seconds() - db_used
            figures[name].booked += args.bookings
    return list(figures.values())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=2000, help="bookings per server per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idempotency", action="store_true", help="send an Idempotency-Key with every booking")
    parser.add_argument("--no-silent", dest="silent", action="store_false", help="skip the API without notice hooks")
    parser.add_argument("--deliver", action="store_true", help="run the outbox delivery worker during the rounds")
    parser.add_argument("--profile", type=Path, help="directory for py-spy's samples of the API servers")
    parser.add_argument(
        "--scale", action="store_true", help="then seed 10,000 therapists and 1,000,000 bookings and run again"
    )
    parser.add_argument("--scale-therapists", type=int, default=10_000)
    parser.add_argument("--scale-bookings", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    async with servers(args.silent, args.deliver) as (url, found):
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:
            admin = Service(found["API"][0], url, http)
            alone = await run_rounds(args, http, admin, found, "alone")
            report(args, alone)
            if args.scale:
                conn = await asyncpg.connect(url)
                try:
                    took = await seeding.seed(conn, therapists=args.scale_therapists, bookings=args.scale_bookings)
                finally:
                    await conn.close()
                print(f"\nseeded {args.scale_therapists} therapists and {args.scale_bookings} bookings in {took:.0f} s")
                at_scale = await run_rounds(args, http, admin, found, "scale")
                report(args, at_scale)
                print(f"\n{'at scale / alone':20} {'rate':>6} {'p50':>6} {'p99':>6} {'cpu':>6}")
                for a, b in zip(alone, at_scale, strict=True):
                    print(
                        f"{a.name:20} {b.rate / a.rate:6.2f} {b.latency_ms(0.5) / a.latency_ms(0.5):6.2f}"
                        f" {b.latency_ms(0.99) / a.latency_ms(0.99):6.2f} {b.cpu_ms / a.cpu_ms:6.2f}"
                    )


def report(args: argparse.Namespace, figures: list[Figures]) -> None:
    floor = next(f for f in figures if f.name == "floor")
    print(
        f"bookings={args.bookings} per server and round, concurrency={args.concurrency}, rounds={args.rounds},"
        f" idempotency keys={'yes' if args.idempotency else 'no'}, cpus={os.cpu_count()}"
    )
    print(
        f"{'':12} {'bookings/s':>10} {'x floor':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms':>7} {'x floor':>8}"
        f" {'db ms':>6}   rounds/s"
    )
    for fig in figures:
        rounds = " ".join(f"{r:.0f}" for r in fig.rates)
        print(
            f"{fig.name:12} {fig.rate:10.0f} {fig.rate / floor.rate:8.2f} {fig.latency_ms(0.5):8.1f}"
            f" {fig.latency_ms(0.99):8.1f} {fig.cpu_ms:7.2f} {floor.cpu_ms / fig.cpu_ms:8.2f}"
            f" {fig.db_cpu_ms:6.2f}   {rounds}"
        )
    print("cpu ms: the server process's CPU time per booking; its x floor is floor / server, like the rate's.")
    print("db ms: PostgreSQL's CPU time per booking, all its processes (nothing else may query it meanwhile).")


if __name__ == "__main__":
    asyncio.run(main())
