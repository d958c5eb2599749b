"""External calendars to busy time: parse an iCalendar file into UTC spans within a window.

Pure: bytes in, spans out; the fetching lives in broker.calendar_fetch and broker.busy_calendars.
Recurrence (RRULE, RDATE, EXDATE and overridden occurrences by RECURRENCE-ID, RFC 5545 3.8.5 and
3.8.4.4) is expanded by recurring-ical-events; this module decides what counts as busy:

* TRANSP:TRANSPARENT (3.8.2.7) is free time and STATUS:CANCELLED (3.8.1.11) is no event,
  judged per occurrence, so one cancelled instance of a weekly series frees only that week;
* a time with a TZID (3.2.19) or in UTC is an absolute instant;
* an all-day event (DATE values, 3.3.4) and a floating time (3.3.5, form #1) belong to no
  zone, so they are read in the calendar's own zone when it names one (X-WR-TIMEZONE, as
  Google and Apple export it) and otherwise in the therapist's zone. The person who wrote
  "all day Friday" meant Friday where that calendar lives; for a therapist's own calendar
  that is their zone anyway. A day is busy from local midnight to the next local midnight,
  23 or 25 hours on the days clocks change.

The input is untrusted: the number of events and of occurrences is capped, per-second and
per-minute rules are refused, and anything malformed raises `CalendarError` (a ValueError)
with a message fit to show the therapist.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from typing import Any

import recurring_ical_events
from icalendar import Calendar

from calendars.slots import Span, local_day_span, merge_spans

MAX_EVENTS = 20_000
MAX_OCCURRENCES = 20_000
_REFUSED_FREQUENCIES = {"SECONDLY", "MINUTELY"}
# Floating and all-day times shift by at most a day against UTC; expand that much wider, then clip.
_MARGIN = dt.timedelta(days=2)


class CalendarError(ValueError):
    """The file is not a calendar we can read, or asks for more work than we allow."""


class CalendarTooLarge(CalendarError):
    """More events or occurrences than the caps allow."""


def busy_spans(
    data: bytes | str,
    window: Span,
    zone: str,
    *,
    max_events: int = MAX_EVENTS,
    max_occurrences: int = MAX_OCCURRENCES,
) -> list[Span]:
    """The busy time of an iCalendar stream (RFC 5545 3.4) that overlaps `window`, merged, in UTC.

    `zone` is the therapist's IANA zone, used for all-day and floating times when the
    calendar names no zone of its own. Spans are clipped to `window`.
    """
    calendar = _parse(data)
    events = calendar.walk("VEVENT")
    if len(events) > max_events:
        raise CalendarTooLarge(f"The calendar has {len(events)} events; at most {max_events} are read.")
    for index, event in enumerate(events, start=1):
        _check_event(event, index)
    local = _local_zone(calendar, zone)
    try:
        query = recurring_ical_events.of(calendar)
        found = list(_occurrence_spans(query, window, local, max_occurrences))
    except CalendarError:
        raise
    except Exception as exc:  # hostile input can break the parser in many ways; all mean "unreadable"
        raise CalendarError(f"The calendar's events could not be expanded: {_short(exc)}") from None
    return merge_spans(found)


def _parse(data: bytes | str) -> Calendar:
    try:
        calendar = Calendar.from_ical(data)
    except Exception as exc:  # icalendar raises ValueError, KeyError, IndexError... on garbage
        raise CalendarError(f"This is not an iCalendar file: {_short(exc)}") from None
    if not isinstance(calendar, Calendar) or calendar.name != "VCALENDAR":
        raise CalendarError("This is not an iCalendar file: it does not start with BEGIN:VCALENDAR.")
    return calendar


def _check_event(event: Any, index: int) -> None:
    errors = getattr(event, "errors", [])
    if errors:
        prop = errors[0][0]
        raise CalendarError(f"Event {index} has an unreadable {prop}.")
    if "DTSTART" not in event:
        raise CalendarError(f"Event {index} has no DTSTART.")
    rules = event.get("RRULE")
    for rule in rules if isinstance(rules, list) else [rules] if rules is not None else []:
        freq = rule.get("FREQ", [""])
        if any(str(f).upper() in _REFUSED_FREQUENCIES for f in freq):
            raise CalendarError(f"Event {index} repeats every second or minute; such rules are not read.")


def _local_zone(calendar: Calendar, fallback: str) -> zoneinfo.ZoneInfo:
    named = calendar.get("X-WR-TIMEZONE")
    for name in (str(named).strip() if named is not None else "", fallback):
        if not name:
            continue
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
    return zoneinfo.ZoneInfo("UTC")


def _occurrence_spans(query: Any, window: Span, local: zoneinfo.ZoneInfo, cap: int) -> Iterator[Span]:
    # Series are walked one at a time through their lazy generators, so a rule that would produce
    # millions of occurrences stops at the cap instead of being materialised first.
    start = window.start.astimezone(dt.UTC).replace(tzinfo=None) - _MARGIN
    stop = window.end.astimezone(dt.UTC).replace(tzinfo=None) + _MARGIN
    count = 0
    for series in query.series:
        for occurrence in series.between(start, stop):
            count += 1
            if count > cap:
                raise CalendarTooLarge(f"The calendar has more than {cap} occurrences in the coming months.")
            component = occurrence.as_component(False)
            if str(component.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
                continue
            if str(component.get("STATUS", "")).upper() == "CANCELLED":
                continue
            span = _absolute(occurrence.start, occurrence.end, local)
            if span is None or not span.overlaps(window):
                continue
            yield Span(max(span.start, window.start), min(span.end, window.end))


def _absolute(start: Any, end: Any, local: zoneinfo.ZoneInfo) -> Span | None:
    """UTC span of an occurrence; None when it takes no time (RFC 5545 3.6.1: DTSTART alone)."""
    if isinstance(start, dt.datetime):
        first = _instant(start, local)
        if isinstance(end, dt.datetime):
            last = _instant(end, local)
        elif isinstance(end, dt.date):
            last = local_day_span(end, local).start
        else:
            last = first
    else:
        first = local_day_span(start, local).start
        if isinstance(end, dt.datetime):
            last = _instant(end, local)
        elif isinstance(end, dt.date) and end > start:
            last = local_day_span(end, local).start
        else:  # a DATE event without DTEND lasts the one day
            last = local_day_span(start, local).end
    return Span(first, last) if last > first else None


def _instant(value: dt.datetime, local: zoneinfo.ZoneInfo) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=local)
    return value.astimezone(dt.UTC)


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\r", " ").replace("\n", " ")
    return text[:160] if text else type(exc).__name__
