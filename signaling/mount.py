"""Mounted by broker.app.create_app: GET /ws, the echo endpoint, and the hub and relay lifecycles."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from broker import ice, room_access
from broker.clock import CLOCK
from broker.database import DATABASE_URL, POOL
from broker.metrics import METRICS
from broker.notices import NOTICES
from broker.settings import SETTINGS, Settings
from broker.tokens import RoomClaims
from signaling import echo
from signaling.hub import Hub
from signaling.relay import LocalRelay, PostgresRelay, Relay
from signaling.server import HUB, websocket

# "local" (one node), "postgres" (LISTEN/NOTIFY between nodes) or "auto": postgres when an external
# DATABASE_URL is configured (which is what several nodes share), local on the embedded database.
RELAY_MODE = web.AppKey("signaling_relay_mode", str)
RELAY_MODES = ("auto", "local", "postgres")


def setup(app: web.Application) -> None:
    """Add /ws, the echo endpoint, the hub (closing every socket on shutdown) and the relay."""
    app[RELAY_MODE] = app[SETTINGS].signaling_relay
    app.router.add_get(room_access.SIGNALING_PATH, websocket)
    app[NOTICES].hooks.append(room_access.close_cancelled_rooms)
    app.cleanup_ctx.append(hub_ctx)
    app.on_shutdown.append(close_sockets)
    echo.setup(app)


def make_relay(app: web.Application, node: str) -> Relay:
    settings = app[SETTINGS]
    mode = app[RELAY_MODE]
    if mode == "local" or (mode == "auto" and not settings.database_url and settings.workers == 1):
        return LocalRelay(app[DATABASE_URL])
    return PostgresRelay(app[DATABASE_URL], node)


def ice_builder(settings: Settings) -> Callable[[RoomClaims], list[ice.IceServer]]:
    """STUN/TURN entries for a participant (TURN credentials expire with the join window)."""

    def build(claims: RoomClaims) -> list[ice.IceServer]:
        return ice.ice_servers(settings, claims.participant, claims.window_end)

    return build


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    node = os.urandom(6).hex()
    hub = Hub(
        app[POOL],
        make_relay(app, node),
        app[CLOCK].now,
        ice_builder(settings),
        node=node,
        heartbeat=settings.signaling_heartbeat_seconds,
    )
    await hub.start()
    app[HUB] = hub
    measure(app, hub)
    yield
    await hub.close_all()
    await hub.close()


def measure(app: web.Application, hub: Hub) -> None:
    """This node's sockets and rooms as gauges read at scrape time, and the relay's lag."""
    metrics = app[METRICS]
    metrics.gauge(
        "teleroom_signaling_sockets",
        "Signaling sockets open on this node.",
        lambda: sum(len(room.conns) for room in hub.rooms.values()),
    )
    metrics.gauge("teleroom_signaling_rooms", "Rooms with a socket on this node.", lambda: len(hub.rooms))
    lag = metrics.histogram(
        "teleroom_signaling_relay_lag_seconds",
        "Time a notification takes through PostgreSQL and back to this node (the relay between nodes).",
    )
    hub.relay.on_lag = lag.observe


async def close_sockets(app: web.Application) -> None:
    """On shutdown, before cleanup: close every WebSocket so handlers return and the server can stop."""
    hub = app.get(HUB)
    if hub is not None:
        await hub.close_all()
