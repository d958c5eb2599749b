"""iCalendar rendering: a therapist's subscription feed, a client's single-event file and series file.

Pure functions over plain values. What a feed may reveal is decided by its privacy tier,
and the input types below carry no contact details, booking keys or room tokens at all, so
no tier can leak them: there is nothing to leak.

Every instant is written in UTC (RFC 5545 3.3.5, form #2), which every calendar app reads
the same way and which needs no VTIMEZONE; only a series' recurring event is written in the
therapist's zone (with its VTIMEZONE), because its rule repeats wall-clock time. The output
is deterministic for given inputs (DTSTAMP is the booking's last change, not the time of
rendering), so a hash of the inputs is a valid strong HTTP validator for the rendered bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, vDuration, vText

Privacy = Literal["busy", "initials", "full"]
PRIVACY_TIERS: tuple[Privacy, ...] = ("busy", "initials", "full")
PRODID = "-//Teleroom//Teleroom 0.1//EN"
BUSY_SUMMARY = "Busy"


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One confirmed booking as a therapist's feed may show it."""

    booking_id: str
    start: dt.datetime
    end: dt.datetime
    sequence: int
    created: dt.datetime
    updated: dt.datetime
    session_type: str
    client_name: str


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """The calendar around the events: whose it is, its tier, where the dashboard lives."""

    therapist_name: str
    privacy: Privacy
    origin: str
    refresh: dt.timedelta = dt.timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """The one event a client adds to their own calendar. Links carry no key."""

    booking_id: str
    start: dt.datetime
    end: dt.datetime
    sequence: int
    created: dt.datetime
    updated: dt.datetime
    session_type: str
    therapist_name: str
    origin: str
    cancelled: bool = False


def event_uid(booking_id: str, origin: str) -> str:
    """A UID that is the same on every render of a booking (RFC 5545 3.8.4.7: globally unique, persistent)."""
    host = urlsplit(origin).hostname or "teleroom.invalid"
    return f"{booking_id}@{host}"


def initials(name: str) -> str:
    """ "Ada Lovelace" -> "A.L."; the first letter of the first and last word only."""
    words = ["".join(ch for ch in word if ch.isalpha()) for word in name.split()]
    words = [w for w in words if w]
    if not words:
        return "?"
    picked = [words[0]] if len(words) == 1 else [words[0], words[-1]]
    return "".join(w[0].upper() + "." for w in picked)


def feed_summary(event: FeedEvent, privacy: Privacy) -> str:
    """The SUMMARY a tier shows: "Busy"; the session type and initials; or the session type and name."""
    if privacy == "busy":
        return BUSY_SUMMARY
    if privacy == "initials":
        return f"{event.session_type} – {initials(event.client_name)}"
    return f"{event.session_type} – {event.client_name}"


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("calendar times must be timezone-aware")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def _calendar(name: str, refresh: dt.timedelta | None) -> Calendar:
    # RFC 5545 3.7.3 PRODID and 3.7.4 VERSION are required; 3.7.2 METHOD:PUBLISH marks a published
    # calendar. RFC 7986 5.1 NAME / the de facto X-WR-CALNAME name it in the subscriber's list, and
    # RFC 7986 5.7 REFRESH-INTERVAL / Apple's and Microsoft's X-PUBLISHED-TTL say how often to poll.
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", vText(name))  # TEXT values: a comma, semicolon or backslash is escaped
    cal.add("name", vText(name))
    if refresh is not None:
        cal.add("refresh-interval", refresh, parameters={"VALUE": "DURATION"})
        cal.add("x-published-ttl", vDuration(refresh))
    return cal


def _booking_event(event: FeedEvent | ClientEvent, origin: str) -> Event:
    """The VEVENT properties every rendering of a booking shares: identity, versioning and time.

    UID (3.8.4.7) stays the same across renders; SEQUENCE (3.8.7.4) grows on reschedule so
    clients replace their copy; DTSTAMP (3.8.7.2) and LAST-MODIFIED (3.8.7.3) are the
    booking's last change; DTSTART/DTEND (3.8.2.4, 3.8.2.2) are UTC.
    """
    vevent = Event()
    vevent.add("uid", event_uid(event.booking_id, origin))
    vevent.add("dtstamp", _utc(event.updated))
    vevent.add("created", _utc(event.created))
    vevent.add("last-modified", _utc(event.updated))
    vevent.add("sequence", event.sequence)
    vevent.add("dtstart", _utc(event.start))
    vevent.add("dtend", _utc(event.end))
    return vevent


