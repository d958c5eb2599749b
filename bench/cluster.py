"""Bookings per second through nginx in front of three Teleroom nodes against nginx in front of one.

Three `teleroom serve` processes (one worker each) share one fresh database (embedded, or
DATABASE_URL's server). Two nginx processes run the shipped deploy/nginx.conf rendered for loopback
(tests/nginx_support.py, TLS with a throwaway certificate): one whose upstreams are the three
nodes, one whose upstream is the first node alone. The same client books `--bookings` distinct
slots of a fresh therapist at `--concurrency` through each nginx in turn, round after round, so
whatever else the machine does falls on both alike. Printed: the median rate, latency percentiles,
CPU per booking summed over the nodes, and the ratio. Nodes, nginx, PostgreSQL and the client all
share this machine's cores: the ratio says what the extra nodes still find to do here, not what
three hosts would do.

    python -m bench.cluster [--bookings 1000] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp

from bench.booking import Figures, cpu_seconds, drive, print_table
from bench.harness import ADMIN, Service
from bench.served import free_port, fresh_database
from tests.nginx_support import SHIPPED, render

NODES = 3


@contextlib.asynccontextmanager
async def nodes(database_url: str, directory: Path, count: int) -> AsyncIterator[list[tuple[int, int]]]:
    """`count` `teleroom serve` processes on `database_url`; yields (port, pid) of each once ready."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TELEROOM_")},
        "DATABASE_URL": database_url,
        "TELEROOM_ADMIN_TOKEN": ADMIN,
        "TELEROOM_SIGNALING_RELAY": "postgres",
        "TELEROOM_SEAL_KEY_FILE": str(seal_key(directory)),
        "TELEROOM_BOOKING_ATTEMPTS_PER_HOUR": "0",
        "TELEROOM_LOG_LEVEL": "WARNING",
        "PYTHONHASHSEED": "0",
    }
    started: list[tuple[int, subprocess.Popen[bytes]]] = []
    try:
        for i in range(count):
            port = free_port()
            args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(directory / f"node{i}")]
            started.append((port, subprocess.Popen([sys.executable, "-m", "broker.cli", *args], env=env)))
        deadline = time.monotonic() + 90
        async with aiohttp.ClientSession() as http:
            for port, proc in started:
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"node on {port} exited with {proc.returncode}")
                    if time.monotonic() > deadline:
                        raise RuntimeError("the nodes were not ready in 90 s")
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                            if resp.status == 200:
                                break
                    await asyncio.sleep(0.2)
        yield [(port, proc.pid) for port, proc in started]
    finally:
        for _, proc in started:
            proc.terminate()
        for _, proc in started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def seal_key(directory: Path) -> Path:
    """One seal key file for every node (a cluster shares it)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "seal-key"
    path.write_text(base64.b64encode(os.urandom(32)).decode())
    path.chmod(0o600)
    return path


def upstream_text(count: int) -> str:
    """The shipped configuration with `count` nodes in each upstream block (it ships with two)."""
    text = SHIPPED.read_text()
    if count == 1:
        return re.sub(r"^\s*server teleroom-2:8080\b.*\n", "", text, flags=re.M)
    extra = "".join(rf"\n\1teleroom-{n}\2" for n in range(3, count + 1))
    return re.sub(r"^(\s*server )teleroom-2(:8080\b.*)$", r"\g<0>" + extra, text, flags=re.M)


@contextlib.contextmanager
def nginx(directory: Path, ports: list[int]) -> Iterator[str]:
    """Debian's nginx running the shipped configuration in front of `ports`; yields its https base URL."""
    program = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if program is None:
        raise SystemExit("nginx not found: apt-get install nginx")
    https = free_port()
    conf = render(
        directory,
        {f"teleroom-{i + 1}": f"127.0.0.1:{port}" for i, port in enumerate(ports)},
        http_port=free_port(),
        https_port=https,
        conf=upstream_text(len(ports)),
    )
    proc = subprocess.Popen(  # our own rendered configuration
        [program, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log"), "-g", "daemon off;"]
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", https), timeout=1).close()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nginx did not start")
            time.sleep(0.05)
        yield f"https://127.0.0.1:{https}"
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=1000, help="slots booked through each nginx per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="teleroom-bench-cluster-"))
    figures = {1: Figures("1 node"), NODES: Figures(f"{NODES} nodes")}
    try:
        async with fresh_database(tmp / "pg") as url, nodes(url, tmp / "nodes", NODES) as started:
            ports, pids = [port for port, _ in started], [pid for _, pid in started]
            with nginx(tmp / "nginx-1", ports[:1]) as one, nginx(tmp / f"nginx-{NODES}", ports) as many:
                edges = {1: (one, pids[:1]), NODES: (many, pids)}
                async with contextlib.AsyncExitStack() as stack:
                    sessions = {
                        n: await stack.enter_async_context(
                            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False, limit=args.concurrency))
                        )
                        for n in edges
                    }
                    for _ in range(args.rounds):
                        for n, (base, used) in edges.items():
                            http = sessions[n]
                            slug = f"bench-{uuid.uuid4().hex[:8]}"
                            _, session_type = await Service(base, url, http).therapist(slug)
                            into = figures[n]
                            cpu_before = sum(cpu_seconds(pid) for pid in used)
                            await drive(
                                http, base, slug, session_type, args.bookings, args.concurrency, keyed=False, into=into
                            )
                            into.cpu += sum(cpu_seconds(pid) for pid in used) - cpu_before
                            into.booked += args.bookings
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\n{args.bookings} bookings per round through nginx (TLS), {args.rounds} rounds, "
        f"concurrency {args.concurrency}, {os.cpu_count()} CPUs"
    )
    print_table("behind nginx", figures.values())
    print(f"{NODES} nodes / 1 node: {figures[NODES].rate / figures[1].rate:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
