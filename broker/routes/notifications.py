"""JSON API: what a therapist hears by email, previews of every email, the therapist's outbound
messages, and when a session type's reminders go out.

Mounting this part also sets up the email channel (`broker.mail.setup`): its sender for the
outbox and its notice hook.
"""

from __future__ import annotations

import datetime as dt
import typing
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from broker import mail, outbox, schemas, session_types
from broker.database import POOL
from broker.errors import NotFound, invalid
from broker.http import openapi
from broker.http.endpoints import THERAPIST_ACCESS, ApiRoutes, Call, Param, query_param, read_json, respond
from broker.mail import preferences, render

routes = ApiRoutes("notifications")
TEMPLATE = Param("template", "path", "Template name (see the list)", required=True)
SESSION_TYPE_ID = Param("id", "path", "Session type id", required=True)
MESSAGES_LISTED = 200


class NotificationsIn(schemas.Strict):
    notify_bookings: Annotated[bool, Meta(description="email me about new bookings and cancellations")]
    notice_detail: Annotated[
        render.Tier, Meta(description="how much of the client those emails name: busy (nothing), initials, full")
    ]
    email_session_type: Annotated[bool, Meta(description="clients' emails may name the session type")]


class NotificationsOut(msgspec.Struct):
    notify_bookings: bool
    notice_detail: render.Tier
    email_session_type: bool


class PreviewList(msgspec.Struct):
    templates: Annotated[list[str], Meta(description="the email templates, by name")]


class PreviewOut(msgspec.Struct):
    template: str
    subject: str
    text: str
    html: str


class MessageOut(msgspec.Struct):
    """An outbound message as the dashboard lists it: ids, times and delivery, never an address or content."""

    id: schemas.Id
    channel: outbox.Channel
    kind: str
    recipient: outbox.Recipient
    state: outbox.State
    due_at: dt.datetime
    created_at: dt.datetime
    attempts: int
    last_attempt_at: dt.datetime | None
    last_status: Annotated[int | None, Meta(description="the SMTP reply code or HTTP status of the last attempt")]
    last_error: str | None
    booking_id: schemas.Id | None


class RemindersIn(schemas.Strict):
    reminder_minutes: schemas.ReminderMinutes


def _out(p: preferences.Preferences) -> NotificationsOut:
    return NotificationsOut(
        notify_bookings=p.notify_bookings, notice_detail=p.notice_detail, email_session_type=p.email_session_type
    )


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/notifications",
    summary="What the therapist hears by email, and what clients' emails may say",
    auth=THERAPIST_ACCESS,
    response=NotificationsOut,
)
async def get_notifications(request: web.Request, call: Call) -> web.Response:
    return respond(_out(await preferences.get(request.app[POOL], call.therapist.id)))


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/notifications",
    summary="Turn booking notices on or off, choose their detail tier and whether emails name the session type",
    auth=THERAPIST_ACCESS,
    body=NotificationsIn,
    response=NotificationsOut,
    errors=(422,),
)
async def put_notifications(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, NotificationsIn)
    assert body is not None
    wanted = preferences.Preferences(body.notify_bookings, body.notice_detail, body.email_session_type)
    changed = await preferences.change(request.app[POOL], call.therapist.id, wanted, call.principal)
    request.app.logger.info("notification preferences of therapist %s changed", call.therapist.id)
    return respond(_out(changed))


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/email-previews",
    summary="The email templates that can be previewed",
    auth=THERAPIST_ACCESS,
    response=PreviewList,
)
async def list_previews(request: web.Request, call: Call) -> web.Response:
    return respond(PreviewList(templates=list(render.TEMPLATES)))


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/email-previews/{template}",
    summary="An email template rendered with sample data: subject, plain text and HTML",
    auth=THERAPIST_ACCESS,
    response=PreviewOut,
    params=[TEMPLATE],
    errors=(404,),
)
async def get_preview(request: web.Request, call: Call) -> web.Response:
    name = request.match_info["template"]
    if name not in render.TEMPLATES:
        raise NotFound("email template", code="template_unknown")
    shown = render.preview(name)
    return respond(PreviewOut(template=shown.template, subject=shown.subject, text=shown.text, html=shown.html))


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/messages",
    summary="The therapist's outbound emails and webhook deliveries, newest first (never an address or content)",
    auth=THERAPIST_ACCESS,
    response=list[MessageOut],
    params=[
        Param(
            "state",
            "query",
            "Only messages in this state (default: all)",
            schema={"type": "string", "enum": list(typing.get_args(outbox.State))},
        )
    ],
    errors=(422,),
)
async def list_messages(request: web.Request, call: Call) -> web.Response:
    state = query_param(request, "state")
    if state is not None and state not in typing.get_args(outbox.State):
        raise invalid("`state` must be one of " + ", ".join(typing.get_args(outbox.State)) + ".")
    found = await outbox.for_therapist(
        request.app[POOL], call.therapist.id, typing.cast(outbox.State | None, state), MESSAGES_LISTED
    )
    return respond(
        [
            MessageOut(
                id=str(m.id),
                channel=m.channel,
                kind=m.kind,
                recipient=m.recipient,
                state=m.state,
                due_at=m.due_at,
                created_at=m.created_at,
                attempts=m.attempts,
                last_attempt_at=m.last_attempt_at,
                last_status=m.last_status,
                last_error=m.last_error,
                booking_id=None if m.booking_id is None else str(m.booking_id),
            )
            for m in found
        ]
    )


@routes.route(
    "PUT",
    "/api/v1/therapists/{slug}/session-types/{id}/reminders",
    summary="When clients' email reminders of this session type go out (bookings made from now on)",
    auth=THERAPIST_ACCESS,
    body=RemindersIn,
    response=schemas.SessionTypeOut,
    params=[SESSION_TYPE_ID],
    errors=(404, 422),
)
async def put_reminders(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, RemindersIn)
    assert body is not None
    changed = await session_types.set_reminders(
        request.app[POOL], call.therapist.id, request.match_info["id"], body.reminder_minutes
    )
    return respond(changed.to_wire())


def setup(app: web.Application) -> None:
    openapi.mount(app, routes)
    mail.setup(app)
