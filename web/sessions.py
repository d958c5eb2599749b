"""Dashboard sessions: a random secret in an HttpOnly cookie; its hash, idle and absolute expiry in PostgreSQL.

A session ends after `session_idle_minutes` without a request, after `ABSOLUTE_LIFETIME` in any
case, on logout, and when the password changes. An ended session keeps its row (with the reason)
for `KEEP_ENDED`, so the next page can tell the therapist why they were logged out.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from broker import credentials
from broker.clock import CLOCK
from broker.database import POOL, Executor
from broker.settings import SETTINGS, Settings

COOKIE = "teleroom_session"
ABSOLUTE_LIFETIME = dt.timedelta(hours=12)
KEEP_ENDED = dt.timedelta(days=7)
_SHAPE = re.compile(rf"^{re.escape(credentials.SESSION)}[A-Za-z0-9_-]{{24,64}}$")

# Why a session ended (the `web_sessions.end_reason` column's check constraint lists the same).
EndReason = Literal["logout", "idle", "expired", "password_changed"]

INSERT_SESSION = """
INSERT INTO web_sessions (id_hash, therapist_id, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $3, $4)
"""
PURGE_SESSIONS = "DELETE FROM web_sessions WHERE expires_at < $1"
# One statement on the hot path: a live session is touched and names its therapist.
TOUCH_SESSION = """
UPDATE web_sessions SET last_seen_at = $2
WHERE id_hash = $1 AND ended_at IS NULL AND last_seen_at > $3 AND expires_at > $2
RETURNING therapist_id
"""
END_STALE_SESSION = """
UPDATE web_sessions
SET ended_at = $2, end_reason = CASE WHEN expires_at <= $2 THEN 'expired' ELSE 'idle' END
WHERE id_hash = $1 AND ended_at IS NULL AND (last_seen_at <= $3 OR expires_at <= $2)
RETURNING end_reason
"""
SELECT_END_REASON = "SELECT end_reason FROM web_sessions WHERE id_hash = $1"
END_SESSION = """
UPDATE web_sessions SET ended_at = $2, end_reason = $3 WHERE id_hash = $1 AND ended_at IS NULL
RETURNING therapist_id
"""
END_ALL_SESSIONS = """
UPDATE web_sessions SET ended_at = $2, end_reason = $3 WHERE therapist_id = $1 AND ended_at IS NULL
"""


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the request's cookie amounts to: a live session, an ended one (and why), or nothing."""

    secret: str | None
    therapist_id: uuid.UUID | None = None
    ended: EndReason | None = None

    @property
    def live(self) -> bool:
        return self.therapist_id is not None


_STATE: web.RequestKey[SessionState] = web.RequestKey("teleroom_session_state")


def new_secret() -> str:
    """A fresh cookie value (also the pre-login cookie that binds a login form's CSRF token)."""
    return credentials.new_secret(credentials.SESSION)


def cookie_secret(request: web.BaseRequest) -> str | None:
    """The cookie's value if it has the shape of one of ours (anything else is ignored)."""
    value = request.cookies.get(COOKIE)
    return value if value is not None and _SHAPE.match(value) else None


async def resolve(request: web.Request) -> SessionState:
    """Look the cookie up once per request; a live session is marked as seen now."""
    if _STATE in request:
        return request[_STATE]
    secret = cookie_secret(request)
    state = SessionState(secret)
    if secret is not None:
        pool = request.app[POOL]
        now = request.app[CLOCK].now()
        idle_since = now - dt.timedelta(minutes=request.app[SETTINGS].session_idle_minutes)
        digest = credentials.secret_hash(secret)
        therapist_id: uuid.UUID | None = await pool.fetchval(TOUCH_SESSION, digest, now, idle_since)
        if therapist_id is not None:
            state = SessionState(secret, therapist_id=therapist_id)
        else:
            reason: EndReason | None = await pool.fetchval(END_STALE_SESSION, digest, now, idle_since)
            if reason is None:
                reason = await pool.fetchval(SELECT_END_REASON, digest)
            state = SessionState(secret, ended=reason)
    request[_STATE] = state
    return state


async def start(conn: Executor, therapist_id: uuid.UUID, now: dt.datetime) -> str:
    """A new session (never the pre-login cookie's value: no session fixation). Returns the secret."""
    secret = new_secret()
    await conn.execute(INSERT_SESSION, credentials.secret_hash(secret), therapist_id, now, now + ABSOLUTE_LIFETIME)
    await conn.execute(PURGE_SESSIONS, now - KEEP_ENDED)
    return secret


async def end(conn: Executor, secret: str, now: dt.datetime, reason: EndReason) -> uuid.UUID | None:
    """End the cookie's session; returns whose it was, if it was live."""
    therapist_id: uuid.UUID | None = await conn.fetchval(END_SESSION, credentials.secret_hash(secret), now, reason)
    return therapist_id


async def end_all(conn: Executor, therapist_id: uuid.UUID, now: dt.datetime, reason: EndReason) -> None:
    """End every live session of the therapist (their password changed)."""
    await conn.execute(END_ALL_SESSIONS, therapist_id, now, reason)


def set_cookie(response: web.StreamResponse, secret: str, settings: Settings) -> None:
    """HttpOnly (no script reads it), SameSite=Lax (not sent on cross-site POSTs), Secure behind HTTPS."""
    response.set_cookie(COOKIE, secret, path="/", httponly=True, samesite="Lax", secure=settings.secure_cookies or None)


def clear_cookie(response: web.StreamResponse, settings: Settings) -> None:
    """Tell the browser to forget the cookie (with the attributes it was set with, or it stays)."""
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Lax", secure=settings.secure_cookies or None)
