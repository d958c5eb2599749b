"""The therapist's Safety page (/dashboard/safety): the telehealth consent text, licences, licence_check.

A shell rendered on the server (who is logged in, the CSRF token); safety.js reads and changes
everything through the JSON API with the session cookie: `GET/PUT .../consent-text`,
`GET/POST .../licences`, `PUT/DELETE .../licences/{id}` and `PUT .../licence-check`.
"""

from __future__ import annotations

from aiohttp import web

from broker import therapists
from broker.database import POOL
from web import csrf, sessions
from web.cookie_auth import ENDED_MESSAGES
from web.render import render


async def safety_page(request: web.Request) -> web.Response:
    state = await sessions.resolve(request)
    if state.therapist_id is None or state.secret is None:
        ended = state.ended in ENDED_MESSAGES and state.ended != "logout"
        location = f"/login?ended={state.ended}" if ended else f"/login?next={request.path}"
        return web.Response(status=303, headers={"Location": location})
    therapist = await therapists.by_id(request.app[POOL], state.therapist_id)
    return render(request, "safety.html", {"therapist": therapist, "csrf_token": csrf.token_for(state.secret)})


def setup(app: web.Application) -> None:
    app.router.add_get("/dashboard/safety", safety_page, name="safety")
