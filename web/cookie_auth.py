"""The dashboard session cookie as a way to authenticate, and what a page says when it stopped working.

`cookie_principal` is the web package's entry in `broker.http.auth.AUTHENTICATORS`: endpoints that
declare `auth="session"` accept a live session cookie through it. A state change made with the
cookie must also pass the CSRF check (`web.csrf`).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from broker.principals import Principal
from broker.settings import Settings
from web import csrf, sessions

# What the login page says about a session that ended, for each `sessions.EndReason`.
ENDED_MESSAGES: dict[str, str] = {
    "idle": "Your session ended because you were inactive for {minutes} minutes. Please log in again.",
    "logout": "You have logged out.",
    "expired": "Your session ended after {hours} hours. Please log in again.",
    "password_changed": "Your password was changed, so you were logged out. Please log in again.",
}


def ended_message(reason: str | None, settings: Settings) -> str | None:
    """The login page's notice for `?ended=<reason>`; None for anything we did not send."""
    template = ENDED_MESSAGES.get(reason or "")
    if template is None:
        return None
    return template.format(
        minutes=settings.session_idle_minutes,
        hours=int(sessions.ABSOLUTE_LIFETIME.total_seconds() // 3600),
    )


def session_principal(therapist_id: uuid.UUID) -> Principal:
    """The therapist acting through their dashboard session (as audit records name them)."""
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
