"""JSON API: booking, reading, cancelling and rescheduling, and a therapist's booking list."""

from __future__ import annotations

import typing

import msgspec
from aiohttp import web

from broker import bookings, schemas
from broker.bookable import KEPT, Kept
from broker.bookings import BUSY_SOURCES, NewBooking
from broker.clock import CLOCK
from broker.database import POOL
from broker.http import openapi, problems
from broker.http.endpoints import (
    BOOKING_ACCESS,
    DATE_SCHEMA,
    IDEMPOTENCY_KEY,
    THERAPIST_ACCESS,
    ApiRoutes,
    Call,
    Param,
    created,
    query_param,
    read_json,
    respond,
)
from broker.http.ratelimit import SlidingWindow, client_address
from broker.idempotency import Replay
from broker.notices import NOTICES
from broker.routes.therapists import date_range
from broker.settings import SETTINGS
from broker.zones import zone
from calendars.slots import dates_window

routes = ApiRoutes("bookings")
# Booking attempts per client address: a public endpoint must not let one caller fill a calendar.
BOOKING_LIMIT = web.AppKey("booking_limit", SlidingWindow)
MAX_LIST_DAYS = 400


def count_attempt(request: web.Request) -> None:
    """One more booking attempt (single or series) from the caller's address; 429 beyond the limit."""
    request.app[BOOKING_LIMIT].require(
        client_address(request), "Too many booking attempts from this address; please try again later."
    )


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/bookings",
    summary="Book a slot (public; no account needed)",
    body=schemas.BookingIn,
    response=schemas.BookingCreated,
    status=201,
    params=[IDEMPOTENCY_KEY],
    errors=(409, 413, 422, 429),
)
async def create_booking(request: web.Request, call: Call) -> web.Response:
    app = request.app
    count_attempt(request)
    body = await read_json(request, schemas.BookingIn)
    assert body is not None
    origin = app[SETTINGS].origin

    def answer(booking: NewBooking) -> bytes:
        return msgspec.json.encode(
            schemas.BookingCreated(
                id=str(booking.id),
                status="confirmed",
                start=booking.start,
                end=booking.end,
                booking_key=booking.key,
                manage_url=f"{origin}/manage/{booking.id}#k={booking.key}",
                join_url=f"{origin}/join/{booking.id}#k={booking.key}",
            )
        )

    sources = app[BUSY_SOURCES]
    outcome = await bookings.book(
        app[POOL],
        call.therapist,
        body,
        now=app[CLOCK].now(),
        sources=sources,
        idempotency_key=request.headers.get("Idempotency-Key"),
        answer=answer,
        refusal=problems.problem_json,
        notices=app[NOTICES],
        kept=app[KEPT],
    )
    if not isinstance(outcome, Replay):
        app.logger.info("booking %s created for therapist %s", outcome[0].id, call.therapist.id)
    return created(outcome)


@routes.route(
    "GET",
    "/api/v1/bookings/{id}",
    summary="A booking (its client by booking key, or its therapist)",
    auth=BOOKING_ACCESS,
    response=schemas.BookingOut,
)
async def get_booking(request: web.Request, call: Call) -> web.Response:
    booking = await bookings.read(request.app[POOL], call.booking_id, call.principal)
    return respond(booking.to_wire(now=request.app[CLOCK].now()))


@routes.route(
    "POST",
    "/api/v1/bookings/{id}/cancel",
    summary="Cancel a booking (idempotent)",
    auth=BOOKING_ACCESS,
    body=schemas.CancelIn,
    body_optional=True,
    response=schemas.BookingOut,
    errors=(409,),
)
async def cancel_booking(request: web.Request, call: Call) -> web.Response:
    await read_json(request, schemas.CancelIn, allow_empty=True)
    async with request.app[POOL].acquire() as conn:
        booking = await bookings.cancel(
            conn, call.booking_id, call.principal, request.app[CLOCK].now(), request.app[NOTICES]
        )
    request.app.logger.info("booking %s cancelled by %s", booking.id, call.principal.kind)
    return respond(booking.to_wire())


@routes.route(
    "POST",
    "/api/v1/bookings/{id}/reschedule",
    summary="Move a booking atomically; 409 leaves it untouched",
    auth=BOOKING_ACCESS,
    body=schemas.RescheduleIn,
    response=schemas.BookingOut,
    errors=(409, 422),
)
async def reschedule_booking(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, schemas.RescheduleIn)
    assert body is not None
    app = request.app
    sources = app[BUSY_SOURCES]
    async with app[POOL].acquire() as conn:
        booking = await bookings.reschedule(
            conn, call.booking_id, body.start, call.principal, app[CLOCK].now(), sources, app[NOTICES]
        )
    app.logger.info("booking %s rescheduled by %s", booking.id, call.principal.kind)
    return respond(booking.to_wire())


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/bookings",
    summary="The therapist's bookings between two dates (inclusive)",
    auth=THERAPIST_ACCESS,
    response=schemas.BookingList,
    params=[
        Param("from", "query", "First date, YYYY-MM-DD, in the therapist's zone (default today)", schema=DATE_SCHEMA),
        Param("to", "query", "Last date, inclusive (default 30 days after `from`)", schema=DATE_SCHEMA),
        Param(
            "status",
            "query",
            "Only bookings in this status (default all)",
            schema={"type": "string", "enum": list(typing.get_args(schemas.BookingStatus))},
        ),
    ],
    # 422: `to` before `from` or more than MAX_LIST_DAYS after it (rules between two parameters,
    # which JSON Schema cannot state).
    errors=(422,),
)
async def list_bookings(request: web.Request, call: Call) -> web.Response:
    therapist = call.therapist
    tz = zone(therapist.timezone)
    today = request.app[CLOCK].now().astimezone(tz).date()
    first, last = date_range(request, today, default_days=30, max_days=MAX_LIST_DAYS)
    found = await bookings.list_for_reader(
        request.app[POOL], therapist.id, dates_window(first, last, tz), query_param(request, "status"), call.principal
    )
    return respond(schemas.BookingList(bookings=[b.to_wire() for b in found]))


def setup(app: web.Application) -> None:
    app[BOOKING_LIMIT] = SlidingWindow(app[SETTINGS].booking_attempts_per_hour, 3600)
    app[KEPT] = Kept()
    openapi.mount(app, routes)
