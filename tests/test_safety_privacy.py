"""Consent records, emergency contacts, confirmed places and licence checks stay the therapist's
(issue 11): after a client gives them all and the booking's messages go out, none of it is in the
calendar feed, the .eml files, the webhook deliveries or the log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import tests.test_webhooks as hooks
from broker import outbox
from broker.settings import Settings
from tests.support import Api, next_grid_start

TYPED_NAME = "Zebulon Q. Archimandrite"
CONTACT_NAME = "Philippa Okonkwo-Vasquez"
CONTACT_PHONE = "+44 20 7946 0917"
NOTE = "Flat 9 Quillsworth Terrace"
SECRETS = (TYPED_NAME, CONTACT_NAME, CONTACT_PHONE, "7946 0917", NOTE, "Quillsworth", "LIC-55231")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, allow_private_webhook_urls=True)


@pytest.fixture
async def receiver() -> AsyncIterator[hooks.Receiver]:
    rx = hooks.Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rx.handle)
    rx.server = TestServer(app, host="127.0.0.1")
    await rx.server.start_server()
    yield rx
    await rx.server.close()


async def test_consent_contact_place_and_licence_checks_reach_no_feed_email_webhook_or_log(
    api: Api,
    server: TestServer,
    settings: Settings,
    receiver: hooks.Receiver,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    therapist, st = await api.ready_therapist(min_notice_minutes=0, slot_interval_minutes=5, duration_minutes=30)
    slug, token = therapist["slug"], therapist["api_token"]
    status, _ = await api.call(
        "POST",
        f"/api/v1/therapists/{slug}/webhooks",
        token=token,
        json={"url": receiver.url(), "events": ["booking.created", "booking.cancelled"]},
    )
    assert status == 201
    status, _ = await api.call(
        "PUT",
        f"/api/v1/therapists/{slug}/notifications",
        token=token,
        json={"notify_bookings": True, "notice_detail": "full", "email_session_type": True},
    )
    assert status == 200, _
    status, feed = await api.call("POST", f"/api/v1/therapists/{slug}/feeds", token=token, json={"privacy": "full"})
    assert status == 201, feed
    status, _ = await api.call(
        "POST",
        f"/api/v1/therapists/{slug}/licences",
        token=token,
        json={"jurisdiction": "DE", "kind": "Psychotherapeut", "number": "LIC-55231"},
    )
    assert status == 201

    start = next_grid_start(dt.datetime.now(dt.UTC), 5)
    status, booking = await api.book(therapist, st, start.isoformat(), name="Client Example")
    assert status == 201, booking
    bid, key = booking["id"], booking["booking_key"]
    status, steps = await api.call("GET", f"/api/v1/bookings/{bid}/join-steps", token=key)
    assert status == 200
    version = steps["consent"]["version"]
    status, _ = await api.call(
        "POST", f"/api/v1/bookings/{bid}/consent", token=key, json={"version": version, "typed_name": TYPED_NAME}
    )
    assert status == 201
    contact = {
        "name": CONTACT_NAME,
        "phone": CONTACT_PHONE,
        "usual_location": {"country": "GB", "region": "GB-ENG", "note": NOTE},
    }
    assert (await api.call("PUT", f"/api/v1/bookings/{bid}/emergency-contact", token=key, json=contact))[0] == 200
    place = {"country": "GB", "region": "GB-SCT", "note": NOTE}
    assert (await api.call("POST", f"/api/v1/bookings/{bid}/location", token=key, json=place))[0] == 201
    status, panel = await api.call("GET", f"/api/v1/bookings/{bid}/emergency", token=token)
    assert status == 200 and panel["licence_warning"] and panel["emergency_contact"]["name"] == CONTACT_NAME
    assert (await api.call("GET", f"/api/v1/bookings/{bid}/room-token", token=key))[0] in (404, 405)
    assert (await api.call("POST", f"/api/v1/bookings/{bid}/room-token", token=key))[0] == 200
    # The client's next booking, after all that: its messages are composed with every record present.
    status, _ = await api.book(therapist, st, (start + dt.timedelta(hours=1)).isoformat(), name="Client Example")
    assert status == 201
    await outbox.deliver_due(server.app)
    await receiver.wait("/hook", 2)

    emails = sorted((settings.data_dir / "mail").glob("*.eml"))
    assert emails, "the booking's emails were written as .eml files"
    texts = {f"email {path.name}": path.read_bytes().decode("utf-8", "replace") for path in emails}
    texts.update({f"webhook {i}": d.body.decode() for i, d in enumerate(receiver.at("/hook"))})
    async with http.get(feed["url"]) as resp:
        assert resp.status == 200
        texts["feed"] = await resp.text()
    texts["log"] = "\n".join(r.getMessage() for r in caplog.records)
    assert CONTACT_NAME not in texts["feed"] and "Client Example" in texts["feed"]  # the full tier names the client
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in the {where}"
