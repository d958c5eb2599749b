"""A per-key sliding-window limit kept in memory: what a node can lose, for flood control only."""

from __future__ import annotations

import collections
import time

from broker.problems import Problem

MAX_KEYS = 10_000


class SlidingWindow:
    """At most `limit` events per key in any `seconds`-long window."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._recent: dict[str, collections.deque[float]] = {}

    def allow(self, key: str) -> float | None:
        """Count an event for `key` and return None, or, over the limit, the seconds until one is allowed."""
        if self.limit <= 0:
            return None
        now = time.monotonic()
        stamps = self._recent.setdefault(key, collections.deque())
        while stamps and now - stamps[0] >= self.seconds:
            stamps.popleft()
        if len(stamps) >= self.limit:
            return self.seconds - (now - stamps[0])
        stamps.append(now)
        if len(self._recent) > MAX_KEYS:  # forget quiet keys so a flood of addresses cannot grow the table
            for stale in [k for k, v in self._recent.items() if not v or now - v[-1] >= self.seconds]:
                del self._recent[stale]
        return None

    def require(self, key: str, detail: str) -> None:
        """Count an event for `key`, or refuse it: 429 `rate_limited` with Retry-After."""
        wait = self.allow(key)
        if wait is not None:
            raise Problem(429, "rate_limited", detail, retry_after=int(wait) + 1)
