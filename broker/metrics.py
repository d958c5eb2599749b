"""Prometheus metrics at `/metrics`, for the person who runs Teleroom; never public by default.

`GET /metrics` exists only when `TELEROOM_METRICS_TOKEN` is set, and answers only a request that
carries it as a bearer token. Labels name routes by their pattern (`/api/v1/bookings/{id}`),
methods, statuses and outcomes: no identifier of a person, a booking or a room ever becomes a
label. Each app has its own registry (tests build many apps in one process).

Parts add what only they can see: a gauge read at scrape time (`gauge`), or an async refresher
that sets gauges from the database before each scrape (`refreshers`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from broker import busy_calendars, outbox
from broker.clock import CLOCK
from broker.database import POOL
from broker.settings import SETTINGS

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The public booking endpoint, whose answers are also counted by outcome.
BOOKING_ROUTE = ("POST", "/api/v1/therapists/{slug}/bookings")
BOOKING_OUTCOMES = {201: "created", 200: "replayed", 409: "slot_unavailable", 429: "rate_limited", 503: "unavailable"}
Refresher = Callable[[web.Application], Awaitable[None]]


class Metrics:
    """One app's registry and the metrics every node reports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "teleroom_http_requests",
            "HTTP requests answered, by route pattern, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "teleroom_http_request_duration_seconds",
            "Time to answer an HTTP request, by route pattern and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bookings = Counter(
            "teleroom_bookings",
            "Answers of the public booking endpoint, by outcome (created, replayed, slot_unavailable, "
            "refused, rate_limited, unavailable, error).",
            ["outcome"],
            registry=self.registry,
        )
        self.outbox_due = Gauge(
            "teleroom_outbox_due_messages", "Messages due and not yet delivered.", registry=self.registry
        )
        self.outbox_oldest = Gauge(
            "teleroom_outbox_oldest_due_seconds",
            "How long the oldest undelivered due message has been due (0 when none).",
            registry=self.registry,
        )
        self.busy_staleness = Gauge(
            "teleroom_busy_calendar_staleness_seconds",
            "Age of the stalest busy calendar's last successful fetch (0 when there are none).",
            registry=self.registry,
        )
        self.refreshers: list[Refresher] = [_refresh_outbox, _refresh_busy_calendars]

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> Gauge:
        """A gauge whose value is read when scraped (open sockets, rooms)."""
        gauge = Gauge(name, documentation, registry=self.registry)
        gauge.set_function(read)
        return gauge

    def histogram(self, name: str, documentation: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
        return Histogram(name, documentation, buckets=buckets, registry=self.registry)


METRICS = web.AppKey("metrics", Metrics)


async def _refresh_outbox(app: web.Application) -> None:
    metrics, now = app[METRICS], app[CLOCK].now()
    state = await outbox.queue_state(app[POOL], now)
    metrics.outbox_due.set(state.depth)
    metrics.outbox_oldest.set(0 if state.oldest_due is None else max(0.0, (now - state.oldest_due).total_seconds()))


async def _refresh_busy_calendars(app: web.Application) -> None:
    metrics, now = app[METRICS], app[CLOCK].now()
    oldest = await busy_calendars.oldest_success(app[POOL])
    metrics.busy_staleness.set(0 if oldest is None else max(0.0, (now - oldest).total_seconds()))


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by its route pattern (never its concrete path)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics = request.app[METRICS]
        route = _route(request)
        metrics.requests.labels(route, request.method, str(status)).inc()
        metrics.latency.labels(route, request.method).observe(time.perf_counter() - started)
        if (request.method, route) == BOOKING_ROUTE:
            outcome = BOOKING_OUTCOMES.get(status, "refused" if 400 <= status < 500 else "error")
            metrics.bookings.labels(outcome).inc()


async def scrape(request: web.Request) -> web.Response:
    """The metrics, for a caller holding TELEROOM_METRICS_TOKEN; 404 to anyone else."""
    expected = request.app[SETTINGS].metrics_token or ""
    offered = request.headers.get("Authorization", "")
    if not expected or not hmac.compare_digest(offered.encode(), f"Bearer {expected}".encode()):
        raise web.HTTPNotFound()
    metrics = request.app[METRICS]
    for refresh in metrics.refreshers:
        await refresh(request.app)
    return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    app[METRICS] = Metrics()
    if app[SETTINGS].metrics_token:
        app.router.add_get("/metrics", scrape)
