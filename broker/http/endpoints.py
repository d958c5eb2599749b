"""Declaring JSON endpoints once: route, auth, request and response structs, for handlers and OpenAPI.

A declaration is enforced, not only documented: before the handler runs, the path's `{slug}` is
resolved to the therapist (404 if none), a `/bookings/{id}` path to the booking id, and the caller
must prove one of the declared `auth` modes, be the therapist named by the slug, and, on a booking,
hold its key or be its therapist (anyone else learns nothing: 404). The handler receives a `Call`.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec
import msgspec.inspect
from aiohttp import web

from broker import bookings, credentials, idempotency, therapists
from broker.database import POOL
from broker.errors import BadRequest, Forbidden, NotFound, Unauthenticated, UnsupportedMediaType, invalid
from broker.http.auth import authenticate, bearer
from broker.http.problems import PROBLEM_CONTENT_TYPE
from broker.http.ratelimit import Limit
from broker.idempotency import Replay
from broker.principals import AuthMode, Principal
from broker.schemas import MULTILINE, SLUG_PATTERN
from broker.therapists import Therapist

# "link": a one-time password link's secret as the bearer (checked and spent by the handler).
Auth = Literal["public", "link"] | AuthMode
T = TypeVar("T")

# The usual declarations: a therapist by API token or dashboard session; a booking's client or therapist.
THERAPIST_ACCESS: tuple[Auth, ...] = ("therapist", "session")
BOOKING_ACCESS: tuple[Auth, ...] = ("booking", "therapist", "session")

# Control characters (C0, DEL, C1): none in one-line text; multi-line text may break lines with
# LF or CR LF (an SDP's lines end in CR LF), and holds no other control character, nor a lone CR.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")
# The same two rules as JSON Schema patterns (ECMA 262), which the OpenAPI document puts on every
# request string that has no stricter pattern of its own (broker/http/openapi.py).
ONE_LINE = r"^[^\x00-\x1f\x7f-\x9f]*$"
MULTI_LINE = r"^(?:[^\x00-\x09\x0b-\x1f\x7f-\x9f]|\r\n)*$"
# Dates and instants a request may carry: years 1900 to 2999, in the document (a pattern on the
# year) and in check_text's walk alike; beyond them date arithmetic would leave Python's range.
YEARS = range(1900, 3000)
YEAR_PATTERN = r"^(19|2[0-9])[0-9]{2}-"
DATE_PATTERN = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
_DESCRIBE: dict[Auth, str] = {
    "admin": "the admin token",
    "therapist": "the therapist's API token",
    "session": "the therapist's dashboard session",
    "booking": "the booking key",
    "link": "the link's secret (from the URL fragment) as a bearer token",
}


@dataclass(frozen=True, slots=True)
class Call:
    """What an endpoint's declaration resolved before its handler runs."""

    caller: Principal | None = None
    path_therapist: Therapist | None = None
    path_booking: uuid.UUID | None = None
    link: str | None = None

    @property
    def principal(self) -> Principal:
        """The authenticated caller (always there unless the endpoint is public)."""
        if self.caller is None:
            raise RuntimeError("a public endpoint has no principal")
        return self.caller

    @property
    def therapist(self) -> Therapist:
        """The therapist the path's `{slug}` names."""
        if self.path_therapist is None:
            raise RuntimeError("this endpoint's path has no {slug}")
        return self.path_therapist

    @property
    def link_secret(self) -> str:
        """The one-time link secret a `link` endpoint was called with (not yet checked)."""
        if self.link is None:
            raise RuntimeError("this endpoint is not called with a link secret")
        return self.link

    @property
    def booking_id(self) -> uuid.UUID:
        """The booking the path's `/bookings/{id}` names, which the caller may access."""
        if self.path_booking is None:
            raise RuntimeError("this endpoint's path names no booking")
        return self.path_booking


