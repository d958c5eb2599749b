"""JSON API: the ISO 3166 lists the place pickers offer (public, cacheable: they change with a release)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from broker import places
from broker.http import openapi
from broker.http.endpoints import ApiRoutes, Call, Param, respond
from broker.places import PlaceName, Region

routes = ApiRoutes("places")
CACHE = {"Cache-Control": "public, max-age=86400"}
COUNTRY = Param(
    "country",
    "path",
    "ISO 3166-1 alpha-2 country code",
    required=True,
    schema={"type": "string", "pattern": "^[A-Z]{2}$"},
)


class CountriesOut(msgspec.Struct):
    countries: Annotated[list[PlaceName], Meta(description="every ISO 3166-1 country, by English name")]


class SubdivisionsOut(msgspec.Struct):
    country: PlaceName
    subdivisions: Annotated[
        list[Region],
        Meta(description="its ISO 3166-2 subdivisions directly in the country (states, provinces, GB's four nations)"),
    ]


@routes.route("GET", "/api/v1/places", summary="Countries for a place picker (ISO 3166-1)", response=CountriesOut)
async def list_countries(request: web.Request, call: Call) -> web.Response:
    return respond(CountriesOut(countries=list(places.countries())), headers=CACHE)


@routes.route(
    "GET",
    "/api/v1/places/{country}",
    summary="A country's regions for a place picker (ISO 3166-2); an unknown code is invalid_place",
    response=SubdivisionsOut,
    params=[COUNTRY],
    errors=(422,),
)
async def list_subdivisions(request: web.Request, call: Call) -> web.Response:
    code = request.match_info["country"]
    found = places.country(code)
    return respond(SubdivisionsOut(country=found, subdivisions=list(places.subdivisions(found.code))), headers=CACHE)


def setup(app: web.Application) -> None:
    openapi.mount(app, routes)
