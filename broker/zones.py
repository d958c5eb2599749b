"""Time zone names from clients and therapists, checked against the IANA database."""

from __future__ import annotations

import functools
import zoneinfo

from broker.errors import invalid


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone(name: str, field: str = "timezone") -> zoneinfo.ZoneInfo:
    """The ZoneInfo for an IANA name, or a 422 `unknown_timezone` naming the field."""
    if name not in _known():
        raise invalid(f"`{field}` is not a known IANA time zone: {name!r}.", code="unknown_timezone")
    return zoneinfo.ZoneInfo(name)
