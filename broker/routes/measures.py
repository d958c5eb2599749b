"""JSON API of outcome measures: instruments, a client's assignments and results, the trend chart,
safety alerts (the therapist's), and the questionnaires a booking's client completes before a session."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from aiohttp import web
from msgspec import Meta

from broker import measure_chart, measures, safety_alerts, schemas
from broker.clock import CLOCK
from broker.database import POOL
from broker.errors import invalid
from broker.http import openapi
from broker.http.endpoints import THERAPIST_ACCESS, ApiRoutes, Call, Param, parse_uuid, query_param, read_json, respond
from broker.measures import Instrument, Schedule, TrendPoint
from broker.places import crisis_resources
from broker.zones import zone

routes = ApiRoutes("measures")
CLIENT_ID = Param("id", "path", "Client id", required=True, schema={"type": "string", "format": "uuid"})
ALERT_ID = Param("id", "path", "Alert id", required=True, schema={"type": "string", "format": "uuid"})
INSTRUMENT = Param(
    "instrument",
    "path",
    "An instrument's id (`phq9`, `gad7`, ...: GET /api/v1/instruments)",
    required=True,
    schema={"type": "string", "pattern": measures.ID_PATTERN},
)
ALERT_STATE = Param(
    "state",
    "query",
    "open (default): alerts not yet reviewed; all: reviewed ones too",
    schema={"type": "string", "enum": ["open", "all"]},
)
SVG = "image/svg+xml"
# An SVG opened on its own is a document: it may run nothing and load nothing.
SVG_CSP = "default-src 'none'; frame-ancestors 'self'"

ItemId = Annotated[str, Meta(pattern=measures.ID_PATTERN)]


class OptionOut(msgspec.Struct):
    value: int
    label: str


class ItemOut(msgspec.Struct):
    id: str
    text: str
    scored: Annotated[bool, Meta(description="counts towards the total")]
    required: Annotated[bool, Meta(description="must be answered for the form to be stored")]
    options: list[OptionOut]


class BandOut(msgspec.Struct):
    min: int
    max: int
    label: str


class InstrumentOut(msgspec.Struct):
    id: str
    version: Annotated[int, Meta(description="send it back with the answers")]
    title: str
    name: str
    about: str
    instructions: str
    items: list[ItemOut]
    max_total: int
    bands: list[BandOut]
    reliable_change: Annotated[int, Meta(description="a change of at least this many points is reliable")]
    remission_below: Annotated[int | None, Meta(description="a total below this is remission; null: no such rule")]


class InstrumentsOut(msgspec.Struct):
    instruments: list[InstrumentOut]


class AssignmentIn(msgspec.Struct, forbid_unknown_fields=True):
    schedule: Annotated[
        Schedule,
        Meta(
            description="every_session; every_other (unless done for the previous session); monthly (unless done "
            "in the 28 days before the session); once (until done after this assignment)"
        ),
    ]


class AssignmentOut(msgspec.Struct):
    instrument: str
    schedule: Schedule
    assigned_at: datetime
    created_at: datetime


class ResponseOut(msgspec.Struct):
    id: schemas.Id
    booking_id: schemas.Id
    instrument: str
    instrument_version: int
    total: int
    band: str
    completed_at: datetime
    answers: Annotated[dict[str, int], Meta(description="item id -> the value of the option chosen")]


class TrendPointOut(msgspec.Struct):
    response_id: schemas.Id
    completed_at: datetime
    total: int
    band: str
    change: Annotated[int, Meta(description="total minus the first score's")]
    reliable_change: Annotated[
        Literal["improvement", "deterioration"] | None,
        Meta(description="the change from the first score is at least the instrument's reliable_change"),
    ]
    response: Annotated[bool, Meta(description="at least 50 % below the first score")]
    remission: Annotated[bool, Meta(description="below the instrument's remission_below")]


class ResultsOut(msgspec.Struct):
    assignments: list[AssignmentOut]
    responses: Annotated[list[ResponseOut], Meta(description="oldest first")]
    trends: Annotated[dict[str, list[TrendPointOut]], Meta(description="instrument id -> its scores, oldest first")]


class AlertOut(msgspec.Struct):
    id: schemas.Id
    client_id: schemas.Id
    client_name: str
    booking_id: schemas.Id
    instrument: str
    created_at: datetime
    reviewed_at: datetime | None


class AlertsOut(msgspec.Struct):
    alerts: list[AlertOut]


class LatestOut(msgspec.Struct):
    instrument: str
    title: str
    latest: TrendPointOut
    scores: Annotated[int, Meta(description="how many scores the trend holds")]


class SessionSummaryOut(msgspec.Struct):
    client_id: schemas.Id | None
    latest: list[LatestOut]
    alerts: Annotated[list[AlertOut], Meta(description="the client's alerts not yet reviewed")]


class DueOut(msgspec.Struct):
    measures: Annotated[list[InstrumentOut], Meta(description="what to complete before this session; [] = nothing")]


class SubmissionIn(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, Meta(ge=1, description="the version of the instrument answered")]
    answers: Annotated[
        dict[ItemId, int],
        Meta(max_length=100, description="item id -> the value of the option chosen; every required item"),
    ]


class CrisisLineOut(msgspec.Struct):
    kind: Annotated[Literal["crisis", "emergency"], Meta(description="a crisis line, or the emergency number")]
    name: str
    phone: str | None
    hours: str | None
    note: str | None
    url: str | None


class SubmittedOut(msgspec.Struct):
    instrument: str
    completed_at: datetime
    crisis_resources: Annotated[
        list[CrisisLineOut],
        Meta(description="where to get help now, for the client's location: filled when an answer asks for it"),
    ]


def instrument_out(i: Instrument) -> InstrumentOut:
    return InstrumentOut(
        id=i.id,
        version=i.version,
        title=i.title,
        name=i.name,
        about=i.about,
        instructions=i.instructions,
        items=[
            ItemOut(
                id=item.id,
                text=item.text,
                scored=item.scored,
                required=item.required,
                options=[OptionOut(o.value, o.label) for o in i.options_of(item)],
            )
            for item in i.items
        ],
        max_total=i.max_total,
        bands=[BandOut(b.min, b.max, b.label) for b in i.bands],
        reliable_change=i.reliable_change,
        remission_below=i.remission_below,
    )


def point_out(p: TrendPoint) -> TrendPointOut:
    return TrendPointOut(
        response_id=str(p.response_id),
        completed_at=p.completed_at,
        total=p.total,
        band=p.band,
        change=p.change,
        reliable_change=p.reliable_change,
        response=p.response,
        remission=p.remission,
    )


def alert_out(a: safety_alerts.Alert) -> AlertOut:
    return AlertOut(
        id=str(a.id),
        client_id=str(a.client_id),
        client_name=a.client_name,
        booking_id=str(a.booking_id),
        instrument=a.instrument,
        created_at=a.created_at,
        reviewed_at=a.reviewed_at,
    )


def _assignment(a: measures.Assignment) -> AssignmentOut:
    return AssignmentOut(a.instrument, a.schedule, a.assigned_at, a.created_at)


@routes.route("GET", "/api/v1/instruments", summary="The questionnaires Teleroom ships", response=InstrumentsOut)
async def list_instruments(request: web.Request, call: Call) -> web.Response:
    return respond(InstrumentsOut([instrument_out(i) for i in measures.catalogue().values()]))


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/clients/{id}/measures",
    summary="A client's assigned questionnaires, answers item by item, scores and trends (audited)",
    auth=THERAPIST_ACCESS,
    response=ResultsOut,
    params=[CLIENT_ID],
)
async def client_measures(request: web.Request, call: Call) -> web.Response:
    client_id = parse_uuid(request.match_info["id"], "client")
    async with request.app[POOL].acquire() as conn:
        found = await measures.results(conn, call.therapist.id, client_id, call.principal)
    return respond(
        ResultsOut(
            assignments=[_assignment(a) for a in found.assignments],
            responses=[
                ResponseOut(
                    id=str(r.id),
                    booking_id=str(r.booking_id),
                    instrument=r.instrument,
                    instrument_version=r.instrument_version,
                    total=r.total,
                    band=r.band,
                    completed_at=r.completed_at,
                    answers=r.answers,
                )
                for r in found.responses
            ],
            trends={i: [point_out(p) for p in points] for i, points in found.trends.items()},
        )
    )


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/clients/{id}/measures/{instrument}",
    summary="Ask a client to complete a questionnaire on a schedule (replaces its earlier schedule; audited)",
    auth=THERAPIST_ACCESS,
    body=AssignmentIn,
    response=AssignmentOut,
    params=[CLIENT_ID, INSTRUMENT],
)
async def assign_measure(request: web.Request, call: Call) -> web.Response:
    client_id = parse_uuid(request.match_info["id"], "client")
    measures.instrument(request.match_info["instrument"])
    body = await read_json(request, AssignmentIn)
    assert body is not None
    async with request.app[POOL].acquire() as conn:
        found = await measures.assign(
            conn,
            call.therapist.id,
            client_id,
            request.match_info["instrument"],
            body.schedule,
            request.app[CLOCK].now(),
            call.principal,
        )
    return respond(_assignment(found))


@routes.route(
    "DELETE",
    "/api/v1/therapists/{slug}/clients/{id}/measures/{instrument}",
    summary="Stop asking a client for a questionnaire (its results stay; audited)",
    auth=THERAPIST_ACCESS,
    status=204,
    params=[CLIENT_ID, INSTRUMENT],
)
async def unassign_measure(request: web.Request, call: Call) -> web.Response:
    client_id = parse_uuid(request.match_info["id"], "client")
    async with request.app[POOL].acquire() as conn:
        await measures.unassign(conn, call.therapist.id, client_id, request.match_info["instrument"], call.principal)
    return web.Response(status=204)


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/clients/{id}/measures/{instrument}/chart.svg",
    summary="A client's scores on one questionnaire as an SVG chart with <title> and <desc> (audited)",
    auth=THERAPIST_ACCESS,
    params=[CLIENT_ID, INSTRUMENT],
    content_type=SVG,
)
async def measure_chart_svg(request: web.Request, call: Call) -> web.Response:
    client_id = parse_uuid(request.match_info["id"], "client")
    found = measures.instrument(request.match_info["instrument"])
    async with request.app[POOL].acquire() as conn:
        results = await measures.results(conn, call.therapist.id, client_id, call.principal, instrument_id=found.id)
    svg = measure_chart.render(found, results.trends.get(found.id, []), zone(call.therapist.timezone))
    return web.Response(text=svg, content_type=SVG, charset="utf-8", headers={"Content-Security-Policy": SVG_CSP})


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/safety-alerts",
    summary="Safety alerts (a client's answers need review), newest first (each client listed is audited)",
    auth=THERAPIST_ACCESS,
    response=AlertsOut,
    params=[ALERT_STATE],
)
async def list_safety_alerts(request: web.Request, call: Call) -> web.Response:
    state = query_param(request, "state") or "open"
    if state not in ("open", "all"):
        raise invalid("`state` is open or all.")
    found = await safety_alerts.list_for_reader(
        request.app[POOL], call.therapist.id, call.principal, include_reviewed=state == "all"
    )
    return respond(AlertsOut([alert_out(a) for a in found]))


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/safety-alerts/{id}/review",
    summary="Mark a safety alert reviewed (audited; again: no change)",
    auth=THERAPIST_ACCESS,
    response=AlertOut,
    params=[ALERT_ID],
)
async def review_safety_alert(request: web.Request, call: Call) -> web.Response:
    alert_id = parse_uuid(request.match_info["id"], "alert")
    async with request.app[POOL].acquire() as conn:
        found = await safety_alerts.review(conn, call.therapist.id, alert_id, request.app[CLOCK].now(), call.principal)
    request.app.logger.info("safety alert %s reviewed by therapist %s", alert_id, call.therapist.id)
    return respond(alert_out(found))


@routes.route(
    "GET",
    "/api/v1/bookings/{id}/measure-summary",
    summary="For the therapist in the session: the client's latest score per questionnaire and open alerts (audited)",
    auth=THERAPIST_ACCESS,
    response=SessionSummaryOut,
)
async def measure_summary(request: web.Request, call: Call) -> web.Response:
    principal = call.principal
    assert principal.therapist_id is not None  # THERAPIST_ACCESS
    async with request.app[POOL].acquire() as conn:
        found = await measures.session_summary(conn, principal.therapist_id, call.booking_id, principal)
    return respond(
        SessionSummaryOut(
            client_id=None if found.client_id is None else str(found.client_id),
            latest=[LatestOut(x.instrument, x.title, point_out(x.point), x.scores) for x in found.latest],
            alerts=[alert_out(a) for a in found.alerts],
        )
    )


@routes.route(
    "GET",
    "/api/v1/bookings/{id}/measures",
    summary="The questionnaires the client should complete before this session ([] when none is due)",
    auth="booking",
    response=DueOut,
)
async def due_measures(request: web.Request, call: Call) -> web.Response:
    found = await measures.due_for_booking(request.app[POOL], call.booking_id, request.app[CLOCK].now())
    return respond(DueOut([instrument_out(i) for i in found]))


@routes.route(
    "POST",
    "/api/v1/bookings/{id}/measures/{instrument}",
    summary="Submit every answer of a due questionnaire (stored whole or not at all)",
    auth="booking",
    body=SubmissionIn,
    response=SubmittedOut,
    status=201,
    params=[INSTRUMENT],
    errors=(409,),
)
async def submit_measure(request: web.Request, call: Call) -> web.Response:
    measures.instrument(request.match_info["instrument"])
    body = await read_json(request, SubmissionIn)
    assert body is not None
    async with request.app[POOL].acquire() as conn:
        done = await measures.complete(
            conn,
            call.booking_id,
            request.match_info["instrument"],
            body.version,
            body.answers,
            request.app[CLOCK].now(),
            call.principal,
        )
        lines = []
        if done.safety:
            country, region = await measures.client_place(conn, call.booking_id)
            lines = [
                CrisisLineOut(line.kind, line.name, line.phone, line.hours, line.note, line.url)
                for line in crisis_resources(country, region)
            ]
    request.app.logger.info("measure %s completed for booking %s", done.response_id, call.booking_id)
    return respond(SubmittedOut(done.instrument, done.completed_at, lines), status=201)


def setup(app: web.Application) -> None:
    openapi.mount(app, routes)
