"""Helpers for tests: a thin client for Teleroom's own API, used exactly as a caller would."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

ALL_WEEK = [{"day": d, "start": "00:00", "end": "24:00"} for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (works for unix-socket and TCP URLs)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Api:
    """Calls the running service over HTTP. Each method returns (status, json body)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, admin_token: str) -> None:
        self.session = session
        self.base = base
        self.admin_token = admin_token

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.base + path, json=json, headers=hdrs) as resp:
            if resp.content_type == "application/problem+json":
                problem = await resp.json(content_type=None)
                # Every problem the suite meets: RFC 9457 "about:blank" with its status, the kind in `code`.
                assert problem["type"] == "about:blank" and problem["status"] == resp.status, problem
                assert problem["code"] and problem["title"], problem
                return resp.status, problem
            if resp.content_type == "application/json":
                return resp.status, await resp.json(content_type=None)
            return resp.status, await resp.text()

    async def therapist(
        self, *, slug: str | None = None, timezone: str = "Europe/Berlin", name: str = "Dr Ada Example"
    ) -> dict[str, Any]:
        slug = slug or f"dr-{uuid.uuid4().hex[:10]}"
        status, body = await self.call(
            "POST",
            "/api/v1/therapists",
            token=self.admin_token,
            json={"slug": slug, "name": name, "email": f"{slug}@example.org", "timezone": timezone},
        )
        assert status == 201, body
        return dict(body)

    async def availability(
        self,
        therapist: dict[str, Any],
        weekly: list[dict[str, str]] | None = None,
        overrides: list[dict[str, Any]] | None = None,
        timezone: str | None = None,
    ) -> None:
        status, body = await self.call(
            "PUT",
            f"/api/v1/therapists/{therapist['slug']}/availability",
            token=therapist["api_token"],
            json={
                "timezone": timezone or therapist["timezone"],
                "weekly": ALL_WEEK if weekly is None else weekly,
                "overrides": overrides or [],
            },
        )
        assert status == 200, body

    async def session_type(self, therapist: dict[str, Any], **fields: Any) -> dict[str, Any]:
        payload = {
            "name": "Individual session",
            "duration_minutes": 50,
            "buffer_before_minutes": 0,
            "buffer_after_minutes": 10,
            "min_notice_minutes": 0,
            "horizon_days": 60,
            "slot_interval_minutes": 60,
        }
        payload.update(fields)
        status, body = await self.call(
            "POST", f"/api/v1/therapists/{therapist['slug']}/session-types", token=therapist["api_token"], json=payload
        )
        assert status == 201, body
        return dict(body)

    async def slots(
        self,
        therapist: dict[str, Any],
        session_type: dict[str, Any],
        first: dt.date,
        last: dt.date,
        tz: str | None = None,
    ) -> list[dict[str, str]]:
        q = f"?session_type={session_type['id']}&from={first.isoformat()}&to={last.isoformat()}"
        if tz:
            q += f"&tz={tz}"
        status, body = await self.call("GET", f"/api/v1/therapists/{therapist['slug']}/slots{q}")
        assert status == 200, body
        return list(body["slots"])

    async def book(
        self,
        therapist: dict[str, Any],
        session_type: dict[str, Any],
        start: str,
        *,
        name: str = "Client Example",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        return await self.call(
            "POST",
            f"/api/v1/therapists/{therapist['slug']}/bookings",
            headers=headers,
            json={
                "session_type": session_type["id"],
                "start": start,
                "client": {"name": name, "email": "client@example.org"},
            },
        )

    async def ready_to_join(self, booking_id: str, key: str, *, country: str = "DE") -> None:
        """Do what a client does on the join page before a room token (issue 11): accept the current
        consent text and give an emergency contact, unless already done."""
        status, steps = await self.call("GET", f"/api/v1/bookings/{booking_id}/join-steps", token=key)
        assert status == 200, steps
        if "consent" in steps["missing"]:
            status, body = await self.call(
                "POST",
                f"/api/v1/bookings/{booking_id}/consent",
                token=key,
                json={"version": steps["consent"]["version"], "typed_name": "Client Example"},
            )
            assert status == 201, body
        if "emergency_contact" in steps["missing"]:
            status, body = await self.call(
                "PUT",
                f"/api/v1/bookings/{booking_id}/emergency-contact",
                token=key,
                json={"name": "Contact Example", "phone": "+49 30 1234567", "usual_location": {"country": country}},
            )
            assert status == 200, body

    async def ready_therapist(self, **session_fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """A therapist available around the clock with one session type (no notice by default)."""
        therapist = await self.therapist()
        await self.availability(therapist)
        return therapist, await self.session_type(therapist, **session_fields)


def next_grid_start(now: dt.datetime, minutes: int) -> dt.datetime:
    """The first instant after `now` on a `minutes` grid counted from midnight UTC."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (now - midnight).total_seconds() // 60
    return midnight + dt.timedelta(minutes=(int(elapsed) // minutes + 1) * minutes)
