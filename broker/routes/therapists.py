"""JSON API: therapists, their hours and session types, and free slots."""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from broker import availability, outside_hours, schemas, session_types, therapists
from broker.bookings import BUSY_SOURCES
from broker.clock import CLOCK
from broker.database import POOL
from broker.errors import invalid
from broker.http import openapi
from broker.http.endpoints import (
    DATE_PATTERN,
    DATE_SCHEMA,
    THERAPIST_ACCESS,
    ApiRoutes,
    Call,
    Param,
    query_param,
    read_json,
    respond,
)
from broker.http.ratelimit import Limit, SlidingWindow
from broker.settings import SETTINGS
from broker.slot_listings import SLOT_LISTINGS, SlotListings
from broker.therapists import TherapistCreatedHook
from broker.zones import zone

routes = ApiRoutes("scheduling")
# What creating a therapist also does, from the API and the command line alike (the web package
# issues the one-time invite link).
THERAPIST_CREATED = web.AppKey("therapist_created", list[TherapistCreatedHook])
MAX_SLOT_RANGE_DAYS = 62
# Slot listings per client address: the public page must not let one caller keep a node computing.
SLOT_LIMIT = web.AppKey("slot_limit", SlidingWindow)
_DATE = re.compile(DATE_PATTERN)


@routes.route(
    "POST",
    "/api/v1/therapists",
    summary="Create a therapist (admin); returns its API token once",
    auth="admin",
    body=schemas.TherapistIn,
    response=schemas.TherapistCreated,
    status=201,
    errors=(409, 422),
)
async def create_therapist(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, schemas.TherapistIn)
    assert body is not None
    app = request.app
    hooks = app[THERAPIST_CREATED]
    async with app[POOL].acquire() as conn:
        created = await therapists.create_therapist(
            conn, body, settings=app[SETTINGS], now=app[CLOCK].now(), actor=call.principal, hooks=hooks
        )
    t = created.therapist
    out = schemas.TherapistCreated(
        id=str(t.id),
        slug=t.slug,
        name=t.name,
        email=t.email,
        timezone=t.timezone,
        api_token=created.api_token,
        invite_url=created.invite_url,
    )
    return respond(out, status=201)


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}",
    summary="A therapist's public profile and session types",
    response=schemas.TherapistPublic,
)
async def get_therapist(request: web.Request, call: Call) -> web.Response:
    t = call.therapist
    offered = await session_types.offered(request.app[POOL], t.id)
    return respond(
        schemas.TherapistPublic(
            slug=t.slug, name=t.name, timezone=t.timezone, session_types=[s.to_wire() for s in offered]
        )
    )


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/availability",
    summary="The therapist's weekly hours and date overrides",
    auth=THERAPIST_ACCESS,
    response=schemas.AvailabilityOut,
)
async def get_availability(request: web.Request, call: Call) -> web.Response:
    av, updated = await availability.load(request.app[POOL], call.therapist.id, call.therapist.timezone)
    return respond(availability.to_wire(av, updated))


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/availability",
    summary="Replace weekly hours and date overrides; lists the booked sessions they leave outside",
    auth=THERAPIST_ACCESS,
    body=schemas.AvailabilityIn,
    response=schemas.AvailabilitySaved,
    errors=(422,),
)
async def put_availability(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, schemas.AvailabilityIn)
    assert body is not None
    av = availability.from_wire(body)
    now = request.app[CLOCK].now()
    updated, found = await outside_hours.replace_availability(
        request.app[POOL], call.therapist, av, now, call.principal
    )
    return respond(outside_hours.saved_to_wire(av, updated, found))


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/session-types",
    summary="Add a session type",
    auth=THERAPIST_ACCESS,
    body=schemas.SessionTypeIn,
    response=schemas.SessionTypeOut,
    status=201,
    errors=(422,),
)
async def add_session_type(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, schemas.SessionTypeIn)
    assert body is not None
    added = await session_types.add(request.app[POOL], call.therapist.id, body)
    return respond(added.to_wire(), status=201)


@routes.route(
    "DELETE",
    "/api/v1/therapists/{slug}/session-types/{id}",
    summary="Stop offering a session type (existing bookings keep it)",
    auth=THERAPIST_ACCESS,
    status=204,
    params=[Param("id", "path", "Session type id", required=True)],
)
async def archive_session_type(request: web.Request, call: Call) -> web.Response:
    await session_types.archive(request.app[POOL], call.therapist.id, request.match_info["id"])
    return web.Response(status=204)


def parse_date(raw: str | None, name: str, default: dt.date) -> dt.date:
    """A query date as the document's DATE_SCHEMA states it: YYYY-MM-DD in the years 1900 to 2999."""
    if raw is None:
        return default
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError(raw)
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise invalid(f"`{name}` must be a date like 2026-12-01, got {raw!r}.", code="invalid_date") from None


def date_range(request: web.Request, today: dt.date, *, default_days: int, max_days: int) -> tuple[dt.date, dt.date]:
    """The `from` and `to` query dates (inclusive): `to` not before `from`, at most `max_days` apart."""
    first = parse_date(query_param(request, "from"), "from", today)
    last = parse_date(query_param(request, "to"), "to", first + dt.timedelta(days=default_days))
    if last < first:
        raise invalid("`to` must not be before `from`.", code="end_before_start")
    if (last - first).days > max_days:
        raise invalid(f"`from` and `to` may be at most {max_days} days apart.", code="range_too_long")
    return first, last


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/slots",
    summary="Free slots between two dates (inclusive) in a time zone",
    response=schemas.SlotList,
    params=[
        Param("session_type", "query", "Session type id", required=True),
        Param(
            "from",
            "query",
            "First date, YYYY-MM-DD, in `tz` (default today)",
            schema=DATE_SCHEMA,
        ),
        Param(
            "to",
            "query",
            "Last date, inclusive, at most 62 days after `from`",
            schema=DATE_SCHEMA,
        ),
        Param("tz", "query", "IANA zone for the dates and the returned times (default: the therapist's)"),
    ],
    # 422: `to` before `from` or more than MAX_SLOT_RANGE_DAYS after it, an unknown `tz` (rules
    # JSON Schema cannot state: between two parameters, or against the zone database).
    errors=(422,),
    limit=Limit(SLOT_LIMIT, "Too many slot listings from this address; please slow down."),
)
async def list_slots(request: web.Request, call: Call) -> web.Response:
    app = request.app
    therapist = call.therapist
    type_id = query_param(request, "session_type", required=True)
    assert type_id is not None
    tz_name = query_param(request, "tz") or therapist.timezone
    tz = zone(tz_name, "tz")
    now = app[CLOCK].now()
    first, last = date_range(request, now.astimezone(tz).date(), default_days=13, max_days=MAX_SLOT_RANGE_DAYS)
    sources = app[BUSY_SOURCES]
    body = await app[SLOT_LISTINGS].body(app[POOL], therapist, type_id, first, last, tz_name, now, sources)
    return web.Response(body=body, content_type="application/json")


def setup(app: web.Application) -> None:
    app[THERAPIST_CREATED] = []
    app[SLOT_LISTINGS] = SlotListings()
    app[SLOT_LIMIT] = SlidingWindow(app[SETTINGS].slot_listings_per_minute, 60)
    openapi.mount(app, routes)
