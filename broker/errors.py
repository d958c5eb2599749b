"""Domain errors: raised anywhere in the core, each with a stable code, rendered once at the edge.

The core says *what* went wrong (not found, a conflict, invalid input); which HTTP status that is
lives in one table in `broker.http.problems`. A CLI command prints the same code and detail.
"""

from __future__ import annotations

from typing import Any


class TeleroomError(Exception):
    """An error the caller can act on: a stable machine-readable code, a detail and extra fields."""

    default_code = "error"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.extra = extra


class BadRequest(TeleroomError):
    """The request cannot be read at all (no body, malformed JSON)."""

    default_code = "bad_request"


class InvalidInput(TeleroomError, ValueError):
    """The request was read but a value is wrong: a type, a time zone, a time that is never offered."""

    default_code = "invalid_input"


class Unauthenticated(TeleroomError):
    """No credentials, or credentials that identify nobody."""

    default_code = "unauthorized"


class Forbidden(TeleroomError):
    """The caller is known but may not do this (or not yet: `too_early`)."""

    default_code = "forbidden"


class NotFound(TeleroomError):
    """No such thing, or nothing the caller may know exists."""

    default_code = "not_found"

    def __init__(
        self, what: str = "resource", *, detail: str | None = None, code: str | None = None, **extra: Any
    ) -> None:
        super().__init__(detail or f"No such {what}.", code=code, **extra)


class Conflict(TeleroomError):
    """The request is valid but the current state refuses it (a taken slot, a used slug)."""

    default_code = "conflict"


class Gone(TeleroomError):
    """It existed and is over: a closed room, a used link."""

    default_code = "gone"


class TooLarge(TeleroomError):
    default_code = "body_too_large"


class UnsupportedMediaType(TeleroomError):
    default_code = "unsupported_media_type"


class RateLimited(TeleroomError):
    """Too many attempts; `retry_after` seconds until the next is allowed."""

    default_code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail, code=code, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class Unavailable(TeleroomError):
    """A dependency (the database, the echo peer's capacity) cannot serve now; try again."""

    default_code = "unavailable"


def invalid(detail: str, code: str = "invalid_input", **extra: Any) -> InvalidInput:
    return InvalidInput(detail, code=code, **extra)
