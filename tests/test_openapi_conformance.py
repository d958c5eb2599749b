"""The OpenAPI document is what the server does: schemathesis, an independent API fuzzer, walks every
operation of the live /api/v1/openapi.json with all of its checks (`--checks all`).

The service runs as in every API test; a therapist with hours, session types, bookings in every
state, a series, a client, a feed, a dashboard session and an unused password link make the
fuzzer's requests reach the handlers instead of stopping at 404. The fuzzer runs in its own
process (`python -m schemathesis.cli run`, exactly what an outside tester runs), deterministic and
with a bounded number of examples per operation, so the whole module stays well under a minute.
Operations added later are walked too: the run reads whatever the document lists.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from broker.clock import Clock
from broker.errors import InvalidInput
from broker.http.endpoints import MULTI_LINE, ONE_LINE, check_text
from broker.settings import Settings
from tests.support import Api, next_grid_start
from tests.test_accounts import PASSWORD, Browserish, link_secret, therapist_with_password

HOOKS = Path(__file__).with_name("openapi_checks.py")
SEED = 20261127
EXAMPLES_PER_OPERATION = 3
RUN_SECONDS = 100

# Which existing thing each operation's `{id}` names (by operationId); an operation not listed
# here gets generated ids (and answers 404, which the document says it may).
ID_OF: dict[str, str] = {
    "get_booking": "booking",
    "booking_ics": "booking",
    "room_token": "booking_started",
    "get_attendance": "booking_started",
    "cancel_booking": "booking_to_cancel",
    "reschedule_booking": "booking_to_move",
    "post_outcome": "booking_started",
    "post_fee_decision": "booking_late",
    "get_series": "series",
    "series_ics": "series",
    "cancel_series": "series",
    "get_client": "client",
    "update_client": "client",
    "preview_client_series": "client",
    "create_client_series": "client",
    "put_policy": "session_type",
    "list_policy_versions": "session_type",
    "archive_session_type": "spare_session_type",
    "put_reminders": "session_type",
    "revoke_feed": "feed",
    "get_webhook": "webhook",
    "update_webhook": "webhook",
    "rotate_secret": "webhook",
    "list_deliveries": "webhook",
    "send_again": "webhook",
    "delete_webhook": "doomed_webhook",
    "admin_get_webhook": "admin_webhook",
    "admin_update_webhook": "admin_webhook",
    "admin_rotate_secret": "admin_webhook",
    "admin_list_deliveries": "admin_webhook",
    "admin_send_again": "admin_webhook",
    "admin_delete_webhook": "doomed_admin_webhook",
}
# The other path parameters, by operationId: which thing, and its parameter's name.
OTHER_OF: dict[str, tuple[str, str]] = {
    "send_again": ("delivery_id", "delivery"),
    "admin_send_again": ("delivery_id", "admin_delivery"),
    "get_preview": ("template", "template"),
}
# Fields whose generated values are half the time real ones (from the world's dictionaries).
DICTIONARY_OF = {
    "body.session_type": "session-types",
    "query.session_type": "session-types",
    "body.start": "starts",
    "body.timezone": "zones",
    "body.client_timezone": "zones",
    "query.tz": "zones",
}
# Webhooks go to a port nobody listens on (this machine's discard port): every delivery fails.
WEBHOOK_URL = "https://127.0.0.1:9/teleroom"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings, with webhooks allowed to this machine's addresses (see WEBHOOK_URL)."""
    return dataclasses.replace(settings, allow_private_webhook_urls=True)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service under fuzz reaches nothing but this machine: a fuzzed calendar or webhook address
    must not become a request to the outside world (no DNS query, no connection)."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def local(host: Any) -> bool:
        if host in (None, "localhost"):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
        except ValueError:
            return False

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not local(address[0]):
            raise OSError(101, "Network is unreachable (offline test)")
        real_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not local(host):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (offline test)")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


async def book(api: Api, therapist: dict[str, Any], session_type: dict[str, Any], start: dt.datetime) -> Any:
    status, body = await api.book(therapist, session_type, start.isoformat())
    assert status == 201, body
    return body


async def created(api: Api, method: str, path: str, token: str, body: Any) -> Any:
    status, answer = await api.call(method, path, token=token, json=body)
    assert status == 201, answer
    return answer


async def fetched(api: Api, path: str, token: str) -> Any:
    status, answer = await api.call("GET", path, token=token)
    assert status == 200, answer
    return answer


