"""Slots from availability rules: properties over random rules and bookings, and DST-change days."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from calendars.slots import (
    Availability,
    Interval,
    SessionRules,
    Span,
    available_spans,
    compute_slots,
    dates_window,
    is_offered,
    resolve_wall,
    wall_time_exists,
)

UTC = dt.UTC
DST_ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago", "Europe/Berlin", "UTC"]
# Days around clock changes in 2026-2027 (each zone changes on at least one of them).
DST_DAYS = [
    dt.date(2026, 3, 8),  # New York springs forward
    dt.date(2026, 3, 29),  # London and Berlin spring forward
    dt.date(2026, 4, 5),  # Lord Howe falls back 30 minutes, Santiago falls back at midnight
    dt.date(2026, 9, 6),  # Santiago springs forward at midnight
    dt.date(2026, 10, 4),  # Lord Howe springs forward 30 minutes
    dt.date(2026, 10, 25),  # London and Berlin fall back
    dt.date(2026, 11, 1),  # New York falls back
]


@st.composite
def intervals(draw: st.DrawFn) -> Interval:
    start = draw(st.integers(0, 23 * 60 + 45)) // 15 * 15
    end = draw(st.integers(start + 15, 24 * 60)) // 15 * 15
    return Interval(start, max(end, start + 15))


@st.composite
def availabilities(draw: st.DrawFn) -> Availability:
    zone = draw(st.sampled_from(DST_ZONES))
    weekly = {day: tuple(draw(st.lists(intervals(), max_size=3))) for day in range(7)}
    override_days = draw(st.lists(st.sampled_from(DST_DAYS), max_size=3, unique=True))
    overrides = {day: tuple(draw(st.lists(intervals(), max_size=2))) for day in override_days}
    return Availability(timezone=zone, weekly=weekly, overrides=overrides)


rules_strategy = st.builds(
    SessionRules,
    duration=st.sampled_from([15, 30, 45, 50, 60, 90]),
    buffer_before=st.sampled_from([0, 5, 10, 15]),
    buffer_after=st.sampled_from([0, 10, 15, 30]),
    min_notice=st.sampled_from([0, 60, 24 * 60]),
    horizon_days=st.sampled_from([3, 14, 60]),
    slot_interval=st.sampled_from([0, 15, 30, 60]),
)


@st.composite
def busy_spans(draw: st.DrawFn, base: dt.datetime) -> list[Span]:
    spans = []
    for _ in range(draw(st.integers(0, 12))):
        start = base + dt.timedelta(minutes=draw(st.integers(-24 * 60, 5 * 24 * 60)) // 5 * 5)
        spans.append(Span(start, start + dt.timedelta(minutes=draw(st.sampled_from([15, 50, 60, 120, 600])))))
    return spans


@settings(max_examples=150, deadline=None)
@given(
    availability=availabilities(),
    rules=rules_strategy,
    day=st.sampled_from(DST_DAYS),
    hour=st.integers(0, 23),
    data=st.data(),
)
def test_no_slot_overlaps_busy_time_or_leaves_availability(
    availability: Availability, rules: SessionRules, day: dt.date, hour: int, data: st.DataObject
) -> None:
    now = dt.datetime(day.year, day.month, day.day, hour, tzinfo=UTC) - dt.timedelta(days=2)
    busy = data.draw(busy_spans(now))
    window = Span(now - dt.timedelta(days=1), now + dt.timedelta(days=5))
    slots = compute_slots(availability, rules, busy, window, now)
    avail = available_spans(availability, now.date() - dt.timedelta(days=3), now.date() + dt.timedelta(days=7))
    tz = ZoneInfo(availability.timezone)
    for slot in slots:
        assert slot.end - slot.start == dt.timedelta(minutes=rules.duration)
        assert not any(rules.blocked(slot.start).overlaps(b) for b in busy), "slot (with buffers) overlaps busy time"
        assert any(a.start <= slot.start and slot.end <= a.end for a in avail), "slot leaves availability"
        assert slot.start >= now + dt.timedelta(minutes=rules.min_notice)
        assert slot.start < now + dt.timedelta(days=rules.horizon_days)
        assert window.start <= slot.start < window.end
        local = slot.start.astimezone(tz)
        assert wall_time_exists(local.replace(tzinfo=None), tz)
    assert slots == sorted(slots)
    assert len({s.start for s in slots}) == len(slots)


@settings(max_examples=60, deadline=None)
@given(availability=availabilities(), rules=rules_strategy, day=st.sampled_from(DST_DAYS))
def test_every_offered_slot_is_offered_when_asked_singly(
    availability: Availability, rules: SessionRules, day: dt.date
) -> None:
    now = dt.datetime(day.year, day.month, day.day, tzinfo=UTC) - dt.timedelta(days=1)
    window = Span(now, now + dt.timedelta(days=3))
    for slot in compute_slots(availability, rules, (), window, now)[:20]:
        assert is_offered(availability, rules, (), slot.start, now)
        assert not is_offered(availability, rules, (), slot.start + dt.timedelta(minutes=1), now)


def _local_starts(zone: str, day: dt.date, weekly: tuple[Interval, ...], rules: SessionRules) -> list[str]:
    av = Availability(timezone=zone, weekly={d: weekly for d in range(7)})
    tz = ZoneInfo(zone)
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    slots = compute_slots(av, rules, (), dates_window(day, day, tz), now)
    return [s.start.astimezone(tz).strftime("%H:%M%z") for s in slots]


def test_weekly_rule_keeps_local_time_across_new_york_spring_forward() -> None:
    rules = SessionRules(duration=60, horizon_days=400)
    before = _local_starts("America/New_York", dt.date(2026, 3, 7), (Interval(9 * 60, 12 * 60),), rules)
    after = _local_starts("America/New_York", dt.date(2026, 3, 9), (Interval(9 * 60, 12 * 60),), rules)
    assert before == ["09:00-0500", "10:00-0500", "11:00-0500"]
    assert after == ["09:00-0400", "10:00-0400", "11:00-0400"]


def test_nonexistent_local_times_are_skipped_on_spring_forward() -> None:
    rules = SessionRules(duration=30, slot_interval=30, horizon_days=400)
    starts = _local_starts("America/New_York", dt.date(2026, 3, 8), (Interval(60, 4 * 60),), rules)
    # 02:00 and 02:30 do not exist that night; 01:30 EST + 30 min ends exactly at 03:00 EDT.
    assert starts == ["01:00-0500", "01:30-0500", "03:00-0400", "03:30-0400"]


def test_repeated_hour_on_fall_back_starts_slots_at_first_occurrence() -> None:
    rules = SessionRules(duration=30, slot_interval=30, horizon_days=400)
    starts = _local_starts("America/New_York", dt.date(2026, 11, 1), (Interval(0, 3 * 60),), rules)
    assert starts == ["00:00-0400", "00:30-0400", "01:00-0400", "01:30-0400", "02:00-0500", "02:30-0500"]
    # The whole wall-clock span 00:00-03:00 is available: four hours of absolute time that night.
    av = Availability(timezone="America/New_York", weekly={6: (Interval(0, 3 * 60),)})
    (span,) = available_spans(av, dt.date(2026, 11, 1), dt.date(2026, 11, 1))
    assert span.end - span.start == dt.timedelta(hours=4)


def test_lord_howe_half_hour_gap_is_skipped() -> None:
    rules = SessionRules(duration=30, slot_interval=30, horizon_days=400)
    starts = _local_starts("Australia/Lord_Howe", dt.date(2026, 10, 4), (Interval(60, 4 * 60),), rules)
    assert "02:00+1030" not in starts and "02:00+1100" not in starts
    assert starts == ["01:00+1030", "01:30+1030", "02:30+1100", "03:00+1100", "03:30+1100"]


def test_santiago_midnight_gap_moves_day_start_to_one_oclock() -> None:
    tz = ZoneInfo("America/Santiago")
    day = dt.date(2026, 9, 6)
    assert not wall_time_exists(dt.datetime(2026, 9, 6, 0, 0), tz)
    start = resolve_wall(day, 0, tz)
    assert start.astimezone(tz).strftime("%H:%M%z") == "01:00-0300"
    rules = SessionRules(duration=60, horizon_days=400)
    starts = _local_starts("America/Santiago", day, (Interval(0, 3 * 60),), rules)
    assert starts == ["01:00-0300", "02:00-0300"]


def test_end_of_day_is_24_00_even_when_next_midnight_is_skipped() -> None:
    tz = ZoneInfo("America/Santiago")
    av = Availability(timezone="America/Santiago", weekly={5: (Interval(22 * 60, 24 * 60),)})
    (span,) = available_spans(av, dt.date(2026, 9, 5), dt.date(2026, 9, 5))
    assert span.start.astimezone(tz).strftime("%H:%M%z") == "22:00-0400"
    assert span.end - span.start == dt.timedelta(hours=2)


def test_buffers_keep_slots_away_from_a_booking() -> None:
    av = Availability(timezone="UTC", weekly={d: (Interval(9 * 60, 14 * 60),) for d in range(7)})
    day = dt.date(2026, 12, 1)
    window = dates_window(day, day, ZoneInfo("UTC"))
    now = dt.datetime(2026, 11, 1, tzinfo=UTC)
    booked_at = dt.datetime(2026, 12, 1, 11, tzinfo=UTC)

    after_only = SessionRules(duration=50, buffer_after=10, slot_interval=60, horizon_days=400)
    busy = [after_only.blocked(booked_at)]  # 11:00-12:00
    # 10:00 blocks 10:00-11:00 and 12:00 blocks 12:00-13:00: touching is fine.
    assert [s.start.hour for s in compute_slots(av, after_only, busy, window, now)] == [9, 10, 12, 13]

    both = SessionRules(duration=50, buffer_before=10, buffer_after=10, slot_interval=60, horizon_days=400)
    busy = [both.blocked(booked_at)]  # 10:50-12:00
    # 10:00 would block until 11:00 and 12:00 from 11:50: both overlap the booking's buffers.
    assert [s.start.hour for s in compute_slots(av, both, busy, window, now)] == [9, 13]


def test_override_replaces_weekly_rule_and_empty_override_closes_the_day() -> None:
    av = Availability(
        timezone="Europe/Berlin",
        weekly={d: (Interval(9 * 60, 17 * 60),) for d in range(7)},
        overrides={dt.date(2026, 12, 24): (), dt.date(2026, 12, 27): (Interval(10 * 60, 12 * 60),)},
    )
    rules = SessionRules(duration=60, horizon_days=400)
    now = dt.datetime(2026, 11, 1, tzinfo=UTC)
    tz = ZoneInfo("Europe/Berlin")
    assert compute_slots(av, rules, (), dates_window(dt.date(2026, 12, 24), dt.date(2026, 12, 24), tz), now) == []
    starts = compute_slots(av, rules, (), dates_window(dt.date(2026, 12, 27), dt.date(2026, 12, 27), tz), now)
    assert [s.start.astimezone(tz).hour for s in starts] == [10, 11]


@settings(max_examples=80, deadline=None)
@given(
    availability=availabilities(),
    rules=rules_strategy,
    day=st.sampled_from(DST_DAYS),
    offsets=st.lists(st.integers(0, 3 * 24 * 12), min_size=1, max_size=40),
    data=st.data(),
)
def test_single_instant_check_agrees_with_the_slot_list(
    availability: Availability, rules: SessionRules, day: dt.date, offsets: list[int], data: st.DataObject
) -> None:
    now = dt.datetime(day.year, day.month, day.day, tzinfo=UTC) - dt.timedelta(days=1)
    busy = data.draw(busy_spans(now))
    offered = {s.start for s in compute_slots(availability, rules, busy, Span(now, now + dt.timedelta(days=4)), now)}
    for k in offsets:
        instant = now + dt.timedelta(minutes=5 * k)
        assert is_offered(availability, rules, busy, instant, now) == (instant in offered), instant
    for instant in list(offered)[:10]:
        assert is_offered(availability, rules, busy, instant, now)
