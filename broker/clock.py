"""The service's notion of now: real UTC time, plus an offset an operator or test can set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web


class Clock:
    """Wall-clock time in UTC. `advance` shifts it (for rehearsing a session ahead of time in tests)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


# The app's clock (tests and rehearsals move it; everything that asks "now?" reads this one).
CLOCK = web.AppKey("clock", Clock)
