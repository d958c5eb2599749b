"""The therapist's dashboard: today's sessions and who is waiting, upcoming bookings, links, session types, hours.

The page is rendered on the server from the same storage the JSON API uses; its script edits
availability and session types and creates calendar links through that API, with the session
cookie and the CSRF token from `<meta name="csrf-token">`.

Who is waiting is read from the attendance events signaling records (broker/attendance.py): a
client whose last presence event is `joined` and who has not been admitted is in the waiting
room. Only rooms whose join window is open count, so a node that died before recording `left`
cannot leave a ghost in the list for long.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

import asyncpg
from aiohttp import web

from broker import audit, bookings, therapists
from broker.state import CLOCK, POOL, SETTINGS
from broker.zones import zone
from calendars.slots import dates_window
from web import csrf, sessions
from web.accounts import ENDED_MESSAGES, session_principal
from web.render import render

UPCOMING_DAYS = 30
SELECT_THERAPIST = "SELECT id, slug, name, timezone FROM therapists WHERE id = $1"
# Per client participant of each booking: the last presence event and the last admission event.
SELECT_PRESENCE = """
SELECT booking_id, participant,
       (array_agg(event ORDER BY at DESC, id DESC) FILTER (WHERE event IN ('joined', 'left', 'removed')))[1]
           AS presence,
       (array_agg(event ORDER BY at DESC, id DESC) FILTER (WHERE event IN ('admitted', 'removed')))[1]
           AS admission
FROM attendance_events
WHERE booking_id = ANY($1::uuid[]) AND role = 'client'
GROUP BY booking_id, participant
"""

JoinState = Literal["later", "open", "over"]
Presence = Literal["waiting", "in_session"]


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


async def presence_by_booking(pool: asyncpg.Pool, booking_ids: list[uuid.UUID]) -> dict[uuid.UUID, Presence]:
    """Which of these bookings have their client in the waiting room, or admitted and connected."""
    found: dict[uuid.UUID, Presence] = {}
    if not booking_ids:
        return found
    for row in await pool.fetch(SELECT_PRESENCE, booking_ids):
        if row["presence"] != "joined":
            continue
        now_state: Presence = "in_session" if row["admission"] == "admitted" else "waiting"
        if found.get(row["booking_id"]) != "waiting":
            found[row["booking_id"]] = now_state
    return found


def _hhmm(value: dt.datetime, tz: dt.tzinfo) -> str:
    return value.astimezone(tz).strftime("%H:%M")


async def dashboard(request: web.Request) -> web.Response:
    state = await sessions.resolve(request)
    if state.therapist_id is None or state.secret is None:
        return _login_redirect(state)
    pool = request.app[POOL]
    settings = request.app[SETTINGS]
    now = request.app[CLOCK].now()
    therapist = await pool.fetchrow(SELECT_THERAPIST, state.therapist_id)
    tz = zone(therapist["timezone"])
    today = now.astimezone(tz).date()
    rows = await bookings.list_for_therapist(
        pool, therapist["id"], dates_window(today, today + dt.timedelta(days=UPCOMING_DAYS), tz), "confirmed"
    )
    await audit.record_many(
        pool,
        session_principal(therapist["id"]),
        "booking.listed",
        [r["id"] for r in rows],
        therapist_id=therapist["id"],
    )
    early = dt.timedelta(minutes=settings.join_early_minutes)
    late = dt.timedelta(minutes=settings.join_late_minutes)
    open_ids = [r["id"] for r in rows if r["starts_at"] - early <= now < r["ends_at"] + late]
    presence = await presence_by_booking(pool, open_ids)

    today_rows: list[SessionRow] = []
    upcoming: list[SessionRow] = []
    for r in rows:
        opens_at, closes_at = r["starts_at"] - early, r["ends_at"] + late
        join: JoinState = "later" if now < opens_at else "open" if now < closes_at else "over"
        local_start = r["starts_at"].astimezone(tz)
        item = SessionRow(
            id=str(r["id"]),
            starts_at=r["starts_at"],
            ends_at=r["ends_at"],
            opens_at=opens_at,
            closes_at=closes_at,
            day=f"{local_start:%a} {local_start.day} {local_start:%b}",
            time=f"{_hhmm(r['starts_at'], tz)}–{_hhmm(r['ends_at'], tz)}",
            opens=_hhmm(opens_at, tz),
            client_name=r["client_name"],
            client_location=r["client_location"],
            session_type=r["session_type_name"],
            join=join,
            presence=presence.get(r["id"]),
        )
        (today_rows if local_start.date() == today else upcoming).append(item)

    origin = settings.origin
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
            "session_types": await therapists.session_types(pool, therapist["id"]),
            "booking_url": f"{origin}/book/{therapist['slug']}",
            "csrf_token": csrf.token_for(state.secret),
            "server_now": now.isoformat(),
            "idle_seconds": settings.session_idle_minutes * 60,
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/dashboard", dashboard, name="dashboard")
