"""JSON API: a therapist's licences and `licence_check` setting, and the public coverage check.

The public check answers only whether a place is covered on a date and in which jurisdictions the
therapist is licensed then: never a licence's number, kind or expiry.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from broker import licences, places
from broker.clock import CLOCK
from broker.database import POOL
from broker.http import openapi
from broker.http.endpoints import (
    DATE_SCHEMA,
    THERAPIST_ACCESS,
    ApiRoutes,
    Call,
    Param,
    parse_uuid,
    query_param,
    read_json,
    respond,
)
from broker.licences import Licence, LicenceCheck
from broker.places import PlaceName
from broker.routes.therapists import parse_date
from broker.schemas import Strict
from broker.zones import zone

routes = ApiRoutes("licences")
LICENCE_ID = Param("licence_id", "path", "Licence id", required=True, schema={"type": "string", "format": "uuid"})
Jurisdiction = Annotated[
    str,
    Meta(
        pattern=places.JURISDICTION_PATTERN.replace("A-Za-z", "A-Z"),
        description="ISO 3166-1 alpha-2 country (DE) or ISO 3166-2 subdivision (US-NY, CA-ON, GB-ENG)",
    ),
]


class LicenceBody(Strict):
    jurisdiction: Jurisdiction
    kind: Annotated[str, Meta(min_length=1, max_length=100, description="e.g. LCSW, psychologist, HCPC")]
    number: Annotated[str, Meta(min_length=1, max_length=100)]
    expires_on: (
        Annotated[dt.date, Meta(description="valid for sessions on or before this date; null: no expiry")] | None
    ) = None


class LicenceOut(msgspec.Struct):
    id: str
    jurisdiction: str
    jurisdiction_name: str
    kind: str
    number: str
    expires_on: dt.date | None
    valid_today: Annotated[bool, Meta(description="not expired today in the therapist's time zone")]


class LicencesOut(msgspec.Struct):
    licences: list[LicenceOut]
    licence_check: Annotated[
        LicenceCheck, Meta(description="a booking outside valid licences: `warn` (the default) or `refuse`")
    ]


class LicenceCheckBody(Strict):
    licence_check: LicenceCheck


class LicenceCheckOut(msgspec.Struct):
    licence_check: LicenceCheck


class CoverageOut(msgspec.Struct):
    checked: Annotated[bool, Meta(description="false: the therapist has recorded no licence, nothing was checked")]
    covered: Annotated[bool | None, Meta(description="a licence valid on `date` covers the place; null: not checked")]
    licence_check: LicenceCheck
    date: dt.date
    licensed_in: Annotated[list[PlaceName], Meta(description="jurisdictions with a licence valid on `date`")]


def _today(therapist_zone: str, now: dt.datetime) -> dt.date:
    return now.astimezone(zone(therapist_zone)).date()


def _licence(found: Licence, today: dt.date) -> LicenceOut:
    return LicenceOut(
        id=str(found.id),
        jurisdiction=found.jurisdiction,
        jurisdiction_name=places.name_of(found.jurisdiction),
        kind=found.kind,
        number=found.number,
        expires_on=found.expires_on,
        valid_today=found.valid_on(today),
    )


def coverage_out(found: licences.Coverage) -> CoverageOut:
    return CoverageOut(
        checked=found.checked,
        covered=found.covered,
        licence_check=found.licence_check,
        date=found.day,
        licensed_in=[PlaceName(code, places.name_of(code)) for code in found.licensed_in],
    )


def _body(body: LicenceBody) -> licences.LicenceIn:
    return licences.LicenceIn(body.jurisdiction, body.kind, body.number, body.expires_on)


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/licences",
    summary="The therapist's licences and what a booking outside them gets",
    auth=THERAPIST_ACCESS,
    response=LicencesOut,
)
async def list_licences(request: web.Request, call: Call) -> web.Response:
    pool = request.app[POOL]
    today = _today(call.therapist.timezone, request.app[CLOCK].now())
    found = await licences.list_for(pool, call.therapist.id)
    check = await licences.setting(pool, call.therapist.id)
    return respond(LicencesOut(licences=[_licence(lic, today) for lic in found], licence_check=check))


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/licences",
    summary="Record a licence (audited); an unknown jurisdiction code is invalid_place",
    auth=THERAPIST_ACCESS,
    body=LicenceBody,
    response=LicenceOut,
    status=201,
    errors=(422,),
)
async def add_licence(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, LicenceBody)
    assert body is not None
    async with request.app[POOL].acquire() as conn, conn.transaction():
        added = await licences.add(conn, call.therapist.id, _body(body), call.principal)
    today = _today(call.therapist.timezone, request.app[CLOCK].now())
    return respond(_licence(added, today), status=201)


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/licences/{licence_id}",
    summary="Change a licence, e.g. a renewal's new expiry (audited)",
    auth=THERAPIST_ACCESS,
    body=LicenceBody,
    response=LicenceOut,
    params=[LICENCE_ID],
    errors=(422,),
)
async def change_licence(request: web.Request, call: Call) -> web.Response:
    licence_id = parse_uuid(request.match_info["licence_id"], "licence")
    body = await read_json(request, LicenceBody)
    assert body is not None
    async with request.app[POOL].acquire() as conn, conn.transaction():
        changed = await licences.replace(conn, call.therapist.id, licence_id, _body(body), call.principal)
    today = _today(call.therapist.timezone, request.app[CLOCK].now())
    return respond(_licence(changed, today))


@routes.route(
    "DELETE",
    "/api/v1/therapists/{slug}/licences/{licence_id}",
    summary="Remove a licence (audited)",
    auth=THERAPIST_ACCESS,
    status=204,
    params=[LICENCE_ID],
)
async def remove_licence(request: web.Request, call: Call) -> web.Response:
    licence_id = parse_uuid(request.match_info["licence_id"], "licence")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await licences.remove(conn, call.therapist.id, licence_id, call.principal)
    return web.Response(status=204)


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/licence-check",
    summary="Whether a booking outside valid licences is only warned about or refused (audited)",
    auth=THERAPIST_ACCESS,
    body=LicenceCheckBody,
    response=LicenceCheckOut,
)
async def put_licence_check(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, LicenceCheckBody)
    assert body is not None
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await licences.change_setting(conn, call.therapist.id, body.licence_check, call.principal)
    return respond(LicenceCheckOut(body.licence_check))


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/licence-coverage",
    summary="Whether the therapist is licensed where a client will be on a date (public; names no licence)",
    response=CoverageOut,
    params=[
        Param(
            "country",
            "query",
            "ISO 3166-1 alpha-2 country",
            required=True,
            schema={"type": "string", "pattern": "^[A-Z]{2}$"},
        ),
        Param(
            "region",
            "query",
            "ISO 3166-2 subdivision of the country",
            schema={"type": "string", "pattern": "^[A-Z]{2}-[A-Z0-9]{1,3}$"},
        ),
        Param(
            "date", "query", "The session's date, YYYY-MM-DD (default today, the therapist's zone)", schema=DATE_SCHEMA
        ),
    ],
    errors=(422,),
)
async def get_coverage(request: web.Request, call: Call) -> web.Response:
    therapist = call.therapist
    country = query_param(request, "country", required=True)
    assert country is not None
    where = places.place(country, query_param(request, "region"))
    day = parse_date(query_param(request, "date"), "date", _today(therapist.timezone, request.app[CLOCK].now()))
    found = await licences.coverage(request.app[POOL], therapist.id, where, day)
    return respond(coverage_out(found))


def setup(app: web.Application) -> None:
    openapi.mount(app, routes)
