"""Availability rules to bookable slots: pure functions over datetimes and zoneinfo.

Weekly rules and date overrides are wall-clock times in the therapist's zone, so a rule
"Mon 09:00-17:00" stays 09:00-17:00 local across daylight-saving changes. Wall-clock
times that a change makes impossible or ambiguous are resolved one way everywhere:

* a time that does not exist (clocks spring forward over it) is never a slot start, and an
  availability bound that falls in the gap moves to the end of the gap;
* a time that happens twice (clocks fall back) starts a slot at its first occurrence;
  availability starts at the earlier instant and ends at the later one, so it covers the
  whole wall-clock span the therapist wrote.

Availability is the union of those absolute spans: where one day's hours meet the next day's
(Monday until 24:00 and Tuesday from 00:00, or a span that ends where a clock change begins the
next), a slot may run on across the join. A slot still starts on the grid of the interval of its
own local day; only its end may cross.

Every instant returned is an aware datetime in UTC. Spans are half-open: [start, end).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """A wall-clock interval within one day, in minutes after midnight; end may be 1440 (24:00)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= MINUTES_PER_DAY:
            raise ValueError(f"interval {self.start}-{self.end} must satisfy 0 <= start < end <= 1440")


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """A half-open span of absolute time [start, end) between aware datetimes."""

    start: datetime
    end: datetime

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True, slots=True)
class Availability:
    """Weekly rules (0 = Monday) and per-date overrides, in the wall clock of `timezone`."""

    timezone: str
    weekly: Mapping[int, tuple[Interval, ...]] = field(default_factory=dict)
    overrides: Mapping[date, tuple[Interval, ...]] = field(default_factory=dict)

    def intervals_on(self, day: date) -> tuple[Interval, ...]:
        """The day's intervals, sorted and merged: an override replaces the weekly rule."""
        raw = self.overrides.get(day)
        if raw is None:
            raw = self.weekly.get(day.weekday(), ())
        return merge_intervals(raw)


@dataclass(frozen=True, slots=True)
class SessionRules:
    """What a session type says about when it can be booked (all in minutes, horizon in days)."""

    duration: int
    buffer_before: int = 0
    buffer_after: int = 0
    min_notice: int = 0
    horizon_days: int = 60
    slot_interval: int = 0  # 0: same as duration

    @property
    def step(self) -> int:
        return self.slot_interval or self.duration

    def blocked(self, start: datetime) -> Span:
        """The span a session starting at `start` keeps free of other sessions, buffers included."""
        return Span(
            start - timedelta(minutes=self.buffer_before),
            start + timedelta(minutes=self.duration + self.buffer_after),
        )


