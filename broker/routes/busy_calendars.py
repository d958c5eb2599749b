"""JSON API: a therapist's external busy calendars (addresses masked), and the refresher behind them."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from broker import busy_calendars
from broker.bookings import BUSY_SOURCES
from broker.busy_calendars import MAX_CALENDARS, WAKE, BusyCalendar
from broker.calendar_fetch import mask_url
from broker.clock import CLOCK
from broker.database import POOL
from broker.http import openapi
from broker.http.endpoints import THERAPIST_ACCESS, ApiRoutes, Call, read_json, respond
from broker.settings import SETTINGS

routes = ApiRoutes("calendars")

CalendarUrl = Annotated[str, Meta(min_length=8, max_length=2048, description="http(s) or webcal ICS address")]


class BusyCalendarsIn(msgspec.Struct, forbid_unknown_fields=True):
    urls: Annotated[list[CalendarUrl], Meta(max_length=MAX_CALENDARS)]


class BusyCalendarOut(msgspec.Struct):
    id: str
    url: Annotated[str, Meta(description="masked: the secret part of the address is never shown again")]
    stale: Annotated[bool, Meta(description="true until the first good fetch, after a failure, or when old")]
    last_fetched_at: dt.datetime | None
    last_success_at: dt.datetime | None
    last_error: str | None
    next_fetch_at: dt.datetime


class BusyCalendarList(msgspec.Struct):
    calendars: list[BusyCalendarOut]
    refresh_seconds: int


def _answer(request: web.Request, calendars: list[BusyCalendar]) -> web.Response:
    refresh = request.app[SETTINGS].busy_refresh_seconds
    now = request.app[CLOCK].now()
    out = [
        BusyCalendarOut(
            id=str(c.id),
            url=mask_url(c.url),
            stale=c.stale(now, refresh),
            last_fetched_at=c.last_fetched_at,
            last_success_at=c.last_success_at,
            last_error=c.last_error,
            next_fetch_at=c.next_fetch_at,
        )
        for c in calendars
    ]
    return respond(BusyCalendarList(calendars=out, refresh_seconds=refresh))


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/busy-calendars",
    summary="The therapist's external busy calendars (addresses masked), with freshness",
    auth=THERAPIST_ACCESS,
    response=BusyCalendarList,
)
async def list_calendars(request: web.Request, call: Call) -> web.Response:
    return _answer(request, await busy_calendars.listing(request.app[POOL], call.therapist.id))


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/busy-calendars",
    summary="Replace the external busy calendars (at most 10 ICS addresses); new ones are fetched now",
    auth=THERAPIST_ACCESS,
    body=BusyCalendarsIn,
    response=BusyCalendarList,
    errors=(422,),
)
async def put_calendars(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, BusyCalendarsIn)
    assert body is not None
    app = request.app
    calendars = await busy_calendars.replace(app[POOL], call.therapist.id, body.urls, app[CLOCK].now())
    app[WAKE].set()
    return _answer(request, calendars)


def setup(app: web.Application) -> None:
    """Mount the API, register external busy time as a busy source, and run this node's refresher."""
    app[WAKE] = asyncio.Event()
    openapi.mount(app, routes)
    app[BUSY_SOURCES].append(busy_calendars.stored_busy)
    app.cleanup_ctx.append(busy_calendars.worker_ctx)
