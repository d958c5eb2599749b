"""JSON API: cancellation policies, session outcomes, the fee review and the billing export."""

from __future__ import annotations

from aiohttp import web

from broker import outcomes, policies, schemas
from broker.clock import CLOCK
from broker.database import POOL
from broker.http import openapi
from broker.http.endpoints import DATE_SCHEMA, THERAPIST_ACCESS, ApiRoutes, Call, Param, read_json, respond
from broker.routes.therapists import date_range
from broker.settings import SETTINGS
from broker.zones import zone
from calendars.slots import dates_window

routes = ApiRoutes("policies")
MAX_EXPORT_DAYS = 400
SESSION_TYPE_ID = Param("id", "path", "Session type id", required=True)


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/session-types/{id}/policy",
    summary="Set a session type's cancellation policy: a new version when anything changes",
    auth=THERAPIST_ACCESS,
    body=schemas.PolicyIn,
    response=schemas.PolicyOut,
    params=[SESSION_TYPE_ID],
    errors=(422,),
)
async def put_policy(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, schemas.PolicyIn)
    assert body is not None
    policy = await policies.change(request.app[POOL], call.therapist.id, request.match_info["id"], body, call.principal)
    return respond(policy.to_wire())


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/session-types/{id}/policy/versions",
    summary="Every version of a session type's cancellation policy, oldest first",
    auth=THERAPIST_ACCESS,
    response=schemas.PolicyVersions,
    params=[SESSION_TYPE_ID],
)
async def list_policy_versions(request: web.Request, call: Call) -> web.Response:
    found = await policies.history(request.app[POOL], call.therapist.id, request.match_info["id"])
    return respond(schemas.PolicyVersions(versions=[p.to_wire() for p in found]))


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/policy-settings",
    summary="The therapist's fee options",
    auth=THERAPIST_ACCESS,
    response=schemas.PolicySettingsOut,
)
async def get_policy_settings(request: web.Request, call: Call) -> web.Response:
    found = await policies.settings(request.app[POOL], call.therapist.id)
    return respond(found.to_wire())


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/policy-settings",
    summary="Change the therapist's fee options (audited)",
    auth=THERAPIST_ACCESS,
    body=schemas.PolicySettingsIn,
    response=schemas.PolicySettingsOut,
    errors=(422,),
)
async def put_policy_settings(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, schemas.PolicySettingsIn)
    assert body is not None
    changed = await policies.change_settings(request.app[POOL], call.therapist.id, body, call.principal)
    return respond(changed.to_wire())


@routes.route(
    "POST",
    "/api/v1/bookings/{id}/outcome",
    summary="Mark a started session attended or no_show (therapist)",
    auth=THERAPIST_ACCESS,
    body=schemas.OutcomeIn,
    response=schemas.BookingOut,
    errors=(409, 422),
)
async def post_outcome(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, schemas.OutcomeIn)
    assert body is not None
    booking = await outcomes.mark(
        request.app[POOL], call.booking_id, body.status, call.principal, request.app[CLOCK].now()
    )
    return respond(booking.to_wire())


@routes.route(
    "POST",
    "/api/v1/bookings/{id}/fee-decision",
    summary="Charge or waive a late cancellation's or no-show's fee, with a reason (audited)",
    auth=THERAPIST_ACCESS,
    body=schemas.FeeDecisionIn,
    response=schemas.FeeDecisionOut,
    errors=(409, 422),
)
async def post_fee_decision(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, schemas.FeeDecisionIn)
    assert body is not None
    decided = await outcomes.decide_fee(request.app[POOL], call.booking_id, body, call.principal)
    return respond(decided)


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/review",
    summary="Needs review: undecided fees and started sessions to mark (marks attended ones first)",
    auth=THERAPIST_ACCESS,
    response=schemas.ReviewOut,
)
async def get_review(request: web.Request, call: Call) -> web.Response:
    app = request.app
    found = await outcomes.review(app[POOL], call.therapist.id, call.principal, app[SETTINGS], app[CLOCK].now())
    return respond(found)


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/sessions.csv",
    summary="Sessions between two dates (inclusive) with status and fee decision, as CSV for billing",
    auth=THERAPIST_ACCESS,
    params=[
        Param("from", "query", "First date, YYYY-MM-DD, in the therapist's zone (default today)", schema=DATE_SCHEMA),
        Param("to", "query", "Last date, inclusive (default 30 days after `from`, at most 400)", schema=DATE_SCHEMA),
    ],
    errors=(422,),
    content_type="text/csv",
)
async def get_sessions_csv(request: web.Request, call: Call) -> web.Response:
    app = request.app
    therapist = call.therapist
    tz = zone(therapist.timezone)
    now = app[CLOCK].now()
    first, last = date_range(request, now.astimezone(tz).date(), default_days=30, max_days=MAX_EXPORT_DAYS)
    body = await outcomes.sessions_csv(
        app[POOL], therapist.id, therapist.timezone, dates_window(first, last, tz), call.principal, app[SETTINGS], now
    )
    return web.Response(
        text=body,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="sessions-{therapist.slug}-{first}-{last}.csv"'},
    )


def setup(app: web.Application) -> None:
    openapi.mount(app, routes)
