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
    offer_problem,
    resolve_wall,
    wall_time_exists,
    within_availability,
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
def midnight_edges(draw: st.DrawFn) -> Interval:
    """An interval that starts at 00:00 or ends at 24:00, so that days often meet at midnight."""
    if draw(st.booleans()):
        return Interval(draw(st.integers(18 * 4, 24 * 4 - 1)) * 15, 24 * 60)
    return Interval(0, draw(st.integers(1, 6 * 4)) * 15)


day_intervals = st.lists(st.one_of(intervals(), midnight_edges()), max_size=3)


@st.composite
def availabilities(draw: st.DrawFn) -> Availability:
    zone = draw(st.sampled_from(DST_ZONES))
    weekly = {day: tuple(draw(day_intervals)) for day in range(7)}
    override_days = draw(st.lists(st.sampled_from(DST_DAYS), max_size=3, unique=True))
    overrides = {day: tuple(draw(day_intervals)[:2]) for day in override_days}
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


# Availability that meets at local midnight: a slot may run on from one day's hours into the next.

MONDAY = dt.date(2026, 12, 7)
TUESDAY = MONDAY + dt.timedelta(days=1)
LATE_MONDAY = Availability(
    timezone="Europe/Berlin", weekly={0: (Interval(20 * 60, 24 * 60),), 1: (Interval(0, 8 * 60),)}
)
HALF_HOURLY_50 = SessionRules(duration=50, slot_interval=30, horizon_days=400)
LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=UTC)  # before every day these tests open; horizons of 400 days


