"""The signaling package's subcommand of `teleroom` (`broker.cli` calls `add_commands`).

`teleroom probe URL [--token TOKEN]` checks a deployment end to end, the way a participant would:
/healthz and /readyz answer, the echo peer reaches a DTLS-connected WebRTC session whose video
and data channel come back (so ICE, DTLS and media work from where the probe runs), and, given a
room token, /ws accepts it (Origin, upgrade, token, room). A token is used up by the probe.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from typing import Any

import aiohttp

from broker.cli_support import Subcommands
from broker.room_access import signaling_url
from broker.settings import add_flags
from signaling.participant import Participant, echo_check


def add_commands(sub: Subcommands) -> None:
    """Add `probe`."""
    parser = sub.add_parser("probe", help="check a deployment end to end: health, WebRTC echo, and a room join")
    add_flags(parser, "data_dir")  # unused, but every subcommand has always accepted it
    parser.add_argument("url", help="the service's public origin, e.g. https://teleroom.example.org")
    parser.add_argument(
        "--token",
        help="a room token to join with (POST /api/v1/bookings/{id}/room-token); `-` reads it from stdin, "
        "which keeps it out of the process list",
    )
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to allow each step (default 20)")
    parser.set_defaults(run=_run)


def _room_of(token: str) -> str | None:
    """The `room` claim, read without verifying: the server verifies; we only need the URL."""
    try:
        payload = token.split(".")[1]
        claims: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    room = claims.get("room") if isinstance(claims, dict) else None
    return room if isinstance(room, str) else None


class Report:
    def __init__(self) -> None:
        self.failed = False

    def line(self, ok: bool, step: str, detail: str) -> None:
        self.failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'}  {step:<10} {detail}", flush=True)


async def probe(url: str, token: str | None, seconds: float) -> bool:
    """Run every check, printing one line each; True when all passed."""
    base = url.rstrip("/")
    report = Report()
    timeout = aiohttp.ClientTimeout(total=seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for path in ("/healthz", "/readyz"):
            started = time.monotonic()
            try:
                async with session.get(base + path) as resp:
                    ok = resp.status == 200
                    detail = f"HTTP {resp.status} in {(time.monotonic() - started) * 1000:.0f} ms"
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            report.line(ok, path.lstrip("/"), detail)

        echo = await echo_check(base, session, seconds=seconds)
        report.line(
            echo.connected and echo.video_frames > 0 and echo.channel_echo,
            "echo",
            echo.error
            or f"DTLS connected, {echo.video_frames} video frames and a data-channel message back "
            f"in {echo.seconds:.1f} s",
        )

        if token:
            room = _room_of(token)
            if room is None:
                report.line(False, "room", "the token is not a room token (no `room` claim)")
            else:
                participant = Participant(signaling_url(base, room), token, session=session, media=False)
                try:
                    async with asyncio.timeout(seconds):
                        joined = await participant.join()
                    report.line(True, "room", f"joined as {joined.role} {joined.participant}, {joined.state}")
                except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                    report.line(False, "room", f"{type(exc).__name__}: {exc}")
                finally:
                    await participant.close()
    return not report.failed


def _run(args: argparse.Namespace) -> int:
    token = args.token
    if token == "-":
        token = sys.stdin.readline().strip()
    return 0 if asyncio.run(probe(args.url, token, args.timeout)) else 1
