"""JSON API: webhook endpoints (a therapist's, and the admin's for every therapist), their secrets and
delivery logs; and the wiring of the webhook channel (the notice hook and the outbox's sender)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from broker import webhooks
from broker.clock import CLOCK
from broker.database import POOL
from broker.http import openapi
from broker.http.endpoints import (
    THERAPIST_ACCESS,
    ApiHandler,
    ApiRoutes,
    Auth,
    Call,
    Param,
    parse_uuid,
    read_json,
    respond,
)
from broker.notices import NOTICES
from broker.outbox import SENDERS, WAKE, Message
from broker.schemas import Id, Strict
from broker.sealing import SEALER
from broker.settings import SETTINGS
from broker.webhook_sender import WebhookSender
from broker.webhooks import EVENTS, Rotated, WebhookEndpoint

routes = ApiRoutes("webhooks")

WEBHOOK_ID = Param("id", "path", "Webhook endpoint id", required=True)
DELIVERY_ID = Param("delivery_id", "path", "Delivery id (`msg_…`, the `webhook-id` header it was sent with)")
THERAPIST_BASE = "/api/v1/therapists/{slug}/webhooks"
ADMIN_BASE = "/api/v1/webhooks"
ADMIN: tuple[Auth, ...] = ("admin",)

Url = Annotated[str, Meta(min_length=8, max_length=2000, description="https:// address that receives the POSTs")]
Event = Annotated[str, Meta(max_length=60, description="a notice kind", extra_json_schema={"enum": list(EVENTS)})]
Events = Annotated[list[Event], Meta(min_length=1, max_length=len(EVENTS))]
Description = Annotated[str, Meta(max_length=200, description="your own label for it")]


class WebhookIn(Strict):
    url: Url
    events: Events
    description: Description | None = None


class WebhookPatch(Strict):
    """Fields left out stay. `enabled: true` turns a disabled endpoint on again (and clears the reason)."""

    url: Url | msgspec.UnsetType = msgspec.UNSET
    events: Events | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET


class WebhookOut(msgspec.Struct):
    id: Id
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: Annotated[str | None, Meta(description="why it was turned off (a 410 Gone from the receiver)")]
    created_at: dt.datetime
    updated_at: dt.datetime
    previous_secret_valid_until: Annotated[
        dt.datetime | None, Meta(description="after a rotation: until when the old secret still signs beside the new")
    ]


class WebhookCreated(WebhookOut):
    secret: Annotated[str, Meta(description="`whsec_…`, shown only in this answer: verify deliveries with it")]


class WebhookList(msgspec.Struct):
    webhooks: list[WebhookOut]
    events: Annotated[list[str], Meta(description="every event an endpoint may subscribe to")]


class SecretRotated(msgspec.Struct):
    secret: Annotated[str, Meta(description="the new `whsec_…` secret, shown only in this answer")]
    previous_valid_until: Annotated[dt.datetime, Meta(description="the old secret signs beside it until then")]


class DeliveryOut(msgspec.Struct):
    id: Annotated[str, Meta(description="`msg_…`: the `webhook-id` it is sent with, on every attempt")]
    event: str
    state: Annotated[str, Meta(description="pending, delivered or failed (for good: 410, or three days of retries)")]
    created_at: dt.datetime
    last_attempt_at: dt.datetime | None
    next_attempt_at: Annotated[dt.datetime | None, Meta(description="when pending: when it is tried next")]
    attempts: int
    last_status: Annotated[int | None, Meta(description="the receiver's last HTTP status; null: no answer")]
    last_error: str | None


class DeliveryList(msgspec.Struct):
    deliveries: Annotated[list[DeliveryOut], Meta(description="newest first, at most 100")]


def _out(endpoint: WebhookEndpoint, now: dt.datetime) -> dict[str, Any]:
    until = endpoint.previous_until if endpoint.previous_until and endpoint.previous_until > now else None
    return {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "events": endpoint.events,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
        "previous_secret_valid_until": until,
    }


def _delivery(message: Message) -> DeliveryOut:
    return DeliveryOut(
        id=webhooks.delivery_id(message.id),
        event=message.kind,
        state=message.state,
        created_at=message.created_at,
        last_attempt_at=message.last_attempt_at,
        next_attempt_at=message.due_at if message.state == "pending" else None,
        attempts=message.attempts,
        last_status=message.last_status,
        last_error=message.last_error,
    )


def _owner(request: web.Request, call: Call) -> uuid.UUID | None:
    """The therapist named by the path; on the admin's paths, nobody (the all-therapist endpoints)."""
    return call.therapist.id if "slug" in request.match_info else None


def _webhook_id(request: web.Request) -> uuid.UUID:
    return parse_uuid(request.match_info["id"], "webhook")


async def list_webhooks(request: web.Request, call: Call) -> web.Response:
    now = request.app[CLOCK].now()
    found = await webhooks.listing(request.app[POOL], _owner(request, call))
    return respond({"webhooks": [_out(e, now) for e in found], "events": list(EVENTS)})


async def create_webhook(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, WebhookIn)
    assert body is not None
    app = request.app
    now = app[CLOCK].now()
    endpoint, secret = await webhooks.register(
        app[POOL],
        _owner(request, call),
        url=body.url,
        events=body.events,
        description=body.description,
        sealer=app[SEALER],
        now=now,
        allow_private=app[SETTINGS].allow_private_webhook_urls,
        actor=call.principal,
    )
    return respond({**_out(endpoint, now), "secret": secret}, status=201)


