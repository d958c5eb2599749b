"""Signed webhooks through the running service, received by a loopback aiohttp server in this process
and verified by `standardwebhooks` (an independent implementation of the Standard Webhooks spec)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
import standardwebhooks.webhooks
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from broker import outbox, webhooks
from broker.clock import Clock
from broker.database import POOL
from broker.errors import InvalidInput
from broker.sealing import SEALER
from broker.settings import Settings
from broker.webhook_sender import WebhookSender
from tests.support import Api, next_grid_start
from tests.test_series import FIRST, series_body, series_therapist

WAIT_SECONDS = 10.0
# Distinctive client details: none of them may appear in any delivery.
CLIENT = {"name": "Zebulon Quixote-Marwick", "email": "zebulon.q.m@private-mail.example", "phone": "+49 170 5550199"}


@pytest.fixture
def allow_private(request: pytest.FixtureRequest) -> bool:
    """Private (loopback) targets are allowed unless a test asks otherwise (indirect parametrize)."""
    return bool(getattr(request, "param", True))


@pytest.fixture
def settings(settings: Settings, allow_private: bool) -> Settings:
    return dataclasses.replace(settings, allow_private_webhook_urls=allow_private)


class Delivery:
    def __init__(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.path = path
        self.headers = headers
        self.body = body

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST and answers `statuses[path]` (200 by default);
    a list of statuses is answered in turn, its last one from then on."""

    def __init__(self) -> None:
        self.received: list[Delivery] = []
        self.statuses: dict[str, list[int]] = {}
        self.arrived = asyncio.Condition()
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        delivery = Delivery(request.path, dict(request.headers), await request.read())
        queue = self.statuses.get(request.path, [200])
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        async with self.arrived:
            self.received.append(delivery)
            self.arrived.notify_all()
        if request.path == "/slow":
            await asyncio.sleep(2)
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": "/elsewhere"})
        return web.Response(status=status, text="thanks " * 1000)

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}{path}"

    def at(self, path: str) -> list[Delivery]:
        return [d for d in self.received if d.path == path]

    async def wait(self, path: str, count: int) -> list[Delivery]:
        """The first `count` deliveries to `path`, waiting (bounded) for them to arrive."""
        async with asyncio.timeout(WAIT_SECONDS), self.arrived:
            await self.arrived.wait_for(lambda: len(self.at(path)) >= count)
        return self.at(path)[:count]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rx.handle)
    rx.server = TestServer(app, host="127.0.0.1")
    await rx.server.start_server()
    yield rx
    await rx.server.close()


async def register(api: Api, who: dict[str, Any] | None, url: str, events: list[str] | None = None) -> Any:
    base = "/api/v1/webhooks" if who is None else f"/api/v1/therapists/{who['slug']}/webhooks"
    token = api.admin_token if who is None else who["api_token"]
    status, body = await api.call(
        "POST", base, token=token, json={"url": url, "events": events or list(webhooks.EVENTS), "description": "ours"}
    )
    assert status == 201, body
    return body


async def book(api: Api, therapist: dict[str, Any], session_type: dict[str, Any], start: dt.datetime) -> Any:
    status, body = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={"session_type": session_type["id"], "start": start.isoformat(), "client": CLIENT},
    )
    assert status == 201, body
    return body


async def deliveries(api: Api, therapist: dict[str, Any], hook: dict[str, Any]) -> list[dict[str, Any]]:
    path = f"/api/v1/therapists/{therapist['slug']}/webhooks/{hook['id']}/deliveries"
    status, body = await api.call("GET", path, token=therapist["api_token"])
    assert status == 200, body
    return list(body["deliveries"])


