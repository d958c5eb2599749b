"""Declaring JSON endpoints once: route, auth, request and response structs, for handlers and OpenAPI."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec
from aiohttp import web

from broker.problems import Problem, invalid

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Auth = Literal["public", "admin", "therapist", "booking", "session"]
T = TypeVar("T")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter, for the OpenAPI document."""

    name: str
    where: Literal["path", "query", "header"]
    description: str
    required: bool = False
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: tuple[Auth, ...]
    body: type[Any] | None
    response: type[Any] | None
    status: int
    params: tuple[Param, ...]
    errors: tuple[int, ...]
    tag: str
    content_type: str = "application/json"


class ApiRoutes:
    """A table of endpoints (like aiohttp's RouteTableDef) that also knows their wire types."""

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
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method=method,
                    path=path,
                    handler=handler,
                    summary=summary,
                    auth=(auth,) if isinstance(auth, str) else tuple(auth),
                    body=body,
                    response=response,
                    status=status,
                    params=tuple(params),
                    errors=tuple(errors),
                    tag=self.tag,
                    content_type=content_type,
                )
            )
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for ep in self.endpoints:
            app.router.add_route(ep.method, ep.path, ep.handler)


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    dec = _decoders.get(type_)
    if dec is None:
        dec = _decoders[type_] = msgspec.json.Decoder(type_, strict=True)
    return dec


async def read_json(request: web.Request, type_: type[T], *, allow_empty: bool = False) -> T | None:
    """Decode the body into `type_` strictly; raise a Problem describing exactly what is wrong."""
    raw = await request.read()  # aiohttp enforces client_max_size and raises 413 beyond it
    if not raw.strip():
        if allow_empty:
            return None
        raise Problem(400, "body_required", "This request needs a JSON body.")
    ctype = request.content_type
    if ctype not in {"application/json", "application/merge-patch+json"} and not ctype.endswith("+json"):
        raise Problem(415, "unsupported_media_type", "Send the body as application/json.")
    try:
        value = _decoder(type_).decode(raw)
    except msgspec.ValidationError as exc:
        raise invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Problem(400, "malformed_json", f"The body is not valid JSON: {exc}") from None
    check_text(value)
    return value


def check_text(value: Any, path: str = "$") -> None:
    """Refuse control characters (NUL above all, which PostgreSQL text cannot hold) anywhere in input."""
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise invalid(f"Text at `{path}` contains control characters.", code="invalid_text")
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            check_text(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_text(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, path)
            check_text(item, f"{path}.{key}")


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
