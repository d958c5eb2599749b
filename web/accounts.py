"""Therapist accounts: invite and reset links, login and logout, and the cookie authenticator.

Pages: /login, /logout (POST), /forgot, /invite, /reset. JSON for the invite and reset pages'
script: GET /api/v1/account/password-link and POST /api/v1/account/password, both authorised by
the link's secret as a bearer token; GET /api/v1/session tells a logged-in page who it is and
which CSRF token to send.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from broker import audit, schemas
from broker.api import ApiRoutes, Param, read_json, respond
from broker.auth import Principal, bearer
from broker.net import client_address
from broker.problems import unauthorized
from broker.state import API_ROUTES, AUTHENTICATORS, CLOCK, POOL, SETTINGS, THERAPIST_CREATED
from web import csrf, password_links, passwords, sessions, throttle
from web.render import render

log = logging.getLogger("teleroom.accounts")
routes = ApiRoutes("accounts")

SELECT_LOGIN = """
SELECT t.id, p.password_hash FROM therapists t LEFT JOIN therapist_passwords p ON p.therapist_id = t.id
WHERE lower(t.email) = lower($1)
"""
SELECT_BY_EMAIL = "SELECT id FROM therapists WHERE lower(email) = lower($1)"
SELECT_THERAPIST = "SELECT id, slug, name, timezone FROM therapists WHERE id = $1"

# Where a login may lead back to: our own therapist pages only, never another site.
_NEXT = re.compile(r"^/(dashboard|room/[0-9a-fA-F-]{36})$")
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$")

LOGIN_FAILED = "That email and password do not match an account. Check both and try again."
ENDED_MESSAGES = {
    "idle": "Your session ended because you were inactive for {minutes} minutes. Please log in again.",
    "logout": "You have logged out.",
    "expired": "Your session ended after {hours} hours. Please log in again.",
    "password_changed": "Your password was changed, so you were logged out. Please log in again.",
}


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


def session_principal(therapist_id: uuid.UUID) -> Principal:
    return Principal("therapist", therapist_id=therapist_id, via="session")


async def cookie_principal(request: web.Request) -> Principal | None:
    """The AUTHENTICATORS entry: a live dashboard session; a state change must also pass the CSRF check.

    The check comes before the session lookup so that a forged request does not even keep an idle
    session alive.
    """
    if sessions.cookie_secret(request) is None:
        return None
    if request.method in csrf.UNSAFE:
        csrf.require(request)
    state = await sessions.resolve(request)
    return session_principal(state.therapist_id) if state.therapist_id is not None else None


def safe_next(value: object) -> str | None:
    return value if isinstance(value, str) and _NEXT.match(value) else None


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _form_page(
    request: web.Request, template: str, context: dict[str, Any], *, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    """Render a form with its CSRF token; a browser without our cookie gets a pre-login one first."""
    secret = sessions.cookie_secret(request)
    fresh = secret is None
    if secret is None:
        secret = sessions.new_secret()
    response = render(request, template, {**context, "csrf_token": csrf.token_for(secret)}, status=status)
    if fresh:
        sessions.set_cookie(response, secret, request.app[SETTINGS])
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _login_page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    email: str = "",
    next_path: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return _form_page(
        request,
        "login.html",
        {"error": error, "notice": notice, "email": email, "next": next_path or ""},
        status=status,
        headers=headers,
    )


def _ended_message(request: web.Request, reason: str | None) -> str | None:
    template = ENDED_MESSAGES.get(reason or "")
    if template is None:
        return None
    return template.format(
        minutes=request.app[SETTINGS].session_idle_minutes,
        hours=int(sessions.ABSOLUTE_LIFETIME.total_seconds() // 3600),
    )


async def login_form(request: web.Request) -> web.Response:
    next_path = safe_next(request.query.get("next"))
    state = await sessions.resolve(request)
    if state.live:
        return _see_other(next_path or "/dashboard")
    notice = _ended_message(request, request.query.get("ended"))
    return _login_page(request, notice=notice, next_path=next_path)


def _clean_email(value: object) -> str:
    email = value.strip() if isinstance(value, str) else ""
    return email if len(email) <= 254 and _EMAIL.match(email) else ""


async def login(request: web.Request) -> web.Response:
    """Check the password (argon2id), throttled per email and per address; never say which part was wrong."""
    form = await request.post()
    raw_email = form.get("email")
    email = _clean_email(raw_email)
    shown_email = raw_email.strip()[:254] if isinstance(raw_email, str) else ""
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    next_path = safe_next(form.get("next"))
    if sessions.cookie_secret(request) is None or not csrf.passed(request):
        return _login_page(
            request,
            status=403,
            error="This login form had expired. Please enter your email and password again.",
            email=shown_email,
            next_path=next_path,
        )

    pool = request.app[POOL]
    now = request.app[CLOCK].now()
    email_key = throttle.email_key(email or shown_email)
    address_key = throttle.address_key(client_address(request))
    wait = await throttle.retry_after(pool, "login", email_key, address_key, now, throttle.LOGIN_LIMITS)
    if wait is not None:
        minutes = max(1, -(-wait // 60))
        log.warning("login throttled for %ss", wait)
        return _login_page(
            request,
            status=429,
            error=f"Too many attempts to log in. For your safety, please wait {minutes} minute"
            f"{'s' if minutes != 1 else ''} before trying again.",
            email=shown_email,
            next_path=next_path,
            headers={"Retry-After": str(wait)},
        )

    row = await pool.fetchrow(SELECT_LOGIN, email) if email else None
    ok = await passwords.verify(row["password_hash"] if row else None, password)
    if not ok or row is None:
        await throttle.record(pool, "login", email_key, address_key, now, succeeded=False)
        log.info("login failed")
        return _login_page(request, status=401, error=LOGIN_FAILED, email=shown_email, next_path=next_path)

    therapist_id: uuid.UUID = row["id"]
    if passwords.needs_rehash(row["password_hash"]):
        await passwords.rehash(pool, therapist_id, password)
    previous = sessions.cookie_secret(request)
    async with pool.acquire() as conn, conn.transaction():
        if previous is not None:  # logging in again (perhaps as someone else) ends what this browser had
            await sessions.end(conn, previous, now, "logout")
        secret = await sessions.start(conn, therapist_id, now)
        await throttle.record(conn, "login", email_key, address_key, now, succeeded=True)
        await audit.record(conn, session_principal(therapist_id), "account.login", therapist_id=therapist_id)
    log.info("therapist %s logged in", therapist_id)
    response = _see_other(next_path or "/dashboard")
    sessions.set_cookie(response, secret, request.app[SETTINGS])
    return response


async def logout(request: web.Request) -> web.Response:
    csrf.require(request)
    secret = sessions.cookie_secret(request)
    if secret is not None:
        therapist_id = await sessions.end(request.app[POOL], secret, request.app[CLOCK].now(), "logout")
        if therapist_id is not None:
            await audit.record(
                request.app[POOL], session_principal(therapist_id), "account.logout", therapist_id=therapist_id
            )
            log.info("therapist %s logged out", therapist_id)
    response = _see_other("/login?ended=logout")
    sessions.clear_cookie(response, request.app[SETTINGS])
    return response


def _forgot_page(
    request: web.Request, *, status: int = 200, sent: bool = False, error: str | None = None
) -> web.Response:
    return _form_page(request, "forgot.html", {"sent": sent, "error": error}, status=status)


async def forgot_form(request: web.Request) -> web.Response:
    return _forgot_page(request)


async def forgot(request: web.Request) -> web.Response:
    """Issue a reset link when the email has an account; the answer is the same either way."""
    form = await request.post()
    if sessions.cookie_secret(request) is None or not csrf.passed(request):
        return _forgot_page(request, status=403, error="This form had expired. Please enter your email again.")
    email = _clean_email(form.get("email"))
    if not email:
        return _forgot_page(request, status=422, error="Enter the email address you log in with.")
    pool = request.app[POOL]
    now = request.app[CLOCK].now()
    email_key = throttle.email_key(email)
    address_key = throttle.address_key(client_address(request))
    if await throttle.retry_after(pool, "reset", email_key, address_key, now, throttle.RESET_LIMITS) is None:
        await throttle.record(pool, "reset", email_key, address_key, now, succeeded=False)
        therapist_id = await pool.fetchval(SELECT_BY_EMAIL, email)
        if therapist_id is not None:
            async with pool.acquire() as conn:
                secret = await password_links.issue(conn, therapist_id, "reset", now)
            log.warning("password reset link issued for therapist %s", therapist_id)
            password_links.announce(
                therapist_id, "reset", password_links.url(request.app[SETTINGS].origin, "reset", secret)
            )
    else:
        log.warning("password reset requests throttled")
    return _forgot_page(request, sent=True)


async def invite_page(request: web.Request) -> web.Response:
    return render(request, "password.html", {"purpose": "invite"})


async def reset_page(request: web.Request) -> web.Response:
    return render(request, "password.html", {"purpose": "reset"})


def _link_secret(request: web.Request) -> str:
    secret = bearer(request)
    if secret is None or not password_links.looks_like_link_secret(secret):
        raise unauthorized("Send the link's secret (from the URL fragment) as a bearer token.")
    return secret


LINK_PARAM = Param("Authorization", "header", "Bearer <the tri_ or trr_ secret from the link's #t= fragment>")


@routes.route(
    "GET",
    "/api/v1/account/password-link",
    summary="What an invite or reset link is for (the page shows it before asking for a password)",
    response=LinkInfo,
    params=[LINK_PARAM],
    errors=(401, 404, 410),
)
async def link_info(request: web.Request) -> web.Response:
    link = await password_links.inspect(request.app[POOL], _link_secret(request), request.app[CLOCK].now())
    return respond(LinkInfo(purpose=link.purpose, name=link.name, email=link.email, expires_at=link.expires_at))


@routes.route(
    "POST",
    "/api/v1/account/password",
    summary="Choose a password with a one-time link; logs in (Set-Cookie) and ends other sessions",
    body=PasswordIn,
    response=LoggedIn,
    params=[LINK_PARAM],
    errors=(401, 404, 410, 422),
)
async def set_password(request: web.Request) -> web.Response:
    secret = _link_secret(request)
    body = await read_json(request, PasswordIn)
    assert body is not None
    passwords.check_policy(body.password)
    pool = request.app[POOL]
    now = request.app[CLOCK].now()
    await password_links.inspect(pool, secret, now)  # a dead link fails before we spend time hashing
    password_hash = await passwords.hash_password(body.password)
    async with pool.acquire() as conn, conn.transaction():
        therapist_id, purpose = await password_links.use(conn, secret, now)
        await passwords.store(conn, therapist_id, password_hash, now)
        await sessions.end_all(conn, therapist_id, now, "password_changed")
        session = await sessions.start(conn, therapist_id, now)
        await audit.record(
            conn, session_principal(therapist_id), f"account.password_set.{purpose}", therapist_id=therapist_id
        )
    log.info("therapist %s chose a password (%s link)", therapist_id, purpose)
    response = respond(LoggedIn(redirect="/dashboard"))
    sessions.set_cookie(response, session, request.app[SETTINGS])
    return response


@routes.route(
    "GET",
    "/api/v1/session",
    summary="The logged-in therapist and the CSRF token their page must send",
    auth="session",
    response=SessionOut,
    errors=(401,),
)
async def current_session(request: web.Request) -> web.Response:
    state = await sessions.resolve(request)
    if state.therapist_id is None or state.secret is None:
        raise unauthorized("Log in first; this needs the dashboard session cookie.")
    row = await request.app[POOL].fetchrow(SELECT_THERAPIST, state.therapist_id)
    return respond(
        SessionOut(
            therapist=SessionTherapist(id=str(row["id"]), slug=row["slug"], name=row["name"], timezone=row["timezone"]),
            csrf_token=csrf.token_for(state.secret),
            idle_timeout_seconds=request.app[SETTINGS].session_idle_minutes * 60,
        )
    )


async def invite_on_create(app: web.Application, therapist_id: uuid.UUID, out: Any) -> Any:
    """THERAPIST_CREATED hook: the admin API answer gains a one-time invite link (valid 7 days)."""
    async with app[POOL].acquire() as conn:
        secret = await password_links.issue(conn, therapist_id, "invite", app[CLOCK].now())
    log.info("invite link issued for therapist %s", therapist_id)
    return msgspec.structs.replace(out, invite_url=password_links.url(app[SETTINGS].origin, "invite", secret))


def setup(app: web.Application) -> None:
    """Account pages and API, the cookie authenticator, the CSRF middleware and the invite hook."""

    app.middlewares.append(csrf.middleware)
    app[AUTHENTICATORS].append(cookie_principal)
    app[THERAPIST_CREATED].append(invite_on_create)
    app[API_ROUTES].append(routes)
    routes.install(app)
    app.router.add_get("/login", login_form, name="login")
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout, name="logout")
    app.router.add_get("/forgot", forgot_form, name="forgot")
    app.router.add_post("/forgot", forgot)
    app.router.add_get("/invite", invite_page, name="invite")
    app.router.add_get("/reset", reset_page, name="reset")
