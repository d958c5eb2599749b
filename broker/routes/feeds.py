"""Calendar feeds over HTTP: managing a therapist's feeds, the secret feed URL, and a client's .ics."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from broker import feeds
from broker.clock import CLOCK
from broker.database import POOL
from broker.feeds import FEED_CACHE, FeedCache
from broker.http import openapi
from broker.http.endpoints import (
    BOOKING_ACCESS,
    THERAPIST_ACCESS,
    ApiRoutes,
    Call,
    Param,
    parse_uuid,
    read_json,
    respond,
)
from broker.settings import SETTINGS
from calendars.ical import Privacy

routes = ApiRoutes("calendars")
FEED_ID = Param("id", "path", "Feed id", required=True)
CALENDAR_TYPE = "text/calendar"
CACHE_SECONDS = 300


class FeedIn(msgspec.Struct, forbid_unknown_fields=True):
    privacy: Annotated[
        Privacy, Meta(description="busy: only 'Busy'; initials: session type and client initials; full: + name")
    ]


class FeedCreated(msgspec.Struct):
    id: str
    url: Annotated[str, Meta(description="the secret feed address; shown once, stored only as a hash")]
    webcal_url: str
    privacy: Privacy
    created_at: dt.datetime


class FeedOut(msgspec.Struct):
    id: str
    privacy: Privacy
    created_at: dt.datetime


class FeedList(msgspec.Struct):
    feeds: list[FeedOut]


@routes.route(
    "POST",
    "/api/v1/therapists/{slug}/feeds",
    summary="Create a calendar subscription feed with a privacy tier; its URL is shown once",
    auth=THERAPIST_ACCESS,
    body=FeedIn,
    response=FeedCreated,
    status=201,
    errors=(409, 422),
)
async def create_feed(request: web.Request, call: Call) -> web.Response:
    body = await read_json(request, FeedIn)
    assert body is not None
    created = await feeds.create(request.app[POOL], call.therapist.id, body.privacy)
    feed = created.feed
    request.app.logger.info("feed %s created for therapist %s", feed.id, call.therapist.id)
    url, webcal = feeds.feed_urls(request.app[SETTINGS].origin, created.token)
    out = FeedCreated(id=str(feed.id), url=url, webcal_url=webcal, privacy=feed.privacy, created_at=feed.created_at)
    return respond(out, status=201)


@routes.route(
    "GET",
    "/api/v1/therapists/{slug}/feeds",
    summary="The therapist's active feeds (without their secret URLs)",
    auth=THERAPIST_ACCESS,
    response=FeedList,
)
async def list_feeds(request: web.Request, call: Call) -> web.Response:
    found = await feeds.active(request.app[POOL], call.therapist.id)
    return respond(FeedList(feeds=[FeedOut(id=str(f.id), privacy=f.privacy, created_at=f.created_at) for f in found]))


@routes.route(
    "DELETE",
    "/api/v1/therapists/{slug}/feeds/{id}",
    summary="Revoke a feed; its URL answers 404 from then on",
    auth=THERAPIST_ACCESS,
    status=204,
    params=[FEED_ID],
)
async def revoke_feed(request: web.Request, call: Call) -> web.Response:
    feed_id = parse_uuid(request.match_info["id"], "feed")
    await feeds.revoke(request.app[POOL], request.app[FEED_CACHE], call.therapist.id, feed_id)
    request.app.logger.info("feed %s revoked", feed_id)
    return web.Response(status=204)


async def serve_feed(request: web.Request) -> web.Response:
    """GET /calendar/{token}.ics: the feed, or 304 when the caller's copy is current. Unknown/revoked: 404."""
    app = request.app
    answer = await feeds.poll(
        app[POOL],
        app[FEED_CACHE],
        request.match_info["token"],
        origin=app[SETTINGS].origin,
        now=app[CLOCK].now(),
        if_none_match=request.headers.get("If-None-Match"),
    )
    headers = {"ETag": answer.etag, "Cache-Control": f"private, max-age={CACHE_SECONDS}"}
    if answer.body is None:
        return web.Response(status=304, headers=headers)
    headers["Content-Disposition"] = 'inline; filename="teleroom.ics"'
    return web.Response(body=answer.body, headers=headers, content_type=CALENDAR_TYPE, charset="utf-8")


@routes.route(
    "GET",
    "/api/v1/bookings/{id}/ics",
    summary="The booking as one calendar event for the client (links carry no key)",
    auth=BOOKING_ACCESS,
    content_type=CALENDAR_TYPE,
)
async def booking_ics(request: web.Request, call: Call) -> web.Response:
    body = await feeds.client_ics(request.app[POOL], call.booking_id, call.principal, request.app[SETTINGS].origin)
    return web.Response(
        body=body,
        content_type=CALENDAR_TYPE,
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="teleroom-session.ics"'},
    )


def setup(app: web.Application) -> None:
    """Mount the feed API, the client .ics and the secret feed URL; give this node its feed cache."""
    app[FEED_CACHE] = FeedCache()
    openapi.mount(app, routes)
    # The match_info key must be `token`: the access logger then logs the route pattern, not the secret.
    app.router.add_get("/calendar/{token}.ics", serve_feed)