async def log_when(
    api: Api, therapist: dict[str, Any], hook: dict[str, Any], done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The endpoint's delivery log once `done` holds for it (waiting, bounded)."""
    async with asyncio.timeout(WAIT_SECONDS):
        while not done(log := await deliveries(api, therapist, hook)):
            await asyncio.sleep(0.1)
    return log


def states(*wanted: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda log: [d["state"] for d in log] == list(wanted)


def retrying(log: list[dict[str, Any]]) -> bool:
    return len(log) == 1 and log[0]["state"] == "pending" and log[0]["last_status"] is not None


def later(minutes: float) -> type[dt.datetime]:
    """A `datetime` whose now() is `minutes` ahead: the verifier's clock when a delivery is replayed later."""

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Later:
            real = dt.datetime.now(tz) + dt.timedelta(minutes=minutes)
            return cls.fromtimestamp(real.timestamp(), tz)

    return Later


async def test_a_booking_is_delivered_signed_per_standard_webhooks_with_ids_and_times_only(
    api: Api, clock: Clock, receiver: Receiver, db: asyncpg.Connection
) -> None:
    therapist, session_type = await api.ready_therapist()
    hook = await register(api, therapist, receiver.url())
    assert hook["secret"].startswith("whsec_") and len(webhooks.secret_key(hook["secret"])) == 32
    booking = await book(api, therapist, session_type, next_grid_start(clock.now() + dt.timedelta(days=2), 60))

    [delivery] = await receiver.wait("/hook", 1)
    verified = Webhook(hook["secret"]).verify(delivery.body, delivery.headers)
    assert verified["type"] == "booking.created"
    assert verified["data"] == {
        "therapist_id": therapist["id"],
        "series_id": None,
        "by": "client",
        "bookings": [
            {
                "id": booking["id"],
                "start": verified["data"]["bookings"][0]["start"],
                "end": verified["data"]["bookings"][0]["end"],
                "status": "confirmed",
            }
        ],
    }
    start = dt.datetime.fromisoformat(verified["data"]["bookings"][0]["start"])
    assert start == dt.datetime.fromisoformat(booking["start"])
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["webhook-id"].startswith("msg_")
    # Nothing that names or reaches the client, nor the client's key, travels.
    raw = delivery.body.decode()
    for secret in (*CLIENT.values(), "Zebulon", "private-mail", "5550199", booking["booking_key"]):
        assert secret not in raw
    # The delivery log shows it delivered, under the id the receiver saw.
    [logged] = await log_when(api, therapist, hook, states("delivered"))
    assert logged["id"] == delivery.headers["webhook-id"]
    assert (logged["event"], logged["state"], logged["attempts"], logged["last_status"]) == (
        "booking.created",
        "delivered",
        1,
        200,
    )
    # The secret is stored sealed, and never answered again.
    sealed = await db.fetchval("SELECT secret_sealed FROM webhook_endpoints WHERE id = $1", uuid.UUID(hook["id"]))
    assert hook["secret"].encode() not in sealed and webhooks.secret_key(hook["secret"]) not in sealed
    status, listed = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/webhooks", token=therapist["api_token"]
    )
    assert status == 200 and "whsec_" not in json.dumps(listed) and "secret" not in listed["webhooks"][0]
    assert [w["id"] for w in listed["webhooks"]] == [hook["id"]] and listed["events"] == list(webhooks.EVENTS)


async def test_a_replayed_delivery_older_than_the_tolerance_is_refused_by_the_verifier(
    api: Api, clock: Clock, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    therapist, session_type = await api.ready_therapist()
    hook = await register(api, therapist, receiver.url())
    await book(api, therapist, session_type, next_grid_start(clock.now() + dt.timedelta(days=2), 60))
    [delivery] = await receiver.wait("/hook", 1)
    verifier = Webhook(hook["secret"])
    verifier.verify(delivery.body, delivery.headers)
    # The same captured request, replayed four minutes later, is still inside the 5-minute tolerance...
    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", later(4))
    verifier.verify(delivery.body, delivery.headers)
    # ...six minutes later it is refused as too old.
    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", later(6))
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(delivery.body, delivery.headers)
    monkeypatch.undo()
    # A changed body, or another endpoint's secret, does not verify either.
    with pytest.raises(WebhookVerificationError):
        verifier.verify(delivery.body.replace(b"booking.created", b"booking.cancelled"), delivery.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(delivery.body, delivery.headers)


async def test_a_410_disables_the_endpoint_and_nothing_more_is_sent_to_it(
    api: Api, clock: Clock, receiver: Receiver
) -> None:
    therapist, session_type = await api.ready_therapist()
    receiver.statuses["/gone"] = [410]
    hook = await register(api, therapist, receiver.url("/gone"))
    first = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    await book(api, therapist, session_type, first)
    await receiver.wait("/gone", 1)
    [logged] = await log_when(api, therapist, hook, states("failed"))
    assert (logged["state"], logged["last_status"], logged["attempts"]) == ("failed", 410, 1)
    path = f"/api/v1/therapists/{therapist['slug']}/webhooks/{hook['id']}"
    status, now_off = await api.call("GET", path, token=therapist["api_token"])
    assert status == 200 and now_off["enabled"] is False
    assert "410 Gone" in now_off["disabled_reason"]
    # A later change queues nothing for it; send again is refused while it is off.
    await book(api, therapist, session_type, first + dt.timedelta(hours=2))
    assert len(await deliveries(api, therapist, hook)) == 1
    status, problem = await api.call(
        "POST", f"{path}/deliveries/{logged['id']}/send-again", token=therapist["api_token"]
    )
    assert (status, problem["code"]) == (409, "webhook_disabled")
    # Turned on again by its owner, the reason goes.
    status, back = await api.call("PATCH", path, token=therapist["api_token"], json={"enabled": True})
    assert status == 200 and (back["enabled"], back["disabled_reason"]) == (True, None)


async def test_rotation_signs_with_both_secrets_for_a_day_then_only_the_new(
    api: Api, clock: Clock, receiver: Receiver
) -> None:
    therapist, session_type = await api.ready_therapist()
    hook = await register(api, therapist, receiver.url())
    path = f"/api/v1/therapists/{therapist['slug']}/webhooks/{hook['id']}"
    status, rotated = await api.call("POST", f"{path}/rotate-secret", token=therapist["api_token"])
    assert status == 200, rotated
    new, old = rotated["secret"], hook["secret"]
    assert new != old and new.startswith("whsec_")
    until = dt.datetime.fromisoformat(rotated["previous_valid_until"])
    assert dt.timedelta(hours=23, minutes=59) < until - clock.now() <= dt.timedelta(hours=24)

    first = next_grid_start(clock.now() + dt.timedelta(days=3), 60)
    await book(api, therapist, session_type, first)
    [during] = await receiver.wait("/hook", 1)
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(during.body, during.headers)
    Webhook(old).verify(during.body, during.headers)

    clock.advance(dt.timedelta(hours=24, minutes=1))
    await book(api, therapist, session_type, first + dt.timedelta(hours=2))
    [_, after] = await receiver.wait("/hook", 2)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)


async def test_failures_back_off_and_send_again_redelivers_under_the_same_webhook_id(
    api: Api, clock: Clock, receiver: Receiver
) -> None:
    therapist, session_type = await api.ready_therapist()
    receiver.statuses["/flaky"] = [500, 200]
    hook = await register(api, therapist, receiver.url("/flaky"))
    await book(api, therapist, session_type, next_grid_start(clock.now() + dt.timedelta(days=2), 60))
    [failed] = await receiver.wait("/flaky", 1)
    [logged] = await log_when(api, therapist, hook, retrying)
    assert (logged["state"], logged["attempts"], logged["last_status"], logged["last_error"]) == (
        "pending",
        1,
        500,
        "HTTP 500",
    )
    # The first retry waits 15-30 s (30 s with jitter); a few polls later nothing was tried again.
    wait = dt.datetime.fromisoformat(logged["next_attempt_at"]) - dt.datetime.fromisoformat(logged["last_attempt_at"])
    assert dt.timedelta(seconds=14) < wait <= dt.timedelta(seconds=31)
    await asyncio.sleep(2.5)
    assert len(receiver.at("/flaky")) == 1
    # When the service's clock reaches it, the retry goes out, under the same webhook-id and body.
    clock.advance(dt.timedelta(seconds=31))
    [_, retried] = await receiver.wait("/flaky", 2)
    assert retried.headers["webhook-id"] == failed.headers["webhook-id"] and retried.body == failed.body
    Webhook(hook["secret"]).verify(retried.body, retried.headers)
    [logged] = await log_when(api, therapist, hook, states("delivered"))
    assert (logged["state"], logged["attempts"], logged["last_status"]) == ("delivered", 2, 200)

    # Send again: the same delivery once more, with its id.
    path = f"/api/v1/therapists/{therapist['slug']}/webhooks/{hook['id']}/deliveries/{logged['id']}/send-again"
    status, queued = await api.call("POST", path, token=therapist["api_token"])
    assert status == 202, queued
    assert (queued["id"], queued["state"]) == (logged["id"], "pending")
    [_, _, again] = await receiver.wait("/flaky", 3)
    assert again.headers["webhook-id"] == failed.headers["webhook-id"] and again.body == failed.body
    Webhook(hook["secret"]).verify(again.body, again.headers)


async def test_endpoints_hear_only_their_events_and_therapist_and_the_admins_hear_all(
    api: Api, clock: Clock, receiver: Receiver
) -> None:
    therapist, session_type = await api.ready_therapist()
    other, other_type = await api.ready_therapist()
    await register(api, therapist, receiver.url("/mine-cancellations"), ["booking.cancelled"])
    await register(api, therapist, receiver.url("/mine"))
    admin_hook = await register(api, None, receiver.url("/admin"), ["booking.created"])
    start = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    booking = await book(api, therapist, session_type, start)
    await book(api, other, other_type, start)
    status, _ = await api.call("POST", f"/api/v1/bookings/{booking['id']}/cancel", token=booking["booking_key"])
    assert status == 200
    mine = await receiver.wait("/mine", 2)
    assert sorted(d.json["type"] for d in mine) == ["booking.cancelled", "booking.created"]
    [cancelled] = await receiver.wait("/mine-cancellations", 1)
    assert cancelled.json["type"] == "booking.cancelled" and cancelled.json["data"]["by"] == "client"
    assert cancelled.json["data"]["bookings"][0]["status"] == "cancelled"
    admin = await receiver.wait("/admin", 2)
    assert sorted(d.json["data"]["therapist_id"] for d in admin) == sorted([therapist["id"], other["id"]])
    for delivery in admin:
        Webhook(admin_hook["secret"]).verify(delivery.body, delivery.headers)
    await asyncio.sleep(1.5)  # a poll or so later: nothing else arrived
    assert (len(receiver.at("/mine")), len(receiver.at("/mine-cancellations")), len(receiver.at("/admin"))) == (2, 1, 2)


async def test_a_series_is_one_delivery_listing_its_sessions(api: Api, receiver: Receiver) -> None:
    therapist, session_type = await series_therapist(api)
    await register(api, therapist, receiver.url(), ["series.created"])
    status, made = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/series",
        json={**series_body(session_type, FIRST, count=4), "client": CLIENT},
    )
    assert status == 201, made
    [delivery] = await receiver.wait("/hook", 1)
    data = delivery.json["data"]
    assert delivery.json["type"] == "series.created" and data["series_id"] == made["id"]
    assert len(data["bookings"]) == 4 and made["series_key"] not in delivery.body.decode()


async def test_another_therapists_webhook_is_404_and_the_admins_are_apart(api: Api, receiver: Receiver) -> None:
    owner = await api.therapist()
    other = await api.therapist()
    hook = await register(api, owner, receiver.url())
    admin_hook = await register(api, None, receiver.url("/admin"))
    base = f"/api/v1/therapists/{other['slug']}/webhooks"
    for hook_id in (hook["id"], admin_hook["id"]):
        for method, tail, body in (
            ("GET", "", None),
            ("PATCH", "", {"enabled": False}),
            ("DELETE", "", None),
            ("POST", "/rotate-secret", None),
            ("GET", "/deliveries", None),
            ("POST", f"/deliveries/msg_{uuid.uuid4()}/send-again", None),
        ):
            status, problem = await api.call(method, f"{base}/{hook_id}{tail}", token=other["api_token"], json=body)
            assert (status, problem["code"]) == (404, "not_found"), (method, tail, problem)
    status, listed = await api.call("GET", base, token=other["api_token"])
    assert status == 200 and listed["webhooks"] == []
    # The admin's list holds only the all-therapist endpoint; the therapist's is not the admin's to change.
    status, listed = await api.call("GET", "/api/v1/webhooks", token=api.admin_token)
    assert [w["id"] for w in listed["webhooks"]] == [admin_hook["id"]]
    status, _ = await api.call("DELETE", f"/api/v1/webhooks/{hook['id']}", token=api.admin_token)
    assert status == 404
    status, _ = await api.call("DELETE", f"/api/v1/webhooks/{admin_hook['id']}", token=api.admin_token)
    assert status == 204
    status, _ = await api.call("GET", f"/api/v1/webhooks/{admin_hook['id']}", token=api.admin_token)
    assert status == 404


async def test_bad_registrations_get_stable_codes(api: Api, receiver: Receiver) -> None:
    therapist = await api.therapist()
    base = f"/api/v1/therapists/{therapist['slug']}/webhooks"
    cases = [
        ({"url": receiver.url(), "events": ["booking.exploded"]}, "unknown_event"),
        ({"url": receiver.url(), "events": []}, "invalid_input"),
        ({"url": "ftp://example.org/hook", "events": ["booking.created"]}, "webhook_url_refused"),
        ({"url": "http://169.254.169.254/latest/meta-data/", "events": ["booking.created"]}, "webhook_url_refused"),
        ({"url": "https://[fe80::1]/hook", "events": ["booking.created"]}, "webhook_url_refused"),
        ({"url": "https://host:99999/hook", "events": ["booking.created"]}, "invalid_url"),
        ({"url": receiver.url(), "events": ["booking.created"], "secret": "mine"}, "invalid_input"),
    ]
    for body, code in cases:
        status, problem = await api.call("POST", base, token=therapist["api_token"], json=body)
        assert (status, problem["code"]) == (422, code), (body, problem)
    status, listed = await api.call("GET", base, token=therapist["api_token"])
    assert listed["webhooks"] == []
    for _ in range(webhooks.MAX_ENDPOINTS):
        await register(api, therapist, receiver.url())
    status, problem = await api.call(
        "POST", base, token=therapist["api_token"], json={"url": receiver.url(), "events": ["booking.created"]}
    )
    assert (status, problem["code"]) == (409, "too_many_webhooks")


@pytest.mark.parametrize("allow_private", [False], indirect=True)
async def test_private_and_loopback_targets_are_refused_unless_allowed(api: Api) -> None:
    therapist = await api.therapist()
    base = f"/api/v1/therapists/{therapist['slug']}/webhooks"
    for url in (
        "http://127.0.0.1:8080/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://[::1]/hook",
        "https://[::ffff:192.168.1.1]/hook",
        "https://169.254.169.254/latest/meta-data/",
        "http://203.0.113.9/hook",  # public-looking but plain http
    ):
        status, problem = await api.call(
            "POST", base, token=therapist["api_token"], json={"url": url, "events": ["booking.created"]}
        )
        assert (status, problem["code"]) == (422, "webhook_url_refused"), (url, problem)


async def test_the_address_guard_holds_again_at_delivery(
    server: TestServer, api: Api, clock: Clock, receiver: Receiver, db: asyncpg.Connection
) -> None:
    """A target allowed once may not be later (a setting changed, or a name now resolves elsewhere):
    a sender that may not reach private addresses refuses the literal and the name alike."""
    therapist, session_type = await api.ready_therapist()
    by_literal = await register(api, therapist, receiver.url("/literal"), ["booking.cancelled"])
    by_name = await register(
        api, therapist, receiver.url("/name").replace("127.0.0.1", "localhost"), ["booking.cancelled"]
    )
    booking = await book(api, therapist, session_type, next_grid_start(clock.now() + dt.timedelta(days=2), 60))
    status, _ = await api.call("POST", f"/api/v1/bookings/{booking['id']}/cancel", token=therapist["api_token"])
    assert status == 200
    strict = WebhookSender(lambda: server.app[POOL], server.app[SEALER], clock.now, allow_private=False)
    try:
        for hook in (by_literal, by_name):
            rows = await db.fetch("SELECT id FROM outbox WHERE endpoint_id = $1", uuid.UUID(hook["id"]))
            message = await outbox.get(db, rows[0]["id"])
            outcome = await strict.send(message)
            assert not outcome.delivered and not outcome.permanent
            assert outcome.error is not None and "address refused" in outcome.error
    finally:
        await strict.close()
    # The app's own sender, which may reach loopback here, delivers them in its turn.
    await receiver.wait("/literal", 1)
    await receiver.wait("/name", 1)


async def test_check_url_refuses_metadata_even_where_private_targets_are_allowed() -> None:
    for url in ("http://169.254.169.254/", "https://[fe80::a9fe:a9fe]/", "https://[::ffff:169.254.169.254]/"):
        with pytest.raises(InvalidInput) as refused:
            await webhooks.check_url(url, allow_private=True)
        assert refused.value.code == "webhook_url_refused"
    assert await webhooks.check_url("http://127.0.0.1:9/x?y=1#frag", allow_private=True) == "http://127.0.0.1:9/x?y=1"


async def test_secrets_never_reach_the_log(
    api: Api, clock: Clock, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    therapist, session_type = await api.ready_therapist()
    hook = await register(api, therapist, receiver.url())
    path = f"/api/v1/therapists/{therapist['slug']}/webhooks/{hook['id']}/rotate-secret"
    status, rotated = await api.call("POST", path, token=therapist["api_token"])
    assert status == 200
    await book(api, therapist, session_type, next_grid_start(clock.now() + dt.timedelta(days=2), 60))
    await receiver.wait("/hook", 1)
    logged = caplog.text
    assert hook["id"] in logged
    for secret in (hook["secret"], rotated["secret"]):
        assert secret not in logged and secret.removeprefix("whsec_") not in logged
    assert CLIENT["email"] not in logged


async def test_redirects_are_not_followed_and_a_silent_receiver_times_out(
    server: TestServer, api: Api, clock: Clock, receiver: Receiver, db: asyncpg.Connection
) -> None:
    therapist, session_type = await api.ready_therapist()
    receiver.statuses["/moved"] = [307]
    moved = await register(api, therapist, receiver.url("/moved"))
    await book(api, therapist, session_type, next_grid_start(clock.now() + dt.timedelta(days=2), 60))
    await receiver.wait("/moved", 1)
    [logged] = await log_when(api, therapist, moved, retrying)
    assert (logged["last_status"], logged["last_error"]) == (307, "HTTP 307")
    assert receiver.at("/elsewhere") == []

    slow = await register(api, therapist, receiver.url("/slow"), ["booking.cancelled"])
    [row] = await db.fetch("SELECT id FROM outbox WHERE endpoint_id = $1", uuid.UUID(moved["id"]))
    message = await outbox.get(db, row["id"])
    await db.execute("UPDATE outbox SET endpoint_id = $1 WHERE id = $2", uuid.UUID(slow["id"]), message.id)
    impatient = WebhookSender(lambda: server.app[POOL], server.app[SEALER], clock.now, allow_private=True, timeout=0.5)
    try:
        outcome = await impatient.send(await outbox.get(db, message.id))
    finally:
        await impatient.close()
    assert (outcome.delivered, outcome.permanent, outcome.error) == (False, False, "no answer within 0.5 s")


async def test_a_changed_address_or_event_list_is_checked_like_a_new_one(api: Api, receiver: Receiver) -> None:
    therapist = await api.therapist()
    hook = await register(api, therapist, receiver.url())
    path = f"/api/v1/therapists/{therapist['slug']}/webhooks/{hook['id']}"
    for body, code in (
        ({"url": "http://169.254.169.254/latest/"}, "webhook_url_refused"),
        ({"events": ["booking.created", "booking.teleported"]}, "unknown_event"),
        ({"enabled": "yes"}, "invalid_input"),
    ):
        status, problem = await api.call("PATCH", path, token=therapist["api_token"], json=body)
        assert (status, problem["code"]) == (422, code), (body, problem)
    status, changed = await api.call(
        "PATCH",
        path,
        token=therapist["api_token"],
        json={"events": ["series.cancelled", "booking.created", "booking.created"], "description": None},
    )
    assert status == 200, changed
    assert (changed["events"], changed["description"], changed["url"]) == (
        ["booking.created", "series.cancelled"],
        None,
        receiver.url(),
    )
