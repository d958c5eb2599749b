"""The OpenAPI 3.1 document, generated from the same endpoint declarations and structs the handlers use."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import msgspec
from aiohttp import web

from broker.http.endpoints import MULTI_LINE, ONE_LINE, YEAR_PATTERN, ApiRoutes, Endpoint
from broker.http.problems import TITLES
from broker.schemas import MULTILINE, ProblemOut

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
    for name in _reachable([refs[ep.body] for ep in endpoints if ep.body is not None], components):
        _state_text_rules(components[name])

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
                    "schema": _state_text_rules(copy.deepcopy(p.schema)),
                }
                for p in ep.params
            ],
            "responses": {},
        }
        security = [_SECURITY[a] for a in ep.auth if a in _SECURITY]
        op["security"] = security if security else []
        if ep.body is not None:
            op["requestBody"] = {
                "required": not ep.body_optional,
                "content": {"application/json": {"schema": refs[ep.body]}},
            }
        ok: dict[str, Any] = {"description": "Success"}
        if ep.response is not None:
            ok["content"] = {ep.content_type: {"schema": refs[ep.response]}}
        elif ep.content_type != "application/json" and ep.status != 204:
            ok["content"] = {ep.content_type: {"schema": {"type": "string"}}}
        op["responses"][str(ep.status)] = ok
        for status in sorted(ep.errors):
            op["responses"][str(status)] = _problem(status, refs[ProblemOut])
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


def _problem(status: int, schema: dict[str, Any]) -> dict[str, Any]:
    """A documented problem response; 429 and 503 say when to try again (RFC 9110 section 10.2.3)."""
    response: dict[str, Any] = {
        "description": TITLES.get(status) or HTTPStatus(status).phrase,
        "content": {"application/problem+json": {"schema": schema}},
    }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {
                "description": "seconds until a retry may succeed",
                "required": status == 429,
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response


def _reachable(roots: list[dict[str, Any]], components: dict[str, Any]) -> set[str]:
    """The names of the component schemas `roots` refer to, directly or through others."""
    seen: set[str] = set()
    stack: list[Any] = list(roots)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                name = ref.rsplit("/", 1)[-1]
                if name not in seen:
                    seen.add(name)
                    stack.append(components[name])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return seen


def _state_text_rules(schema: dict[str, Any]) -> dict[str, Any]:
    """Put in a request schema what check_text enforces, so that what the document calls valid is:
    a string without a pattern of its own (nor enum, const or format) is one line without control
    characters, or, marked `x-multiline`, may break lines with LF or CR LF (a mapping's keys are
    one-line strings too); a date or an instant is in the years check_text accepts. A pattern a
    struct declares must itself leave out control characters (tests/test_openapi_conformance.py
    checks every one)."""
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if node.get("type") == "string" and not {"pattern", "enum", "const"} & node.keys():
            if node.get("format") in ("date", "date-time"):
                node["pattern"] = YEAR_PATTERN
            elif "format" not in node:
                node["pattern"] = MULTI_LINE if node.get(MULTILINE) else ONE_LINE
        elif node.get("type") == "object" and node.get("additionalProperties", False) is not False:
            node.setdefault("propertyNames", {"type": "string"})  # a mapping's keys are text too
        stack.extend(v for k, v in node.items() if k != "$ref")
    return schema


def mount(app: web.Application, table: ApiRoutes) -> None:
    """Install a table's endpoints and list them in the OpenAPI document."""
    app[API_ROUTES].append(table)
    table.install(app)
