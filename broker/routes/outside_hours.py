"""JSON API: the booked sessions a therapist's current hours no longer hold."""

from __future__ import annotations

from aiohttp import web

from broker import outside_hours, schemas
from broker.clock import CLOCK
from broker.database import POOL
from broker.http import openapi
from broker.http.endpoints import THERAPIST_ACCESS, ApiRoutes, Call, respond

routes = ApiRoutes("bookings")


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/bookings/outside-hours",
    summary="Upcoming confirmed sessions that the current hours and date overrides no longer hold",
    auth=THERAPIST_ACCESS,
    response=schemas.BookingList,
)
async def list_outside_hours(request: web.Request, call: Call) -> web.Response:
    found = await outside_hours.sessions_outside_hours(
        request.app[POOL], call.therapist, request.app[CLOCK].now(), call.principal
    )
    return respond(schemas.BookingList(bookings=[b.to_wire() for b in found]))


def setup(app: web.Application) -> None:
    openapi.mount(app, routes)
