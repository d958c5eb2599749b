"""The therapist's dashboard: today's sessions and who is waiting, upcoming bookings, links, session types, hours.

The page is rendered on the server from the same storage the JSON API uses; its script edits
availability and session types and creates calendar links through that API, with the session
cookie and the CSRF token from `<meta name="csrf-token">`.

Who is waiting is read from the attendance events signaling records (`broker.attendance.presence`):
a client whose last presence event is `joined` and who has not been admitted is in the waiting
room. The join window is `broker.tokens.join_window`, the same one room tokens are issued in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from aiohttp import web

from broker import attendance, bookings, outside_hours, session_types, therapists, tokens
from broker.attendance import Presence
from broker.bookings import Booking
from broker.clock import CLOCK
from broker.database import POOL
from broker.settings import SETTINGS
from broker.tokens import JoinState
from broker.zones import zone
from calendars.slots import dates_window
from web import csrf, sessions
from web import measures as measure_views
from web.cookie_auth import ENDED_MESSAGES, session_principal
from web.render import render

UPCOMING_DAYS = 30


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    opens_at: dt.datetime
    closes_at: dt.datetime
    day: str
    time: str
    opens: str
    client_name: str
    client_location: str | None
    session_type: str
    join: JoinState
    presence: Presence | None


def _login_redirect(state: sessions.SessionState) -> web.Response:
    if state.ended in ENDED_MESSAGES and state.ended != "logout":
        location = f"/login?ended={state.ended}"
    else:
        location = "/login?next=/dashboard"
    return web.Response(status=303, headers={"Location": location})


def _hhmm(value: dt.datetime, tz: dt.tzinfo) -> str:
    return value.astimezone(tz).strftime("%H:%M")


def _session_row(
    booking: Booking, window: tokens.JoinWindow, now: dt.datetime, tz: dt.tzinfo, presence: Presence | None
) -> SessionRow:
    local_start = booking.starts_at.astimezone(tz)
    return SessionRow(
        id=str(booking.id),
        starts_at=booking.starts_at,
        ends_at=booking.ends_at,
        opens_at=window.opens_at,
        closes_at=window.closes_at,
        day=f"{local_start:%a} {local_start.day} {local_start:%b}",
        time=f"{_hhmm(booking.starts_at, tz)}–{_hhmm(booking.ends_at, tz)}",
        opens=_hhmm(window.opens_at, tz),
        client_name=booking.client_name,
        client_location=booking.client_location,
        session_type=booking.session_type_name,
        join=window.state(now),
        presence=presence,
    )


async def dashboard(request: web.Request) -> web.Response:
    state = await sessions.resolve(request)
    if state.therapist_id is None or state.secret is None:
        return _login_redirect(state)
    pool = request.app[POOL]
    settings = request.app[SETTINGS]
    now = request.app[CLOCK].now()
    therapist = await therapists.by_id(pool, state.therapist_id)
    tz = zone(therapist.timezone)
    today = now.astimezone(tz).date()
    reader = session_principal(therapist.id)
    # Sessions that happen: confirmed, and those already marked attended or no_show (broker/outcomes.py).
    found = [
        b
        for b in await bookings.list_for_reader(
            pool, therapist.id, dates_window(today, today + dt.timedelta(days=UPCOMING_DAYS), tz), None, reader
        )
        if b.status not in bookings.CANCELLED
    ]
    windows = {b.id: tokens.join_window(b.starts_at, b.ends_at, settings) for b in found}
    # Only rooms whose window is open count, so a node that died before recording `left`
    # cannot leave a ghost in the waiting list for long.
    presence = await attendance.presence(pool, [b.id for b in found if windows[b.id].state(now) == "open"])

    today_rows: list[SessionRow] = []
    upcoming: list[SessionRow] = []
    for booking in found:
        item = _session_row(booking, windows[booking.id], now, tz, presence.get(booking.id))
        (today_rows if item.starts_at.astimezone(tz).date() == today else upcoming).append(item)

    return render(
        request,
        "dashboard.html",
        {
            "therapist": therapist,
            "today_label": f"{today:%A} {today.day} {today:%B}",
            "today": today_rows,
            "waiting": [s for s in today_rows if s.presence == "waiting"],
            "upcoming": upcoming,
            "upcoming_days": UPCOMING_DAYS,
            "outside_hours": [
                _session_row(b, tokens.join_window(b.starts_at, b.ends_at, settings), now, tz, None)
                for b in await outside_hours.sessions_outside_hours(pool, therapist, now, reader)
            ],
            "session_types": await session_types.offered(pool, therapist.id),
            "safety_alerts": await measure_views.open_alerts(pool, therapist.id, reader, tz),
            "booking_url": f"{settings.origin}/book/{therapist.slug}",
            "csrf_token": csrf.token_for(state.secret),
            "server_now": now.isoformat(),
            "idle_seconds": settings.session_idle_minutes * 60,
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/dashboard", dashboard, name="dashboard")
