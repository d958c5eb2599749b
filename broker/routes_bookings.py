"""JSON API: booking, reading, cancelling and rescheduling, and a therapist's booking list."""

from __future__ import annotations

import datetime as dt
import hashlib

import msgspec
from aiohttp import web

from broker import audit, bookings, idempotency, schemas, therapists
from broker.api import ApiRoutes, Param, query_param, read_json, respond
from broker.auth import Principal, parse_uuid, require_booking_access, require_therapist, therapist_by_slug
from broker.net import client_address
from broker.problems import Problem
from broker.ratelimit import SlidingWindow
from broker.routes_scheduling import SLUG, parse_date
from broker.state import BUSY_SOURCES, CLOCK, POOL, SETTINGS
from broker.zones import zone
from calendars.slots import dates_window

routes = ApiRoutes("bookings")
# Booking attempts per client address: a public endpoint must not let one caller fill a calendar.
BOOKING_LIMIT = web.AppKey("booking_limit", SlidingWindow)
BOOKING_ID = Param("id", "path", "Booking id", required=True)
CLIENT = Principal("client")


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/bookings",
    summary="Book a slot (public; no account needed)",
    body=schemas.BookingIn,
    response=schemas.BookingCreated,
    status=201,
    params=[SLUG, Param("Idempotency-Key", "header", "Retry-safe key: the same key and body return the first answer")],
    errors=(404, 409, 413, 422, 429),
)
async def create_booking(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    settings = request.app[SETTINGS]
    request.app[BOOKING_LIMIT].require(
        client_address(request), "Too many booking attempts from this address; please try again later."
    )
    therapist = await therapist_by_slug(pool, request.match_info["slug"])
    body = await read_json(request, schemas.BookingIn)
    assert body is not None
    key = idempotency.check_key(request.headers.get("Idempotency-Key"))
    bookings.client_zone_ok(body.client_timezone)
    session_type = await therapists.session_type(pool, therapist["id"], body.session_type)
    now = request.app[CLOCK].now()
    sources = request.app[BUSY_SOURCES]
    request_hash = hashlib.sha256(msgspec.json.encode(body)).digest()

    async with pool.acquire() as conn, conn.transaction():
        if key is not None:
            replay = await idempotency.claim(conn, therapist["id"], key, request_hash)
            if replay is not None:
                return web.Response(
                    body=replay.body,
                    status=replay.status,
                    headers={"Idempotent-Replayed": "true"},
                    content_type="application/json" if replay.status < 400 else "application/problem+json",
                )
        try:
            await bookings.check_offered(conn, therapist, session_type, body.start, now, sources=sources)
            booking_id, booking_key, span = await bookings.insert_booking(conn, therapist, session_type, body, CLIENT)
        except Problem as problem:
            if key is None or problem.status != 409:
                raise
            await idempotency.store(conn, therapist["id"], key, problem.status, msgspec.json.encode(problem.body()))
            raise
        origin = settings.origin
        out = schemas.BookingCreated(
            id=str(booking_id),
            status="confirmed",
            start=span.start,
            end=span.end,
            booking_key=booking_key,
            manage_url=f"{origin}/manage/{booking_id}#k={booking_key}",
            join_url=f"{origin}/join/{booking_id}#k={booking_key}",
        )
        encoded = msgspec.json.encode(out)
        if key is not None:
            await idempotency.store(conn, therapist["id"], key, 201, encoded)
    request.app.logger.info("booking %s created for therapist %s", booking_id, therapist["id"])
    return web.Response(body=encoded, status=201, content_type="application/json")


@routes.route(
    "GET",
    "/api/v1/bookings/{id}",
    summary="A booking (its client by booking key, or its therapist)",
    auth=("booking", "therapist"),
    response=schemas.BookingOut,
    params=[BOOKING_ID],
    errors=(401, 404),
)
async def get_booking(request: web.Request) -> web.Response:
    booking_id = parse_uuid(request.match_info["id"], "booking")
    principal = await require_booking_access(request, booking_id)
    pool = request.app[POOL]
    row = await bookings.fetch_booking(pool, booking_id)
    await audit.record(pool, principal, "booking.read", booking_id=booking_id, therapist_id=row["therapist_id"])
    return respond(bookings.booking_out(row))


@routes.route(
    "POST",
    "/api/v1/bookings/{id}/cancel",
    summary="Cancel a booking (idempotent)",
    auth=("booking", "therapist"),
    body=schemas.CancelIn,
    response=schemas.BookingOut,
    params=[BOOKING_ID],
    errors=(401, 404, 409),
)
async def cancel_booking(request: web.Request) -> web.Response:
    booking_id = parse_uuid(request.match_info["id"], "booking")
    principal = await require_booking_access(request, booking_id)
    await read_json(request, schemas.CancelIn, allow_empty=True)
    async with request.app[POOL].acquire() as conn:
        row = await bookings.cancel(conn, booking_id, principal, request.app[CLOCK].now())
    request.app.logger.info("booking %s cancelled by %s", booking_id, principal.kind)
    return respond(bookings.booking_out(row))


@routes.route(
    "POST",
    "/api/v1/bookings/{id}/reschedule",
    summary="Move a booking atomically; 409 leaves it untouched",
    auth=("booking", "therapist"),
    body=schemas.RescheduleIn,
    response=schemas.BookingOut,
    params=[BOOKING_ID],
    errors=(401, 404, 409, 422),
)
async def reschedule_booking(request: web.Request) -> web.Response:
    booking_id = parse_uuid(request.match_info["id"], "booking")
    principal = await require_booking_access(request, booking_id)
    body = await read_json(request, schemas.RescheduleIn)
    assert body is not None
    sources = request.app[BUSY_SOURCES]
    async with request.app[POOL].acquire() as conn:
        row = await bookings.reschedule(conn, booking_id, body.start, principal, request.app[CLOCK].now(), sources)
    request.app.logger.info("booking %s rescheduled by %s", booking_id, principal.kind)
    return respond(bookings.booking_out(row))


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/bookings",
    summary="The therapist's bookings between two dates (inclusive)",
    auth="therapist",
    response=schemas.BookingList,
    params=[
        SLUG,
        Param("from", "query", "First date, YYYY-MM-DD, in the therapist's zone (default today)"),
        Param("to", "query", "Last date, inclusive (default 30 days after `from`)"),
        Param("status", "query", "confirmed or cancelled (default both)"),
    ],
    errors=(401, 403, 404, 422),
)
async def list_bookings(request: web.Request) -> web.Response:
    principal, therapist = await require_therapist(request, request.match_info["slug"])
    tz = zone(therapist["timezone"])
    today = request.app[CLOCK].now().astimezone(tz).date()
    first = parse_date(query_param(request, "from"), "from", today)
    last = parse_date(query_param(request, "to"), "to", first + dt.timedelta(days=30))
    if last < first:
        raise Problem(422, "end_before_start", "`to` must not be before `from`.")
    if (last - first).days > 400:
        raise Problem(422, "range_too_long", "`from` and `to` may be at most 400 days apart.")
    rows = await bookings.list_for_therapist(
        request.app[POOL], therapist["id"], dates_window(first, last, tz), query_param(request, "status")
    )
    await audit.record_many(
        request.app[POOL], principal, "booking.listed", [row["id"] for row in rows], therapist_id=therapist["id"]
    )
    return respond(schemas.BookingList(bookings=[bookings.booking_out(r) for r in rows]))
