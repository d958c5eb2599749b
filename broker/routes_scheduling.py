"""JSON API: therapists, availability, session types and free slots."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from broker import audit, schemas, therapists
from broker.api import ApiRoutes, Param, query_param, read_json, respond
from broker.auth import require_admin, require_therapist, therapist_by_slug
from broker.bookings import busy_spans
from broker.problems import invalid
from broker.state import BUSY_SOURCES, CLOCK, POOL, THERAPIST_CREATED
from broker.zones import zone
from calendars.slots import Span, compute_slots, dates_window

routes = ApiRoutes("scheduling")
MAX_SLOT_RANGE_DAYS = 62
SLUG = Param("slug", "path", "The therapist's public slug.", required=True)


@routes.route(
    "POST",
    "/api/v1/therapists",
    summary="Create a therapist (admin); returns its API token once",
    auth="admin",
    body=schemas.TherapistIn,
    response=schemas.TherapistCreated,
    status=201,
    errors=(401, 403, 409, 422),
)
async def create_therapist(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    body = await read_json(request, schemas.TherapistIn)
    assert body is not None
    async with request.app[POOL].acquire() as conn:
        created = await therapists.create_therapist(conn, body)
        await audit.record(conn, admin, "therapist.created", therapist_id=created.id)
    out = schemas.TherapistCreated(
        id=str(created.id),
        slug=body.slug,
        name=body.name,
        email=body.email,
        timezone=body.timezone,
        api_token=created.api_token,
    )
    for hook in request.app[THERAPIST_CREATED]:
        out = await hook(request.app, created.id, out)
    return respond(out, status=201)


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}",
    summary="A therapist's public profile and session types",
    response=schemas.TherapistPublic,
    params=[SLUG],
    errors=(404,),
)
async def get_therapist(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    row = await therapist_by_slug(pool, request.match_info["slug"])
    types = await therapists.session_types(pool, row["id"])
    return respond(
        schemas.TherapistPublic(slug=row["slug"], name=row["name"], timezone=row["timezone"], session_types=types)
    )


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/availability",
    summary="The therapist's weekly hours and date overrides",
    auth="therapist",
    response=schemas.AvailabilityOut,
    params=[SLUG],
    errors=(401, 403, 404),
)
async def get_availability(request: web.Request) -> web.Response:
    _, therapist = await require_therapist(request, request.match_info["slug"])
    av, updated = await therapists.load_availability(request.app[POOL], therapist["id"], therapist["timezone"])
    return respond(therapists.availability_to_wire(av, updated))


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/availability",
    summary="Replace weekly hours and date overrides",
    auth="therapist",
    body=schemas.AvailabilityIn,
    response=schemas.AvailabilityOut,
    params=[SLUG],
    errors=(401, 403, 404, 422),
)
async def put_availability(request: web.Request) -> web.Response:
    _, therapist = await require_therapist(request, request.match_info["slug"])
    body = await read_json(request, schemas.AvailabilityIn)
    assert body is not None
    av = therapists.availability_from_wire(body)
    updated = await therapists.save_availability(request.app[POOL], therapist["id"], av)
    return respond(therapists.availability_to_wire(av, updated))


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/session-types",
    summary="Add a session type",
    auth="therapist",
    body=schemas.SessionTypeIn,
    response=schemas.SessionTypeOut,
    status=201,
    params=[SLUG],
    errors=(401, 403, 404, 422),
)
async def add_session_type(request: web.Request) -> web.Response:
    _, therapist = await require_therapist(request, request.match_info["slug"])
    body = await read_json(request, schemas.SessionTypeIn)
    assert body is not None
    return respond(await therapists.add_session_type(request.app[POOL], therapist["id"], body), status=201)


@routes.route(
    "DELETE",
    "/api/v1/therapists/{slug}/session-types/{id}",
    summary="Stop offering a session type (existing bookings keep it)",
    auth="therapist",
    status=204,
    params=[SLUG, Param("id", "path", "Session type id", required=True)],
    errors=(401, 403, 404),
)
async def archive_session_type(request: web.Request) -> web.Response:
    _, therapist = await require_therapist(request, request.match_info["slug"])
    await therapists.archive_session_type(request.app[POOL], therapist["id"], request.match_info["id"])
    return web.Response(status=204)


def parse_date(raw: str | None, name: str, default: dt.date) -> dt.date:
    if raw is None:
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise invalid(f"`{name}` must be a date like 2026-12-01, got {raw!r}.", code="invalid_date") from None


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/slots",
    summary="Free slots between two dates (inclusive) in a time zone",
    response=schemas.SlotList,
    params=[
        SLUG,
        Param("session_type", "query", "Session type id", required=True),
        Param(
            "from",
            "query",
            "First date, YYYY-MM-DD, in `tz` (default today)",
            schema={"type": "string", "format": "date"},
        ),
        Param(
            "to",
            "query",
            "Last date, inclusive, at most 62 days after `from`",
            schema={"type": "string", "format": "date"},
        ),
        Param("tz", "query", "IANA zone for the dates and the returned times (default: the therapist's)"),
    ],
    errors=(404, 422),
)
async def list_slots(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    therapist = await therapist_by_slug(pool, request.match_info["slug"])
    type_id = query_param(request, "session_type", required=True)
    assert type_id is not None
    session_type = await therapists.session_type(pool, therapist["id"], type_id)
    tz_name = query_param(request, "tz") or therapist["timezone"]
    tz = zone(tz_name, "tz")
    now = request.app[CLOCK].now()
    first = parse_date(query_param(request, "from"), "from", now.astimezone(tz).date())
    last = parse_date(query_param(request, "to"), "to", first + dt.timedelta(days=13))
    if last < first:
        raise invalid("`to` must not be before `from`.", code="end_before_start")
    if (last - first).days > MAX_SLOT_RANGE_DAYS:
        raise invalid(f"`from` and `to` may be at most {MAX_SLOT_RANGE_DAYS} days apart.", code="range_too_long")
    window = dates_window(first, last, tz)
    rules = therapists.rules_of(session_type)
    av, _ = await therapists.load_availability(pool, therapist["id"], therapist["timezone"])
    margin = dt.timedelta(minutes=rules.buffer_before + rules.buffer_after + rules.duration + 1440)
    sources = request.app[BUSY_SOURCES]
    busy = await busy_spans(pool, therapist["id"], Span(window.start - margin, window.end + margin), sources=sources)
    slots = compute_slots(av, rules, busy, window, now)
    return respond(
        schemas.SlotList(
            timezone=tz_name,
            slots=[schemas.Slot(start=s.start.astimezone(tz), end=s.end.astimezone(tz)) for s in slots],
        )
    )
