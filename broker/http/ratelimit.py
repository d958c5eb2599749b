"""Flood control: a per-key sliding-window limit kept in memory (what a node can lose), and the
caller's address to key it on."""

from __future__ import annotations

import collections
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from broker.errors import RateLimited
from broker.settings import SETTINGS, IPNetwork

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
            raise RateLimited(detail, retry_after=int(wait) + 1)


@dataclass(frozen=True, slots=True)
class Limit:
    """A per-address limit an endpoint declares (`ApiRoutes.route(limit=...)`): the app's window and
    what a refused caller is told. Checked before anything else, so a refusal costs no query."""

    window: web.AppKey[SlidingWindow]
    detail: str

    def require(self, request: web.Request) -> None:
        request.app[self.window].require(client_address(request), self.detail)


def _trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(request: web.Request) -> str:
    """The address rate limits should count: the peer, or, when the peer is a trusted proxy, the
    right-most address in X-Forwarded-For that is not itself a trusted proxy (a client can prepend
    anything to that header, so only what our own proxies appended is believed)."""
    peer = request.remote or "unknown"
    trusted = request.app[SETTINGS].trusted_proxies
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
