"""Helpers for signaling tests: a booking inside its join window, room tokens from the real endpoint,
and a thin WebSocket client that reads the protocol as a participant would."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.support import Api, next_grid_start

TIMEOUT = 10.0


@dataclass(frozen=True)
class Booking:
    id: str
    therapist_token: str
    client_key: str
    start: dt.datetime
    end: dt.datetime


async def booking_in_window(api: Api, now: dt.datetime | None = None) -> Booking:
    """A 30-minute session starting within five minutes, so its room can be joined now."""
    therapist, st = await api.ready_therapist(min_notice_minutes=0, slot_interval_minutes=5, duration_minutes=30)
    start = next_grid_start(now or dt.datetime.now(dt.UTC), 5)
    status, body = await api.book(therapist, st, start.isoformat(), name="Client Example")
    assert status == 201, body
    await api.ready_to_join(body["id"], body["booking_key"])  # consent and emergency contact (issue 11)
    return Booking(
        id=body["id"],
        therapist_token=therapist["api_token"],
        client_key=body["booking_key"],
        start=dt.datetime.fromisoformat(body["start"]),
        end=dt.datetime.fromisoformat(body["end"]),
    )


async def room_token(api: Api, booking: Booking, role: str) -> dict[str, Any]:
    """POST /api/v1/bookings/{id}/room-token as the therapist (API token) or the client (booking key)."""
    credential = booking.therapist_token if role == "therapist" else booking.client_key
    status, body = await api.call("POST", f"/api/v1/bookings/{booking.id}/room-token", token=credential)
    assert status == 200, body
    assert body["role"] == role
    return dict(body)


class Ws:
    """One raw WebSocket to /ws, speaking JSON."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def connect(
        cls, http: aiohttp.ClientSession, url: str, *, origin: str | None = None, max_msg_size: int = 0
    ) -> Ws:
        headers = {"Origin": origin} if origin else None
        return cls(await http.ws_connect(url, headers=headers, autoping=True, max_msg_size=max_msg_size))

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, self.ws.close_code)
        data: dict[str, Any] = json.loads(msg.data)
        return data

    async def expect(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message, which must be of type `kind`."""
        message = await self.recv(timeout)
        assert message["type"] == kind, message
        return message

    async def closed(self, timeout: float = TIMEOUT) -> int | None:
        """Read until the server closes; the close code."""
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return self.ws.close_code
            if msg.type == aiohttp.WSMsgType.ERROR:
                return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()


async def join(http: aiohttp.ClientSession, token: dict[str, Any], location: str | None = None) -> tuple[Ws, dict]:
    """Connect to the token's signaling URL and join; returns the socket and the `joined` message."""
    ws = await Ws.connect(http, token["signaling_url"])
    message: dict[str, Any] = {"token": token["token"]}
    if location is not None:
        message["location"] = location
    await ws.send(type="join", **message)
    joined = await ws.expect("joined")
    return ws, joined
