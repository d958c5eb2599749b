"""The composition root: `create_app(settings)` wires storage, the JSON API, signaling and pages.

Only this module (and `broker.cli`, the command line's root) imports every part; each part
exposes `setup(app)`, which mounts its routes and adds its resources to `app.cleanup_ctx`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

import asyncpg
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler as RequestHandler

from broker import admin_tokens, database, logs, metrics, outbox, sealing, therapists
from broker.bookings import BUSY_SOURCES
from broker.clock import CLOCK, Clock
from broker.database import DATABASE_URL, POOL
from broker.http import problems
from broker.http.auth import AUTHENTICATORS
from broker.http.endpoints import Endpoint, respond
from broker.http.openapi import API_ROUTES, document
from broker.notices import NOTICES, Notices
from broker.routes import bookings as booking_routes
from broker.routes import busy_calendars as busy_calendar_routes
from broker.routes import clients as client_routes
from broker.routes import feeds as feed_routes
from broker.routes import licences as licence_routes
from broker.routes import measures as measure_routes
from broker.routes import notifications as notification_routes
from broker.routes import outside_hours as outside_hours_routes
from broker.routes import places as place_routes
from broker.routes import policies as policy_routes
from broker.routes import room_tokens as room_token_routes
from broker.routes import safety as safety_routes
from broker.routes import series as series_routes
from broker.routes import therapists as therapist_routes
from broker.routes import webhooks as webhook_routes
from broker.settings import SETTINGS, Settings
from signaling import mount as signaling_mount
from web import mount as web_mount

log = logging.getLogger("teleroom")


try:
    VERSION = version("teleroom")
except PackageNotFoundError:  # running from a source tree without installing
    VERSION = "0.0.0"


@web.middleware
async def security_headers_middleware(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    response = await handler(request)
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")
    return response


class AccessLogger(AbstractAccessLogger):
    """Method, path (secrets masked, no query string), status and time: identifiers, never personal data."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %.1fms", request.method, problems.loggable_path(request), response.status, time * 1000
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


async def healthz(request: web.Request) -> web.Response:
    return respond({"status": "ok", "version": VERSION})


async def readyz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(request.app[SETTINGS].database_timeout_seconds):
            await request.app[POOL].fetchval("SELECT 1")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        request.app[database.HEALTH].failed(type(exc).__name__)
        raise database.unavailable_error() from None
    return respond({"status": "ready"})


async def openapi(request: web.Request) -> web.Response:
    endpoints: list[Endpoint] = [ep for table in request.app[API_ROUTES] for ep in table.endpoints]
    return respond(document(endpoints, VERSION))


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start (or reuse) the embedded PostgreSQL unless DATABASE_URL is set; open the pool; migrate as
    the owner; then supervise it (docs/operations.md, *When the database is lost*)."""
    settings = app[SETTINGS]
    timeout = settings.database_timeout_seconds
    # Requests (and the signaling relay's LISTEN) connect as a role that owns nothing; migrations as
    # the schema's owner (docs/operations.md, *Database roles*).
    async with database.connection_urls(
        settings.data_dir, settings.database_url, settings.migration_database_url, wait_seconds=timeout
    ) as urls:
        app[DATABASE_URL] = urls.requests
        async with database.open_pool(urls.requests, wait_seconds=timeout) as pool:
            await database.migrate_for(pool, urls.migrations, wait_seconds=timeout)
            await admin_tokens.ensure_admin_token(pool, settings)
            app[POOL] = pool
            health = app[database.HEALTH] = database.Health()
            supervisor = asyncio.create_task(database.supervise(pool, health, urls.embedded, wait_seconds=timeout))
            try:
                yield
            finally:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    """Build the application. Resources (database, background tasks) start in cleanup contexts."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[logs.request_id_middleware, metrics.middleware, problems.middleware, security_headers_middleware],
        logger=log,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or Clock()
    app[AUTHENTICATORS] = []
    app[BUSY_SOURCES] = []
    app[NOTICES] = Notices(app[CLOCK].now)
    app[therapists.BY_SLUG] = therapists.BySlug()
    app[API_ROUTES] = []
    app[sealing.SEALER] = sealing.load(settings)
    app.cleanup_ctx.append(database_ctx)
    outbox.setup(app)  # the delivery worker; each channel's part adds its sender below
    metrics.setup(app)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/openapi.json", openapi)

    # Each part mounts its routes and hooks; only the composition root imports them all.
    for part in (
        therapist_routes,
        booking_routes,
        room_token_routes,
        series_routes,
        feed_routes,
        busy_calendar_routes,
        policy_routes,
        client_routes,
        outside_hours_routes,
        notification_routes,  # and the email channel (broker.mail)
        webhook_routes,
        place_routes,
        licence_routes,
        safety_routes,
        measure_routes,
        signaling_mount,
        web_mount,
    ):
        part.setup(app)
    return app
