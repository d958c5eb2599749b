"""JSON API: telehealth consent, emergency details and where the client is (issue 11, `broker.safety`).

The client, with the booking key: what the join page needs (the current consent text, whether it is
accepted, whether an emergency contact exists), accepting the text, giving the emergency contact,
confirming where they are. The therapist: the consent text and its versions, a client's safety
record, and the room's emergency panel; every read of a client's details is audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from aiohttp import web
from msgspec import Meta

from broker import consent, places, safety
from broker.clock import CLOCK
from broker.database import POOL
from broker.emergency_contacts import EmergencyContact
from broker.http import openapi
from broker.http.endpoints import THERAPIST_ACCESS, ApiRoutes, Call, Param, parse_uuid, read_json, respond
from broker.join_locations import JoinLocation
from broker.places import CrisisLine
from broker.routes.licences import CoverageOut, coverage_out
from broker.schemas import MULTILINE, Country, Name, Phone, Region, Strict

routes = ApiRoutes("safety")
CLIENT_ID = Param("id", "path", "Client id", required=True)
Note = Annotated[str, Meta(min_length=1, max_length=100, description="free text beside the codes, e.g. a city")]


# --- wire formats ------------------------------------------------------------------------------------


class PlaceIn(Strict):
    country: Country
    region: Region | None = None
    note: Note | None = None


class PlaceOut(msgspec.Struct):
    country: str
    country_name: str
    region: str | None
    region_name: str | None
    note: str | None = None


class ConsentVersionOut(msgspec.Struct):
    version: int
    text: str
    created_at: dt.datetime


class ConsentTextsOut(msgspec.Struct):
    current: ConsentVersionOut
    versions: Annotated[list[ConsentVersionOut], Meta(description="every version, latest first")]


class ConsentTextIn(Strict):
    text: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=consent.MAX_TEXT_LENGTH,
            description="plain text; a blank line starts a paragraph",
            extra_json_schema={MULTILINE: True},
        ),
    ]


class ConsentStepOut(msgspec.Struct):
    version: int
    text: str
    accepted: Annotated[bool, Meta(description="the client has accepted this (the current) version")]
    accepted_at: dt.datetime | None


class JoinStepsOut(msgspec.Struct):
    consent: ConsentStepOut
    emergency_contact: Annotated[bool, Meta(description="an emergency contact has been given (it is not shown)")]
    location: Annotated[PlaceOut | None, Meta(description="where to prefill the location picker")]
    missing: Annotated[
        list[safety.Step], Meta(description="what must be done before a room token: consent, emergency_contact")
    ]


class ConsentIn(Strict):
    version: Annotated[int, Meta(ge=1, description="the version of the text the client read")]
    typed_name: Annotated[Name, Meta(description="the client's name, typed as a signature")]


class ConsentOut(msgspec.Struct):
    version: int
    accepted_at: dt.datetime


class EmergencyContactIn(Strict):
    name: Annotated[Name, Meta(description="who to call if the client is in danger during a session")]
    phone: Annotated[Phone, Meta(min_length=3)]
    usual_location: Annotated[PlaceIn, Meta(description="where the client usually is")]


class EmergencyContactSaved(msgspec.Struct):
    updated_at: dt.datetime


class LocationOut(PlaceOut):
    confirmed_at: dt.datetime | None = None


class EmergencyContactOut(msgspec.Struct):
    name: str
    phone: str
    usual_location: PlaceOut
    updated_at: dt.datetime


class ConfirmedLocationOut(PlaceOut):
    booking_id: str = ""
    confirmed_at: dt.datetime | None = None
    session_start: dt.datetime | None = None


class ConsentRecordOut(msgspec.Struct):
    version: int
    typed_name: str
    accepted_at: dt.datetime
    booking_id: str | None


class ClientConsentOut(msgspec.Struct):
    current_version: int
    consented: Annotated[bool, Meta(description="the client has accepted the current version")]
    accepted: Annotated[list[ConsentRecordOut], Meta(description="every version accepted, latest first")]


class ClientSafetyOut(msgspec.Struct):
    client_id: str
    consent: ClientConsentOut
    emergency_contact: EmergencyContactOut | None
    locations: Annotated[list[ConfirmedLocationOut], Meta(description="places confirmed at joins, latest first")]


class CrisisLineOut(msgspec.Struct):
    kind: Literal["crisis", "emergency"]
    name: str
    phone: str | None
    hours: str | None
    note: str | None
    url: str | None


class PanelLocationOut(PlaceOut):
    source: Annotated[
        Literal["today", "booking", "usual"],
        Meta(description="confirmed at this join, given when booking, or where the client usually is"),
    ] = "today"
    confirmed_at: dt.datetime | None = None


class EmergencyPanelOut(msgspec.Struct):
    booking_id: str
    location: Annotated[PanelLocationOut | None, Meta(description="where the client is; null: never said")]
    emergency_contact: EmergencyContactOut | None
    crisis_lines: Annotated[list[CrisisLineOut], Meta(description="for the client's location, most specific first")]
    licence: Annotated[CoverageOut, Meta(description="whether a licence valid on the session's date covers it")]
    licence_warning: Annotated[bool, Meta(description="the place is known and no valid licence covers it")]
    consented: bool


# --- conversions -------------------------------------------------------------------------------------


def place_out(where: places.Place, note: str | None = None) -> PlaceOut:
    return PlaceOut(
        country=where.country,
        country_name=places.name_of(where.country),
        region=where.region,
        region_name=_region_name(where),
        note=note,
    )


def _region_name(where: places.Place) -> str | None:
    return None if where.region is None else places.name_of(where.region)


def _contact(found: EmergencyContact) -> EmergencyContactOut:
    return EmergencyContactOut(
        name=found.contact_name,
        phone=found.contact_phone,
        usual_location=place_out(found.usual_place, found.usual_note),
        updated_at=found.updated_at,
    )


def _confirmed(found: JoinLocation) -> ConfirmedLocationOut:
    where = found.place
    return ConfirmedLocationOut(
        country=where.country,
        region=where.region,
        note=found.note,
        booking_id=str(found.booking_id),
        confirmed_at=found.confirmed_at,
        session_start=found.session_start,
        country_name=places.name_of(where.country),
        region_name=_region_name(where),
    )


def _line(line: CrisisLine) -> CrisisLineOut:
    return CrisisLineOut(line.kind, line.name, line.phone, line.hours, line.note, line.url)


def _checked_place(body: PlaceIn) -> places.Place:
    return places.place(body.country, body.region)


# --- the therapist -----------------------------------------------------------------------------------


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/consent-text",
    summary="The telehealth consent text clients accept before their first session, and its versions",
    auth=THERAPIST_ACCESS,
    response=ConsentTextsOut,
)
async def get_consent_text(request: web.Request, call: Call) -> web.Response:
    found = await consent.versions(request.app[POOL], call.therapist.id)
    out = [ConsentVersionOut(t.version, t.text, t.created_at) for t in found]
    return respond(ConsentTextsOut(current=out[0], versions=out))


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/consent-text",
    summary="Change the consent text: a new version, which every client accepts again at their next join",
    auth=THERAPIST_ACCESS,
    body=ConsentTextIn,
    response=ConsentVersionOut,
    errors=(409,),
)
async def put_consent_text(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, ConsentTextIn)
    assert body is not None
    async with request.app[POOL].acquire() as conn:
        changed = await consent.change(conn, call.therapist.id, body.text, call.principal)
    return respond(ConsentVersionOut(changed.version, changed.text, changed.created_at))


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/clients/{id}/safety",
    summary="A client's consent record, emergency contact and confirmed locations (audited)",
    auth=THERAPIST_ACCESS,
    response=ClientSafetyOut,
    params=[CLIENT_ID],
)
async def get_client_safety(request: web.Request, call: Call) -> web.Response:
    client_id = parse_uuid(request.match_info["id"], "client")
    async with request.app[POOL].acquire() as conn:
        record = await safety.client_record(conn, call.therapist.id, client_id, call.principal)
    return respond(
        ClientSafetyOut(
            client_id=str(record.client.id),
            consent=ClientConsentOut(
                current_version=record.current_text.version,
                consented=record.consented,
                accepted=[
                    ConsentRecordOut(
                        c.version, c.typed_name, c.accepted_at, None if c.booking_id is None else str(c.booking_id)
                    )
                    for c in record.consents
                ],
            ),
            emergency_contact=None if record.emergency_contact is None else _contact(record.emergency_contact),
            locations=[_confirmed(j) for j in record.locations],
        )
    )


@routes.route(
    "GET",
    "/api/v1/bookings/{id}/emergency",
    summary="The room's emergency panel: where the client is today, their emergency contact, crisis lines, "
    "licence coverage (therapist; audited)",
    auth=THERAPIST_ACCESS,
    response=EmergencyPanelOut,
)
async def get_emergency_panel(request: web.Request, call: Call) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        panel = await safety.emergency_panel(conn, call.booking_id, call.principal)
    location: PanelLocationOut | None = None
    if panel.place is not None and panel.place_source is not None:
        today = panel.today
        location = PanelLocationOut(
            country=panel.place.country,
            region=panel.place.region,
            note=today.note if today is not None and panel.place_source == "today" else None,
            source=panel.place_source,
            confirmed_at=None if today is None else today.confirmed_at,
            country_name=places.name_of(panel.place.country),
            region_name=_region_name(panel.place),
        )
    return respond(
        EmergencyPanelOut(
            booking_id=str(panel.booking_id),
            location=location,
            emergency_contact=None if panel.emergency_contact is None else _contact(panel.emergency_contact),
            crisis_lines=[_line(line) for line in panel.crisis_lines],
            licence=coverage_out(panel.coverage),
            licence_warning=panel.coverage.outside,
            consented=panel.consented,
        )
    )


# --- the client, with the booking key ------------------------------------------------------------------


@routes.route(
    "GET",
    "/api/v1/bookings/{id}/join-steps",
    summary="What the join page asks before the waiting room: consent, emergency contact, location (client)",
    auth="booking",
    response=JoinStepsOut,
)
async def get_join_steps(request: web.Request, call: Call) -> web.Response:
    steps = await safety.join_steps(request.app[POOL], call.booking_id)
    text = steps.consent_text
    return respond(
        JoinStepsOut(
            consent=ConsentStepOut(
                version=text.version,
                text=text.text,
                accepted=steps.consent is not None,
                accepted_at=None if steps.consent is None else steps.consent.accepted_at,
            ),
            emergency_contact=steps.has_emergency_contact,
            location=None if steps.location is None else place_out(steps.location, steps.location_note),
            missing=steps.missing,
        )
    )


@routes.route(
    "POST",
    "/api/v1/bookings/{id}/consent",
    summary="Accept the current consent text with a typed name (client); an older version is consent_outdated",
    auth="booking",
    body=ConsentIn,
    response=ConsentOut,
    status=201,
    errors=(409,),
)
async def post_consent(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, ConsentIn)
    assert body is not None
    accepted = await safety.accept_consent(
        request.app[POOL], call.booking_id, body.version, body.typed_name, call.principal, request.app[CLOCK].now()
    )
    return respond(ConsentOut(accepted.version, accepted.accepted_at), status=201)


@routes.route(
    "PUT",
    "/api/v1/bookings/{id}/emergency-contact",
    summary="Give the emergency contact and where the client usually is (client; replaces an earlier one)",
    auth="booking",
    body=EmergencyContactIn,
    response=EmergencyContactSaved,
    errors=(422,),
)
async def put_emergency_contact(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, EmergencyContactIn)
    assert body is not None
    usual = _checked_place(body.usual_location)
    saved = await safety.save_contact(
        request.app[POOL],
        call.booking_id,
        name=body.name,
        phone=body.phone,
        usual=usual,
        note=body.usual_location.note,
        actor=call.principal,
        now=request.app[CLOCK].now(),
    )
    return respond(EmergencyContactSaved(saved.updated_at))


@routes.route(
    "POST",
    "/api/v1/bookings/{id}/location",
    summary="Confirm where the client is for this session, at every join (client)",
    auth="booking",
    body=PlaceIn,
    response=LocationOut,
    status=201,
    errors=(422,),
)
async def post_location(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, PlaceIn)
    assert body is not None
    where = _checked_place(body)
    confirmed = await safety.confirm_location(
        request.app[POOL], call.booking_id, where, body.note, call.principal, request.app[CLOCK].now()
    )
    return respond(
        LocationOut(
            country=where.country,
            region=where.region,
            note=confirmed.note,
            confirmed_at=confirmed.confirmed_at,
            country_name=places.name_of(where.country),
            region_name=_region_name(where),
        ),
        status=201,
    )


def setup(app: web.Application) -> None:
    openapi.mount(app, routes)
