"""JSON API: a therapist's client records (the list, one client with their sessions, editing details)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from broker import clients, schemas
from broker.clients import Client, ClientRecord, ClientSession, ClientSummary, SessionRef, StandingSeries
from broker.clock import CLOCK
from broker.database import POOL
from broker.http import openapi
from broker.http.endpoints import THERAPIST_ACCESS, ApiRoutes, Call, Param, parse_uuid, read_json, respond

routes = ApiRoutes("clients")
CLIENT_ID = Param("id", "path", "Client id", required=True)


class SessionRefOut(msgspec.Struct):
    id: schemas.Id
    start: datetime
    end: datetime


class StandingSeriesOut(msgspec.Struct):
    id: schemas.Id
    frequency: schemas.Frequency
    remaining: Annotated[int, Meta(description="confirmed sessions of the series not yet ended")]
    last_start: Annotated[datetime, Meta(description="the start of the last of them")]


class ClientSummaryOut(msgspec.Struct):
    id: schemas.Id
    name: str
    email: str
    phone: str | None
    location: str | None
    next_session: Annotated[SessionRefOut | None, Meta(description="the next confirmed session not yet ended")]
    last_attended: Annotated[
        SessionRefOut | None, Meta(description="the latest session marked attended or that the client was admitted to")
    ]
    series: Annotated[int, Meta(description="active series: those with a confirmed session not yet ended")]
    standing_series: Annotated[
        StandingSeriesOut | None, Meta(description="the active series whose next session comes first; null: none")
    ]


class ClientListOut(msgspec.Struct):
    clients: list[ClientSummaryOut]


class ClientSessionOut(msgspec.Struct):
    id: schemas.Id
    start: datetime
    end: datetime
    status: schemas.BookingStatus
    session_type: schemas.SessionTypeSummary
    client_admitted: Annotated[bool, Meta(description="the client was admitted to the session's room")]
    series_id: Annotated[schemas.Id | None, Meta(description="the series this session belongs to; null: single")]
    series_index: Annotated[int | None, Meta(description="its place in the series, from 0")]


class ClientDetailsOut(msgspec.Struct):
    id: schemas.Id
    name: str
    email: str
    phone: str | None
    location: str | None
    notes: str | None
    created_at: datetime
    updated_at: datetime
    confidential_messages: Annotated[
        bool, Meta(description="emails to this client only say there is an appointment, with the link")
    ]


class ClientRecordOut(ClientDetailsOut):
    upcoming: Annotated[list[ClientSessionOut], Meta(description="sessions not yet ended, soonest first")]
    past: Annotated[list[ClientSessionOut], Meta(description="ended sessions, latest first (at most 200)")]


def _ref(ref: SessionRef | None) -> SessionRefOut | None:
    return None if ref is None else SessionRefOut(id=str(ref.id), start=ref.start, end=ref.end)


def _standing(s: StandingSeries | None) -> StandingSeriesOut | None:
    if s is None:
        return None
    return StandingSeriesOut(id=str(s.id), frequency=s.frequency, remaining=s.remaining, last_start=s.last_start)


def _summary(c: ClientSummary) -> ClientSummaryOut:
    return ClientSummaryOut(
        id=str(c.id),
        name=c.name,
        email=c.email,
        phone=c.phone,
        location=c.location,
        next_session=_ref(c.next_session),
        last_attended=_ref(c.last_attended),
        series=c.series,
        standing_series=_standing(c.standing_series),
    )


def _session(s: ClientSession) -> ClientSessionOut:
    return ClientSessionOut(
        id=str(s.id),
        start=s.starts_at,
        end=s.ends_at,
        status=s.status,
        session_type=schemas.SessionTypeSummary(
            id=str(s.session_type_id), name=s.session_type_name, duration_minutes=s.duration_minutes
        ),
        client_admitted=s.client_admitted,
        series_id=None if s.series_id is None else str(s.series_id),
        series_index=s.series_index,
    )


def _details(c: Client) -> ClientDetailsOut:
    return ClientDetailsOut(
        id=str(c.id),
        name=c.name,
        email=c.email,
        phone=c.phone,
        location=c.location,
        notes=c.notes,
        created_at=c.created_at,
        updated_at=c.updated_at,
        confidential_messages=c.confidential_messages,
    )


def _record(record: ClientRecord) -> ClientRecordOut:
    return ClientRecordOut(
        **msgspec.structs.asdict(_details(record.client)),
        upcoming=[_session(s) for s in record.upcoming],
        past=[_session(s) for s in record.past],
    )


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/clients",
    summary="The therapist's clients by name, with the next session and the last attended (each read audited)",
    auth=THERAPIST_ACCESS,
    response=ClientListOut,
)
async def list_clients(request: web.Request, call: Call) -> web.Response:
    found = await clients.list_for_reader(
        request.app[POOL], call.therapist.id, request.app[CLOCK].now(), call.principal
    )
    return respond(ClientListOut(clients=[_summary(c) for c in found]))


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/clients/{id}",
    summary="A client's details and sessions, upcoming and past (audited)",
    auth=THERAPIST_ACCESS,
    response=ClientRecordOut,
    params=[CLIENT_ID],
    errors=(404,),
)
async def get_client(request: web.Request, call: Call) -> web.Response:
    client_id = parse_uuid(request.match_info["id"], "client")
    async with request.app[POOL].acquire() as conn:
        record = await clients.read(conn, call.therapist.id, client_id, request.app[CLOCK].now(), call.principal)
    return respond(_record(record))


@routes.route(
    "PATCH",
    "/api/v1/therapists/{slug}/clients/{id}",
    summary="Edit a client's details; fields left out stay (audited)",
    auth=THERAPIST_ACCESS,
    body=schemas.ClientPatch,
    response=ClientDetailsOut,
    params=[CLIENT_ID],
    errors=(404, 409, 422),
)
async def update_client(request: web.Request, call: Call) -> web.Response:
    client_id = parse_uuid(request.match_info["id"], "client")
    body = await read_json(request, schemas.ClientPatch)
    assert body is not None
    async with request.app[POOL].acquire() as conn:
        client = await clients.update(conn, call.therapist.id, client_id, body, call.principal)
    request.app.logger.info("client %s updated by therapist %s", client_id, call.therapist.id)
    return respond(_details(client))


def setup(app: web.Application) -> None:
    openapi.mount(app, routes)
