"""Hostile input found from outside (issue 13): JSON nested deeper than the decoder's stack allows,
and control characters in free text, refused on every endpoint with the documented codes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from broker import credentials
from broker.settings import Settings
from signaling import protocol
from tests.signaling_support import Booking, Ws, booking_in_window
from tests.support import Api, next_grid_start
from tests.test_signaling import admitted_pair


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, trusted_proxies=("127.0.0.1",))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def signal(to: str, sdp: str) -> str:
    return '{"type":"signal","to":"' + to + '","data":{"sdp":' + sdp + "}}"


DEEP = nested(3000)  # 6 KB: far under every size limit, far over the interpreter's recursion limit


# --- deeply nested JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        DEEP,
        '{"type":"join","token":' + DEEP + "}",
        '{"type":"chat","text":' + DEEP + "}",
        '{"type":"signal","to":"x","data":{"sdp":' + DEEP + "}}",
        # Decodable, but nested past the protocol's limit (it would be relayed and re-encoded).
        '{"type":"signal","to":"x","data":{"sdp":' + nested(protocol.MAX_NESTING) + "}}",
    ],
    ids=["array", "join-token", "chat-text", "signal-data", "signal-over-limit"],
)
async def test_deeply_nested_first_frame_is_refused_as_malformed(
    http: aiohttp.ClientSession, base_url: str, frame: str
) -> None:
    ws = await Ws.connect(http, base_url.replace("http", "ws", 1) + "/ws?room=any")
    await ws.ws.send_str(frame)
    assert (await ws.expect("error"))["code"] == "malformed"
    assert await ws.closed() == protocol.CloseCode.MALFORMED


async def test_deeply_nested_signal_in_a_room_closes_only_its_sender(api: Api, http: aiohttp.ClientSession) -> None:
    booking: Booking = await booking_in_window(api)
    therapist, client, t_id, c_id = await admitted_pair(api, http, booking)
    await client.ws.send_str(signal(t_id, DEEP))
    assert (await client.expect("error"))["code"] == "malformed"
    assert await client.closed() == protocol.CloseCode.MALFORMED
    assert (await therapist.expect("peer-left"))["participant"]["id"] == c_id


async def test_signal_data_nested_within_the_limit_is_relayed(api: Api, http: aiohttp.ClientSession) -> None:
    booking = await booking_in_window(api)
    therapist, client, t_id, _c_id = await admitted_pair(api, http, booking)
    deepest = nested(protocol.MAX_NESTING - 2)  # the frame object and `data` are the first two levels
    await client.ws.send_str(signal(t_id, deepest))
    relayed = await therapist.expect("signal")
    assert relayed["data"] == {"sdp": json.loads(deepest)}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/therapists", DEEP),
        ("/api/v1/therapists", '{"slug":' + DEEP + "}"),
        ("/api/v1/therapists", '{"unknown":' + DEEP + "}"),
    ],
)
async def test_deeply_nested_json_body_is_a_clean_problem(api: Api, path: str, body: str) -> None:
    headers = {"Authorization": f"Bearer {api.admin_token}", "Content-Type": "application/json"}
    async with api.session.post(api.base + path, data=body, headers=headers) as resp:
        problem = await resp.json(content_type=None)
    assert (resp.status, problem["code"]) in {(400, "malformed_json"), (422, "invalid_input")}, problem


async def test_every_json_endpoint_answers_deep_nesting_with_a_problem(api: Api) -> None:
    world = await World.build(api)
    for method, path, op in world.operations():
        for body in (DEEP, '{"a":' + DEEP + "}"):
            status, problem = await world.send(method, path, op, body)
            assert (status, problem.get("code")) in {(400, "malformed_json"), (422, "invalid_input")}, (
                method,
                path,
                status,
                problem,
            )


# --- control characters in free text --------------------------------------------------------------


class World:
    """Real resources for every path parameter, and a credential for every endpoint of the API."""

    def __init__(self, api: Api, doc: dict[str, Any], ids: dict[str, str], tokens: dict[str, str]) -> None:
        self.api = api
        self.doc = doc
        self.ids = ids
        self.tokens = tokens
        self.sent = 0

    @classmethod
    async def build(cls, api: Api) -> World:
        therapist, st = await api.ready_therapist(series_frequencies=["weekly"])
        start = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(days=2), 60)
        status, booking = await api.book(therapist, st, start.isoformat())
        assert status == 201, booking
        status, series = await api.call(
            "POST",
            f"/api/v1/therapists/{therapist['slug']}/series",
            json={
                "session_type": st["id"],
                "start": (start + dt.timedelta(hours=3)).isoformat(),
                "frequency": "weekly",
                "count": 2,
                "client": {"name": "Series Client", "email": "series@example.org"},
            },
        )
        assert status == 201, series
        status, clients = await api.call(
            "GET", f"/api/v1/therapists/{therapist['slug']}/clients", token=therapist["api_token"]
        )
        assert status == 200, clients
        status, licence = await api.call(
            "POST",
            f"/api/v1/therapists/{therapist['slug']}/licences",
            token=therapist["api_token"],
            json={"jurisdiction": "DE", "kind": "Psychotherapeut", "number": "L-1"},
        )
        assert status == 201, licence
        status, doc = await api.call("GET", "/api/v1/openapi.json")
        assert status == 200, doc
        ids = {
            # Named path parameters other than {slug} and {id}: real values, so the body is what is judged.
            "licence_id": licence["id"],
            "instrument": "phq9",
            "template": "reminder",
            "slug": therapist["slug"],
            "bookings": booking["id"],
            "series": series["id"],
            "clients": clients["clients"][0]["id"],
            "session-types": st["id"],
            "feeds": "00000000-0000-0000-0000-000000000000",
            "webhooks": "00000000-0000-0000-0000-000000000000",  # its PATCH reads the body before the id
        }
        tokens = {
            "adminToken": api.admin_token,
            "therapistToken": therapist["api_token"],
            # Shaped like a link's secret: the body is read before the link is looked up.
            "passwordLink": credentials.new_secret(credentials.INVITE_LINK),
            "bookingKey": booking["booking_key"],
        }
        return cls(api, doc, ids, tokens)

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every operation with a JSON request body, its path filled with real ids."""
        for template, item in self.doc["paths"].items():
            for method, op in item.items():
                if "requestBody" not in op:
                    continue
                path = re.sub(r"(\w[\w-]*)/\{id\}", lambda m: f"{m[1]}/{self.ids[m[1]]}", template)
                path = re.sub(r"\{(\w+)\}", lambda m: self.ids[m[1]], path)
                yield method.upper(), path, op

    def credential(self, op: dict[str, Any]) -> str | None:
        offered = [name for scheme in op["security"] for name in scheme]
        for name in ("adminToken", "therapistToken", "passwordLink", "bookingKey"):
            if name in offered:
                return self.tokens[name]
        assert not offered, f"no credential for {offered}"
        return None

    async def send(self, method: str, path: str, op: dict[str, Any], body: str) -> tuple[int, dict[str, Any]]:
        self.sent += 1  # each from its own address (the test trusts loopback as a proxy): no rate limit trips
        headers = {"Content-Type": "application/json", "X-Forwarded-For": f"10.13.{self.sent // 250}.{self.sent % 250}"}
        token = self.credential(op)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.api.session.request(method, self.api.base + path, data=body, headers=headers) as resp:
            answer = await resp.json(content_type=None) if resp.status != 204 else {}
            return resp.status, answer

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def example(self, schema: dict[str, Any]) -> Any:
        """A small value valid against `schema` (required fields only)."""
        schema = self.resolve(schema)
        if "anyOf" in schema:
            return self.example(next(s for s in schema["anyOf"] if s.get("type") != "null"))
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "object":
            return {name: self.example(schema["properties"][name]) for name in schema.get("required", [])}
        if kind == "array":  # as few items as the schema allows
            return [self.example(schema["items"]) for _ in range(schema.get("minItems", 0))]
        if kind == "integer":
            return max(schema.get("minimum", 1), 1)
        if kind == "boolean":
            return False
        if schema.get("format") == "date-time":
            return (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
        if schema.get("format") == "date":
            return (dt.date.today() + dt.timedelta(days=3)).isoformat()
        assert kind == "string", schema
        return text_sample(schema)

    def text_fields(self, schema: dict[str, Any], at: tuple[str | int, ...] = ()) -> Iterator[TextField]:
        """Every free-text string reachable in a body: objects' properties and arrays' items."""
        schema = self.resolve(schema)
        for option in schema.get("anyOf", []):
            yield from self.text_fields(option, at)
        kind = schema.get("type")
        if kind == "object":
            for name, prop in schema.get("properties", {}).items():
                yield from self.text_fields(prop, (*at, name))
        elif kind == "array":
            yield from self.text_fields(schema["items"], (*at, 0))
        elif kind == "string" and "enum" not in schema and "format" not in schema:
            yield TextField(at, schema)

    def body_with(self, body_schema: dict[str, Any], field: TextField, value: str) -> Any:
        """A valid body with `value` at the field's place (creating the objects and arrays on the way)."""
        body = self.example(body_schema)
        node, schema = body, body_schema
        for i, step in enumerate(field.at):
            schema = self.non_null(schema)
            schema = schema["properties"][step] if isinstance(step, str) else schema["items"]
            if i == len(field.at) - 1:
                if isinstance(step, str) or node:
                    node[step] = value
                else:
                    node.append(value)
            elif isinstance(step, str):
                node = node.setdefault(step, self.example(schema))
            else:
                if not node:
                    node.append(self.example(schema))
                node = node[0]
        return body

    def non_null(self, schema: dict[str, Any]) -> dict[str, Any]:
        schema = self.resolve(schema)
        if "anyOf" in schema:
            return self.resolve(next(s for s in schema["anyOf"] if s.get("type") != "null"))
        return schema


class TextField:
    def __init__(self, at: tuple[str | int, ...], schema: dict[str, Any]) -> None:
        self.at = at
        self.schema = schema

    @property
    def multiline(self) -> bool:
        return bool(self.schema.get("x-multiline"))

    def allows(self, value: str) -> bool:
        """Whether the schema's own pattern and lengths admit `value` (as the decoder checks them)."""
        pattern = self.schema.get("pattern")
        size_ok = self.schema.get("minLength", 0) <= len(value) <= self.schema.get("maxLength", 10**9)
        return size_ok and (pattern is None or re.search(pattern, value) is not None)

    def __repr__(self) -> str:
        return "$" + "".join(f".{s}" if isinstance(s, str) else f"[{s}]" for s in self.at)


# A value for each kind of string the API declares; a new pattern without one fails below, by name.
SAMPLES = [
    "Ada",
    "a@example.org",
    "EUR",
    "DE",
    "DE-BE",
    "60.00",
    "09:00",
    "+49 30 1234",
    "dr-sample",
    "https://example.org/x.ics",
]


def text_sample(schema: dict[str, Any]) -> str:
    field = TextField((), schema)
    for sample in SAMPLES:
        if field.allows(sample):
            return sample
    raise AssertionError(f"add a sample for string schema {schema}")


async def test_every_free_text_field_refuses_control_characters(api: Api) -> None:
    """Walks the OpenAPI document: each request body's string fields get CR LF, LF, TAB and NUL."""
    world = await World.build(api)
    wrong: list[str] = []
    checked = 0
    for method, path, op in world.operations():
        body_schema = op["requestBody"]["content"]["application/json"]["schema"]
        for field in world.text_fields(body_schema):
            sample = text_sample(field.schema)
            for control in ("\r\n", "\n", "\t", "\r", "\x00", "\x1b", "\x85"):
                value = sample + control + "x" if control != "\n" else sample + "\n"
                accepted = field.multiline and control in ("\n", "\r\n")
                payload = world.body_with(body_schema, field, value)
                status, answer = await world.send(method, path, op, json.dumps(payload))
                code = answer.get("code")
                if accepted:
                    if code == "invalid_text" or status >= 500:
                        wrong.append(f"{method} {path} {field!r} {control!r}: {status} {code}, expected accepted")
                elif (status, code) != (422, "invalid_text") and not (
                    (status, code) == (422, "invalid_input") and not field.allows(value)
                ):
                    wrong.append(f"{method} {path} {field!r} {control!r}: {status} {code} {answer.get('detail')}")
                checked += 1
    assert checked > 100  # the walk found the fields (names, emails, zones, reasons, policy text...)
    assert not wrong, "\n".join(wrong)


async def test_a_client_name_with_cr_lf_is_refused(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    start = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(days=1), 60).isoformat()
    for name in ("Eve\r\nBcc: all@example.org", "Eve\nAdams", "Eve\tAdams"):
        status, problem = await api.book(therapist, st, start, name=name)
        assert (status, problem["code"]) == (422, "invalid_text"), problem


async def test_notes_keep_their_line_breaks(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    start = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(days=1), 60).isoformat()
    status, _ = await api.book(therapist, st, start)
    assert status == 201
    base = f"/api/v1/therapists/{therapist['slug']}/clients"
    status, listed = await api.call("GET", base, token=therapist["api_token"])
    client_id = listed["clients"][0]["id"]
    status, patched = await api.call(
        "PATCH", f"{base}/{client_id}", token=therapist["api_token"], json={"notes": "first line\nsecond line"}
    )
    assert status == 200, patched
    assert patched["notes"] == "first line\nsecond line"
    status, problem = await api.call(
        "PATCH", f"{base}/{client_id}", token=therapist["api_token"], json={"notes": "first\rsecond"}
    )
    assert (status, problem["code"]) == (422, "invalid_text"), problem