def feed_event(event: FeedEvent, info: FeedInfo) -> Event:
    """One VEVENT (RFC 5545 3.6.1) of a therapist's feed, revealing only what `info.privacy` allows."""
    vevent = _booking_event(event, info.origin)
    vevent.add("summary", feed_summary(event, info.privacy))
    vevent.add("status", "CONFIRMED")
    vevent.add("transp", "OPAQUE")
    vevent.add("class", "PRIVATE")
    dashboard = f"{info.origin}/dashboard"
    vevent.add("description", f"Details in your Teleroom dashboard: {dashboard}")
    vevent.add("url", dashboard)
    return vevent


def render_feed(events: Iterable[FeedEvent], info: FeedInfo) -> bytes:
    """A therapist's subscription feed: an RFC 5545 (3.4, 3.6) iCalendar stream of confirmed bookings."""
    cal = _calendar(f"Teleroom – {info.therapist_name}", info.refresh)
    for event in events:
        cal.add_component(feed_event(event, info))
    body: bytes = cal.to_ical()
    return body


def render_client_event(event: ClientEvent) -> bytes:
    """A client's .ics: one VEVENT (RFC 5545 3.6.1) with the time, the therapist and key-less links.

    The same UID as the therapist's feed uses, and the booking's SEQUENCE, so importing the
    file again after a reschedule updates the event instead of adding a second one
    (RFC 5546 2.1.5 ordering by SEQUENCE). A cancelled booking renders STATUS:CANCELLED.

    Every confirmation email carries one, so it is written line by line rather than through
    icalendar's component tree (which took about a millisecond of CPU per file); the result is the
    bytes icalendar writes for the same calendar (tests/test_ical_client_event.py holds it to that),
    except that NAME and X-WR-CALNAME are escaped as the TEXT they are (RFC 7986 5.1; icalendar
    writes them raw) and a backslash is always escaped (icalendar reads `\\N` as a line break).
    """
    name = _text(f"Teleroom – {event.therapist_name}")
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{_text(PRODID)}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"NAME:{name}",
        f"X-WR-CALNAME:{name}",
        *_client_vevent_lines(event),
        "END:VCALENDAR",
    ]
    return "".join(_fold(line) + "\r\n" for line in lines).encode()


def _client_vevent_lines(event: ClientEvent) -> list[str]:
    """The VEVENT of a client's file as content lines, properties in the order icalendar writes them
    (SUMMARY, DTSTART, DTEND, DTSTAMP, UID, SEQUENCE first, then by name)."""
    manage = f"{event.origin}/manage/{event.booking_id}"
    join = f"{event.origin}/join/{event.booking_id}"
    updated = _stamp(event.updated)
    return [
        "BEGIN:VEVENT",
        f"SUMMARY:{_text(f'{event.session_type} with {event.therapist_name}')}",
        f"DTSTART:{_stamp(event.start)}",
        f"DTEND:{_stamp(event.end)}",
        f"DTSTAMP:{updated}",
        f"UID:{_text(event_uid(event.booking_id, event.origin))}",
        f"SEQUENCE:{int(event.sequence)}",
        f"CREATED:{_stamp(event.created)}",
        "DESCRIPTION:"
        + _text(
            f"Join the video session: {join}\n"
            f"Change or cancel: {manage}\n"
            "Open these from the device you booked on, or use the link in your booking confirmation."
        ),
        f"LAST-MODIFIED:{updated}",
        f"LOCATION:{_text(join)}",
        f"STATUS:{'CANCELLED' if event.cancelled else 'CONFIRMED'}",
        "TRANSP:OPAQUE",
        f"URL:{join}",  # a URI (3.3.13): not TEXT, so not escaped
        "END:VEVENT",
    ]


