"""Standing series: a first start repeated every one or two weeks, expanded in the therapist's wall clock.

A series "every Tuesday at 10:00" means 10:00 on the therapist's clock, whatever daylight-saving
time does: occurrences are the first start's local time on the same weekday, one or two weeks
apart, each resolved to an instant in the therapist's zone. The client may live in a zone that
changes its clocks on other dates; for them the same session can move by an hour for a few
weeks, which `Occurrence.client_time_differs` flags so the booking page can say so.

Wall-clock times a change makes impossible or ambiguous are resolved as `calendars.slots` does:
a time in a spring-forward gap is no slot start (the occurrence is reported at the end of the
gap, flagged `skipped`, and is never booked), and a repeated time is its first occurrence.

Every instant is an aware datetime in UTC; spans are half-open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from calendars.slots import Availability, SessionRules, Span, is_offered, merge_spans, resolve_wall, wall_time_exists

Frequency = Literal["weekly", "biweekly"]
FREQUENCIES: tuple[Frequency, ...] = ("weekly", "biweekly")
WEEKS_APART: dict[Frequency, int] = {"weekly": 1, "biweekly": 2}
MAX_SESSIONS = 52
Status = Literal["free", "taken", "not_offered"]


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One session of a series: when it is, and how it reads on each side's clock."""

    index: int
    start: datetime  # UTC
    end: datetime  # UTC
    therapist_local: datetime  # aware, in the therapist's zone
    client_local: datetime  # aware, in the client's zone
    skipped: bool  # the therapist's wall time does not exist that day (spring-forward gap)
    client_time_differs: bool  # the client's wall time is not the first occurrence's

    @property
    def span(self) -> Span:
        return Span(self.start, self.end)


def expand(
    first_start: datetime,
    *,
    therapist_zone: str,
    client_zone: str | None,
    frequency: Frequency,
    count: int,
    duration: int,
) -> list[Occurrence]:
    """The `count` occurrences of a series starting at `first_start`, in order.

    Each falls on the first start's weekday and wall-clock time in `therapist_zone`,
    `WEEKS_APART[frequency]` weeks after the previous one (RFC 5545 3.3.10 reads an
    RRULE with a TZID'd DTSTART the same way, so the client's .ics agrees).
    """
    if count < 1:
        raise ValueError("a series has at least one occurrence")
    if first_start.tzinfo is None:
        raise ValueError("the first start must be timezone-aware")
    tz = ZoneInfo(therapist_zone)
    ctz = ZoneInfo(client_zone) if client_zone else tz
    first_local = first_start.astimezone(tz)
    minute = first_local.hour * 60 + first_local.minute
    wall = first_local.replace(tzinfo=None, fold=0)
    step = timedelta(weeks=WEEKS_APART[frequency])
    length = timedelta(minutes=duration)
    out: list[Occurrence] = []
    first_client_wall: tuple[int, int] | None = None
    for i in range(count):
        local = wall + step * i
        exists = wall_time_exists(local, tz)
        if exists:
            start = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
        else:
            start = resolve_wall(local.date(), minute, tz)
        client_local = start.astimezone(ctz)
        client_wall = (client_local.hour, client_local.minute)
        if first_client_wall is None:
            first_client_wall = client_wall
        out.append(
            Occurrence(
                index=i,
                start=start,
                end=start + length,
                therapist_local=start.astimezone(tz),
                client_local=client_local,
                skipped=not exists,
                client_time_differs=client_wall != first_client_wall,
            )
        )
    return out


def later_rules(rules: SessionRules, occurrences: Sequence[Occurrence], now: datetime) -> SessionRules:
    """The rules an occurrence after the first is held to: no notice, and no horizon.

    The first start is checked as any booking is; the ones after it were agreed with it, so a
    52-week series does not need a 365-day horizon. The hours, the grid and busy time still apply.
    """
    last = occurrences[-1].start if occurrences else now
    return replace(rules, min_notice=0, horizon_days=max(rules.horizon_days, (last - now).days + 2))


def classify(
    occurrences: Sequence[Occurrence],
    availability: Availability,
    rules: SessionRules,
    busy: Sequence[Span],
    now: datetime,
    *,
    waive_limits: bool = False,
) -> list[Status]:
    """Each occurrence's status: `not_offered` (outside the hours, off the grid, in a gap, past),
    `taken` (its blocked span, buffers included, meets busy time), or `free`.

    The first occurrence is held to the session type's notice and horizon unless `waive_limits`
    (a therapist booking for a client); later ones to `later_rules`.
    """
    if not occurrences:
        return []
    relaxed = later_rules(rules, occurrences, now)
    merged = merge_spans(busy)
    statuses: list[Status] = []
    for occ in occurrences:
        held = relaxed if (occ.index > 0 or waive_limits) else rules
        if occ.skipped or occ.start < now or not is_offered(availability, held, (), occ.start, now):
            statuses.append("not_offered")
        elif _meets(rules.blocked(occ.start), merged):
            statuses.append("taken")
        else:
            statuses.append("free")
    return statuses


def _meets(span: Span, merged: Sequence[Span]) -> bool:
    return any(b.overlaps(span) for b in merged)


def series_window(occurrences: Sequence[Occurrence], rules: SessionRules) -> Span:
    """The span busy time must be read for: every occurrence's blocked span, buffers included."""
    return Span(rules.blocked(occurrences[0].start).start, rules.blocked(occurrences[-1].start).end)


def local_dates(occurrences: Sequence[Occurrence]) -> list[date]:
    """The therapist-local dates of the occurrences (what an EXDATE or a confirmation lists)."""
    return [o.therapist_local.date() for o in occurrences]
