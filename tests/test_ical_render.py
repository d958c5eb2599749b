"""calendars.ical: feeds and client files rendered from plain values, read back by icalendar."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
from hypothesis import given, settings
from hypothesis import strategies as st

from calendars.ical import (
    PRIVACY_TIERS,
    ClientEvent,
    FeedEvent,
    FeedInfo,
    Privacy,
    SeriesEvent,
    event_uid,
    initials,
    render_client_event,
    render_feed,
    render_series_event,
)
from calendars.series import Frequency, expand

ORIGIN = "https://teleroom.example.org"
START = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def booking(name: str = "Ada Lovelace", sequence: int = 0, booking_id: str = "b-1") -> FeedEvent:
    updated = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    return FeedEvent(
        booking_id=booking_id,
        start=START,
        end=START + dt.timedelta(minutes=50),
        sequence=sequence,
        created=updated - dt.timedelta(days=1),
        updated=updated,
        session_type="Individual session",
        client_name=name,
    )


def parse(body: bytes) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(body)


def test_feed_has_the_calendar_properties_subscribers_need() -> None:
    cal = parse(render_feed([booking()], FeedInfo("Dr Grace", "busy", ORIGIN, dt.timedelta(minutes=30))))
    assert str(cal["VERSION"]) == "2.0" and "Teleroom" in str(cal["PRODID"])
    assert str(cal["X-WR-CALNAME"]) == "Teleroom – Dr Grace"
    assert cal["REFRESH-INTERVAL"].params["VALUE"] == "DURATION"
    assert cal.decoded("REFRESH-INTERVAL") == dt.timedelta(minutes=30)
    assert b"X-PUBLISHED-TTL:PT30M" in render_feed([], FeedInfo("Dr Grace", "busy", ORIGIN, dt.timedelta(minutes=30)))


def test_the_calendar_name_is_escaped_text() -> None:
    body = render_feed([], FeedInfo("Dr Smith, PhD; Clinic North", "busy", ORIGIN))
    assert "\r\nNAME:Teleroom – Dr Smith\\, PhD\\; Clinic North\r\n".encode() in body
    assert "\r\nX-WR-CALNAME:Teleroom – Dr Smith\\, PhD\\; Clinic North\r\n".encode() in body


def test_event_times_are_utc_and_stamps_are_the_bookings_last_change() -> None:
    (event,) = parse(render_feed([booking(sequence=3)], FeedInfo("Dr", "busy", ORIGIN))).walk("VEVENT")
    assert event.decoded("DTSTART") == dt.datetime(2026, 3, 28, 23, 30, tzinfo=dt.UTC)
    assert event.decoded("DTEND") == dt.datetime(2026, 3, 29, 0, 20, tzinfo=dt.UTC)
    assert event.decoded("DTSTAMP") == event.decoded("LAST-MODIFIED") == dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    assert int(event["SEQUENCE"]) == 3
    assert str(event["STATUS"]) == "CONFIRMED"
    assert str(event["UID"]) == "b-1@teleroom.example.org"
    assert str(event["DESCRIPTION"]).endswith(f"{ORIGIN}/dashboard")


@pytest.mark.parametrize(
    ("privacy", "summary"),
    [("busy", "Busy"), ("initials", "Individual session – A.L."), ("full", "Individual session – Ada Lovelace")],
)
def test_each_tier_shows_only_what_it_allows(privacy: Privacy, summary: str) -> None:
    body = render_feed([booking()], FeedInfo("Dr", privacy, ORIGIN))
    (event,) = parse(body).walk("VEVENT")
    assert str(event["SUMMARY"]) == summary
    if privacy == "busy":
        assert b"Individual" not in body and b"A.L." not in body
    if privacy != "full":
        assert b"Lovelace" not in body.replace(b"\r\n ", b"")


def test_rendering_is_deterministic_so_the_etag_can_be_strong() -> None:
    info = FeedInfo("Dr", "full", ORIGIN)
    events = [booking(booking_id=f"b-{i}") for i in range(5)]
    assert render_feed(events, info) == render_feed(list(events), info)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Ada Lovelace", "A.L."),
        ("ada king lovelace", "A.L."),
        ("Cher", "C."),
        ("  Émile   Zola ", "É.Z."),
        ("(Bob) O'Neil", "B.O."),
        ("!!!", "?"),
    ],
)
def test_initials(name: str, expected: str) -> None:
    assert initials(name) == expected


def test_uid_names_the_origins_host() -> None:
    assert event_uid("abc", "http://127.0.0.1:8080") == "abc@127.0.0.1"


def test_client_event_links_to_manage_and_join_pages_without_a_key() -> None:
    event = ClientEvent(
        booking_id="b-9",
        start=START,
        end=START + dt.timedelta(minutes=50),
        sequence=1,
        created=START,
        updated=START,
        session_type="Individual session",
        therapist_name="Dr Grace Hopper",
        origin=ORIGIN,
    )
    body = render_client_event(event)
    flat = body.decode().replace("\r\n ", "")
    (vevent,) = parse(body).walk("VEVENT")
    assert str(vevent["SUMMARY"]) == "Individual session with Dr Grace Hopper"
    assert f"{ORIGIN}/join/b-9" in flat and f"{ORIGIN}/manage/b-9" in flat
    assert "#" not in flat.split("DESCRIPTION:", 1)[1].split("\r\n", 1)[0]
    assert int(vevent["SEQUENCE"]) == 1 and str(vevent["STATUS"]) == "CONFIRMED"
    cancelled = parse(render_client_event(dataclasses.replace(event, cancelled=True)))
    assert str(cancelled.walk("VEVENT")[0]["STATUS"]) == "CANCELLED"


def test_naive_times_are_refused() -> None:
    naive = FeedEvent("b", START.replace(tzinfo=None), START.replace(tzinfo=None), 0, START, START, "x", "y")
    with pytest.raises(ValueError, match="timezone-aware"):
        render_feed([naive], FeedInfo("Dr", "busy", ORIGIN))


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from([",", ";", "\\", ":", '"']),
    min_size=1,
    max_size=120,
)


@settings(max_examples=80, deadline=None)
@given(name=names, session_type=names, privacy=st.sampled_from(PRIVACY_TIERS))
def test_any_name_round_trips_and_no_tier_but_full_carries_it(name: str, session_type: str, privacy: Privacy) -> None:
    event = FeedEvent("b-1", START, START + dt.timedelta(hours=1), 0, START, START, session_type, name)
    body = render_feed([event], FeedInfo("Dr", privacy, ORIGIN))
    (parsed,) = parse(body).walk("VEVENT")
    summary = str(parsed["SUMMARY"])
    if privacy == "full":
        assert summary == f"{session_type} – {name}"
    elif privacy == "initials":
        assert summary == f"{session_type} – {initials(name)}"
    else:
        assert summary == "Busy"
    assert all(len(line) <= 75 for line in body.split(b"\r\n"))


# --- A client's standing series: one recurring event, read back by icalendar and ical.js --------------

EXPANDER = Path(__file__).resolve().parent / "js" / "expand_ics.mjs"


def series_file(
    zone: str,
    first: dt.datetime,
    *,
    count: int = 6,
    weeks_apart: int = 1,
    cancelled: tuple[int, ...] = (),
    moved: int | None = None,
) -> tuple[bytes, list[dt.datetime]]:
    """A series' .ics and the UTC instants of the sessions it should show, from Teleroom's own expansion."""
    frequency: Frequency = "weekly" if weeks_apart == 1 else "biweekly"
    occurrences = expand(first, therapist_zone=zone, client_zone=None, frequency=frequency, count=count, duration=50)
    excluded = [o.start for o in occurrences if o.index in cancelled or o.index == moved]
    held = [o.start for o in occurrences if o.start not in excluded]
    moved_events: tuple[ClientEvent, ...] = ()
    if moved is not None:
        new_start = occurrences[moved].start + dt.timedelta(days=1)
        held.append(new_start)
        stamp = dt.datetime(2027, 1, 5, tzinfo=dt.UTC)
        moved_events = (
            ClientEvent(
                "b-moved", new_start, new_start + dt.timedelta(minutes=50), 1, stamp, stamp, "Session", "Dr", ORIGIN
            ),
        )
    stamp = dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC)
    body = render_series_event(
        SeriesEvent(
            series_id="s-1",
            timezone=zone,
            first_start=first,
            duration=dt.timedelta(minutes=50),
            weeks_apart=weeks_apart,
            count=count,
            excluded=tuple(excluded),
            moved=moved_events,
            sequence=len(excluded),
            created=stamp,
            updated=stamp,
            session_type="Session",
            therapist_name="Dr Grace",
            origin=ORIGIN,
            manage_booking_id="b-0",
        )
    )
    return body, sorted(held)


def expanded_by_icalendar(body: bytes) -> list[dt.datetime]:
    cal = icalendar.Calendar.from_ical(body)
    found = recurring_ical_events.of(cal).between(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1))
    return sorted(e.decoded("DTSTART").astimezone(dt.UTC) for e in found)


def expanded_by_ical_js(body: bytes) -> list[dt.datetime]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the ical.js cross-check needs it")
    if not (EXPANDER.parent.parent.parent / "node_modules" / "ical.js").is_dir():
        pytest.skip("node_modules/ical.js is missing: run `npm install` in the repository root")
    done = subprocess.run(["node", str(EXPANDER)], input=body, capture_output=True, check=True, timeout=60)
    return sorted(dt.datetime.fromisoformat(o["start"].replace("Z", "+00:00")) for o in json.loads(done.stdout))


def test_a_series_is_one_event_with_rrule_tzid_vtimezone_and_exdate() -> None:
    first = dt.datetime(2027, 3, 2, 10, tzinfo=ZoneInfo("America/New_York"))
    body, _ = series_file("America/New_York", first, cancelled=(3,))
    cal = parse(body)
    (vtimezone,) = cal.walk("VTIMEZONE")
    assert str(vtimezone["TZID"]) == "America/New_York"
    (event,) = cal.walk("VEVENT")
    assert b"DTSTART;TZID=America/New_York:20270302T100000" in body
    assert event["RRULE"]["FREQ"] == ["WEEKLY"] and event["RRULE"]["COUNT"] == [6]
    assert b"EXDATE;TZID=America/New_York:20270323T100000" in body  # 10:00 EDT, after the change
    assert str(event["UID"]) == "series-s-1@teleroom.example.org"
    assert b"#k=" not in body and b"trw_" not in body


@pytest.mark.parametrize(
    ("zone", "first", "weeks_apart", "cancelled", "moved"),
    [
        ("America/New_York", dt.datetime(2027, 3, 2, 10), 1, (3,), None),
        ("Europe/London", dt.datetime(2027, 10, 5, 9, 30), 1, (0, 5), 2),
        ("Australia/Lord_Howe", dt.datetime(2027, 3, 20, 18), 2, (), 1),
        ("America/Santiago", dt.datetime(2027, 3, 30, 23), 1, (1,), None),
        ("Europe/Berlin", dt.datetime(2027, 1, 5, 8), 2, (2, 7), 4),
    ],
)
def test_a_series_file_reads_to_the_same_instants_in_icalendar_and_ical_js(
    zone: str, first: dt.datetime, weeks_apart: int, cancelled: tuple[int, ...], moved: int | None
) -> None:
    body, held = series_file(
        zone, first.replace(tzinfo=ZoneInfo(zone)), count=10, weeks_apart=weeks_apart, cancelled=cancelled, moved=moved
    )
    assert expanded_by_icalendar(body) == held
    assert expanded_by_ical_js(body) == held
