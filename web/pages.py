"""The pages clients see (book, manage, join, device test) and the therapist's room page.

Handlers render a shell with what the server may show without a secret; everything behind a
booking key is fetched by the page's script, which reads the key from the URL fragment and sends
it in an Authorization header, so the key never reaches the server in a URL, a log or a Referer.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from broker import bookings, session_types, therapists
from broker.database import POOL
from broker.errors import NotFound, Unauthenticated
from broker.http.auth import authenticate
from web import csrf
from web.render import render


def _booking_id(request: web.Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        return None


def missing(request: web.Request, what: str) -> web.Response:
    return render(request, "missing.html", {"what": what}, status=404)


async def home(request: web.Request) -> web.Response:
    return render(request, "home.html")


async def book(request: web.Request) -> web.Response:
    """A therapist's public booking page: session types rendered here, free slots fetched by booking.js."""
    pool = request.app[POOL]
    try:
        therapist = await therapists.by_slug(pool, request.match_info["slug"])
    except NotFound:
        return missing(request, "therapist")
    types = await session_types.offered(pool, therapist.id)
    return render(request, "book.html", {"therapist": therapist, "session_types": types})


async def manage(request: web.Request) -> web.Response:
    booking_id = _booking_id(request)
    if booking_id is None:
        return missing(request, "booking")
    return render(request, "manage.html", {"booking_id": str(booking_id)})


async def join(request: web.Request) -> web.Response:
    booking_id = _booking_id(request)
    if booking_id is None:
        return missing(request, "booking")
    return render(request, "join.html", {"booking_id": str(booking_id)}, media=True)


async def room(request: web.Request) -> web.StreamResponse:
    """The therapist's side of a call; only for the therapist logged in to the dashboard."""
    booking_id = _booking_id(request)
    if booking_id is None:
        return missing(request, "booking")
    try:
        principal = await authenticate(request)
    except Unauthenticated:
        principal = None
    if principal is None or principal.kind != "therapist" or principal.via != "session":
        raise web.HTTPSeeOther(f"/login?next=/room/{booking_id}")
    owner = await bookings.owner(request.app[POOL], booking_id)
    if owner is None or owner != principal.therapist_id:
        return missing(request, "booking")
    return render(request, "room.html", {"booking_id": str(booking_id), "csrf_token": csrf.token(request)}, media=True)


async def device_test(request: web.Request) -> web.Response:
    return render(request, "test.html", media=True)


async def api_reference(request: web.Request) -> web.Response:
    """The OpenAPI document as a readable page; api-reference.js fetches /api/v1/openapi.json and renders it."""
    return render(request, "api.html")


def add_routes(app: web.Application) -> None:
    """The page routes. Pages are GET only; every change goes through the JSON API."""
    app.router.add_get("/", home, name="home")
    app.router.add_get("/book/{slug}", book, name="book")
    app.router.add_get("/manage/{id}", manage, name="manage")
    app.router.add_get("/join/{id}", join, name="join")
    app.router.add_get("/room/{id}", room, name="room")
    app.router.add_get("/test", device_test, name="device-test")
    app.router.add_get("/api", api_reference, name="api-reference")
