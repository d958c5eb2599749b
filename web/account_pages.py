"""The account pages: /login, /logout (POST), /forgot, /invite and /reset.

Login and "forgot password" are plain HTML forms, throttled per email and per address, and
protected by a CSRF token bound to a pre-login cookie. The invite and reset pages are shells: their
script reads the link's secret from the URL fragment and talks to `web.account_api`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from broker import audit, therapists
from broker.clock import CLOCK
from broker.database import POOL
from broker.http.ratelimit import client_address
from broker.sealing import SEALER
from broker.settings import SETTINGS
from web import csrf, password_links, passwords, sessions, throttle
from web.cookie_auth import ended_message, session_principal
from web.render import render

log = logging.getLogger("teleroom.accounts")

# Where a login may lead back to: our own therapist pages only, never another site.
_NEXT = re.compile(r"^/(dashboard(/clients(/[0-9a-fA-F-]{36})?|/messages|/webhooks)?|room/[0-9a-fA-F-]{36})$")
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$")

LOGIN_FAILED = "That email and password do not match an account. Check both and try again."


def safe_next(value: object) -> str | None:
    """`value` if it is one of our own pages to return to after login, else None."""
    return value if isinstance(value, str) and _NEXT.match(value) else None


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _clean_email(value: object) -> str:
    email = value.strip() if isinstance(value, str) else ""
    return email if len(email) <= 254 and _EMAIL.match(email) else ""


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


async def login_form(request: web.Request) -> web.Response:
    """GET /login: the form, with why the last session ended; a live session goes straight on."""
    next_path = safe_next(request.query.get("next"))
    state = await sessions.resolve(request)
    if state.live:
        return _see_other(next_path or "/dashboard")
    notice = ended_message(request.query.get("ended"), request.app[SETTINGS])
    return _login_page(request, notice=notice, next_path=next_path)


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
    # Counted as a failure from here (a success wipes it), so racing guesses cannot pass the limit.
    wait = await throttle.admit(pool, "login", email_key, address_key, now, throttle.LOGIN_LIMITS)
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

    therapist = await therapists.by_email(pool, email) if email else None
    stored = await passwords.stored_hash(pool, therapist.id) if therapist is not None else None
    # Verified even without an account or a password (against a decoy), so the time says nothing.
    if not await passwords.verify(stored, password) or therapist is None or stored is None:
        log.info("login failed")
        return _login_page(request, status=401, error=LOGIN_FAILED, email=shown_email, next_path=next_path)

    if passwords.needs_rehash(stored):
        await passwords.rehash(pool, therapist.id, password)
    previous = sessions.cookie_secret(request)
    async with pool.acquire() as conn, conn.transaction():
        if previous is not None:  # logging in again (perhaps as someone else) ends what this browser had
            await sessions.end(conn, previous, now, "logout")
        secret = await sessions.start(conn, therapist.id, now)
        await throttle.record(conn, "login", email_key, address_key, now, succeeded=True)
        await audit.record(conn, session_principal(therapist.id), "account.login", therapist_id=therapist.id)
    log.info("therapist %s logged in", therapist.id)
    response = _see_other(next_path or "/dashboard")
    sessions.set_cookie(response, secret, request.app[SETTINGS])
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /logout: end the session (only with the page's CSRF token) and forget the cookie."""
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
    """GET /forgot: ask for the email to send a reset link for."""
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
    if await throttle.admit(pool, "reset", email_key, address_key, now, throttle.RESET_LIMITS) is None:
        therapist = await therapists.by_email(pool, email)
        if therapist is not None:
            async with pool.acquire() as conn:
                await password_links.issue_reset_by_email(conn, request.app[SEALER], therapist.id, now)
            log.warning("password reset link issued and emailed to therapist %s", therapist.id)
    else:
        log.warning("password reset requests throttled")
    return _forgot_page(request, sent=True)


async def invite_page(request: web.Request) -> web.Response:
    """GET /invite: the page where a new therapist chooses a password (the secret is in the fragment)."""
    return render(request, "password.html", {"purpose": "invite"})


async def reset_page(request: web.Request) -> web.Response:
    """GET /reset: the same page for a reset link."""
    return render(request, "password.html", {"purpose": "reset"})


def add_routes(app: web.Application) -> None:
    """Add the account pages to the router (the names are what templates link to)."""
    app.router.add_get("/login", login_form, name="login")
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout, name="logout")
    app.router.add_get("/forgot", forgot_form, name="forgot")
    app.router.add_post("/forgot", forgot)
    app.router.add_get("/invite", invite_page, name="invite")
    app.router.add_get("/reset", reset_page, name="reset")
