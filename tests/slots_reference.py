"""The slot list as first written: every grid position converted and checked on its own.

Slow (a zone conversion and two searches per position) but plain to read, so it stays as the oracle
the fast `calendars.slots.compute_slots` must agree with, position for position
(tests/test_slot_speed.py). It reads only `calendars.slots`' public wall-clock helpers.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from calendars.slots import (
    Availability,
    SessionRules,
    Span,
    available_spans,
    merge_spans,
    resolve_wall,
    wall_time_exists,
)


def _reach_days(length: timedelta) -> int:
    return length // timedelta(hours=23) + 1


def reference_slots(
    availability: Availability, rules: SessionRules, busy: Sequence[Span], window: Span, now: datetime
) -> list[Span]:
    """What `compute_slots` returns, found the slow way."""
    tz = ZoneInfo(availability.timezone)
    earliest = max(window.start, now + timedelta(minutes=rules.min_notice))
    latest = min(window.end, now + timedelta(days=rules.horizon_days))
    if earliest >= latest:
        return []
    duration = timedelta(minutes=rules.duration)
    merged_busy = merge_spans(busy)
    busy_starts = [sp.start for sp in merged_busy]
    first_day = earliest.astimezone(tz).date() - timedelta(days=1)
    last_day = latest.astimezone(tz).date() + timedelta(days=1)
    runs = available_spans(
        availability, first_day - timedelta(days=1), last_day + timedelta(days=_reach_days(duration))
    )
    run_starts = [r.start for r in runs]
    slots: list[Span] = []
    day = first_day
    while day <= last_day:
        for iv in availability.intervals_on(day):
            avail_start = resolve_wall(day, iv.start, tz, later=False)
            minute = iv.start
            while minute < iv.end:
                local = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
                minute += rules.step
                if not wall_time_exists(local, tz):
                    continue
                start = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
                end = start + duration
                if start < avail_start or start < earliest or start >= latest:
                    continue
                i = bisect.bisect_right(run_starts, start)
                if i == 0 or runs[i - 1].end <= start or end > runs[i - 1].end:
                    continue
                blocked = rules.blocked(start)
                j = bisect.bisect_left(busy_starts, blocked.end)
                if j > 0 and merged_busy[j - 1].end > blocked.start:
                    continue
                slots.append(Span(start, end))
        day += timedelta(days=1)
    slots.sort()
    return slots