async def populate(api: Api, base_url: str, clock: Clock) -> dict[str, Any]:
    """A therapist with something behind every id the document's operations take."""
    therapist = await therapist_with_password(api)
    await api.availability(therapist)
    fee = {"amount": "40.00", "currency": "EUR"}
    session_type = await api.session_type(
        therapist,
        series_frequencies=["weekly", "biweekly"],
        policy={"window_hours": 48, "text": "Cancel two days ahead.", "late_cancel_fee": fee, "no_show_fee": fee},
    )
    spare = await api.session_type(therapist, name="Spare")
    webhooks = f"/api/v1/therapists/{therapist['slug']}/webhooks"
    hooks = [
        await created(api, "POST", base, token, {"url": WEBHOOK_URL, "events": ["booking.created"]})
        for base, token in [(webhooks, therapist["api_token"])] * 2 + [("/api/v1/webhooks", api.admin_token)] * 2
    ]
    first = next_grid_start(clock.now() + dt.timedelta(minutes=5), 60)  # still ahead when booked
    started = await book(api, therapist, session_type, first)
    late = await book(api, therapist, session_type, first + dt.timedelta(hours=2))
    status, body = await api.call("POST", f"/api/v1/bookings/{late['id']}/cancel", token=late["booking_key"])
    assert status == 200 and body["status"] == "late_cancelled", body
    booking = await book(api, therapist, session_type, first + dt.timedelta(hours=3))
    to_cancel = await book(api, therapist, session_type, first + dt.timedelta(hours=4))
    to_move = await book(api, therapist, session_type, first + dt.timedelta(hours=5))
    status, series = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/series",
        json={
            "session_type": session_type["id"],
            "start": (first + dt.timedelta(days=2)).isoformat(),
            "frequency": "weekly",
            "count": 4,
            "client": {"name": "Series Client", "email": "series@example.org"},
        },
    )
    assert status == 201, series
    status, listed = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/clients", token=therapist["api_token"]
    )
    assert status == 200 and listed["clients"], listed
    status, feed = await api.call(
        "POST", f"/api/v1/therapists/{therapist['slug']}/feeds", token=therapist["api_token"], json={"privacy": "busy"}
    )
    assert status == 201, feed
    invited = await api.therapist()  # its invite link is unused: the link endpoints' credential
    deliveries = [
        await fetched(api, f"{base}/{hook['id']}/deliveries", token)
        for base, hook, token in [
            (webhooks, hooks[0], therapist["api_token"]),
            ("/api/v1/webhooks", hooks[2], api.admin_token),
        ]
    ]
    previews = await fetched(api, f"/api/v1/therapists/{therapist['slug']}/email-previews", therapist["api_token"])

    # The first booking has started: its outcome can be marked, its room opened.
    clock.advance(first - clock.now() + dt.timedelta(minutes=5))
    free = await api.slots(
        therapist, session_type, first.date() + dt.timedelta(days=1), first.date() + dt.timedelta(days=3)
    )
    browser = Browserish(base_url)
    try:
        status, _, _ = await browser.login(therapist["email"], PASSWORD)
        assert status == 303
        cookie = browser.cookie()
        assert cookie
    finally:
        await browser.close()
    return {
        "therapist": therapist,
        "cookie": cookie,
        "link": link_secret(invited["invite_url"]),
        "ids": {
            "booking": booking["id"],
            "booking_to_cancel": to_cancel["id"],
            "booking_to_move": to_move["id"],
            "booking_started": started["id"],
            "booking_late": late["id"],
            "series": series["id"],
            "client": listed["clients"][0]["id"],
            "session_type": session_type["id"],
            "spare_session_type": spare["id"],
            "feed": feed["id"],
            "webhook": hooks[0]["id"],
            "doomed_webhook": hooks[1]["id"],
            "admin_webhook": hooks[2]["id"],
            "doomed_admin_webhook": hooks[3]["id"],
            "delivery": deliveries[0]["deliveries"][0]["id"],
            "admin_delivery": deliveries[1]["deliveries"][0]["id"],
            "template": previews["templates"][0],
        },
        # Values the fuzzer mixes into the fields of these names: real ones reach past "unknown".
        "dictionaries": {
            "session-types": [session_type["id"]],
            "starts": [slot["start"] for slot in free[:: max(1, len(free) // 12)]],
            "zones": ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"],
        },
    }


def toml(value: Any) -> str:
    """A TOML value: JSON's strings, numbers, booleans and arrays are TOML's too."""
    return json.dumps(value)


def config(world: dict[str, Any], admin_token: str, hooks: Path) -> str:
    """schemathesis.toml: credentials per security scheme, the therapist's slug, the ids per operation."""
    lines = [
        f"seed = {SEED}",
        "workers = 1",
        f"hooks = {toml(str(hooks))}",
        "continue-on-failure = true",
        "[cache]",
        "enabled = false",
        "[generation]",
        f"max-examples = {EXAMPLES_PER_OPERATION}",
        "deterministic = true",
        "no-shrink = true",
        'database = "none"',
        "[phases.coverage]",
        # Every undeclared method meets the same router (405 with Allow): two of them show it.
        'unexpected-methods = ["delete", "trace"]',
        "[phases.stateful]",
        "max-steps = 6",
        "[checks.positive_data_acceptance]",
        # The documented refusals JSON Schema cannot express; openapi_checks.py makes sure none of
        # them is a complaint about the request's shape.
        'expected-statuses = ["2xx", "401", "403", "404", "409", "410", "422", "429"]',
        "[auth.openapi.adminToken]",
        f"bearer = {toml(admin_token)}",
        "[auth.openapi.therapistToken]",
        f"bearer = {toml(world['therapist']['api_token'])}",
        "[auth.openapi.passwordLink]",
        f"bearer = {toml(world['link'])}",
        "[auth.openapi.sessionCookie]",
        f"api_key = {toml(world['cookie'])}",
        "[parameters]",
        f"slug = {toml(world['therapist']['slug'])}",
    ]
    for name, dictionary in DICTIONARY_OF.items():
        lines.append(f"{toml(name)} = {{ dictionary = {toml(dictionary)}, probability = 0.5 }}")
    for dictionary, values in world["dictionaries"].items():
        lines += [f"[dictionaries.{dictionary}]", f"values = {toml(values)}"]
    for operation_id in sorted(ID_OF.keys() | OTHER_OF.keys()):
        values = {"id": world["ids"][ID_OF[operation_id]]} if operation_id in ID_OF else {}
        if operation_id in OTHER_OF:
            parameter, name = OTHER_OF[operation_id]
            values[parameter] = world["ids"][name]
        table = ", ".join(f"{key} = {toml(value)}" for key, value in values.items())
        lines += ["[[operations]]", f"include-operation-id = {toml(operation_id)}", f"parameters = {{ {table} }}"]
    return "\n".join(lines) + "\n"


async def fuzz(base_url: str, config_file: Path) -> tuple[int | None, str]:
    """Run the schemathesis CLI against the live document: its exit code (None: out of time) and report."""
    report = config_file.with_name("report.txt")
    with report.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config_file),
            "--no-color",
            "run",
            f"{base_url}/api/v1/openapi.json",
            "--checks",
            "all",
            # More options for a look at a run, e.g. "--report ndjson --report-dir /tmp/st".
            *os.environ.get("OPENAPI_FUZZ_ARGS", "").split(),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            cwd=config_file.parent,
            env={**os.environ, "COLUMNS": "120"},
        )
        try:
            async with asyncio.timeout(RUN_SECONDS):
                code: int | None = await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            code = None
    return code, report.read_text(errors="replace")


async def test_every_operation_does_what_the_openapi_document_says(
    offline: None, server: TestServer, base_url: str, api: Api, clock: Clock, tmp_path: Path
) -> None:
    world = await populate(api, base_url, clock)
    config_file = tmp_path / "schemathesis.toml"
    config_file.write_text(config(world, api.admin_token, HOOKS))
    code, report = await fuzz(base_url, config_file)
    assert code is not None, f"schemathesis took more than {RUN_SECONDS} s:\n{report}"
    assert code == 0, report


# A value for each kind of request string, and every control character check_text refuses.
SAMPLES = ["Ada", "ada", "a@example.org", "EUR", "60.00", "09:00", "+49 30 1234", "dr-sample", "key-1", "US", "US-NY"]
CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))] + ["\r\n"]


