"""Signaling relay latency and memory per idle connection, next to the PeerJS server, in one run.

    python -m bench.signaling [--rooms 500] [--rounds 20] [--idle 2000] [--relays local,postgres]
                              [--scale 2500 [--join-rate 50]]

Latency: in each of `--rooms` rooms a therapist and an admitted client (plain WebSocket clients,
no WebRTC) play ping-pong with `signal` messages through our /ws, all rooms at once; every
round trip is timed. The PeerJS server (npm `peer`, `node_modules/.bin/peerjs`) relays the same
pattern between pairs of peers (OFFER one way, ANSWER back) on the same machine in the same run.
Memory: `--idle` connections joined and left idle; the RSS growth of the server process divided
by the number of connections, for us and for PeerJS.

Scale (`--scale N`, ours only): the node comes to hold N rooms with both participants joined
and the client admitted (2N sockets), joins arriving at `--join-rate` a second; every socket
keeps answering pings and any `error`, `ended` or close counts as an error. Then the same
ping-pong runs in `--rooms` of the held rooms while joins go on at the same rate in further rooms
(each joined, then left), and its p99 is compared with the figure measured holding nothing else.

Both servers run as separate processes on 127.0.0.1 and the same client code drives both, so
the ratios compare the servers. The client's own garbage collector is kept out of every timed
section (`quiet_client`), so its pauses are not counted as the servers'.

To create hundreds of rooms quickly, the bench inserts therapists, session types and bookings
with SQL and mints room tokens with broker.tokens directly (the HTTP endpoint would only add the
same work per token); everything after that goes through the real /ws.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from broker import database, tokens
from broker.settings import Settings

ADMIN = "bench-admin-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent
PEERJS = ROOT / "node_modules" / ".bin" / "peerjs"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def wait_port(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def quiet_client() -> Iterator[None]:
    """Keep this process's garbage collector out of a timed section: its full collections walk every
    object of the thousands of client sockets (over a second with 5,000 aiohttp client sockets) and
    would be timed as the server's latency. What is alive now is frozen; new objects are collected."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# --- our service, in its own process -------------------------------------------------------


def serve(port: int, url: str, data_dir: str) -> None:
    """The child process: Teleroom on 127.0.0.1:port (relay from TELEROOM_SIGNALING_RELAY)."""
    from aiohttp import web

    from broker.app import create_app

    settings = Settings.from_env(
        port=port, data_dir=Path(data_dir), database_url=url, admin_token=ADMIN, log_level="WARNING"
    )
    web.run_app(create_app(settings), host="127.0.0.1", port=port, print=None, access_log=None)