def merge_intervals(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    merged: list[Interval] = []
    for iv in sorted(intervals):
        if merged and iv.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Interval(last.start, max(last.end, iv.end))
        else:
            merged.append(iv)
    return tuple(merged)


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping union of spans (touching spans are joined)."""
    merged: list[Span] = []
    for sp in sorted(spans):
        if merged and sp.start <= merged[-1].end:
            if sp.end > merged[-1].end:
                merged[-1] = Span(merged[-1].start, sp.end)
        else:
            merged.append(sp)
    return merged


def _naive(day: date, minute: int) -> datetime:
    return datetime(day.year, day.month, day.day) + timedelta(minutes=minute)


def wall_time_exists(local: datetime, tz: ZoneInfo) -> bool:
    """False for a wall-clock time skipped by a forward change (it does not round-trip through UTC)."""
    aware = local.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == local


def resolve_wall(day: date, minute: int, tz: ZoneInfo, *, later: bool = False) -> datetime:
    """The UTC instant of `minute` past midnight on `day` in `tz`.

    A time in a gap resolves to the end of the gap (the instant of the change); a repeated
    time resolves to its first occurrence, or its second when `later` is true.
    """
    local = _naive(day, minute)
    if wall_time_exists(local, tz):
        return local.replace(tzinfo=tz, fold=1 if later else 0).astimezone(UTC)
    # In a gap zoneinfo reads fold=0 with the offset before the change and fold=1 with the
    # offset after; the change itself lies between the two readings. Changes happen on whole
    # minutes, so a binary search over minutes finds it exactly.
    before = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    after = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    post_offset = local.replace(tzinfo=tz, fold=1).utcoffset()
    lo, hi = 0, int((after - before).total_seconds() // 60)
    while lo < hi:
        mid = (lo + hi) // 2
        if (before + timedelta(minutes=mid)).astimezone(tz).utcoffset() == post_offset:
            hi = mid
        else:
            lo = mid + 1
    return before + timedelta(minutes=lo)


def local_day_span(day: date, tz: ZoneInfo) -> Span:
    """The absolute span of a calendar day in `tz` (23, 24 or 25 hours; even when midnight is skipped)."""
    return Span(resolve_wall(day, 0, tz), resolve_wall(day + timedelta(days=1), 0, tz))


def available_spans(availability: Availability, first: date, last: date) -> list[Span]:
    """Absolute availability from the therapist-local days first..last inclusive: sorted and
    disjoint, spans that meet (across midnight too) joined into one."""
    tz = ZoneInfo(availability.timezone)
    spans: list[Span] = []
    day = first
    while day <= last:
        for iv in availability.intervals_on(day):
            start = resolve_wall(day, iv.start, tz, later=False)
            end = resolve_wall(day, iv.end, tz, later=True)
            if end > start:
                spans.append(Span(start, end))
        day += timedelta(days=1)
    return merge_spans(spans)


def _reach_days(length: timedelta) -> int:
    """How many days after its start day a span of `length` can end (a local day may be 23 hours)."""
    return length // timedelta(hours=23) + 1


def _covered_until(runs: Sequence[Span], run_starts: Sequence[datetime], instant: datetime) -> datetime | None:
    """The end of the run of availability that holds `instant`; None when `instant` is not available."""
    i = bisect.bisect_right(run_starts, instant)
    if i == 0 or runs[i - 1].end <= instant:
        return None
    return runs[i - 1].end


def within_availability(availability: Availability, span: Span) -> bool:
    """Whether the whole of `span` lies inside availability (hours and overrides only).

    The same union of spans `compute_slots` fits a slot into, so a session that could be booked
    is within availability, whatever its grid, notice or horizon.
    """
    tz = ZoneInfo(availability.timezone)
    day = span.start.astimezone(tz).date()
    reach = _reach_days(span.end - span.start)
    runs = available_spans(availability, day - timedelta(days=1), day + timedelta(days=reach))
    until = _covered_until(runs, [r.start for r in runs], span.start)
    return until is not None and span.end <= until


def offered_window(rules: SessionRules, now: datetime) -> Span:
    """When a session type takes bookings at `now`: from the minimum notice to the horizon."""
    return Span(now + timedelta(minutes=rules.min_notice), now + timedelta(days=rules.horizon_days))


def compute_slots(
    availability: Availability,
    rules: SessionRules,
    busy: Sequence[Span],
    window: Span,
    now: datetime,
) -> list[Span]:
    """Every slot a client may book whose start lies in `window`, in order.

    A slot starts on the session type's grid (every `step` wall-clock minutes from the start
    of an availability interval), lies wholly inside availability, starts no sooner than the
    minimum notice and before the horizon, and its blocked span (buffers included) overlaps
    no busy span.
    """
    offered = offered_window(rules, now)
    starts = slot_starts(
        availability, rules, busy, Span(max(window.start, offered.start), min(window.end, offered.end))
    )
    length = rules.duration * 60
    return [Span(from_epoch(t), from_epoch(t + length)) for t in starts]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def epoch_floor(instant: datetime) -> int:
    """Whole seconds since 1970 at or before `instant` (exact: no float on the way)."""
    return (instant - EPOCH) // _SECOND


def epoch_ceil(instant: datetime) -> int:
    """Whole seconds since 1970 at or after `instant`."""
    return -((EPOCH - instant) // _SECOND)


def from_epoch(seconds: int) -> datetime:
    """The UTC instant `seconds` after 1970."""
    return EPOCH + timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class _Day:
    """A local day as seconds since 1970: where it starts, whether one UTC offset holds all of it
    (then wall-clock minute m is `start + 60 m`), and its merged availability intervals."""

    day: date
    start: int
    uniform: bool
    intervals: tuple[Interval, ...]


def _days(availability: Availability, tz: ZoneInfo, first: date, last: date) -> list[_Day]:
    """The local days first..last inclusive.

    A day is uniform when it lasts exactly 24 hours from its (resolved) midnight to the next. That
    is the same as "no clock change inside it" because no zone changes its offset twice within two
    days (tests/test_slot_speed.py checks the installed tz database): a single change inside a day
    makes it 23 or 25 hours long (or 23.5, ...), and a change exactly at its end leaves every wall
    time of the day on the old offset. A change at its start (a skipped or repeated midnight) makes
    it shorter or longer, so such a day takes the careful path."""
    days: list[_Day] = []
    day = first
    start = epoch_floor(resolve_wall(day, 0, tz))
    offset = _offset(start, tz)
    while day <= last:
        following = day + timedelta(days=1)
        # When the day starts at its midnight and the offset is the same 24 hours on, no change lies
        # between (only one can fall within a day), so the next midnight is exactly then: one
        # conversion instead of resolving a wall-clock time.
        end = start + 86_400
        end_offset = _offset(end, tz)
        if end_offset != offset or (start + offset) % 86_400:
            end = epoch_floor(resolve_wall(following, 0, tz))
            end_offset = _offset(end, tz)
        days.append(_Day(day, start, end - start == 86_400, availability.intervals_on(day)))
        day, start, offset = following, end, end_offset
    return days


def _offset(seconds: int, tz: ZoneInfo) -> int:
    """The UTC offset of `tz` at an instant, in seconds."""
    return (datetime.fromtimestamp(seconds, tz).utcoffset() or timedelta(0)) // _SECOND


def _merged_seconds(spans: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Sorted, disjoint union of [start, end) second spans, as parallel lists of starts and ends
    (spans that touch are joined)."""
    starts: list[int] = []
    ends: list[int] = []
    for s, e in sorted(spans):
        if ends and s <= ends[-1]:
            if e > ends[-1]:
                ends[-1] = e
        else:
            starts.append(s)
            ends.append(e)
    return starts, ends