ApiHandler = Callable[[web.Request, Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter, for the OpenAPI document."""

    name: str
    where: Literal["path", "query", "header"]
    description: str
    required: bool = False
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


UUID_SCHEMA: dict[str, Any] = {"type": "string", "format": "uuid"}
# A query date as date_range reads it (routes/therapists.parse_date): YYYY-MM-DD, years 1900 to 2999.
DATE_SCHEMA: dict[str, Any] = {"type": "string", "format": "date", "pattern": DATE_PATTERN}
SLUG = Param(
    "slug", "path", "The therapist's public slug.", required=True, schema={"type": "string", "pattern": SLUG_PATTERN}
)
BOOKING_ID = Param("id", "path", "Booking id", required=True, schema=UUID_SCHEMA)
IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    "header",
    "Retry-safe key: the same key and body return the first answer",
    schema={"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_LENGTH, "pattern": idempotency.KEY},
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: ApiHandler
    summary: str
    auth: tuple[Auth, ...]
    body: type[Any] | None
    response: type[Any] | None
    status: int
    params: tuple[Param, ...]
    errors: tuple[int, ...]
    tag: str
    content_type: str = "application/json"
    body_optional: bool = False
    limit: Limit | None = None

    @property
    def public(self) -> bool:
        return "public" in self.auth

    @property
    def names_therapist(self) -> bool:
        return "{slug}" in self.path

    @property
    def names_booking(self) -> bool:
        return "/bookings/{id}" in self.path

    def describe_auth(self) -> str:
        return " or ".join(_DESCRIBE[a] for a in self.auth if a != "public")

    async def resolve(self, request: web.Request) -> Call:
        """Enforce the declaration: the path's therapist and booking, and who may call."""
        pool = request.app[POOL]
        # Kept per node (`therapists.BySlug`): a public booking then starts without a pool checkout.
        kept = request.app[therapists.BY_SLUG]
        therapist = await kept.get(pool, request.match_info["slug"]) if self.names_therapist else None
        booking_id = parse_uuid(request.match_info["id"], "booking") if self.names_booking else None
        if self.public:
            return Call(path_therapist=therapist, path_booking=booking_id)
        if self.auth == ("link",):
            secret = bearer(request)
            if secret is None or not credentials.looks_like(secret, credentials.LINK_PREFIXES):
                raise Unauthenticated(f"Send {_DESCRIBE['link']}.")
            return Call(path_therapist=therapist, path_booking=booking_id, link=secret)
        principal = await authenticate(request)
        if principal is None:
            raise Unauthenticated(f"This needs {self.describe_auth()}.")
        # Whoever cannot see a booking learns nothing of it (404), whatever else they may do.
        if booking_id is not None and not await _may_access(pool, principal, booking_id):
            raise NotFound("booking")
        if principal.mode not in self.auth:
            raise Forbidden(f"This needs {self.describe_auth()}.")
        if therapist is not None and principal.kind == "therapist" and principal.therapist_id != therapist.id:
            raise Forbidden("Only this therapist can do that.")
        return Call(caller=principal, path_therapist=therapist, path_booking=booking_id)

    def bind(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def enforced(request: web.Request) -> web.StreamResponse:
            if self.limit is not None:
                self.limit.require(request)
            return await self.handler(request, await self.resolve(request))

        enforced.__name__ = self.handler.__name__
        return enforced


async def _may_access(pool: Any, principal: Principal, booking_id: uuid.UUID) -> bool:
    """The booking's client (by its key, or its series' key) or its therapist."""
    if principal.kind == "client":
        if principal.series_id is not None:
            return await bookings.series_of(pool, booking_id) == principal.series_id
        return principal.booking_id == booking_id
    if principal.kind == "therapist":
        return await bookings.owner(pool, booking_id) == principal.therapist_id
    return False


class ApiRoutes:
    """A table of endpoints (like aiohttp's RouteTableDef) that also knows their wire types and auth."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: Auth | Sequence[Auth] = "public",
        body: type[Any] | None = None,
        response: type[Any] | None = None,
        status: int = 200,
        params: Sequence[Param] = (),
        errors: Sequence[int] = (),
        content_type: str = "application/json",
        body_optional: bool = False,
        limit: Limit | None = None,
    ) -> Callable[[ApiHandler], ApiHandler]:
        """Declare an endpoint. `errors` lists the statuses its own rules answer (409 for a conflict,
        422 for a rule JSON Schema cannot state, 410, 429...); those the declaration implies are
        added: see implied_statuses. `body_optional`: the handler reads `body` with allow_empty.
        `limit`: a per-address limit checked before the path is resolved (429 with Retry-After)."""
        modes = (auth,) if isinstance(auth, str) else tuple(auth)
        for alone in ("public", "link"):
            if alone in modes and len(modes) > 1:
                raise ValueError(f"{method} {path}: a {alone} endpoint declares no other auth mode")
        declared = {(p.name, p.where) for p in params}
        implied = [p for p, needed in ((SLUG, "{slug}" in path), (BOOKING_ID, "/bookings/{id}" in path)) if needed]
        all_params = tuple(p for p in implied if (p.name, p.where) not in declared) + tuple(params)
        implied_errors = implied_statuses(modes, path, all_params, body is not None)

        def register(handler: ApiHandler) -> ApiHandler:
            self.endpoints.append(
                Endpoint(
                    method=method,
                    path=path,
                    handler=handler,
                    summary=summary,
                    auth=modes,
                    body=body,
                    response=response,
                    status=status,
                    params=all_params,
                    errors=tuple(sorted(implied_errors | set(errors) | ({429} if limit else set()))),
                    tag=self.tag,
                    content_type=content_type,
                    body_optional=body_optional,
                    limit=limit,
                )
            )
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for ep in self.endpoints:
            app.router.add_route(ep.method, ep.path, ep.bind())


def implied_statuses(modes: Sequence[Auth], path: str, params: Sequence[Param], has_body: bool) -> set[int]:
    """The problems any endpoint so declared can answer, documented for it without being listed:
    400 (a request aiohttp or read_json cannot read), 503 (`database_unavailable`), 401 and 403 unless
    public, 404 when the path names something, 413, 415 and 422 with a body, 422 with query or
    header parameters (a value the document's schema refuses, a repeated or missing one)."""
    statuses = {400, 503}
    if "public" not in modes:
        statuses |= {401, 403}
    if "{" in path:
        statuses.add(404)
    if has_body:
        statuses |= {413, 415, 422}
    if any(p.where != "path" for p in params):
        statuses.add(422)
    return statuses


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """A path id; one that is not a UUID names nothing (404), like an unknown one."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(what) from None


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    dec = _decoders.get(type_)
    if dec is None:
        dec = _decoders[type_] = msgspec.json.Decoder(type_, strict=True)
    return dec


async def read_json(request: web.Request, type_: type[T], *, allow_empty: bool = False) -> T | None:
    """Decode the body into `type_` strictly; raise an error describing exactly what is wrong."""
    raw = await request.read()  # aiohttp enforces client_max_size and raises 413 beyond it
    if not raw.strip():
        if allow_empty:
            return None
        raise BadRequest("This request needs a JSON body.", code="body_required")
    ctype = request.content_type
    if ctype not in {"application/json", "application/merge-patch+json"} and not ctype.endswith("+json"):
        raise UnsupportedMediaType("Send the body as application/json.")
    try:
        try:
            value = _decoder(type_).decode(raw)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise
            value = _decode_integral_floats(raw, type_)
    except msgspec.ValidationError as exc:
        raise invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}", code="malformed_json") from None
    except RecursionError:  # msgspec's answer to nesting beyond what the interpreter's stack allows
        raise BadRequest("The body's JSON nests too deeply.", code="malformed_json") from None
    check_text(value)
    return value


def _decode_integral_floats(raw: bytes, type_: type[T]) -> T:
    """The body again, with numbers like 5.0 taken as the integers they are: JSON Schema's "integer"
    (as the OpenAPI document says) admits them, msgspec's strict int does not. Only a body the fast
    path refused comes here; iterative, like check_text."""
    root = msgspec.json.decode(raw)
    stack = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, dict | list):
            keys = item.keys() if isinstance(item, dict) else range(len(item))
            for key in keys:
                child = item[key]
                if isinstance(child, float) and child.is_integer():
                    item[key] = int(child)
                elif isinstance(child, dict | list):
                    stack.append(child)
    return msgspec.convert(root, type_, strict=True)


def check_text(value: Any, path: str = "$", *, multiline: bool = False) -> None:
    """Refuse control characters anywhere in input (`invalid_text`): NUL above all, which PostgreSQL
    text cannot hold, and CR or LF, which would break a line in an email header or a log. Only a
    struct field marked multi-line (broker/schemas.MULTILINE) may hold line breaks (LF or CR LF).
    Dates and instants outside YEARS are `invalid_date`. Iterative: however deep a value nests, the
    walk costs no stack.
    """
    stack: list[tuple[Any, str, bool]] = [(value, path, multiline)]
    while stack:
        item, where, multiline = stack.pop()
        if isinstance(item, str):
            if (_CONTROL_MULTILINE if multiline else _CONTROL).search(item):
                raise invalid(f"Text at `{where}` contains control characters.", code="invalid_text")
        elif isinstance(item, dt.date):  # a datetime too
            if item.year not in YEARS:
                raise invalid(
                    f"The date at `{where}` must be in the years {YEARS.start} to {YEARS.stop - 1}.",
                    code="invalid_date",
                )
        elif isinstance(item, msgspec.Struct):
            marked = _multiline_fields(type(item))
            stack.extend((getattr(item, name), f"{where}.{name}", name in marked) for name in item.__struct_fields__)
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{i}]", False) for i, child in enumerate(item))
        elif isinstance(item, dict):
            stack.extend((key, where, False) for key in item)
            stack.extend((child, f"{where}.{key}", False) for key, child in item.items())


@functools.cache
def _multiline_fields(struct: type[msgspec.Struct]) -> frozenset[str]:
    """The fields of `struct` whose string type carries the MULTILINE mark (read once per struct)."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    return frozenset(f.name for f in info.fields if _marked(f.type))


def _marked(t: msgspec.inspect.Type) -> bool:
    if isinstance(t, msgspec.inspect.UnionType):
        return any(_marked(member) for member in t.types)
    return isinstance(t, msgspec.inspect.Metadata) and bool((t.extra_json_schema or {}).get(MULTILINE))


_encoder = msgspec.json.Encoder()


def respond(
    value: Any, status: int = 200, headers: dict[str, str] | None = None, content_type: str = "application/json"
) -> web.Response:
    """A JSON response from a struct or plain value."""
    return web.Response(body=_encoder.encode(value), status=status, content_type=content_type, headers=headers)


def query_param(request: web.Request, name: str, *, required: bool = False) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise invalid(f"Query parameter `{name}` was given more than once.")
    if not values:
        if required:
            raise invalid(f"Query parameter `{name}` is required.", code="missing_parameter")
        return None
    value = values[0]
    check_text(value, name)
    return value


def created(outcome: tuple[object, bytes] | Replay) -> web.Response:
    """201 with the answer just made or, for a retried Idempotency-Key, the first answer again."""
    if isinstance(outcome, Replay):
        return web.Response(
            body=outcome.body,
            status=outcome.status,
            headers={"Idempotent-Replayed": "true"},
            content_type="application/json" if outcome.status < 400 else PROBLEM_CONTENT_TYPE,
        )
    return web.Response(body=outcome[1], status=201, content_type="application/json")
