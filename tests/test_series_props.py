"""Standing series expanded in the therapist's wall clock: properties over zones, starts and lengths."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from calendars.series import FREQUENCIES, MAX_SESSIONS, WEEKS_APART, classify, expand
from calendars.slots import Availability, Interval, SessionRules, Span, wall_time_exists

UTC = dt.UTC
ZONES = [
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # 30-minute changes
    "America/Santiago",  # changes at midnight
    "Pacific/Auckland",  # southern hemisphere
    "Asia/Kolkata",  # no changes, a half-hour offset
    "UTC",
]
ALL_DAY = {d: (Interval(0, 1440),) for d in range(7)}


@st.composite
def first_starts(draw: st.DrawFn, zone: str) -> dt.datetime:
    """A wall-clock time on a 15-minute grid, 2026 to 2035, that exists in `zone`, as a UTC instant."""
    tz = ZoneInfo(zone)
    day = draw(st.dates(dt.date(2026, 1, 1), dt.date(2035, 12, 31)))
    minute = draw(st.integers(0, 95)) * 15
    local = dt.datetime(day.year, day.month, day.day) + dt.timedelta(minutes=minute)
    assume(wall_time_exists(local, tz))
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


@st.composite
def series_args(draw: st.DrawFn) -> dict[str, object]:
    therapist_zone = draw(st.sampled_from(ZONES))
    return {
        "first_start": draw(first_starts(therapist_zone)),
        "therapist_zone": therapist_zone,
        "client_zone": draw(st.sampled_from([*ZONES, None])),
        "frequency": draw(st.sampled_from(FREQUENCIES)),
        "count": draw(st.integers(1, MAX_SESSIONS)),
        "duration": draw(st.sampled_from([30, 50, 60, 90])),
    }


@settings(max_examples=300, deadline=None)
@given(args=series_args())
def test_every_occurrence_is_at_the_therapists_first_local_time(args: dict[str, object]) -> None:
    occurrences = expand(**args)  # type: ignore[arg-type]
    first = occurrences[0].therapist_local
    weeks = WEEKS_APART[args["frequency"]]  # type: ignore[index]
    assert len(occurrences) == args["count"]
    assert occurrences[0].start == args["first_start"]
    for occ in occurrences:
        assert occ.therapist_local.date() == first.date() + dt.timedelta(weeks=weeks * occ.index)
        assert occ.start.tzinfo is not None and occ.start.utcoffset() == dt.timedelta(0)
        if occ.skipped:  # the wall time falls in a spring-forward gap that day: no slot there
            continue
        assert (occ.therapist_local.hour, occ.therapist_local.minute) == (first.hour, first.minute)
        # The first of two readings of a repeated wall time, as slots choose.
        assert occ.therapist_local.replace(fold=0).astimezone(UTC) == occ.start
    assert [o.start for o in occurrences] == sorted(o.start for o in occurrences)


@settings(max_examples=300, deadline=None)
@given(args=series_args())
def test_the_client_flag_marks_exactly_the_occurrences_whose_client_time_moved(args: dict[str, object]) -> None:
    occurrences = expand(**args)  # type: ignore[arg-type]
    zone = ZoneInfo(str(args["client_zone"] or args["therapist_zone"]))
    first = occurrences[0].start.astimezone(zone)
    for occ in occurrences:
        seen = occ.start.astimezone(zone)
        assert occ.client_local == seen
        assert occ.client_time_differs == ((seen.hour, seen.minute) != (first.hour, first.minute))
    if args["client_zone"] in (None, args["therapist_zone"]):
        assert not any(o.client_time_differs and not o.skipped for o in occurrences)


def test_new_york_series_stays_at_ten_across_the_change_and_london_sees_it_move() -> None:
    first = dt.datetime(2026, 2, 24, 10, 0, tzinfo=ZoneInfo("America/New_York"))
    occurrences = expand(
        first,
        therapist_zone="America/New_York",
        client_zone="Europe/London",
        frequency="weekly",
        count=6,
        duration=50,
    )
    assert [o.therapist_local.hour for o in occurrences] == [10] * 6
    # New York moves on 8 March, London on 29 March: three weeks at 14:00 instead of 15:00.
    assert [o.client_local.hour for o in occurrences] == [15, 15, 14, 14, 14, 15]
    assert [o.client_time_differs for o in occurrences] == [False, False, True, True, True, False]


def test_a_wall_time_in_the_spring_gap_is_skipped_not_shifted() -> None:
    first = dt.datetime(2026, 3, 1, 2, 30, tzinfo=ZoneInfo("America/New_York"))
    occurrences = expand(
        first, therapist_zone="America/New_York", client_zone=None, frequency="weekly", count=3, duration=30
    )
    assert [o.skipped for o in occurrences] == [False, True, False]
    statuses = classify(occurrences, Availability("America/New_York", ALL_DAY), SessionRules(30), (), first)
    assert statuses == ["free", "not_offered", "free"]


def test_a_repeated_wall_time_is_its_first_reading() -> None:
    first = dt.datetime(2026, 10, 25, 1, 30, tzinfo=ZoneInfo("America/New_York"))
    (_, second) = expand(
        first, therapist_zone="America/New_York", client_zone=None, frequency="weekly", count=2, duration=30
    )
    assert second.start == dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, not 01:30 EST


@st.composite
def busy_around(draw: st.DrawFn, base: dt.datetime) -> list[Span]:
    spans = []
    for _ in range(draw(st.integers(0, 20))):
        start = base + dt.timedelta(minutes=draw(st.integers(-60, 8 * 7 * 24 * 60)) // 5 * 5)
        spans.append(Span(start, start + dt.timedelta(minutes=draw(st.sampled_from([15, 50, 60, 120])))))
    return spans


@settings(max_examples=200, deadline=None)
@given(args=series_args(), data=st.data())
def test_no_free_occurrence_overlaps_busy_time_or_its_buffers(args: dict[str, object], data: st.DataObject) -> None:
    args["count"] = min(int(args["count"]), 8)  # type: ignore[call-overload]
    rules = SessionRules(
        duration=int(args["duration"]),  # type: ignore[call-overload]
        buffer_before=data.draw(st.sampled_from([0, 10, 15])),
        buffer_after=data.draw(st.sampled_from([0, 10, 30])),
        slot_interval=15,
        horizon_days=30,
    )
    occurrences = expand(**{**args, "duration": rules.duration})  # type: ignore[arg-type]
    # Taken by a booking of its own whose blocked span is shifted a little: the buffers must see it.
    busy = data.draw(busy_around(occurrences[0].start))
    now = occurrences[0].start - dt.timedelta(hours=1)
    statuses = classify(occurrences, Availability(str(args["therapist_zone"]), ALL_DAY), rules, busy, now)
    for occ, status in zip(occurrences, statuses, strict=True):
        meets = any(rules.blocked(occ.start).overlaps(b) for b in busy)
        if status == "free":
            assert not meets and not occ.skipped
        if status == "taken":
            assert meets
        if meets and not occ.skipped:
            assert status in ("taken", "not_offered")
