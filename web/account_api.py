"""The accounts' JSON endpoints, for the invite, reset and dashboard pages' scripts.

GET /api/v1/account/password-link and POST /api/v1/account/password are declared `auth="link"`: a
one-time link's secret (from the URL fragment) is the bearer token; GET /api/v1/session tells a
logged-in page who it is and which CSRF token to send.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from broker import audit, schemas, therapists
from broker.clock import CLOCK
from broker.database import POOL
from broker.errors import Unauthenticated
from broker.http.endpoints import ApiRoutes, Call, read_json, respond
from broker.settings import SETTINGS
from web import csrf, password_links, passwords, sessions
from web.cookie_auth import session_principal

log = logging.getLogger("teleroom.accounts")
routes = ApiRoutes("accounts")


class LinkInfo(msgspec.Struct):
    purpose: str
    name: str
    email: str
    expires_at: dt.datetime


class PasswordIn(schemas.Strict):
    password: Annotated[str, Meta(max_length=passwords.MAX_LENGTH * 4)]


class LoggedIn(msgspec.Struct):
    redirect: str


class SessionTherapist(msgspec.Struct):
    id: str
    slug: str
    name: str
    timezone: str


class SessionOut(msgspec.Struct):
    therapist: SessionTherapist
    csrf_token: Annotated[str, Meta(description="send as X-CSRF-Token on POST, PUT, PATCH and DELETE")]
    idle_timeout_seconds: int


def _link(call: Call) -> str:
    """The link's secret, which the "link" declaration checked the shape of."""
    if call.link is None:
        raise Unauthenticated("Send the link's secret (from the URL fragment) as a bearer token.")
    return call.link


@routes.route(
    "GET",
    "/api/v1/account/password-link",
    summary="What an invite or reset link is for (the page shows it before asking for a password)",
    auth="link",
    response=LinkInfo,
    errors=(404, 410),
)
async def link_info(request: web.Request, call: Call) -> web.Response:
    pool = request.app[POOL]
    link = await password_links.inspect(pool, _link(call), request.app[CLOCK].now())
    therapist = await therapists.by_id(pool, link.therapist_id)
    return respond(
        LinkInfo(purpose=link.purpose, name=therapist.name, email=therapist.email, expires_at=link.expires_at)
    )


@routes.route(
    "POST",
    "/api/v1/account/password",
    summary="Choose a password with a one-time link; logs in (Set-Cookie) and ends other sessions",
    body=PasswordIn,
    auth="link",
    response=LoggedIn,
    errors=(404, 410, 422),
)
async def set_password(request: web.Request, call: Call) -> web.Response:
    secret = _link(call)
    body = await read_json(request, PasswordIn)
    assert body is not None
    passwords.check_policy(body.password)
    pool = request.app[POOL]
    now = request.app[CLOCK].now()
    await password_links.inspect(pool, secret, now)  # a dead link fails before we spend time hashing
    password_hash = await passwords.hash_password(body.password)
    async with pool.acquire() as conn, conn.transaction():
        link = await password_links.use(conn, secret, now)
        await passwords.store(conn, link.therapist_id, password_hash, now)
        await sessions.end_all(conn, link.therapist_id, now, "password_changed")
        session = await sessions.start(conn, link.therapist_id, now)
        await audit.record(
            conn,
            session_principal(link.therapist_id),
            f"account.password_set.{link.purpose}",
            therapist_id=link.therapist_id,
        )
    log.info("therapist %s chose a password (%s link)", link.therapist_id, link.purpose)
    response = respond(LoggedIn(redirect="/dashboard"))
    sessions.set_cookie(response, session, request.app[SETTINGS])
    return response


@routes.route(
    "GET",
    "/api/v1/session",
    summary="The logged-in therapist and the CSRF token their page must send",
    auth="session",
    response=SessionOut,
)
async def current_session(request: web.Request, call: Call) -> web.Response:
    secret = sessions.cookie_secret(request)
    if call.principal.therapist_id is None or secret is None:  # the "session" declaration rules both out
        raise Unauthenticated("Log in first; this needs the dashboard session cookie.")
    therapist = await therapists.by_id(request.app[POOL], call.principal.therapist_id)
    return respond(
        SessionOut(
            therapist=SessionTherapist(
                id=str(therapist.id), slug=therapist.slug, name=therapist.name, timezone=therapist.timezone
            ),
            csrf_token=csrf.token_for(secret),
            idle_timeout_seconds=request.app[SETTINGS].session_idle_minutes * 60,
        )
    )
