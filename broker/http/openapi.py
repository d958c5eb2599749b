"""The OpenAPI 3.1 document, generated from the same endpoint declarations and structs the handlers use."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec
from aiohttp import web

from broker.http.endpoints import ApiRoutes, Endpoint
from broker.schemas import ProblemOut

# Every table of JSON endpoints, for the OpenAPI document; each part appends its own when mounted.
API_ROUTES = web.AppKey("api_routes", list[ApiRoutes])

_SECURITY: dict[str, dict[str, list[str]]] = {
    "admin": {"adminToken": []},
    "therapist": {"therapistToken": []},
    "booking": {"bookingKey": []},
    "session": {"sessionCookie": []},
    "link": {"passwordLink": []},
}


def document(endpoints: Iterable[Endpoint], version: str) -> dict[str, Any]:
    endpoints = list(endpoints)
    types: list[Any] = [ProblemOut]
    for ep in endpoints:
        types.extend(t for t in (ep.body, ep.response) if t is not None)
    (schemas, components) = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    refs = dict(zip(types, schemas, strict=True))
    problem = {"application/problem+json": {"schema": refs[ProblemOut]}}

    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": ep.handler.__name__,
            "tags": [ep.tag],
            "parameters": [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in ep.params
            ],
            "responses": {},
        }
        security = [_SECURITY[a] for a in ep.auth if a in _SECURITY]
        op["security"] = security if security else []
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": refs[ep.body]}}}
        ok: dict[str, Any] = {"description": "Success"}
        if ep.response is not None:
            ok["content"] = {ep.content_type: {"schema": refs[ep.response]}}
        elif ep.content_type != "application/json" and ep.status != 204:
            ok["content"] = {ep.content_type: {"schema": {"type": "string"}}}
        op["responses"][str(ep.status)] = ok
        for status in sorted({400, *ep.errors}):
            op["responses"][str(status)] = {"description": "Problem", "content": problem}
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", ep.path)
        paths.setdefault(path, {})[ep.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Teleroom API",
            "version": version,
            "description": "Scheduling, calendars and video rooms for teletherapy. Errors are RFC 9457 problem+json.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "TELEROOM_ADMIN_TOKEN or the generated trm_ token",
                },
                "therapistToken": {"type": "http", "scheme": "bearer", "description": "A therapist's tra_ API token"},
                "bookingKey": {"type": "http", "scheme": "bearer", "description": "A booking's trk_ key"},
                "passwordLink": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The tri_ (invite) or trr_ (reset) secret from a one-time link's #t= fragment",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "teleroom_session",
                    "description": "The dashboard's login session; changes also need its X-CSRF-Token",
                },
            },
        },
    }


def mount(app: web.Application, table: ApiRoutes) -> None:
    """Install a table's endpoints and list them in the OpenAPI document."""
    app[API_ROUTES].append(table)
    table.install(app)
