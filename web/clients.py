"""The therapist's client pages: the client list and one client's page (details to edit, sessions past and upcoming).

Rendered on the server from `broker.clients`, the same functions the JSON API calls, so each read
is audited as the therapist's (through their dashboard session). The client page's scripts edit
the details through `PATCH /api/v1/therapists/{slug}/clients/{id}` (client.js), book a series for the
client and cancel upcoming sessions, one or by series scope (client-series.js), all with the session
cookie and the CSRF token from `<meta name="csrf-token">`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from aiohttp import web

from broker import clients, session_types, therapists
from broker.clients import ClientSession, SessionRef, StandingSeries
from broker.clock import CLOCK
from broker.database import POOL
from broker.errors import NotFound
from broker.zones import zone
from web import csrf, sessions
from web import measures as measure_views
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
FREQUENCY_LABELS = {"weekly": "every week", "biweekly": "every 2 weeks"}


@dataclass(frozen=True, slots=True)
class SessionLine:
    id: str
    when: str
    session_type: str
    status: str
    status_label: str
    client_admitted: bool
    series_id: str | None
    series_index: int | None
    series_place: str | None  # "session 2 of 4, every week"


@dataclass(frozen=True, slots=True)
class ClientLine:
    id: str
    name: str
    email: str
    next_session: str | None
    last_attended: str | None
    series: str | None  # "Every week, 8 left, until Tue 12 May 2027"


@dataclass(frozen=True, slots=True)
class SeriesType:
    """A session type the therapist may book as a series, for the client page's form."""

    id: str
    name: str
    duration_minutes: int
    frequencies: str  # space-separated, e.g. "weekly biweekly"
    max_sessions: int


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


def _place(s: ClientSession) -> str | None:
    if s.series_index is None or s.series_count is None or s.series_frequency is None:
        return None
    return f"session {s.series_index + 1} of {s.series_count}, {FREQUENCY_LABELS[s.series_frequency]}"


def _line(s: ClientSession, tz: dt.tzinfo) -> SessionLine:
    return SessionLine(
        id=str(s.id),
        when=_when(s.starts_at, s.ends_at, tz),
        session_type=s.session_type_name,
        status=s.status,
        status_label=STATUS_LABELS.get(s.status, s.status),
        client_admitted=s.client_admitted,
        series_id=None if s.series_id is None else str(s.series_id),
        series_index=s.series_index,
        series_place=_place(s),
    )


def _series(count: int, standing: StandingSeries | None, tz: dt.tzinfo) -> str | None:
    """What the list says of a client's series: the soonest one's rhythm and what is left of it."""
    if standing is None:
        return None
    last = standing.last_start.astimezone(tz)
    left = f"{standing.remaining} left" if standing.remaining != 1 else "1 left"
    text = f"{FREQUENCY_LABELS[standing.frequency].capitalize()}, {left}, until {last:%a} {last.day} {last:%b %Y}"
    return text if count <= 1 else f"{text} (and {count - 1} more series)"


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
            series=_series(c.series, c.standing_series, tz),
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
            measures = await measure_views.client_measures(
                conn, therapist.id, client_id, session_principal(therapist.id), tz
            )
        offered = await session_types.offered(pool, therapist.id)
    except (ValueError, NotFound):
        return render(request, "missing.html", {"what": "client"}, status=404)
    series_types = [
        SeriesType(
            id=str(t.id),
            name=t.name,
            duration_minutes=t.duration_minutes,
            frequencies=" ".join(t.series_frequencies),
            max_sessions=t.series_max_sessions,
        )
        for t in offered
        if t.series_frequencies
    ]
    return render(
        request,
        "client.html",
        {
            "therapist": therapist,
            "client": record.client,
            "upcoming": [_line(s, tz) for s in record.upcoming],
            "past": [_line(s, tz) for s in record.past],
            "series_types": series_types,
            "measures": measures,
            "csrf_token": csrf.token_for(state.secret),
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/dashboard/clients", client_list, name="clients")
    app.router.add_get("/dashboard/clients/{id}", client_page, name="client")
