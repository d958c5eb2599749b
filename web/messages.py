"""The therapist's pages for what Teleroom sends: booking notices, email previews, undelivered messages, webhooks.

Both pages are shells rendered on the server (who is logged in, the CSRF token, the events a webhook
may ask for); their scripts read and change everything through the JSON API with the session
cookie and the token from `<meta name="csrf-token">`:
- `/dashboard/messages` (messages.js): `GET/PUT .../notifications`, `GET .../email-previews[/{template}]`
  and `GET .../messages?state=failed`;
- `/dashboard/messages/previews/{template}`: an email's HTML with sample data, as its own document for
  the Messages page's frame (see `email_preview`);
- `/dashboard/webhooks` (webhooks.js): `.../webhooks` (register, list, edit, rotate the secret,
  delete) and each endpoint's `.../deliveries` with "send again".
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from aiohttp import web

from broker import therapists
from broker.database import POOL
from broker.mail import render as mail_render
from broker.notices import NoticeKind
from web import csrf, sessions
from web.cookie_auth import ENDED_MESSAGES
from web.render import render

# What each webhook event is called on the page; the names themselves are the notice kinds.
EVENT_LABELS: dict[str, str] = {
    "booking.created": "A session is booked",
    "booking.rescheduled": "A session is moved to another time",
    "booking.cancelled": "A session is cancelled",
    "booking.late_cancelled": "A session is cancelled late (inside the cancellation window)",
    "series.created": "A series of sessions is booked",
    "series.cancelled": "A series of sessions is cancelled",
}


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    label: str


def events() -> list[Event]:
    """Every notice kind a webhook may subscribe to, in the order broker.notices declares them."""
    return [Event(name, EVENT_LABELS.get(name, name)) for name in typing.get_args(NoticeKind)]


def _login_redirect(state: sessions.SessionState, next_path: str) -> web.Response:
    if state.ended in ENDED_MESSAGES and state.ended != "logout":
        location = f"/login?ended={state.ended}"
    else:
        location = f"/login?next={next_path}"
    return web.Response(status=303, headers={"Location": location})


async def _page(request: web.Request, template: str, context: dict[str, object]) -> web.Response:
    state = await sessions.resolve(request)
    if state.therapist_id is None or state.secret is None:
        return _login_redirect(state, request.path)
    therapist = await therapists.by_id(request.app[POOL], state.therapist_id)
    return render(request, template, {"therapist": therapist, "csrf_token": csrf.token_for(state.secret), **context})


async def messages_page(request: web.Request) -> web.Response:
    return await _page(request, "messages.html", {})


async def webhooks_page(request: web.Request) -> web.Response:
    return await _page(request, "webhooks.html", {"events": events()})


# An email's HTML styles itself inline, as mail clients require, which the pages' CSP (style-src
# 'self') forbids, and a srcdoc frame inherits its parent's CSP. So the preview is a document of its
# own, with a policy that lets it style itself and do nothing else: no script, no request (images
# only as data:), no form, an opaque origin (`sandbox`, which the page's <iframe sandbox> repeats),
# and framed only by our own pages.
_PREVIEW_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'"
)


async def email_preview(request: web.Request) -> web.Response:
    """The HTML of one email template with sample data (no real person's), for the preview frame."""
    state = await sessions.resolve(request)
    if state.therapist_id is None:
        return web.Response(status=401, text="Log in to see email previews.")
    name = request.match_info["template"]
    if name not in mail_render.TEMPLATES:
        return web.Response(status=404, text="There is no email template with this name.")
    return web.Response(
        text=mail_render.preview(name).html,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": _PREVIEW_CSP,
            "X-Frame-Options": "SAMEORIGIN",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Cache-Control": "no-store",
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/dashboard/messages", messages_page, name="messages")
    app.router.add_get("/dashboard/messages/previews/{template}", email_preview, name="email_preview")
    app.router.add_get("/dashboard/webhooks", webhooks_page, name="webhooks")
