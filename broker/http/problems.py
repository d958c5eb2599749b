"""The one place errors become HTTP: RFC 9457 problem+json with a stable `code`, never a bare 500 page."""

from __future__ import annotations

import asyncio
import http
import logging
import traceback
import uuid
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler as RequestHandler

from broker import database, errors
from broker.settings import SETTINGS

PROBLEM_CONTENT_TYPE = "application/problem+json"
log = logging.getLogger("teleroom")

# Which status each kind of domain error is; the most specific class wins (checked in MRO order).
STATUS: dict[type[errors.TeleroomError], int] = {
    errors.BadRequest: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Gone: 410,
    errors.TooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.InvalidInput: 422,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
}

# RFC 9457 section 4.2.1: with the type "about:blank" the title is the status's reason phrase (RFC 9110).
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    426: "Upgrade Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpProblem(errors.TeleroomError):
    """An error that only exists at the HTTP edge (a wrong method, a missing WebSocket upgrade)."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail, code=code, **extra)
        self.status = status


def status_of(error: errors.TeleroomError) -> int:
    if isinstance(error, HttpProblem):
        return error.status
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(error: errors.TeleroomError) -> dict[str, Any]:
    """The problem document: `type` is "about:blank" (no URI we would have to keep resolving); the stable
    machine-readable kind of the error is the `code` member."""
    status = status_of(error)
    return {
        "type": "about:blank",
        "title": TITLES.get(status) or _phrase(status),
        "status": status,
        "detail": error.detail,
        "code": error.code,
        **error.extra,
    }


_encoder = msgspec.json.Encoder()


def problem_json(error: errors.TeleroomError) -> bytes:
    """The problem+json body of an error, encoded (an Idempotency-Key keeps it as the first answer)."""
    return _encoder.encode(problem_body(error))


def problem_response(error: errors.TeleroomError) -> web.Response:
    status = status_of(error)
    response = web.Response(body=_encoder.encode(problem_body(error)), status=status, content_type=PROBLEM_CONTENT_TYPE)
    if "retry_after" in error.extra:  # RFC 9110 section 10.2.3, for 429 and 503
        response.headers["Retry-After"] = str(error.extra["retry_after"])
    return response


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def loggable_path(request: web.BaseRequest) -> str:
    """The path with secrets masked: routes that carry a token in the path log their pattern."""
    if isinstance(request, web.Request) and "token" in request.match_info:
        info = request.match_info.route.resource
        return info.canonical if info is not None else "(redacted)"
    return request.path


@web.middleware
async def middleware(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    """Every error leaves as application/problem+json with a stable code; never a bare 500 page."""
    try:
        return await handler(request)
    except errors.TeleroomError as error:
        return problem_response(error)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == PROBLEM_CONTENT_TYPE:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        detail = exc.reason
        if exc.status == 413:
            detail = f"The body is larger than {request.app[SETTINGS].max_body_bytes} bytes."
        response = problem_response(HttpProblem(exc.status, code, detail))
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if database.unavailable(exc):  # lost, frozen or restarting: said once per outage, not per request
            health = request.config_dict.get(database.HEALTH)
            if health is not None:
                health.failed(type(exc).__name__)
            return problem_response(database.unavailable_error())
        if isinstance(exc, ConnectionResetError):  # the client went away (the database's is above)
            raise
        incident = uuid.uuid4().hex[:12]
        # Where it failed, but not the exception's message: database errors quote the values
        # involved (a name, an email), and logs must carry identifiers only.
        log.error(
            "unhandled %s, incident %s, %s %s\n%s",
            type(exc).__name__,
            incident,
            request.method,
            loggable_path(request),
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        return problem_response(
            HttpProblem(500, "internal_error", f"Something went wrong on our side (incident {incident}).")
        )
