"""The composition root: `create_app(settings)` wires storage, the JSON API, signaling and pages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import asyncpg
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler as RequestHandler

from broker import credentials, database
from broker.api import Endpoint, respond
from broker.clock import Clock
from broker.openapi import document
from broker.problems import PROBLEM_CONTENT_TYPE, Problem
from broker.ratelimit import SlidingWindow
from broker.routes_bookings import BOOKING_LIMIT
from broker.routes_bookings import routes as booking_routes
from broker.routes_scheduling import routes as scheduling_routes
from broker.settings import Settings
from broker.state import (
    API_ROUTES,
    AUTHENTICATORS,
    BUSY_SOURCES,
    CLOCK,
    DATABASE_URL,
    POOL,
    SETTINGS,
    THERAPIST_CREATED,
)

log = logging.getLogger("teleroom")


try:
    VERSION = version("teleroom")
except PackageNotFoundError:  # running from a source tree without installing
    VERSION = "0.0.0"


def _problem_response(problem: Problem) -> web.Response:
    response = respond(problem.body(), status=problem.status, content_type=PROBLEM_CONTENT_TYPE)
    if "retry_after" in problem.extra:  # RFC 9110 section 10.2.3, for 429 and 503
        response.headers["Retry-After"] = str(problem.extra["retry_after"])
    return response


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


@web.middleware
async def problems_middleware(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    """Every error leaves as application/problem+json with a stable code; never a bare 500 page."""
    try:
        return await handler(request)
    except Problem as problem:
        return _problem_response(problem)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == PROBLEM_CONTENT_TYPE:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        detail = exc.reason
        if exc.status == 413:
            detail = f"The body is larger than {request.app[SETTINGS].max_body_bytes} bytes."
        response = _problem_response(Problem(exc.status, code, detail))
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        incident = uuid.uuid4().hex[:12]
        # Where it failed, but not the exception's message: database errors quote the values
        # involved (a name, an email), and logs must carry identifiers only.
        log.error(
            "unhandled %s, incident %s, %s %s\n%s",
            type(exc).__name__,
            incident,
            request.method,
            _loggable_path(request),
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        return _problem_response(
            Problem(500, "internal_error", f"Something went wrong on our side (incident {incident}).")
        )


@web.middleware
async def security_headers_middleware(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    response = await handler(request)
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")
    return response


def _loggable_path(request: web.Request) -> str:
    """The path with secrets masked: routes that carry a token in the path log their pattern."""
    if "token" in request.match_info:
        info = request.match_info.route.resource
        return info.canonical if info is not None else "(redacted)"
    return request.path


class AccessLogger(AbstractAccessLogger):
    """Method, path (secrets masked, no query string), status and time: identifiers, never personal data."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = _loggable_path(request) if isinstance(request, web.Request) else request.path
        self.logger.info("%s %s %s %.1fms", request.method, path, response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


async def healthz(request: web.Request) -> web.Response:
    return respond({"status": "ok", "version": VERSION})


async def readyz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(2):
            await request.app[POOL].fetchval("SELECT 1")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        raise Problem(503, "database_unavailable", "The database cannot be reached.") from None
    return respond({"status": "ready"})


async def openapi(request: web.Request) -> web.Response:
    endpoints: list[Endpoint] = [ep for table in request.app[API_ROUTES] for ep in table.endpoints]
    return respond(document(endpoints, VERSION))


async def ensure_admin_token(pool: asyncpg.Pool, settings: Settings) -> None:
    """With TELEROOM_ADMIN_TOKEN unset, make one on first start and leave it in the data dir (0600)."""
    if settings.admin_token is not None:
        return
    path = settings.data_dir / "admin-token"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE admin_tokens IN EXCLUSIVE MODE")
        if await conn.fetchval("SELECT count(*) FROM admin_tokens"):
            if path.exists():
                log.info("admin token: %s", path.resolve())
            return
        token = credentials.new_secret(credentials.ADMIN_TOKEN)
        await conn.execute("INSERT INTO admin_tokens (token_hash) VALUES ($1)", credentials.secret_hash(token))
        write_secret_file(path, token)
    log.warning("generated an admin token; it is in %s (mode 0600)", path.resolve())


def write_secret_file(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    path.chmod(0o600)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start (or reuse) the embedded PostgreSQL unless DATABASE_URL is set; open the pool; migrate."""
    settings = app[SETTINGS]
    with contextlib.ExitStack() as stack:
        if settings.database_url:
            url = settings.database_url
        else:
            embedded = database.EmbeddedPostgres(settings.data_dir)
            started = time.monotonic()
            url = await asyncio.to_thread(embedded.start)
            stack.callback(embedded.stop)
            log.info("embedded PostgreSQL ready in %.2fs under %s", time.monotonic() - started, settings.data_dir)
        app[DATABASE_URL] = url
        async with database.open_pool(url) as pool:
            async with pool.acquire() as conn:
                await database.migrate(conn)
            await ensure_admin_token(pool, settings)
            app[POOL] = pool
            yield


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    """Build the application. Resources (database, background tasks) start in cleanup contexts."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[problems_middleware, security_headers_middleware],
        logger=log,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or Clock()
    app[AUTHENTICATORS] = []
    app[BUSY_SOURCES] = []
    app[THERAPIST_CREATED] = []
    app[BOOKING_LIMIT] = SlidingWindow(settings.booking_attempts_per_hour, 3600)
    app[API_ROUTES] = [scheduling_routes, booking_routes]
    app.cleanup_ctx.append(database_ctx)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/openapi.json", openapi)
    for table in app[API_ROUTES]:
        table.install(app)

    # The other parts mount their routes and hooks here; only the composition root imports them all.
    from broker import feeds, rooms
    from signaling import mount as signaling_mount
    from web import mount as web_mount

    rooms.setup(app)
    feeds.setup(app)
    signaling_mount.setup(app)
    web_mount.setup(app)
    return app