def ecma(pattern: str) -> re.Pattern[str]:
    """A document pattern as ECMA 262 reads it: `$` is the very end (Python's also matches before a final LF)."""
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def accepted_by_check_text(text: str, multiline: bool) -> bool:
    try:
        check_text(text, multiline=multiline)
    except InvalidInput:
        return False
    return True


@given(st.text(alphabet=st.sampled_from("a \t\n\r\x00\x1b\x7f\x85\x9f\xa0\u2028é"), max_size=8))
def test_the_documents_text_patterns_are_check_texts_rules(text: str) -> None:
    assert (ecma(ONE_LINE).search(text) is not None) == accepted_by_check_text(text, multiline=False), repr(text)
    assert (ecma(MULTI_LINE).search(text) is not None) == accepted_by_check_text(text, multiline=True), repr(text)


async def test_every_request_string_in_the_document_refuses_control_characters(api: Api) -> None:
    """A string the document calls valid passes check_text: each request string has a pattern that
    leaves out control characters (LF and CR LF allowed where marked x-multiline), or is an enum,
    a date, an instant or a UUID."""
    status, doc = await api.call("GET", "/api/v1/openapi.json")
    assert status == 200
    components = doc["components"]["schemas"]
    wrong: list[str] = []
    checked = 0

    def walk(schema: Any, where: str, seen: frozenset[str]) -> None:
        nonlocal checked
        if isinstance(schema, list):
            for i, item in enumerate(schema):
                walk(item, f"{where}[{i}]", seen)
            return
        if not isinstance(schema, dict):
            return
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                walk(components[name], name, seen | {name})
            return
        if schema.get("type") == "string" and not {"enum", "const", "format"} & schema.keys():
            checked += 1
            pattern = schema.get("pattern")
            sample = next((s for s in SAMPLES if pattern and ecma(pattern).search(s)), None)
            if pattern is None:
                wrong.append(f"{where}: no pattern")
            elif sample is None:
                wrong.append(f"{where}: add a sample matching {pattern}")
            else:
                multiline = bool(schema.get("x-multiline"))
                for control in CONTROLS:
                    if multiline and control in ("\n", "\r\n"):
                        continue
                    for at in (0, 1, len(sample)):
                        if ecma(pattern).search(sample[:at] + control + sample[at:]):
                            wrong.append(f"{where}: pattern {pattern} admits {control!r}")
                            break
        for key, value in schema.items():
            if key not in ("$ref", "default", "examples"):
                walk(value, f"{where}.{key}", seen)

    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            label = f"{method.upper()} {path}"
            for param in op["parameters"]:
                walk(param["schema"], f"{label} {param['name']}", frozenset())
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            walk(body, label, frozenset())
    assert checked > 50
    assert not wrong, "\n".join(wrong)