def _available_seconds(days: Sequence[_Day], tz: ZoneInfo) -> tuple[list[int], list[int]]:
    """The union of the days' availability in seconds: `available_spans`, a day at a time."""
    spans: list[tuple[int, int]] = []
    for d in days:
        for iv in d.intervals:
            if d.uniform:
                spans.append((d.start + 60 * iv.start, d.start + 60 * iv.end))
            else:
                s = epoch_floor(resolve_wall(d.day, iv.start, tz))
                e = epoch_floor(resolve_wall(d.day, iv.end, tz, later=True))
                if e > s:
                    spans.append((s, e))
    return _merged_seconds(spans)


def slot_starts(availability: Availability, rules: SessionRules, busy: Sequence[Span], window: Span) -> list[int]:
    """The starts (seconds since 1970, ascending) of the slots `compute_slots` offers in `window`,
    leaving notice and horizon aside: the grid, availability and busy time only.

    The work is proportional to the days in `window` plus the busy spans given, not to the grid:
    on a day with one UTC offset throughout (all but the few with a clock change) a grid position
    is arithmetic, the availability run that holds an interval is found once, and a walk through
    the sorted busy time jumps over each busy span to the next grid position clear of it. Days
    with a clock change take the path that resolves every wall-clock time on its own.
    Busy instants are rounded outwards to whole seconds, which changes no answer: every grid
    position is a whole second (zone offsets are), and a span that reaches into a second blocks a
    start at its end either way.
    """
    lo, hi = epoch_ceil(window.start), epoch_ceil(window.end)
    if lo >= hi:
        return []
    tz = ZoneInfo(availability.timezone)
    length = rules.duration * 60
    step = rules.step * 60
    before = rules.buffer_before * 60
    after = rules.buffer_after * 60
    busy_starts, busy_ends = _merged_seconds((epoch_floor(b.start), epoch_ceil(b.end)) for b in busy)
    n_busy = len(busy_starts)

    first_day = window.start.astimezone(tz).date() - timedelta(days=1)
    last_day = window.end.astimezone(tz).date() + timedelta(days=1)
    # A slot that starts on last_day may end days later, and the day before first_day may reach
    # into it (a repeated midnight): availability is read over both margins.
    days = _days(
        availability,
        tz,
        first_day - timedelta(days=1),
        last_day + timedelta(days=_reach_days(timedelta(seconds=length))),
    )
    run_starts, run_ends = _available_seconds(days, tz)
    starts: list[int] = []
    for d in days[1 : (last_day - first_day).days + 2]:
        for iv in d.intervals:
            if not d.uniform:
                starts.extend(
                    _careful_starts(d.day, iv, tz, rules, (lo, hi), (run_starts, run_ends), (busy_starts, busy_ends))
                )
                continue
            first = d.start + 60 * iv.start
            # The run of availability holding this interval bounds where its slots may end.
            run_end = run_ends[bisect.bisect_right(run_starts, first) - 1]
            stop = min(d.start + 60 * iv.end, hi, run_end - length + 1)
            t = first if first >= lo else first + -(-(lo - first) // step) * step
            j = bisect.bisect_right(busy_ends, t - before)
            while t < stop:
                while j < n_busy and busy_ends[j] <= t - before:  # busy spans the buffer has passed
                    j += 1
                if j < n_busy and busy_starts[j] < t + length + after:
                    # Collides with busy span j: on to the first grid position whose buffer clears it.
                    t += -(-(busy_ends[j] + before - t) // step) * step
                else:
                    starts.append(t)
                    t += step
    starts.sort()
    return starts


def _careful_starts(
    day: date,
    iv: Interval,
    tz: ZoneInfo,
    rules: SessionRules,
    bounds: tuple[int, int],
    runs: tuple[list[int], list[int]],
    busy: tuple[list[int], list[int]],
) -> list[int]:
    """The slot starts of one interval on a day with a clock change: each wall-clock grid time
    resolved on its own (a skipped time is no start, a repeated one starts at its first occurrence)."""
    lo, hi = bounds
    run_starts, run_ends = runs
    busy_starts, busy_ends = busy
    length = rules.duration * 60
    available_from = epoch_floor(resolve_wall(day, iv.start, tz))
    found: list[int] = []
    for minute in range(iv.start, iv.end, rules.step):
        local = _naive(day, minute)
        if not wall_time_exists(local, tz):
            continue
        t = epoch_floor(local.replace(tzinfo=tz, fold=0))
        if t < available_from or t < lo or t >= hi:
            continue
        r = bisect.bisect_right(run_starts, t) - 1
        if r < 0 or run_ends[r] < t + length:
            continue
        # The last busy span starting before the blocked span's end is the only one that can overlap it.
        j = bisect.bisect_left(busy_starts, t + length + rules.buffer_after * 60)
        if j > 0 and busy_ends[j - 1] > t - rules.buffer_before * 60:
            continue
        found.append(t)
    return found


def _collides(span: Span, merged_busy: Sequence[Span], busy_starts: Sequence[datetime]) -> bool:
    # merged_busy is sorted and disjoint: only the last span starting before span.end can overlap.
    i = bisect.bisect_left(busy_starts, span.end)
    return i > 0 and merged_busy[i - 1].end > span.start


def is_offered(
    availability: Availability,
    rules: SessionRules,
    busy: Sequence[Span],
    start: datetime,
    now: datetime,
) -> bool:
    """Whether `start` is exactly a slot `compute_slots` would offer, decided in constant time.

    The same rules as `compute_slots`, applied to one instant: its wall-clock time must be on
    the grid of an interval of its own local day, be the first occurrence of that wall time,
    and the slot must fit availability (which may run on past midnight into the next day's
    hours), notice, horizon and busy time.
    """
    tz = ZoneInfo(availability.timezone)
    start = start.astimezone(UTC)
    if start < now + timedelta(minutes=rules.min_notice) or start >= now + timedelta(days=rules.horizon_days):
        return False
    local = start.astimezone(tz)
    if local.second or local.microsecond or local.replace(fold=0).astimezone(UTC) != start:
        return False
    day = local.date()
    minute = local.hour * 60 + local.minute
    end = start + timedelta(minutes=rules.duration)
    local_end = end.astimezone(tz)
    for iv in availability.intervals_on(day):
        if iv.start <= minute < iv.end and (minute - iv.start) % rules.step == 0:
            # A session that ends inside the same interval of the same day, with no change of
            # offset on the way, is within availability without assembling the days around it.
            inside = (
                local_end.date() == day
                and local_end.utcoffset() == local.utcoffset()
                and local_end.hour * 60 + local_end.minute <= iv.end
            )
            if resolve_wall(day, iv.start, tz) <= start and (
                inside or within_availability(availability, Span(start, end))
            ):
                merged = merge_spans(busy)
                return not _collides(rules.blocked(start), merged, [sp.start for sp in merged])
    return False


def offer_problem(
    availability: Availability,
    rules: SessionRules,
    start: datetime,
    now: datetime,
) -> str | None:
    """Why `start` could never be offered, ignoring busy time; None when it could be."""
    if start < now + timedelta(minutes=rules.min_notice):
        return "too_soon" if start >= now else "in_past"
    if start >= now + timedelta(days=rules.horizon_days):
        return "beyond_horizon"
    if not is_offered(availability, rules, (), start, now):
        return "not_on_grid"
    return None


def dates_window(first: date, last: date, tz: ZoneInfo) -> Span:
    """The absolute span from the start of `first` to the end of `last`, as days in `tz`."""
    return Span(local_day_span(first, tz).start, local_day_span(last, tz).end)