@contextlib.contextmanager
def child(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def make_rooms(pool: asyncpg.Pool, n: int) -> list[tuple[uuid.UUID, dt.datetime]]:
    """n bookings starting now, one therapist each (one therapist's bookings may not overlap)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rooms = []
    async with pool.acquire() as conn, conn.transaction():
        for _ in range(n):
            therapist, st, booking = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            slug = "b-" + therapist.hex[:20]
            await conn.execute(
                "INSERT INTO therapists (id, slug, name, email, timezone) VALUES ($1, $2, 'T', $3, 'UTC')",
                therapist,
                slug,
                f"{slug}@example.org",
            )
            await conn.execute(
                "INSERT INTO session_types (id, therapist_id, name, duration_minutes, buffer_before_minutes,"
                " buffer_after_minutes, min_notice_minutes, horizon_days, slot_interval_minutes)"
                " VALUES ($1, $2, 'S', 50, 0, 0, 0, 30, 15)",
                st,
                therapist,
            )
            end = now + dt.timedelta(minutes=50)
            client = uuid.uuid4()
            await conn.execute(
                "INSERT INTO clients (id, therapist_id, name, email) VALUES ($1, $2, 'C', 'c@example.org')",
                client,
                therapist,
            )
            await conn.execute(
                "INSERT INTO bookings (id, therapist_id, session_type_id, starts_at, ends_at, blocked, client_name,"
                " client_email, key_hash, client_id) VALUES ($1, $2, $3, $4, $5, $6, 'C', 'c@example.org', $7, $8)",
                booking,
                therapist,
                st,
                now,
                end,
                asyncpg.Range(now, end),
                hashlib.sha256(os.urandom(24)).digest(),
                client,
            )
            rooms.append((booking, end + dt.timedelta(minutes=10)))
    return rooms


async def mint(
    pool: asyncpg.Pool,
    settings: Settings,
    room: uuid.UUID,
    role: tokens.Role,
    end: dt.datetime,
    keys: tokens.KeyRing | None = None,
) -> str:
    minted = await tokens.mint_room_token(
        pool, settings, booking_id=room, role=role, name="Bench", now=dt.datetime.now(dt.UTC), window_end=end, keys=keys
    )
    return minted.token


async def ours_join(http: aiohttp.ClientSession, port: int, room: uuid.UUID, token: str) -> Any:
    ws = await http.ws_connect(f"ws://127.0.0.1:{port}/ws?room={room}", autoping=True)
    await ws.send_str(json.dumps({"type": "join", "token": token}))
    joined = json.loads(await ws.receive_str())
    assert joined["type"] == "joined", joined
    return ws, joined["participant"]


async def ours_room(http: aiohttp.ClientSession, port: int, room: uuid.UUID, t_token: str, c_token: str) -> Any:
    """Therapist and client joined, the client admitted: (therapist ws, client ws, therapist id, client id)."""
    therapist, t_id = await ours_join(http, port, room, t_token)
    client, c_id = await ours_join(http, port, room, c_token)
    while json.loads(await therapist.receive_str())["type"] != "waiting":
        pass
    await therapist.send_str(json.dumps({"type": "admit", "participant": c_id}))
    while json.loads(await client.receive_str())["type"] != "peer-joined":
        pass
    while json.loads(await therapist.receive_str())["type"] != "peer-joined":
        pass
    return therapist, client, t_id, c_id


async def ping_pong(a: Any, b: Any, send_a: Any, send_b: Any, rounds: int, samples: list[float]) -> None:
    """a sends to b, b answers a; `send_a(i)`/`send_b(i)` build the frames."""
    for i in range(rounds):
        started = time.perf_counter()
        await a.send_str(send_a(i))
        await b.receive_str()
        await b.send_str(send_b(i))
        await a.receive_str()
        samples.append(time.perf_counter() - started)


async def bench_ours(relay: str, args: argparse.Namespace, base_url: str, tmp: str) -> dict[str, float]:
    name = f"bench_sig_{os.getpid()}_{relay}"
    admin = await asyncpg.connect(base_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = urlunsplit(urlsplit(base_url)._replace(path="/" + name))
    port = _port()
    settings = Settings(port=port, data_dir=Path(tmp), database_url=url, admin_token=ADMIN)
    env = {**os.environ, "TELEROOM_SIGNALING_RELAY": relay}
    cmd = [sys.executable, "-m", "bench.signaling", "--serve", str(port), url, tmp]
    result: dict[str, float] = {}
    with child(cmd, env) as proc:
        await wait_port(port)
        pool = await asyncpg.create_pool(url, min_size=2, max_size=8)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            # Memory: idle joined connections (therapist and client of idle/2 rooms, clients waiting).
            idle_rooms = await make_rooms(pool, args.idle // 2)
            idle_tokens = [
                (room, await mint(pool, settings, room, role, end), role)
                for room, end in idle_rooms
                for role in ("therapist", "client")
            ]
            warm = await make_rooms(pool, 1)
            ws, _ = await ours_join(
                http, port, warm[0][0], await mint(pool, settings, warm[0][0], "therapist", warm[0][1])
            )
            await ws.close()
            await asyncio.sleep(0.5)
            before = rss_kib(proc.pid)
            sockets = []
            for i in range(0, len(idle_tokens), 100):
                batch = idle_tokens[i : i + 100]
                sockets += await asyncio.gather(*(ours_join(http, port, room, token) for room, token, _ in batch))
            await asyncio.sleep(1.0)
            result["idle_kib"] = (rss_kib(proc.pid) - before) / len(sockets)
            await asyncio.gather(*(ws.close() for ws, _ in sockets))

            # Latency: ping-pong in every room at once.
            rooms = await make_rooms(pool, args.rooms)
            room_tokens = [
                (
                    room,
                    await mint(pool, settings, room, "therapist", end),
                    await mint(pool, settings, room, "client", end),
                )
                for room, end in rooms
            ]
            pairs = []
            for i in range(0, len(room_tokens), 50):
                batch = room_tokens[i : i + 50]
                pairs += await asyncio.gather(*(ours_room(http, port, room, t, c) for room, t, c in batch))
            samples: list[float] = []
            with quiet_client():
                began = time.perf_counter()
                await asyncio.gather(
                    *(
                        ping_pong(t, c, _signal(c_id, "offer"), _signal(t_id, "answer"), args.rounds, samples)
                        for t, c, t_id, c_id in pairs
                    )
                )
                result["seconds"] = time.perf_counter() - began
            result["p50_ms"] = statistics.median(samples) * 1000
            result["p99_ms"] = percentile(samples, 0.99) * 1000
            result["samples"] = len(samples)
            await asyncio.gather(*(ws.close() for t, c, _, _ in pairs for ws in (t, c)))
            if args.scale:
                await asyncio.sleep(1.0)
                result.update(await scale(http, port, pool, settings, proc.pid, args))
        await pool.close()
    admin = await asyncpg.connect(base_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()
    return result


# The scale run's bound on one join or one relay round trip: past it, an error rather than a hang.
WAIT_SECONDS = 30.0


class Held:
    """A joined socket that keeps reading (so it answers pings); relayed signals go to `inbox`, anything
    else a held participant should never see (`error`, `ended`, a close) is counted in `errors`."""

    def __init__(self, ws: Any, errors: list[str]) -> None:
        self.ws = ws
        self.errors = errors
        self.inbox: asyncio.Queue[str] = asyncio.Queue()
        self.leaving = False
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if msg.data.startswith('{"type":"signal"'):
                self.inbox.put_nowait(msg.data)
            else:
                self.errors.append(msg.data[:80])
        if not self.leaving:
            self.errors.append(f"closed with {self.ws.close_code}")

    async def close(self) -> None:
        self.leaving = True
        async with asyncio.timeout(WAIT_SECONDS):
            await self.ws.close()
            await self.reader


async def held_ping_pong(a: Held, b: Held, to_b: str, to_a: str, rounds: int, samples: list[float]) -> None:
    """Like `ping_pong`; a round that does not come back within `WAIT_SECONDS` is an error, not a hang."""
    for _ in range(rounds):
        started = time.perf_counter()
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                await a.ws.send_str(to_b)
                await b.inbox.get()
                await b.ws.send_str(to_a)
                await a.inbox.get()
        except (TimeoutError, ConnectionError) as exc:
            a.errors.append(f"relay: {exc!r}")
            return
        samples.append(time.perf_counter() - started)


async def scale(
    http: aiohttp.ClientSession, port: int, pool: asyncpg.Pool, settings: Settings, pid: int, args: argparse.Namespace
) -> dict[str, float]:
    """Ping-pong in `args.rooms` held rooms three times: holding only them, holding `args.scale` rooms
    (joined at `args.join_rate` joins a second), and holding those while joins go on; see the module doc."""
    keys = tokens.KeyRing(secret=settings.signing_key_secret)
    errors: list[str] = []
    join_seconds: list[float] = []
    rooms = await make_rooms(pool, args.scale)
    extra = await make_rooms(pool, int(args.join_rate / 2 * 60))  # a minute of joins, more than the churn needs
    before = rss_kib(pid)

    async def hold(room: uuid.UUID, end: dt.datetime, leave: bool = False) -> tuple[Held, Held, str, str] | None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                t_token = await mint(pool, settings, room, "therapist", end, keys)
                c_token = await mint(pool, settings, room, "client", end, keys)
                t, c, t_id, c_id = await ours_room(http, port, room, t_token, c_token)
        except Exception as exc:  # a refusal (a close instead of `joined`), a timeout: all count
            errors.append(f"join: {exc!r}"[:80])
            return None
        join_seconds.append((time.perf_counter() - started) / 2)
        if leave:
            await t.close()
            await c.close()
            return None
        return Held(t, errors), Held(c, errors), t_id, c_id

    async def paced(
        todo: list[tuple[uuid.UUID, dt.datetime]], stop: asyncio.Event | None = None
    ) -> list[tuple[Held, Held, str, str]]:
        """A room (two joins) every 2/rate seconds, whatever the earlier ones are doing; with `stop`,
        until it is set, each room left once joined."""
        began = time.perf_counter()
        started = []
        for i, (room, end) in enumerate(todo):
            if stop is not None and stop.is_set():
                break
            await asyncio.sleep(max(0.0, began + i * 2 / args.join_rate - time.perf_counter()))
            started.append(asyncio.create_task(hold(room, end, leave=stop is not None)))
        return [h for h in await asyncio.gather(*started) if h is not None]

    async def measure(measured: list[tuple[Held, Held, str, str]]) -> list[float]:
        await asyncio.sleep(1.0)
        samples: list[float] = []
        with quiet_client():
            await asyncio.gather(
                *(
                    held_ping_pong(t, c, _signal(c_id, "offer")(0), _signal(t_id, "answer")(0), args.rounds, samples)
                    for t, c, t_id, c_id in measured
                )
            )
        return samples

    began = time.perf_counter()
    held = await paced(rooms[: args.rooms])
    joining = time.perf_counter() - began
    alone = await measure(held)
    began = time.perf_counter()
    held += await paced(rooms[args.rooms :])
    joining += time.perf_counter() - began
    await asyncio.sleep(1.0)
    sockets = 2 * len(held)
    kib = (rss_kib(pid) - before) / max(1, sockets)
    holding = await measure(held[: args.rooms])

    stop = asyncio.Event()
    joined = len(join_seconds)
    churning = asyncio.create_task(paced(extra, stop))
    await asyncio.sleep(2.0)  # the churn is under way before the first sample
    measured = time.perf_counter()
    during = await measure(held[: args.rooms])
    churn_rate = 2 * (len(join_seconds) - joined) / (time.perf_counter() - measured + 2.0)
    stop.set()
    await churning
    for t, c, _, _ in held:
        t.leaving = c.leaving = True  # from here on, peer-left and closes are the bench's own doing
    await asyncio.gather(*(h.close() for t, c, _, _ in held for h in (t, c)), return_exceptions=True)
    for error in sorted(set(errors))[:5]:
        print(f"  scale error: {error}")
    return {
        "scale_rooms": len(held),
        "scale_sockets": sockets,
        "scale_join_rate": sockets / joining,
        "scale_join_p99_ms": percentile(join_seconds, 0.99) * 1000,
        "scale_kib": kib,
        "alone_p50_ms": statistics.median(alone) * 1000,
        "alone_p99_ms": percentile(alone, 0.99) * 1000,
        "scale_p50_ms": statistics.median(holding) * 1000,
        "scale_p99_ms": percentile(holding, 0.99) * 1000,
        "churn_p50_ms": statistics.median(during) * 1000,
        "churn_p99_ms": percentile(during, 0.99) * 1000,
        "scale_churn_rate": churn_rate,
        "scale_errors": len(errors),
    }


SDP_LIKE = "v=0\r\n" + "a=candidate:1 1 udp 2130706431 192.0.2.2 50000 typ host\r\n" * 8


def _signal(to: str, kind: str) -> Any:
    frame = json.dumps({"type": "signal", "to": to, "data": {"description": {"type": kind, "sdp": SDP_LIKE}}})
    return lambda i: frame


# --- the PeerJS server ---------------------------------------------------------------------


async def peerjs_open(http: aiohttp.ClientSession, port: int, peer: str) -> Any:
    url = f"ws://127.0.0.1:{port}/peerjs/peerjs?key=peerjs&id={peer}&token={uuid.uuid4().hex[:10]}"
    ws = await http.ws_connect(url, autoping=True)
    assert json.loads(await ws.receive_str())["type"] == "OPEN"
    return ws


def _peerjs(kind: str, dst: str) -> Any:
    frame = json.dumps({"type": kind, "dst": dst, "payload": {"sdp": {"type": kind.lower(), "sdp": SDP_LIKE}}})
    return lambda i: frame


async def bench_peerjs(args: argparse.Namespace) -> dict[str, float]:
    port = _port()
    result: dict[str, float] = {}
    with child([str(PEERJS), "--port", str(port), "--host", "127.0.0.1", "--path", "/peerjs"]) as proc:
        await wait_port(port)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            warm = await peerjs_open(http, port, "warm")
            await warm.close()
            await asyncio.sleep(0.5)
            before = rss_kib(proc.pid)
            sockets = []
            for i in range(0, args.idle, 100):
                sockets += await asyncio.gather(
                    *(peerjs_open(http, port, f"idle{j}") for j in range(i, min(i + 100, args.idle)))
                )
            await asyncio.sleep(1.0)
            result["idle_kib"] = (rss_kib(proc.pid) - before) / len(sockets)
            await asyncio.gather(*(ws.close() for ws in sockets))

            pairs = []
            for i in range(0, args.rooms, 50):
                pairs += await asyncio.gather(
                    *(
                        asyncio.gather(peerjs_open(http, port, f"a{j}"), peerjs_open(http, port, f"b{j}"))
                        for j in range(i, min(i + 50, args.rooms))
                    )
                )
            samples: list[float] = []
            with quiet_client():
                began = time.perf_counter()
                await asyncio.gather(
                    *(
                        ping_pong(a, b, _peerjs("OFFER", f"b{j}"), _peerjs("ANSWER", f"a{j}"), args.rounds, samples)
                        for j, (a, b) in enumerate(pairs)
                    )
                )
                result["seconds"] = time.perf_counter() - began
            result["p50_ms"] = statistics.median(samples) * 1000
            result["p99_ms"] = percentile(samples, 0.99) * 1000
            result["samples"] = len(samples)
            await asyncio.gather(*(ws.close() for pair in pairs for ws in pair))
    return result


async def main(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * args.idle + 4 * args.rooms + 4 * args.scale + 2048))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # children inherit it
    if not PEERJS.exists() or shutil.which("node") is None:
        sys.exit("node_modules/.bin/peerjs or node is missing: run `npm install` first")
    print(
        f"signaling relay: {args.rooms} rooms x {args.rounds} round trips at once; "
        f"memory with {args.idle} idle connections; loopback, one machine"
    )
    peer = await bench_peerjs(args)
    rows = [("PeerJS server (npm peer)", peer)]
    with tempfile.TemporaryDirectory(prefix="teleroom-bench-") as tmp:
        os.chmod(tmp, 0o755)
        with database.database_url(Path(tmp), os.environ.get("DATABASE_URL")) as base_url:
            for relay in args.relays.split(","):
                rows.append((f"Teleroom /ws, {relay} relay", await bench_ours(relay, args, base_url, tmp)))
    print(f"{'server':<32} {'p50 ms':>8} {'p99 ms':>8} {'msgs/s':>9} {'KiB/idle conn':>14}")
    for label, r in rows:
        rate = 2 * r["samples"] / r["seconds"]
        print(f"{label:<32} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {rate:>9.0f} {r['idle_kib']:>14.1f}")
    for label, r in rows[1:]:
        print(
            f"{label} vs PeerJS: p50 x{r['p50_ms'] / peer['p50_ms']:.2f}, p99 x{r['p99_ms'] / peer['p99_ms']:.2f}, "
            f"memory per idle connection x{r['idle_kib'] / peer['idle_kib']:.2f}"
        )
    for label, r in rows[1:]:
        if "scale_rooms" in r:
            print(
                f"{label}: {r['scale_rooms']:.0f} rooms held ({r['scale_sockets']:.0f} sockets) joined at "
                f"{r['scale_join_rate']:.0f} joins/s (join p99 {r['scale_join_p99_ms']:.0f} ms), "
                f"{r['scale_kib']:.1f} KiB a socket, errors {r['scale_errors']:.0f}"
            )
            print(f"  relay in {args.rooms} of them        {'p50 ms':>8} {'p99 ms':>8} {'p99 ratio':>10}")
            for what, key in (
                (f"holding {args.rooms} rooms", "alone"),
                (f"holding {r['scale_rooms']:.0f} rooms", "scale"),
                (f"and joins at {r['scale_churn_rate']:.0f}/s", "churn"),
            ):
                ratio = r[f"{key}_p99_ms"] / r["alone_p99_ms"]
                print(f"  {what:<30} {r[f'{key}_p50_ms']:>8.2f} {r[f'{key}_p99_ms']:>8.2f} {ratio:>10.2f}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20, help="round trips per room (under the rate limit's burst)")
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--relays", default="local,postgres")
    parser.add_argument("--scale", type=int, default=0, help="rooms to hold for the scale run (0: none)")
    parser.add_argument("--join-rate", type=float, default=50.0, help="joins a second in the scale run")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "DATABASE_URL", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.serve[2])
        return
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
