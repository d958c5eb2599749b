"""What the person running Teleroom sees: Prometheus metrics behind a token (labels without any
person's identifier), one JSON object per log line when asked, and a request id tying a
request's lines to its answer."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from broker import logs
from broker.app import create_app
from broker.clock import Clock
from broker.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support import Api, free_port, next_grid_start

METRICS_TOKEN = "trm_metrics_" + "x" * 24


@pytest.fixture
async def metered(settings: Settings, clock: Clock) -> AsyncIterator[str]:
    configured = dataclasses.replace(settings, port=free_port(), metrics_token=METRICS_TOKEN)
    srv = TestServer(create_app(configured, clock=clock), host="127.0.0.1", port=configured.port)
    await srv.start_server()
    yield f"http://127.0.0.1:{configured.port}"
    await srv.close()


async def scrape(http: aiohttp.ClientSession, base: str, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(base + "/metrics", headers=headers) as resp:
        return resp.status, await resp.text()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus' text format, or None if absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


async def test_metrics_count_routes_and_booking_outcomes_without_identifiers(
    metered: str, http: aiohttp.ClientSession
) -> None:
    api = Api(http, metered, ADMIN_TOKEN)
    therapist, session_type = await api.ready_therapist()
    start = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(days=1), 60).isoformat()
    assert (await api.book(therapist, session_type, start, name="Zelda Uniquename"))[0] == 201
    assert (await api.book(therapist, session_type, start, name="Zelda Uniquename"))[0] == 409
    assert (await api.call("GET", "/api/v1/therapists/no-such-person-here"))[0] == 404

    status, text = await scrape(http, metered, METRICS_TOKEN)
    assert status == 200
    assert sample(text, "teleroom_bookings_total", outcome="created") == 1
    assert sample(text, "teleroom_bookings_total", outcome="slot_unavailable") == 1
    assert (
        sample(text, "teleroom_http_requests_total", route="/api/v1/therapists/{slug}", method="GET", status="404") == 1
    )
    assert (
        sample(
            text,
            "teleroom_http_request_duration_seconds_count",
            route="/api/v1/therapists/{slug}/bookings",
            method="POST",
        )
        == 2
    )
    assert sample(text, "teleroom_outbox_due_messages") is not None
    assert sample(text, "teleroom_busy_calendar_staleness_seconds") == 0
    # Route patterns only: no slug, name, email or id of anyone.
    for secret in (therapist["slug"], "no-such-person-here", "Zelda", "client@example.org", therapist["id"]):
        assert secret not in text


async def test_metrics_are_not_public(metered: str, base_url: str, http: aiohttp.ClientSession) -> None:
    assert (await scrape(http, metered, None))[0] == 404
    assert (await scrape(http, metered, "trm_wrong_" + "y" * 24))[0] == 404
    # Without a configured token there is no /metrics at all, token or not.
    assert (await scrape(http, base_url, METRICS_TOKEN))[0] == 404


async def test_json_log_lines_carry_the_request_id_and_no_personal_data(
    api: Api, http: aiohttp.ClientSession, base_url: str
) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.setup("INFO", "json")
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        async with http.get(
            base_url + "/api/v1/therapists/nobody-at-all", headers={"X-Request-Id": "req-12345678"}
        ) as r:
            assert r.status == 404 and r.headers["X-Request-Id"] == "req-12345678"
        async with http.get(base_url + "/healthz", headers={"X-Request-Id": "bad id with spaces <script>"}) as r:
            fresh = r.headers["X-Request-Id"]
            assert fresh != "bad id with spaces <script>" and len(fresh) == 32
        logging.getLogger("teleroom.test").warning("plain line")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "aiohttp.access"]
    assert any(line.get("request_id") == "req-12345678" for line in access), access
    assert any(line.get("request_id") == fresh for line in access)
    assert lines[-1]["message"] == "plain line" and "request_id" not in lines[-1]


async def test_signaling_reports_sockets_rooms_and_the_relays_lag(
    settings: Settings, clock: Clock, http: aiohttp.ClientSession
) -> None:
    configured = dataclasses.replace(
        settings, port=free_port(), metrics_token=METRICS_TOKEN, signaling_relay="postgres"
    )
    srv = TestServer(create_app(configured, clock=clock), host="127.0.0.1", port=configured.port)
    await srv.start_server()
    base = f"http://127.0.0.1:{configured.port}"
    try:
        async with asyncio.timeout(10):  # the first probe goes out as the relay starts
            while True:
                status, text = await scrape(http, base, METRICS_TOKEN)
                assert status == 200
                probes = sample(text, "teleroom_signaling_relay_lag_seconds_count")
                if probes:
                    break
                await asyncio.sleep(0.1)
        assert sample(text, "teleroom_signaling_sockets") == 0
        assert sample(text, "teleroom_signaling_rooms") == 0
        lag = sample(text, "teleroom_signaling_relay_lag_seconds_sum")
        assert lag is not None and 0 < lag < 5
    finally:
        await srv.close()
