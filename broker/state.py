"""Typed keys for what the application holds; the values live on the app, never in modules."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from broker.api import ApiRoutes
from broker.clock import Clock
from broker.schemas import TherapistCreated
from broker.settings import Settings
from calendars.slots import Span

if TYPE_CHECKING:
    from broker.auth import Principal

Authenticator = Callable[[web.Request], Awaitable["Principal | None"]]
# Extra busy time besides bookings (external calendars plug in here): (conn, therapist, span) -> spans.
BusySource = Callable[[asyncpg.Connection | asyncpg.Pool, uuid.UUID, Span], Awaitable[Sequence[Span]]]
# Adds to what POST /api/v1/therapists answers (the web package adds the one-time invite link).
TherapistCreatedHook = Callable[[web.Application, uuid.UUID, TherapistCreated], Awaitable[TherapistCreated]]

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
CLOCK = web.AppKey("clock", Clock)
# Extra ways to authenticate a request besides bearer tokens (the web package adds cookie sessions).
AUTHENTICATORS = web.AppKey("authenticators", list[Authenticator])
# Every table of JSON endpoints, for the OpenAPI document; each part appends its own in setup().
API_ROUTES = web.AppKey("api_routes", list[ApiRoutes])
DATABASE_URL = web.AppKey("database_url", str)
BUSY_SOURCES = web.AppKey("busy_sources", list[BusySource])
THERAPIST_CREATED = web.AppKey("therapist_created", list[TherapistCreatedHook])