def _text(value: str) -> str:
    """RFC 5545 3.3.11 TEXT: backslash, semicolon and comma escaped; any line break as `\\n`."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _stamp(value: dt.datetime) -> str:
    """A UTC DATE-TIME (RFC 5545 3.3.5, form #2)."""
    return _utc(value).strftime("%Y%m%dT%H%M%SZ")


def _fold(line: str) -> str:
    """RFC 5545 3.1 folding as icalendar does it: at most 74 octets before each CRLF SPACE, never
    inside a UTF-8 sequence, and never right after a backslash (an escape stays on one line)."""
    if line.isascii():  # one octet a character: cut by position
        if len(line) < 75:
            return line
        cuts: list[str] = []
        start = 0
        while len(line) - start > 74:
            end = start + 74
            if line[end - 1] in "\\^":
                end -= 1
            cuts.append(line[start:end])
            start = end
        cuts.append(line[start:])
        return "\r\n ".join(cuts)
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for char in line:
        width = len(char.encode())
        if current and size + width >= 75:
            if len(current) > 1 and current[-1] in "\\^":
                carried = current.pop()
                pieces.append("".join(current))
                current, size = [carried], len(carried.encode())
            else:
                pieces.append("".join(current))
                current, size = [], 0
        current.append(char)
        size += width
    pieces.append("".join(current))
    return "\r\n ".join(pieces)


def _client_vevent(event: ClientEvent) -> Event:
    """A moved session of a series as its own VEVENT (same content as a client's single-event file)."""
    manage = f"{event.origin}/manage/{event.booking_id}"
    join = f"{event.origin}/join/{event.booking_id}"
    vevent = _booking_event(event, event.origin)
    vevent.add("summary", f"{event.session_type} with {event.therapist_name}")
    vevent.add("status", "CANCELLED" if event.cancelled else "CONFIRMED")
    vevent.add("transp", "OPAQUE")
    vevent.add("location", join)
    vevent.add("url", join)
    vevent.add(
        "description",
        f"Join the video session: {join}\n"
        f"Change or cancel: {manage}\n"
        "Open these from the device you booked on, or use the link in your booking confirmation.",
    )
    return vevent


@dataclass(frozen=True, slots=True)
class SeriesEvent:
    """A client's standing series as one recurring event. Links carry no key.

    `excluded` are the rule's original starts that no longer hold a session there (cancelled,
    never booked, or moved); `moved` are the sessions now at another time, each its own event.
    """

    series_id: str
    timezone: str
    first_start: dt.datetime
    duration: dt.timedelta
    weeks_apart: int
    count: int
    excluded: tuple[dt.datetime, ...]
    moved: tuple[ClientEvent, ...]
    sequence: int
    created: dt.datetime
    updated: dt.datetime
    session_type: str
    therapist_name: str
    origin: str
    manage_booking_id: str


def render_series_event(series: SeriesEvent) -> bytes:
    """A client's .ics for a standing series: one VEVENT with an RRULE in the therapist's zone.

    DTSTART/DTEND carry TZID (RFC 5545 3.2.19) with a VTIMEZONE (3.6.5) for it, so the rule
    (3.3.10, 3.8.5.3: FREQ=WEEKLY, INTERVAL, COUNT) repeats the therapist's wall-clock time across
    daylight-saving changes, as Teleroom expands it (`calendars.series`). EXDATE (3.8.5.1, same
    TZID) removes sessions the series no longer holds at their original time; a moved session is
    an event of its own with its booking's UID, as in the therapist's feed.
    """
    tz = ZoneInfo(series.timezone)
    cal = _calendar(f"Teleroom – {series.therapist_name}", None)
    first = series.first_start.astimezone(tz).replace(microsecond=0)
    last = first + dt.timedelta(weeks=series.weeks_apart * series.count)
    cal.add_component(
        Timezone.from_tzid(
            series.timezone,
            first_date=first.date() - dt.timedelta(days=366),
            last_date=last.date() + dt.timedelta(days=1),
        )
    )
    manage = f"{series.origin}/manage/{series.manage_booking_id}"
    vevent = Event()
    vevent.add("uid", event_uid(f"series-{series.series_id}", series.origin))
    vevent.add("dtstamp", _utc(series.updated))
    vevent.add("created", _utc(series.created))
    vevent.add("last-modified", _utc(series.updated))
    vevent.add("sequence", series.sequence)
    vevent.add("dtstart", first)
    vevent.add("dtend", first + series.duration)
    vevent.add("rrule", {"FREQ": "WEEKLY", "INTERVAL": series.weeks_apart, "COUNT": series.count})
    for start in sorted(series.excluded):
        vevent.add("exdate", start.astimezone(tz).replace(microsecond=0))
    vevent.add("summary", f"{series.session_type} with {series.therapist_name}")
    vevent.add("status", "CONFIRMED")
    vevent.add("transp", "OPAQUE")
    vevent.add("url", manage)
    vevent.add(
        "description",
        f"Your standing sessions. Join each from your booking page: {manage}\n"
        "Open it from the device you booked on, or use the link in your booking confirmation.",
    )
    cal.add_component(vevent)
    for moved in series.moved:
        cal.add_component(_client_vevent(moved))
    body: bytes = cal.to_ical()
    return body
