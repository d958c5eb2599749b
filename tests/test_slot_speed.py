"""The fast slot list agrees with the slow, plain one, and its premise about zones holds.

`calendars.slots.compute_slots` does arithmetic on days with one UTC offset and jumps over busy
spans; `tests/slots_reference.py` resolves every grid position on its own. They must give the same
slots for any rules, busy time, window and clock, across clock changes in zones that change at
2:00, at midnight, by half an hour, and never.
"""

from __future__ import annotations

import datetime as dt
import itertools
import struct
import zoneinfo
from importlib import resources
from importlib.resources.abc import Traversable
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from calendars.slots import Availability, Interval, SessionRules, Span, compute_slots, resolve_wall, slot_starts
from tests.slots_reference import reference_slots
from tests.test_slots import DST_DAYS, availabilities, busy_spans, rules_strategy

UTC = dt.UTC


@st.composite
def near_an_edge(draw: st.DrawFn, availability: Availability, base: dt.datetime) -> dt.datetime:
    """An instant a few minutes (and seconds) around where some interval opens or closes, or anywhere."""
    day = base.date() + dt.timedelta(days=draw(st.integers(-2, 1)))
    edges = [m for iv in availability.intervals_on(day) for m in (iv.start, iv.end)]
    jitter = dt.timedelta(minutes=draw(st.integers(-20, 20)), seconds=draw(st.sampled_from([0, 0, 1, 59])))
    at_an_edge = draw(st.booleans())
    if edges and at_an_edge:
        return resolve_wall(day, draw(st.sampled_from(edges)), ZoneInfo(availability.timezone)) + jitter
    return base + dt.timedelta(minutes=draw(st.integers(-3 * 24 * 60, 24 * 60))) + jitter


@settings(max_examples=400, deadline=None)
@given(
    availability=availabilities(),
    rules=rules_strategy,
    day=st.sampled_from(DST_DAYS),
    days=st.integers(0, 9),
    data=st.data(),
)
def test_fast_slots_equal_the_plain_ones(
    availability: Availability, rules: SessionRules, day: dt.date, days: int, data: st.DataObject
) -> None:
    base = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
    now = data.draw(near_an_edge(availability, base)) - dt.timedelta(minutes=rules.min_notice)
    busy = data.draw(busy_spans(base - dt.timedelta(days=2))) + data.draw(busy_spans(base))
    start = data.draw(near_an_edge(availability, base))
    end = max(start, data.draw(near_an_edge(availability, base))) + dt.timedelta(days=days)
    window = Span(start, end)
    assert compute_slots(availability, rules, busy, window, now) == reference_slots(
        availability, rules, busy, window, now
    )


@settings(max_examples=100, deadline=None)
@given(
    zone=st.sampled_from(["Asia/Kolkata", "Australia/Lord_Howe", "America/Santiago", "Pacific/Chatham", "UTC"]),
    duration=st.sampled_from([15, 25, 50, 90, 600]),
    interval=st.sampled_from([0, 5, 15, 20, 60, 120]),
    before=st.sampled_from([0, 5, 30]),
    after=st.sampled_from([0, 10, 45]),
    month=st.integers(1, 12),
    gaps=st.lists(st.tuples(st.integers(0, 60 * 24 * 60), st.integers(1, 6 * 60), st.integers(0, 59)), max_size=60),
)
def test_dense_busy_time_over_two_months_gives_the_plain_slots(
    zone: str, duration: int, interval: int, before: int, after: int, month: int, gaps: list[tuple[int, int, int]]
) -> None:
    """Many busy spans (some ending inside a second) against long days: the jumps land where the plain
    check does, also when the grid is wider than a session and its buffers."""
    week: dict[int, tuple[Interval, ...]] = {
        d: (Interval(7 * 60, 12 * 60), Interval(12 * 60 + 30, 22 * 60)) for d in range(6)
    }
    week[6] = (Interval(0, 24 * 60),)
    av = Availability(timezone=zone, weekly=week)
    rules = SessionRules(duration, before, after, horizon_days=400, slot_interval=interval)
    first = dt.datetime(2026, month, 1, tzinfo=UTC)
    busy = [
        Span(first + dt.timedelta(minutes=m), first + dt.timedelta(minutes=m + length, seconds=s))
        for m, length, s in gaps
    ]
    window = Span(first, first + dt.timedelta(days=62))
    now = first - dt.timedelta(days=1)
    assert compute_slots(av, rules, busy, window, now) == reference_slots(av, rules, busy, window, now)


def test_slot_starts_leave_notice_and_horizon_to_the_caller() -> None:
    av = Availability(timezone="Europe/Berlin", weekly={d: (Interval(9 * 60, 10 * 60),) for d in range(7)})
    rules = SessionRules(duration=30, min_notice=24 * 60, horizon_days=1)
    window = Span(dt.datetime(2026, 5, 4, tzinfo=UTC), dt.datetime(2026, 5, 6, tzinfo=UTC))
    starts = slot_starts(av, rules, (), window)
    assert [dt.datetime.fromtimestamp(t, UTC).isoformat() for t in starts] == [
        "2026-05-04T07:00:00+00:00",
        "2026-05-04T07:30:00+00:00",
        "2026-05-05T07:00:00+00:00",
        "2026-05-05T07:30:00+00:00",
    ]


def _transitions(path: Traversable) -> list[tuple[int, int]]:
    """(instant, UTC offset after it) for each transition a TZif file lists (RFC 8536, version 2+ data)."""
    data = path.read_bytes()
    if data[:4] != b"TZif":
        return []

    def counts(at: int) -> tuple[int, ...]:
        return struct.unpack(">6l", data[at + 20 : at + 44])

    isut, isstd, leap, timecnt, typecnt, charcnt = counts(0)
    if data[4:5] == b"\0":  # version 1 only: 32-bit times
        size, at = 4, 44
    else:
        at = 44 + timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut
        isut, isstd, leap, timecnt, typecnt, charcnt = counts(at)
        size, at = 8, at + 44
    times = struct.unpack(f">{timecnt}{'q' if size == 8 else 'l'}", data[at : at + timecnt * size])
    at += timecnt * size
    kinds = data[at : at + timecnt]
    at += timecnt
    offsets = [struct.unpack(">l", data[at + 6 * i : at + 6 * i + 4])[0] for i in range(typecnt)]
    return [(t, offsets[k]) for t, k in zip(times, kinds, strict=True)]


def test_no_zone_changes_its_offset_twice_within_two_days() -> None:
    """The premise of `calendars.slots._days`: a day 24 hours long has one offset throughout. Checked
    on every transition the tz database lists since 1900 (the rule a file ends with repeats yearly
    changes months apart)."""
    root = resources.files("tzdata") / "zoneinfo"
    checked = 0
    for name in sorted(zoneinfo.available_timezones()):
        path = root.joinpath(*name.split("/"))
        if not path.is_file():
            continue
        changes = [(t, o) for t, o in _transitions(path) if t > -2_208_988_800]
        real = [t for (_, prev), (t, o) in itertools.pairwise(changes) if o != prev]
        for a, b in itertools.pairwise(real):
            assert b - a >= 2 * 86_400, (name, dt.datetime.fromtimestamp(a, UTC), dt.datetime.fromtimestamp(b, UTC))
        checked += 1
    assert checked > 300
