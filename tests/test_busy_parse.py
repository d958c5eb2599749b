"""calendars.busy: external iCalendar files to busy spans, without any I/O. Fixtures in tests/data/."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from calendars.busy import CalendarError, CalendarTooLarge, busy_spans
from calendars.slots import Span

DATA = Path(__file__).parent / "data"
WINDOW = Span(dt.datetime(2025, 3, 1, tzinfo=dt.UTC), dt.datetime(2025, 5, 1, tzinfo=dt.UTC))


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


def test_weekly_series_keeps_local_time_across_dst_and_honours_exdate_and_override() -> None:
    spans = busy_spans(load("weekly_dst.ics"), WINDOW, "Europe/Berlin")
    assert spans == [
        Span(utc(2025, 3, 18, 9), utc(2025, 3, 18, 10)),  # 10:00 CET
        Span(utc(2025, 3, 25, 9), utc(2025, 3, 25, 10)),
        Span(utc(2025, 4, 1, 8), utc(2025, 4, 1, 9)),  # 10:00 CEST after the change on 30 March
        # 8 April is an EXDATE
        Span(utc(2025, 4, 15, 12), utc(2025, 4, 15, 13, 30)),  # the overridden occurrence, moved to 14:00
        Span(utc(2025, 4, 22, 8), utc(2025, 4, 22, 9)),
    ]


def test_all_day_event_is_the_whole_local_day_even_when_it_has_23_hours() -> None:
    spans = busy_spans(load("all_day.ics"), WINDOW, "Europe/Berlin")
    assert spans == [
        Span(utc(2025, 3, 29, 23), utc(2025, 3, 30, 22)),  # 30 March 2025 in Berlin: 23 hours
        Span(utc(2025, 4, 1, 22), utc(2025, 4, 2, 22)),  # DATE without DTEND: one day
    ]


def test_all_day_and_floating_times_follow_the_calendars_x_wr_timezone() -> None:
    spans = busy_spans(load("all_day_x_wr_timezone.ics"), WINDOW, "Europe/Berlin")
    assert spans == [
        Span(utc(2025, 4, 2, 4), utc(2025, 4, 3, 4)),  # 2 April in New York (EDT, UTC-4)
        Span(utc(2025, 4, 3, 16), utc(2025, 4, 3, 17)),  # floating 12:00 read in New York
    ]


def test_same_all_day_event_follows_the_therapists_zone_without_x_wr_timezone() -> None:
    body = load("all_day_x_wr_timezone.ics").replace(b"X-WR-TIMEZONE:America/New_York\n", b"")
    spans = busy_spans(body, WINDOW, "Asia/Tokyo")
    assert Span(utc(2025, 4, 1, 15), utc(2025, 4, 2, 15)) in spans


def test_transparent_and_cancelled_events_are_free_and_rdates_and_other_zones_count() -> None:
    spans = busy_spans(load("free_and_cancelled.ics"), WINDOW, "Europe/Berlin")
    assert spans == [
        Span(utc(2025, 4, 1, 7), utc(2025, 4, 1, 7, 15)),
        # 2 April: the transparent day, the cancelled event and the cancelled instance are all free
        Span(utc(2025, 4, 3, 7), utc(2025, 4, 3, 7, 15)),
        Span(utc(2025, 4, 5, 15), utc(2025, 4, 5, 15, 30)),
        Span(utc(2025, 4, 6, 15), utc(2025, 4, 6, 15, 30)),  # RDATE
        Span(utc(2025, 4, 7, 16), utc(2025, 4, 7, 16, 30)),  # RDATE
        Span(utc(2025, 4, 8, 0), utc(2025, 4, 8, 1)),  # 09:00 in Tokyo
    ]


def test_spans_are_clipped_to_the_window() -> None:
    window = Span(utc(2025, 3, 18, 9, 30), utc(2025, 3, 25, 9, 30))
    assert busy_spans(load("weekly_dst.ics"), window, "Europe/Berlin") == [
        Span(utc(2025, 3, 18, 9, 30), utc(2025, 3, 18, 10)),
        Span(utc(2025, 3, 25, 9), utc(2025, 3, 25, 9, 30)),
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not_a_calendar.ics", "not an iCalendar file"),
        ("broken_dtstart.ics", "Event 1 has an unreadable DTSTART"),
        ("minutely.ics", "every second or minute"),
    ],
)
def test_unreadable_calendars_raise_our_own_value_error(name: str, message: str) -> None:
    with pytest.raises(CalendarError, match=message) as caught:
        busy_spans(load(name), WINDOW, "Europe/Berlin")
    assert isinstance(caught.value, ValueError)


def test_event_and_occurrence_caps_stop_hostile_calendars() -> None:
    with pytest.raises(CalendarTooLarge):
        busy_spans(load("free_and_cancelled.ics"), WINDOW, "Europe/Berlin", max_events=3)
    with pytest.raises(CalendarTooLarge):
        busy_spans(load("weekly_dst.ics"), WINDOW, "Europe/Berlin", max_occurrences=3)


def test_an_event_without_dtstart_is_refused() -> None:
    body = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    with pytest.raises(CalendarError, match="no DTSTART"):
        busy_spans(body, WINDOW, "UTC")


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_arbitrary_bytes_never_escape_as_anything_but_calendar_error(data: bytes) -> None:
    try:
        busy_spans(b"BEGIN:VCALENDAR\r\n" + data + b"\r\nEND:VCALENDAR\r\n", WINDOW, "Europe/Berlin")
    except CalendarError:
        pass


@settings(max_examples=40, deadline=None)
# Found by hypothesis: 02:00 on New York's spring-forward day does not exist; the event file says
# 02:00 with no fold, which RFC 5545 reads as 07:00 UTC.
@example(start=dt.datetime(2025, 3, 9, 2, 0, fold=1), minutes=1, zone="America/New_York")
@given(
    start=st.datetimes(min_value=dt.datetime(2025, 3, 1), max_value=dt.datetime(2025, 4, 30)),
    minutes=st.integers(min_value=1, max_value=3000),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]),
)
def test_a_single_zoned_event_becomes_exactly_its_utc_span(start: dt.datetime, minutes: int, zone: str) -> None:
    from zoneinfo import ZoneInfo

    # The text carries no fold, so the oracle must not either: a local time in a spring-forward gap
    # is read with the offset before the gap (RFC 5545 section 3.3.5), which is zoneinfo's fold=0.
    start = start.replace(second=0, microsecond=0, fold=0)
    end = start + dt.timedelta(minutes=minutes)
    body = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:p@t\r\n"
        "DTSTAMP:20250101T000000Z\r\n"
        f"DTSTART;TZID={zone}:{start:%Y%m%dT%H%M%S}\r\nDTEND;TZID={zone}:{end:%Y%m%dT%H%M%S}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()
    tz = ZoneInfo(zone)
    first, last = start.replace(tzinfo=tz).astimezone(dt.UTC), end.replace(tzinfo=tz).astimezone(dt.UTC)
    window = Span(utc(2025, 2, 1), utc(2025, 6, 1))
    spans = busy_spans(body, window, "UTC")
    assert spans == ([Span(first, last)] if last > first else [])
