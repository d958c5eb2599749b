"""The therapist's client pages: the client list and one client's page (details to edit, sessions past and upcoming).

Rendered on the server from `broker.clients`, the same functions the JSON API calls, so each read
is audited as the therapist's (through their dashboard session). The client page's script edits
the details through `PATCH /api/v1/therapists/{slug}/clients/{id}` with the session cookie and the
CSRF token from `<meta name="csrf-token">`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from aiohttp import web

from broker import clients, therapists
from broker.clients import ClientSession, SessionRef
from broker.clock import CLOCK
from broker.database import POOL
from broker.errors import NotFound
from broker.zones import zone
from web import csrf, sessions
from web.cookie_auth import ENDED_MESSAGES, session_principal
from web.render import render

# What the client page calls each booking status (broker.bookings.Status).
STATUS_LABELS = {
    "confirmed": "Booked",
    "cancelled": "Cancelled",
    "late_cancelled": "Late cancellation",
    "no_show": "No-show",
    "attended": "Attended",
}


@dataclass(frozen=True, slots=True)
class SessionLine:
    id: str
    when: str
    session_type: str
    status: str
    status_label: str
    client_admitted: bool


@dataclass(frozen=True, slots=True)
class ClientLine:
    id: str
    name: str
    email: str
    next_session: str | None
    last_attended: str | None


def _login_redirect(state: sessions.SessionState, next_path: str) -> web.Response:
    if state.ended in ENDED_MESSAGES and state.ended != "logout":
        location = f"/login?ended={state.ended}"
    else:
        location = f"/login?next={next_path}"
    return web.Response(status=303, headers={"Location": location})


def _when(start: dt.datetime, end: dt.datetime, tz: dt.tzinfo) -> str:
    s, e = start.astimezone(tz), end.astimezone(tz)
    return f"{s:%a} {s.day} {s:%b %Y}, {s:%H:%M}–{e:%H:%M}"


def _ref(ref: SessionRef | None, tz: dt.tzinfo) -> str | None:
    return None if ref is None else _when(ref.start, ref.end, tz)


def _line(s: ClientSession, tz: dt.tzinfo) -> SessionLine:
    return SessionLine(
        id=str(s.id),
        when=_when(s.starts_at, s.ends_at, tz),
        session_type=s.session_type_name,
        status=s.status,
        status_label=STATUS_LABELS.get(s.status, s.status),
        client_admitted=s.client_admitted,
    )


async def client_list(request: web.Request) -> web.Response:
    state = await sessions.resolve(request)
    if state.therapist_id is None or state.secret is None:
        return _login_redirect(state, "/dashboard/clients")
    pool = request.app[POOL]
    therapist = await therapists.by_id(pool, state.therapist_id)
    tz = zone(therapist.timezone)
    found = await clients.list_for_reader(pool, therapist.id, request.app[CLOCK].now(), session_principal(therapist.id))
    lines = [
        ClientLine(
            id=str(c.id),
            name=c.name,
            email=c.email,
            next_session=_ref(c.next_session, tz),
            last_attended=_ref(c.last_attended, tz),
        )
        for c in found
    ]
    return render(
        request,
        "clients.html",
        {"therapist": therapist, "clients": lines, "csrf_token": csrf.token_for(state.secret)},
    )


async def client_page(request: web.Request) -> web.Response:
    raw_id = request.match_info["id"]
    state = await sessions.resolve(request)
    if state.therapist_id is None or state.secret is None:
        return _login_redirect(state, f"/dashboard/clients/{raw_id}")
    pool = request.app[POOL]
    therapist = await therapists.by_id(pool, state.therapist_id)
    tz = zone(therapist.timezone)
    try:
        client_id = uuid.UUID(raw_id)
        async with pool.acquire() as conn:
            record = await clients.read(
                conn, therapist.id, client_id, request.app[CLOCK].now(), session_principal(therapist.id)
            )
    except (ValueError, NotFound):
        return render(request, "missing.html", {"what": "client"}, status=404)
    return render(
        request,
        "client.html",
        {
            "therapist": therapist,
            "client": record.client,
            "upcoming": [_line(s, tz) for s in record.upcoming],
            "past": [_line(s, tz) for s in record.past],
            "csrf_token": csrf.token_for(state.secret),
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/dashboard/clients", client_list, name="clients")
    app.router.add_get("/dashboard/clients/{id}", client_page, name="client")