async def test_an_integer_written_with_a_zero_fraction_is_that_integer(api: Api) -> None:
    """JSON Schema's "integer" (the document's word) admits 50.0; the strict decoder alone did not."""
    therapist = await api.therapist()
    created = await api.session_type(therapist, duration_minutes=50.0, horizon_days=3e1)
    assert (created["duration_minutes"], created["horizon_days"]) == (50, 30)
    status, problem = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/session-types",
        token=therapist["api_token"],
        json={"name": "Half", "duration_minutes": 50.5},
    )
    assert (status, problem["code"]) == (422, "invalid_input"), problem


async def test_dates_beyond_the_documented_years_are_invalid_date_not_an_error(api: Api) -> None:
    therapist, session_type = await api.ready_therapist()
    slug = therapist["slug"]
    for query in ("from=9999-12-31", "to=0001-01-01", "from=20261201", "from=2026-W01-1"):
        status, problem = await api.call(
            "GET", f"/api/v1/therapists/{slug}/slots?session_type={session_type['id']}&{query}"
        )
        assert (status, problem["code"]) == (422, "invalid_date"), (query, problem)
        status, problem = await api.call(
            "GET", f"/api/v1/therapists/{slug}/bookings?{query}", token=therapist["api_token"]
        )
        assert (status, problem["code"]) == (422, "invalid_date"), (query, problem)
    for start in ("9999-12-31T23:59:00+00:00", "0001-01-01T00:00:00+01:00"):
        status, problem = await api.book(therapist, session_type, start)
        assert (status, problem["code"]) == (422, "invalid_date"), (start, problem)


async def test_a_cancellation_may_come_without_a_body_as_the_document_says(api: Api, clock: Clock) -> None:
    therapist, session_type = await api.ready_therapist()
    booking = await book(api, therapist, session_type, next_grid_start(clock.now() + dt.timedelta(days=1), 60))
    status, doc = await api.call("GET", "/api/v1/openapi.json")
    assert doc["paths"]["/api/v1/bookings/{id}/cancel"]["post"]["requestBody"]["required"] is False
    status, body = await api.call("POST", f"/api/v1/bookings/{booking['id']}/cancel", token=booking["booking_key"])
    assert (status, body["status"]) == (200, "cancelled"), body
