"""10,000 queued emails delivered by a Teleroom node to a local SMTP server, beside a bare
aiosmtplib loop sending the same messages to the same kind of server, as a ratio.

1. A seeding node (`teleroom serve` whose worker sleeps) takes N bookings through the API; each
   queues a confirmation email in the outbox. It is stopped.
2. A delivering node starts on that database with TELEROOM_SMTP_URL pointing at an aiosmtpd server
   in this process; we time the first to the last message's arrival (each message composed from
   the records, sealed key opened, MIME with its .ics built, sent over pooled connections, its
   outcome recorded).
3. The reference: the very bytes the server received, sent again by bare aiosmtplib over the same
   number of connections (16, the worker's concurrency), to a fresh aiosmtpd.

It prints the delivering node's CPU time per email (from the first message's arrival to the
last's) and measures the duplicate window: for each message, the time from the SMTP server's
acceptance to the `delivered_at` our node recorded (a node killed inside that window sends the
message again from another node).

    python -m bench.outbox [--messages 10000]
    BENCH_PROFILE=/tmp/outbox.prof python -m bench.outbox   # cProfile the delivering node
    BENCH_PYSPY=/tmp/outbox.txt python -m bench.outbox      # py-spy samples of it, once it is up
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import aiosmtplib
import asyncpg
from aiosmtpd.controller import Controller

from bench.harness import ADMIN, Service, _port
from broker import database

CONCURRENCY = 16  # broker.outbox.CONCURRENCY: connections the reference uses too


class Inbox:
    """aiosmtpd handler that keeps each message's bytes and the time it accepted it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[tuple[float, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.accepted.append((time.time(), bytes(envelope.content)))
        return "250 2.0.0 queued"

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)


def start_node(tmp: Path, name: str, url: str, smtp_port: int, poll: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEROOM_") and k != "DATABASE_URL"}
    env.update(
        DATABASE_URL=url,
        TELEROOM_ADMIN_TOKEN=ADMIN,
        TELEROOM_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}?starttls=off",
        TELEROOM_SEAL_KEY_FILE=str(tmp / "seal-key"),
        TELEROOM_OUTBOX_POLL_SECONDS=str(poll),
        TELEROOM_BOOKING_ATTEMPTS_PER_HOUR="0",
        TELEROOM_LOG_LEVEL="WARNING",
    )
    command = [sys.executable, "-m", "broker.cli", "serve", "--port", str(port), "--data-dir", str(tmp / name)]
    if name == "deliver" and os.environ.get("BENCH_PROFILE"):  # cProfile the delivering node
        command[1:3] = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"], "-m", "broker.cli"]
    proc = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"node {name} did not become ready")


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


