"""JSON API: standing series — preview, book (public or by the therapist for a client), read, cancel, .ics."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from aiohttp import web

from broker import clients, schemas, series
from broker.bookings import BUSY_SOURCES
from broker.clock import CLOCK
from broker.database import POOL
from broker.errors import TeleroomError
from broker.http import openapi, problems
from broker.http.endpoints import (
    BOOKING_ACCESS,
    IDEMPOTENCY_KEY,
    THERAPIST_ACCESS,
    ApiRoutes,
    Call,
    Param,
    created,
    parse_uuid,
    read_json,
    respond,
)
from broker.idempotency import Replay
from broker.notices import NOTICES
from broker.routes.bookings import count_attempt
from broker.settings import SETTINGS

routes = ApiRoutes("series")
SERIES_ID = Param("id", "path", "Series id", required=True)
CLIENT_ID = Param("id", "path", "Client id", required=True)
CALENDAR_TYPE = "text/calendar"


def _request(body: schemas.SeriesPreviewIn | schemas.SeriesIn | schemas.ClientSeriesIn) -> series.Request:
    return series.Request(
        session_type=body.session_type,
        start=body.start,
        frequency=body.frequency,
        count=body.count,
        client_timezone=body.client_timezone,
        all_or_nothing=getattr(body, "all_or_nothing", False),
        confidential_messages=getattr(body, "confidential_messages", False),
    )


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/series/preview",
    summary="Expand a standing series: every session's time on both clocks, and whether it is free (public)",
    body=schemas.SeriesPreviewIn,
    response=schemas.SeriesPreviewOut,
    errors=(422,),
)
async def preview_series(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, schemas.SeriesPreviewIn)
    assert body is not None
    app = request.app
    sources = app[BUSY_SOURCES]
    shown = await series.preview(app[POOL], call.therapist, _request(body), app[CLOCK].now(), sources)
    return respond(shown)


def _answers(
    request: web.Request,
) -> tuple[Callable[[series.NewSeries], bytes], Callable[[TeleroomError], bytes]]:
    origin = request.app[SETTINGS].origin

    def answer(made: series.NewSeries) -> bytes:
        first = made.first_booking
        return msgspec.json.encode(
            schemas.SeriesCreated(
                id=str(made.id),
                series_key=made.key,
                manage_url=f"{origin}/manage/{first}#k={made.key}",
                join_url=f"{origin}/join/{first}#k={made.key}",
                booked=len(made.booked),
                occurrences=[
                    series.occurrence_out(
                        p.occurrence,
                        "confirmed" if p.occurrence.index in made.booked else p.status,
                        made.booked.get(p.occurrence.index),
                    )
                    for p in made.plan
                ],
            )
        )

    return answer, problems.problem_json


def _created(request: web.Request, outcome: tuple[series.NewSeries, bytes] | Replay) -> web.Response:
    if not isinstance(outcome, Replay):
        request.app.logger.info("series %s created with %d sessions", outcome[0].id, len(outcome[0].booked))
    return created(outcome)


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/series",
    summary="Book a standing series in one transaction: every free session, or all or nothing (public)",
    body=schemas.SeriesIn,
    response=schemas.SeriesCreated,
    status=201,
    params=[IDEMPOTENCY_KEY],
    errors=(409, 413, 422, 429),
)
async def create_series(request: web.Request, call: Call) -> web.Response:
    app = request.app
    count_attempt(request)
    body = await read_json(request, schemas.SeriesIn)
    assert body is not None
    answer, refusal = _answers(request)
    sources = app[BUSY_SOURCES]
    outcome = await series.book(
        app[POOL],
        call.therapist,
        _request(body),
        body.client,
        now=app[CLOCK].now(),
        sources=sources,
        idempotency_key=request.headers.get("Idempotency-Key"),
        answer=answer,
        refusal=refusal,
        notices=app[NOTICES],
    )
    return _created(request, outcome)


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/clients/{id}/series/preview",
    summary="Preview a series the therapist would book for this client (notice and horizon waived, as booking it)",
    auth=THERAPIST_ACCESS,
    body=schemas.SeriesPreviewIn,
    response=schemas.SeriesPreviewOut,
    params=[CLIENT_ID],
    errors=(404, 422),
)
async def preview_client_series(request: web.Request, call: Call) -> web.Response:
    client_id = parse_uuid(request.match_info["id"], "client")
    body = await read_json(request, schemas.SeriesPreviewIn)
    assert body is not None
    app = request.app
    sources = app[BUSY_SOURCES]
    await clients.get(app[POOL], call.therapist.id, client_id)  # someone else's client is 404, as booking is
    shown = await series.preview(
        app[POOL], call.therapist, _request(body), app[CLOCK].now(), sources, waive_limits=True
    )
    return respond(shown)


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/clients/{id}/series",
    summary="Book a standing series for an existing client (notice and horizon waived; never double-booked)",
    auth=THERAPIST_ACCESS,
    body=schemas.ClientSeriesIn,
    response=schemas.SeriesCreated,
    status=201,
    params=[CLIENT_ID, IDEMPOTENCY_KEY],
    errors=(404, 409, 422),
)
async def create_client_series(request: web.Request, call: Call) -> web.Response:
    client_id = parse_uuid(request.match_info["id"], "client")
    body = await read_json(request, schemas.ClientSeriesIn)
    assert body is not None
    app = request.app
    answer, refusal = _answers(request)
    sources = app[BUSY_SOURCES]
    outcome = await series.book_for_client(
        app[POOL],
        call.therapist,
        client_id,
        _request(body),
        actor=call.principal,
        now=app[CLOCK].now(),
        sources=sources,
        idempotency_key=request.headers.get("Idempotency-Key"),
        answer=answer,
        refusal=refusal,
        notices=app[NOTICES],
    )
    return _created(request, outcome)


@routes.route(
    "GET",
    "/api/v1/series/{id}",
    summary="A standing series and every session of it with its status (its key, or its therapist)",
    auth=BOOKING_ACCESS,
    response=schemas.SeriesOut,
    params=[SERIES_ID],
    errors=(404,),
)
async def get_series(request: web.Request, call: Call) -> web.Response:
    series_id = parse_uuid(request.match_info["id"], "series")
    return respond(await series.read(request.app[POOL], series_id, call.principal))


@routes.route(
    "POST",
    "/api/v1/series/{id}/cancel",
    summary="Cancel one session, it and all following, or the whole series (sessions already over stay)",
    auth=BOOKING_ACCESS,
    body=schemas.SeriesCancelIn,
    response=schemas.SeriesOut,
    params=[SERIES_ID],
    errors=(404, 409, 422),
)
async def cancel_series(request: web.Request, call: Call) -> web.Response:
    series_id = parse_uuid(request.match_info["id"], "series")
    body = await read_json(request, schemas.SeriesCancelIn)
    assert body is not None
    async with request.app[POOL].acquire() as conn:
        shown = await series.cancel(
            conn, series_id, body, call.principal, request.app[CLOCK].now(), request.app[NOTICES]
        )
    request.app.logger.info("series %s: %s cancelled by %s", series_id, body.scope, call.principal.kind)
    return respond(shown)


@routes.route(
    "GET",
    "/api/v1/series/{id}/ics",
    summary="The series as one recurring calendar event for the client (RRULE, TZID, EXDATE; links carry no key)",
    auth=BOOKING_ACCESS,
    params=[SERIES_ID],
    errors=(404,),
    content_type=CALENDAR_TYPE,
)
async def series_ics(request: web.Request, call: Call) -> web.Response:
    series_id = parse_uuid(request.match_info["id"], "series")
    body = await series.client_ics(request.app[POOL], series_id, call.principal, request.app[SETTINGS].origin)
    return web.Response(
        body=body,
        content_type=CALENDAR_TYPE,
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="teleroom-series.ics"'},
    )


def setup(app: web.Application) -> None:
    openapi.mount(app, routes)
