"""Domain errors, raised anywhere in the core and rendered once as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """An error the caller can act on: an HTTP status, a stable machine-readable code and a detail."""

    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "type": f"https://teleroom.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }


_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def not_found(what: str = "resource") -> Problem:
    return Problem(404, "not_found", f"No such {what}.")


def invalid(detail: str, code: str = "invalid_input", **extra: Any) -> Problem:
    return Problem(422, code, detail, **extra)


def unauthorized(detail: str = "A bearer token is required.") -> Problem:
    return Problem(401, "unauthorized", detail)


def forbidden(detail: str, code: str = "forbidden") -> Problem:
    return Problem(403, code, detail)