async def seed(base: str, messages: int) -> None:
    """`messages` bookings (each queues one confirmation) across as many therapists as needed."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        svc = Service(base, "", http)
        per_therapist = 4000  # 15-minute slots within the 365-day horizon, well clear of its end
        gate = asyncio.Semaphore(32)
        start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)

        async def book(slug: str, session_type: str, i: int) -> None:
            async with gate:
                await svc.call(
                    "POST",
                    f"/api/v1/therapists/{slug}/bookings",
                    json={
                        "session_type": session_type,
                        "start": (start + dt.timedelta(minutes=15 * i)).isoformat(),
                        "client": {"name": f"Client {i}", "email": f"client{i}@example.org"},
                    },
                )

        jobs = []
        for t in range((messages + per_therapist - 1) // per_therapist):
            slug = f"bench-{uuid.uuid4().hex[:8]}"
            _, session_type = await svc.therapist(slug)
            jobs += [book(slug, session_type, i) for i in range(min(per_therapist, messages - t * per_therapist))]
        await asyncio.gather(*jobs)


async def reference(raws: list[bytes]) -> float:
    """Seconds for bare aiosmtplib to send `raws` over CONCURRENCY persistent connections."""
    inbox = Inbox()
    port = _port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        queue = list(raws)

        async def connection() -> None:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
            await client.connect()
            while queue:
                raw = queue.pop()
                await client.sendmail("appointments@localhost", ["client@example.org"], raw)
            await client.quit()

        started = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
        assert inbox.count() == len(raws)
        return elapsed
    finally:
        controller.stop()


async def main(messages: int) -> None:
    with tempfile.TemporaryDirectory(prefix="teleroom-bench-outbox-") as tmpdir:
        tmp = Path(tmpdir)
        with database.database_url(tmp, os.environ.get("DATABASE_URL")) as base_url:
            name = f"bench_outbox_{os.getpid()}"
            conn = await asyncpg.connect(base_url)
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {name}")
            await conn.close()
            url = urlunsplit(urlsplit(base_url)._replace(path="/" + name))
            (tmp / "seal-key").write_text(base64.b64encode(secrets.token_bytes(32)).decode())
            inbox = Inbox()
            smtp_port = _port()
            controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
            controller.start()
            try:
                seeder, seeder_url = start_node(tmp, "seed", url, smtp_port, poll=300)
                started = time.perf_counter()
                await seed(seeder_url, messages)
                print(f"seeded {messages} bookings in {time.perf_counter() - started:.1f}s")
                seeder.terminate()
                seeder.wait(timeout=30)
                db = await asyncpg.connect(url)
                due = await db.fetchval("SELECT count(*) FROM outbox WHERE channel = 'email' AND due_at <= now()")
                before = inbox.count()

                node, _ = start_node(tmp, "deliver", url, smtp_port, poll=1)
                spy = None
                if os.environ.get("BENCH_PYSPY"):  # sample the delivering node (collapsed stacks)
                    out = os.environ["BENCH_PYSPY"]
                    spy = subprocess.Popen(
                        ["py-spy", "record", "-r", "500", "-f", "raw", "-o", out, "-p", str(node.pid)]
                    )
                try:
                    deadline = time.monotonic() + 600
                    cpu_first = None  # the node's CPU seconds when the first message arrived
                    while inbox.count() < before + due and time.monotonic() < deadline:
                        if cpu_first is None and inbox.count() > before:
                            cpu_first = cpu_seconds(node.pid)
                        await asyncio.sleep(0.01)
                    cpu_last = cpu_seconds(node.pid)
                finally:
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                        spy.wait(timeout=60)
                    node.terminate()
                    node.wait(timeout=30)
                with inbox.lock:
                    ours = inbox.accepted[before:]
                assert len(ours) >= due, f"only {len(ours)} of {due} delivered"
                ours_seconds = ours[-1][0] - ours[0][0]

                rows = await db.fetch("SELECT id, delivered_at FROM outbox WHERE state = 'delivered'")
                recorded = {f"<{r['id']}@".encode(): r["delivered_at"].timestamp() for r in rows}
                windows = []
                for accepted_at, raw in ours:
                    head = raw.split(b"\r\n\r\n", 1)[0]
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"message-id:"):
                            key = line.split(b":", 1)[1].strip().split(b"@")[0] + b"@"
                            if key in recorded:
                                windows.append((recorded[key] - accepted_at) * 1000)
                await db.close()
            finally:
                controller.stop()

            ref_seconds = await reference([raw for _, raw in ours])
            n = len(ours)
            print(f"teleroom node: {n} emails in {ours_seconds:.2f}s = {n / ours_seconds:.0f}/s")
            if cpu_first is not None and cpu_last is not None:
                print(f"teleroom node CPU: {(cpu_last - cpu_first) / n * 1000:.2f} ms per email (user + system)")
            print(f"bare aiosmtplib ({CONCURRENCY} connections): {n} in {ref_seconds:.2f}s = {n / ref_seconds:.0f}/s")
            print(f"ratio (teleroom / bare): {ref_seconds / ours_seconds:.2f}x")
            if windows:
                windows.sort()
                print(
                    "duplicate window (SMTP acceptance -> outcome recorded), ms: "
                    f"p50 {statistics.median(windows):.1f}, p99 {windows[int(len(windows) * 0.99) - 1]:.1f}, "
                    f"max {windows[-1]:.1f} (over {len(windows)} messages)"
                )
            conn = await asyncpg.connect(base_url)
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().messages))