def _at(zone: str, day: dt.date, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _starts_on(av: Availability, rules: SessionRules, day: dt.date) -> list[dt.datetime]:
    window = dates_window(day, day, ZoneInfo(av.timezone))
    return [s.start for s in compute_slots(av, rules, (), window, LONG_AGO)]


def test_session_at_23_30_runs_on_into_tuesdays_hours() -> None:
    late = _at("Europe/Berlin", MONDAY, 23, 30)
    assert late in _starts_on(LATE_MONDAY, HALF_HOURLY_50, MONDAY)
    assert is_offered(LATE_MONDAY, HALF_HOURLY_50, (), late, LONG_AGO)
    assert offer_problem(LATE_MONDAY, HALF_HOURLY_50, late, LONG_AGO) is None


def test_day_off_on_tuesday_ends_mondays_slots_at_midnight() -> None:
    av = Availability(timezone=LATE_MONDAY.timezone, weekly=LATE_MONDAY.weekly, overrides={TUESDAY: ()})
    late = _at("Europe/Berlin", MONDAY, 23, 30)
    starts = _starts_on(av, HALF_HOURLY_50, MONDAY)
    assert late not in starts
    assert starts[-1] == _at("Europe/Berlin", MONDAY, 23, 0)  # 23:00-23:50 still fits Monday
    assert not is_offered(av, HALF_HOURLY_50, (), late, LONG_AGO)
    assert offer_problem(av, HALF_HOURLY_50, late, LONG_AGO) == "not_on_grid"


def test_override_on_monday_can_open_the_join_too() -> None:
    av = Availability(
        timezone="Europe/Berlin",
        weekly={1: (Interval(0, 8 * 60),)},  # no Monday hours at all, except by override
        overrides={MONDAY: (Interval(22 * 60, 24 * 60),)},
    )
    assert _at("Europe/Berlin", MONDAY, 23, 30) in _starts_on(av, HALF_HOURLY_50, MONDAY)
    shortened = Availability(timezone=av.timezone, weekly=av.weekly, overrides={MONDAY: (Interval(22 * 60, 23 * 60),)})
    assert _starts_on(shortened, HALF_HOURLY_50, MONDAY) == [_at("Europe/Berlin", MONDAY, 22, 0)]


def test_tuesdays_own_grid_is_unchanged_by_the_join() -> None:
    rules = SessionRules(duration=50, horizon_days=400)  # every 50 minutes from each interval's start
    tuesday = [
        s.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") for s in _starts_on(LATE_MONDAY, rules, TUESDAY)
    ]
    assert tuesday[:3] == ["00:00", "00:50", "01:40"]


def test_santiago_spring_forward_at_midnight_joins_saturday_to_sunday() -> None:
    # 2026-09-06 00:00 does not exist in Santiago: Saturday's 24:00 is Sunday's 01:00 -03.
    zone = "America/Santiago"
    saturday = dt.date(2026, 9, 5)
    av = Availability(timezone=zone, weekly={5: (Interval(22 * 60, 24 * 60),), 6: (Interval(0, 2 * 60),)})
    late = _at(zone, saturday, 23, 30)
    assert late in _starts_on(av, HALF_HOURLY_50, saturday)
    assert (late + dt.timedelta(minutes=50)).astimezone(ZoneInfo(zone)).strftime("%H:%M%z") == "01:20-0300"
    assert offer_problem(av, HALF_HOURLY_50, late, LONG_AGO) is None
    alone = Availability(timezone=zone, weekly={5: (Interval(22 * 60, 24 * 60),)})
    assert late not in _starts_on(alone, HALF_HOURLY_50, saturday)


def test_santiago_fall_back_at_midnight_joins_the_repeated_hour_to_sunday() -> None:
    # At 2026-04-05 00:00 -03 Santiago's clocks go back to 23:00 -04: Saturday 23:00-24:00 happens twice.
    zone = "America/Santiago"
    saturday, sunday = dt.date(2026, 4, 4), dt.date(2026, 4, 5)
    rules = SessionRules(duration=120, slot_interval=30, horizon_days=400)
    av = Availability(timezone=zone, weekly={5: (Interval(23 * 60, 24 * 60),), 6: (Interval(0, 60),)})
    first_2330 = _at(zone, saturday, 23, 30)  # fold=0: the first 23:30, -03
    assert first_2330.astimezone(ZoneInfo(zone)).strftime("%z") == "-0300"
    assert first_2330 in _starts_on(av, rules, saturday)  # ends 00:30 -04 on Sunday
    assert offer_problem(av, rules, first_2330, LONG_AGO) is None
    alone = Availability(timezone=zone, weekly={5: (Interval(23 * 60, 24 * 60),)})
    assert first_2330 not in _starts_on(alone, rules, saturday)
    assert offer_problem(alone, rules, first_2330, LONG_AGO) == "not_on_grid"
    assert sunday.weekday() == 6


@st.composite
def midnight_joins(draw: st.DrawFn) -> tuple[Availability, dt.date, int, int]:
    """Hours from `a` until 24:00 on a day near a clock change, and from 00:00 until `b` the next day."""
    zone = draw(st.sampled_from(DST_ZONES))
    day = draw(st.sampled_from(DST_DAYS)) + dt.timedelta(days=draw(st.integers(-1, 0)))
    a = draw(st.integers(18 * 4, 24 * 4 - 1)) * 15
    b = draw(st.integers(1, 8 * 4)) * 15
    av = Availability(
        timezone=zone, overrides={day: (Interval(a, 24 * 60),), day + dt.timedelta(days=1): (Interval(0, b),)}
    )
    return av, day, a, b


@settings(max_examples=150, deadline=None)
@given(joined=midnight_joins(), rules=rules_strategy)
def test_a_slot_is_offered_across_midnight_exactly_when_the_next_days_hours_hold_its_end(
    joined: tuple[Availability, dt.date, int, int], rules: SessionRules
) -> None:
    av, day, a, b = joined
    tz = ZoneInfo(av.timezone)
    rules = SessionRules(duration=rules.duration, slot_interval=rules.slot_interval, horizon_days=400)
    offered = set(_starts_on(av, rules, day))
    # The oracle reads only wall clocks: availability is [a on day, b on the next day).
    opens, closes = resolve_wall(day, a, tz), resolve_wall(day + dt.timedelta(days=1), b, tz, later=True)
    for minute in range(a, 24 * 60, rules.step):
        local = dt.datetime(day.year, day.month, day.day) + dt.timedelta(minutes=minute)
        if not wall_time_exists(local, tz):
            continue
        start = local.replace(tzinfo=tz).astimezone(UTC)
        expected = opens <= start and start + dt.timedelta(minutes=rules.duration) <= closes
        assert (start in offered) == expected, local
        assert (offer_problem(av, rules, start, LONG_AGO) is None) == expected, local
        assert within_availability(av, Span(start, start + dt.timedelta(minutes=rules.duration))) == expected


@settings(max_examples=100, deadline=None)
@given(joined=midnight_joins(), rules=rules_strategy)
def test_a_day_off_after_the_join_keeps_every_slot_before_midnight(
    joined: tuple[Availability, dt.date, int, int], rules: SessionRules
) -> None:
    av, day, _, _ = joined
    next_day = day + dt.timedelta(days=1)
    rules = SessionRules(duration=rules.duration, slot_interval=rules.slot_interval, horizon_days=400)
    day_off = Availability(timezone=av.timezone, overrides={**av.overrides, next_day: ()})
    midnight = resolve_wall(next_day, 0, ZoneInfo(av.timezone), later=True)
    starts = _starts_on(day_off, rules, day)
    assert all(s + dt.timedelta(minutes=rules.duration) <= midnight for s in starts)
    assert set(starts) == {
        s for s in _starts_on(av, rules, day) if s + dt.timedelta(minutes=rules.duration) <= midnight
    }
    for s in _starts_on(av, rules, day):
        assert (offer_problem(day_off, rules, s, LONG_AGO) is None) == (s in starts)
