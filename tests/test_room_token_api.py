"""Room tokens through the running service: the join window, who may ask, ICE/TURN, JWKS, attendance."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import sys
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from jose import jwt

from broker import attendance, tokens
from broker.clock import Clock
from broker.settings import Settings
from tests.support import Api, next_grid_start

TURN_SECRET = "turn-shared-secret-for-tests"
TELEROOM = "import sys; from broker.cli import main; sys.exit(main())"  # the console script, in this venv


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        stun_urls=("stun:stun.example.org:3478",),
        turn_urls=("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"),
        turn_secret=TURN_SECRET,
    )


async def booking_now(api: Api, duration: int = 30) -> tuple[dict[str, Any], dict[str, Any]]:
    """A therapist and a booking starting within five minutes, so its join window is open."""
    therapist, st = await api.ready_therapist(min_notice_minutes=0, slot_interval_minutes=5, duration_minutes=duration)
    start = next_grid_start(dt.datetime.now(dt.UTC), 5)
    status, booking = await api.book(therapist, st, start.isoformat(), name="Client Example")
    assert status == 201, booking
    await api.ready_to_join(booking["id"], booking["booking_key"])  # consent and emergency contact (issue 11)
    return therapist, booking


async def get_jwks(api: Api) -> dict[str, Any]:
    status, text = await api.call("GET", "/.well-known/jwks.json")  # application/jwk-set+json
    assert status == 200
    return dict(json.loads(text))


async def room_token(api: Api, booking: dict[str, Any], token: str | None) -> tuple[int, Any]:
    return await api.call("POST", f"/api/v1/bookings/{booking['id']}/room-token", token=token)


async def test_therapist_and_client_get_tokens_that_verify_against_the_jwks(api: Api, settings: Settings) -> None:
    therapist, booking = await booking_now(api)
    status, mine = await room_token(api, booking, therapist["api_token"])
    assert status == 200, mine
    status, theirs = await room_token(api, booking, booking["booking_key"])
    assert status == 200, theirs
    assert (mine["role"], theirs["role"]) == ("therapist", "client")
    assert mine["room"] == theirs["room"] == booking["id"]
    assert mine["participant"] != theirs["participant"]
    assert mine["signaling_url"] == f"ws://127.0.0.1:{settings.port}/ws?room={booking['id']}"

    jwks = await get_jwks(api)
    for body, name in ((mine, "Dr Ada Example"), (theirs, "Client Example")):
        claims = jwt.decode(
            body["token"], jwks, algorithms=["ES256"], audience="teleroom-signaling", issuer=settings.origin
        )
        assert claims["sub"] == body["participant"] and claims["room"] == booking["id"]
        assert claims["name"] == name
        assert claims["exp"] - claims["iat"] == settings.token_ttl_seconds
        assert dt.datetime.fromisoformat(body["expires_at"]).timestamp() == claims["exp"]


async def test_a_fresh_token_keeps_the_same_participant_id(api: Api) -> None:
    _, booking = await booking_now(api)
    first = (await room_token(api, booking, booking["booking_key"]))[1]
    second = (await room_token(api, booking, booking["booking_key"]))[1]
    assert first["participant"] == second["participant"]
    assert first["token"] != second["token"]


async def test_before_the_window_opens_is_403_too_early_with_opens_at(api: Api) -> None:
    therapist, st = await api.ready_therapist(min_notice_minutes=0, slot_interval_minutes=60)
    start = next_grid_start(dt.datetime.now(dt.UTC), 60) + dt.timedelta(hours=2)
    status, booking = await api.book(therapist, st, start.isoformat())
    assert status == 201, booking
    status, body = await room_token(api, booking, booking["booking_key"])
    assert (status, body["code"]) == (403, "too_early")
    assert dt.datetime.fromisoformat(body["opens_at"]) == start - dt.timedelta(minutes=10)


async def test_after_the_window_closes_is_410_room_closed(api: Api, clock: Clock) -> None:
    therapist, booking = await booking_now(api, duration=30)
    clock.advance(dt.timedelta(minutes=5 + 30 + 10, seconds=1))
    for token in (therapist["api_token"], booking["booking_key"]):
        status, body = await room_token(api, booking, token)
        assert (status, body["code"]) == (410, "room_closed")


async def test_a_cancelled_booking_has_no_room(api: Api) -> None:
    _, booking = await booking_now(api)
    status, _ = await api.call("POST", f"/api/v1/bookings/{booking['id']}/cancel", token=booking["booking_key"])
    assert status == 200
    status, body = await room_token(api, booking, booking["booking_key"])
    assert (status, body["code"]) == (410, "room_closed")


async def test_strangers_get_nothing(api: Api) -> None:
    therapist, booking = await booking_now(api)
    other_therapist, other = await booking_now(api)
    assert (await room_token(api, booking, None))[0] == 401
    assert (await room_token(api, booking, other["booking_key"]))[0] == 404
    assert (await room_token(api, booking, other_therapist["api_token"]))[0] == 404
    assert (await room_token(api, booking, "tra_not-a-real-token"))[0] == 401
    status, _ = await api.call("POST", f"/api/v1/bookings/{uuid.uuid4()}/room-token", token=therapist["api_token"])
    assert status == 404


async def test_turn_credentials_follow_the_coturn_shared_secret_scheme(api: Api, settings: Settings) -> None:
    _, booking = await booking_now(api, duration=30)
    status, body = await room_token(api, booking, booking["booking_key"])
    assert status == 200
    stun, turn = body["ice_servers"]
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    assert turn["urls"] == list(settings.turn_urls)
    expiry, _, participant = turn["username"].partition(":")
    assert participant == body["participant"]
    assert int(expiry) == int(dt.datetime.fromisoformat(body["window_closes_at"]).timestamp())
    expected = base64.b64encode(hmac.new(TURN_SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest())
    assert turn["credential"] == expected.decode()


async def test_issuing_a_room_token_is_audited_without_the_token(api: Api, db: asyncpg.Connection) -> None:
    _, booking = await booking_now(api)
    status, body = await room_token(api, booking, booking["booking_key"])
    assert status == 200
    rows = await db.fetch("SELECT * FROM audit_events WHERE action = 'room_token.issued'")
    assert [(r["actor_kind"], str(r["booking_id"])) for r in rows] == [("client", booking["id"])]
    assert body["token"] not in json.dumps([dict(r) for r in rows], default=str)


async def test_jwks_is_public_and_briefly_cacheable(api: Api) -> None:
    async with api.session.get(api.base + "/.well-known/jwks.json") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "public, max-age=60"
        body = await resp.json(content_type=None)
    (key,) = body["keys"]
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in key  # never the private half


async def test_keys_rotate_command_adds_a_key_and_old_tokens_still_verify(
    api: Api, server: TestServer, settings: Settings
) -> None:
    _, booking = await booking_now(api)
    old = (await room_token(api, booking, booking["booking_key"]))[1]
    old_kid = jwt.get_unverified_header(old["token"])["kid"]
    env = {**os.environ, "DATABASE_URL": settings.database_url or "", "TELEROOM_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", TELEROOM, "keys", "rotate", "--data-dir", str(settings.data_dir),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    new_kid = json.loads(out)["current_kid"]
    assert new_kid != old_kid

    jwks = await get_jwks(api)
    assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]
    server.app[tokens.KEYRING].invalidate()  # a node notices within KeyRing.refresh_seconds; don't wait
    fresh = (await room_token(api, booking, booking["booking_key"]))[1]
    assert jwt.get_unverified_header(fresh["token"])["kid"] == new_kid
    for token in (old["token"], fresh["token"]):
        jwt.decode(token, jwks, algorithms=["ES256"], audience="teleroom-signaling", issuer=settings.origin)


async def test_attendance_reports_events_and_minutes_together(api: Api, db: asyncpg.Connection, clock: Clock) -> None:
    therapist, booking = await booking_now(api, duration=30)
    booking_id = uuid.UUID(booking["id"])
    t, c = tokens.participant_id(booking_id, "therapist"), tokens.participant_id(booking_id, "client")
    start = dt.datetime.fromisoformat(booking["start"])
    for participant, role, event, minute in [
        (t, "therapist", "joined", 0),
        (c, "client", "joined", 2),
        (c, "client", "admitted", 3),
        (c, "client", "left", 10),  # a dropped connection ...
        (c, "client", "joined", 12),  # ... and back, still admitted
        (t, "therapist", "left", 40),
    ]:
        await attendance.record(db, booking_id, participant, role, event, start + dt.timedelta(minutes=minute))
    clock.advance(dt.timedelta(minutes=5 + 45))
    status, body = await api.call("GET", f"/api/v1/bookings/{booking['id']}/attendance", token=therapist["api_token"])
    assert status == 200, body
    assert [(e["role"], e["event"]) for e in body["events"]][:3] == [
        ("therapist", "joined"),
        ("client", "joined"),
        ("client", "admitted"),
    ]
    assert body["connected_seconds"] == (7 + 28) * 60
    assert body["connected_minutes"] == 35.0
    assert await attendance.was_admitted(db, booking_id, c)
    assert not await attendance.was_admitted(db, booking_id, t)


async def test_a_client_cannot_read_attendance(api: Api) -> None:
    _, booking = await booking_now(api)
    _, other = await booking_now(api)
    path = f"/api/v1/bookings/{booking['id']}/attendance"
    assert (await api.call("GET", path, token=booking["booking_key"]))[0] == 403
    assert (await api.call("GET", path, token=other["booking_key"]))[0] == 404
    assert (await api.call("GET", path))[0] == 401