async def get_webhook(request: web.Request, call: Call) -> web.Response:
    endpoint = await webhooks.get(request.app[POOL], _owner(request, call), _webhook_id(request))
    return respond(_out(endpoint, request.app[CLOCK].now()))


async def update_webhook(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, WebhookPatch)  # a bad body is refused whatever the id
    assert body is not None
    endpoint_id = _webhook_id(request)
    changes = {f: getattr(body, f) for f in body.__struct_fields__ if getattr(body, f) is not msgspec.UNSET}
    app = request.app
    now = app[CLOCK].now()
    endpoint = await webhooks.update(
        app[POOL],
        _owner(request, call),
        endpoint_id,
        changes=changes,
        now=now,
        allow_private=app[SETTINGS].allow_private_webhook_urls,
        actor=call.principal,
    )
    return respond(_out(endpoint, now))


async def delete_webhook(request: web.Request, call: Call) -> web.Response:
    await webhooks.delete(request.app[POOL], _owner(request, call), _webhook_id(request), call.principal)
    return web.Response(status=204)


async def rotate_secret(request: web.Request, call: Call) -> web.Response:
    app = request.app
    rotated: Rotated = await webhooks.rotate(
        app[POOL],
        _owner(request, call),
        _webhook_id(request),
        sealer=app[SEALER],
        now=app[CLOCK].now(),
        actor=call.principal,
    )
    return respond(SecretRotated(secret=rotated.secret, previous_valid_until=rotated.previous_valid_until))


async def list_deliveries(request: web.Request, call: Call) -> web.Response:
    found = await webhooks.deliveries(request.app[POOL], _owner(request, call), _webhook_id(request))
    return respond(DeliveryList(deliveries=[_delivery(m) for m in found]))


async def send_again(request: web.Request, call: Call) -> web.Response:
    app = request.app
    message_id = webhooks.parse_delivery_id(request.match_info["delivery_id"])
    message = await webhooks.send_again(
        app[POOL], _owner(request, call), _webhook_id(request), message_id, app[CLOCK].now()
    )
    app[WAKE].set()  # deliver now rather than at the next poll
    return respond(_delivery(message), status=202)


def _named(handler: ApiHandler, prefix: str) -> ApiHandler:
    """The handler under its own name (OpenAPI operation ids are unique)."""
    if not prefix:
        return handler

    async def named(request: web.Request, call: Call) -> web.StreamResponse:
        return await handler(request, call)

    named.__name__ = prefix + handler.__name__
    return named


def _declare(base: str, auth: tuple[Auth, ...], whose: str, prefix: str) -> None:
    """The same operations on a therapist's endpoints and on the admin's (for every therapist)."""
    one = f"{base}/{{id}}"
    table: list[tuple[str, str, ApiHandler, str, dict[str, Any]]] = [
        (
            "GET",
            base,
            list_webhooks,
            f"{whose} webhook endpoints (no secrets) and the events there are",
            {"response": WebhookList},
        ),
        (
            "POST",
            base,
            create_webhook,
            f"Register a webhook endpoint for {whose.lower()} bookings; the answer "
            "holds its `whsec_` secret, shown once",
            {"body": WebhookIn, "response": WebhookCreated, "status": 201, "errors": (409, 422)},
        ),
        ("GET", one, get_webhook, "One webhook endpoint", {"response": WebhookOut, "errors": (404,)}),
        (
            "PATCH",
            one,
            update_webhook,
            "Change a webhook's url, events, description or enabled; fields left out stay",
            {"body": WebhookPatch, "response": WebhookOut, "errors": (404, 422)},
        ),
        (
            "DELETE",
            one,
            delete_webhook,
            "Delete a webhook endpoint and its delivery log",
            {"status": 204, "errors": (404,)},
        ),
        (
            "POST",
            f"{one}/rotate-secret",
            rotate_secret,
            "A new secret (shown once); the old one keeps signing beside it for 24 hours",
            {"response": SecretRotated, "errors": (404,)},
        ),
        (
            "GET",
            f"{one}/deliveries",
            list_deliveries,
            "The endpoint's delivery log, newest first",
            {"response": DeliveryList, "errors": (404,)},
        ),
        (
            "POST",
            f"{one}/deliveries/{{delivery_id}}/send-again",
            send_again,
            "Queue a delivered or failed delivery again, with the same webhook-id",
            {"response": DeliveryOut, "status": 202, "errors": (404, 409)},
        ),
    ]
    for method, path, handler, summary, extra in table:
        params = [WEBHOOK_ID] if "{id}" in path else []
        if "{delivery_id}" in path:
            params.append(DELIVERY_ID)
        routes.route(method, path, summary=summary, auth=auth, params=params, **extra)(_named(handler, prefix))


_declare(THERAPIST_BASE, THERAPIST_ACCESS, "The therapist's", "")
_declare(ADMIN_BASE, ADMIN, "All therapists'", "admin_")


def setup(app: web.Application) -> None:
    """Mount the API, queue webhooks for every notice, and deliver them through the outbox."""
    openapi.mount(app, routes)
    clock = app[CLOCK]
    app[NOTICES].hooks.append(webhooks.notice_hook(clock.now))
    app[SENDERS]["webhook"] = WebhookSender(
        lambda: app[POOL], app[SEALER], clock.now, allow_private=app[SETTINGS].allow_private_webhook_urls
    )
