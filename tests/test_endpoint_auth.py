"""Every declared endpoint accepts exactly the auth modes it declares and refuses every other.

The declarations in `broker.http.endpoints` are enforced before a handler runs and published in
the OpenAPI document; this walks the live app's tables, so a new endpoint is checked as it lands.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from broker.clock import Clock
from broker.http.endpoints import Endpoint
from broker.http.openapi import API_ROUTES
from tests.support import Api, next_grid_start
from tests.test_accounts import PASSWORD, Browserish, link_secret, therapist_with_password

MODES = ("admin", "therapist", "session", "booking", "link", "anonymous")


@pytest.fixture
async def browser_http(base_url: str) -> AsyncIterator[Browserish]:
    client = Browserish(base_url)
    yield client
    await client.close()


def endpoints_of(server: TestServer) -> list[Endpoint]:
    return [ep for table in server.app[API_ROUTES] for ep in table.endpoints]


def refused(ep: Endpoint, status: int, body: Any) -> bool:
    """Refused by the declaration: 401, 403 (forbidden, or a cookie call without its CSRF token), or,
    on a booking, 404: whoever may not see it learns nothing of it. A 403 with another code (a
    room that is not open yet) is the endpoint answering, not the declaration refusing."""
    code = body.get("code") if isinstance(body, dict) else None
    return (
        status == 401
        or (status == 403 and code in ("forbidden", "csrf_failed"))
        or (ep.names_booking and status == 404 and code == "not_found")
    )


async def fresh_booking(api: Api, therapist: dict[str, Any], session_type: dict[str, Any], start: dt.datetime) -> Any:
    status, body = await api.book(therapist, session_type, start.isoformat())
    assert status == 201, body
    return body


async def test_every_endpoint_accepts_its_declared_auth_modes_and_refuses_the_rest(
    server: TestServer, api: Api, browser_http: Browserish, clock: Clock
) -> None:
    therapist = await therapist_with_password(api)
    await api.availability(therapist)
    session_type = await api.session_type(therapist)
    status, _, _ = await browser_http.login(therapist["email"], PASSWORD)
    assert status == 303
    csrf = await browser_http.csrf()
    checked: list[tuple[str, str, str, int]] = []

    first = next_grid_start(clock.now() + dt.timedelta(days=1), 60)
    for i, ep in enumerate(endpoints_of(server)):
        booking = await fresh_booking(api, therapist, session_type, first + dt.timedelta(hours=i))
        path = ep.path.replace("{slug}", therapist["slug"])
        path = path.replace("{id}", booking["id"] if ep.names_booking else str(uuid.uuid4()))
        path = re.sub(r"\{[a-z_]+\}", "unknown", path)  # any other parameter (a template name): none such
        for mode in MODES:
            if mode == "session":
                headers = {"X-CSRF-Token": csrf, "Origin": browser_http.base}
                status, body = await browser_http.call(ep.method, path, headers=headers)
            else:
                token = {
                    "admin": api.admin_token,
                    "therapist": therapist["api_token"],
                    "booking": booking["booking_key"],
                    "link": link_secret(therapist["invite_url"]),  # used already: the endpoint says 410
                    "anonymous": None,
                }[mode]
                status, body = await api.call(ep.method, path, token=token)
            accepted = ep.public or mode in ep.auth
            checked.append((ep.method, ep.path, mode, status))
            if accepted:
                assert not refused(ep, status, body), (ep.method, ep.path, mode, status, body)
            else:
                assert refused(ep, status, body), (ep.method, ep.path, mode, status, body)
                if mode == "anonymous":
                    assert status in (401, 404), (ep.method, ep.path, status, body)
    # The walk covered the app, not an empty table: every mode met a therapist-only endpoint.
    assert {m for (_, p, m, _) in checked if p == "/api/v1/therapists/{slug}/availability"} == set(MODES)
    assert len({(m, p) for (m, p, _, _) in checked}) >= 25


async def test_another_therapists_token_is_refused_on_every_therapist_endpoint(
    server: TestServer, api: Api, clock: Clock
) -> None:
    owner, session_type = await api.ready_therapist()
    other = await api.therapist()
    booking = await fresh_booking(api, owner, session_type, next_grid_start(clock.now() + dt.timedelta(days=1), 60))
    for ep in endpoints_of(server):
        if ep.public or "therapist" not in ep.auth or not (ep.names_therapist or ep.names_booking):
            continue
        path = ep.path.replace("{slug}", owner["slug"]).replace("{id}", booking["id"])
        path = re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), path)  # another id in the path (a webhook's): unknown
        status, body = await api.call(ep.method, path, token=other["api_token"])
        assert refused(ep, status, body), (ep.method, ep.path, status, body)


@pytest.mark.parametrize("kind", ["admin", "therapist", "session", "booking", "link"])
async def test_the_openapi_document_names_each_declared_auth_mode(server: TestServer, api: Api, kind: str) -> None:
    status, doc = await api.call("GET", "/api/v1/openapi.json")
    assert status == 200
    scheme = {
        "admin": "adminToken",
        "therapist": "therapistToken",
        "session": "sessionCookie",
        "booking": "bookingKey",
        "link": "passwordLink",
    }
    for ep in endpoints_of(server):
        path = ep.path.replace("{id:[^}]*}", "{id}")
        op = doc["paths"][path][ep.method.lower()]
        named = {name for requirement in op["security"] for name in requirement}
        assert (scheme[kind] in named) == (kind in ep.auth), (ep.method, ep.path, kind)
