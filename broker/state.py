"""Typed keys for what the application holds; the values live on the app, never in modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from broker.clock import Clock
from broker.settings import Settings

if TYPE_CHECKING:
    from broker.auth import Principal

Authenticator = Callable[[web.Request], Awaitable["Principal | None"]]

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
CLOCK = web.AppKey("clock", Clock)
# Extra ways to authenticate a request besides bearer tokens (the web package adds cookie sessions).
AUTHENTICATORS = web.AppKey("authenticators", list[Authenticator])
