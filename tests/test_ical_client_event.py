"""calendars.ical.render_client_event writes a client's .ics line by line; icalendar is the oracle.

The oracle below is how the file was built before (icalendar's component tree), with one fix:
icalendar does not know NAME (RFC 7986 5.1) and X-WR-CALNAME and wrote them unescaped, so a comma
or backslash in a therapist's name went out raw (and a line break would break the file); they are
TEXT, escaped like SUMMARY. For any name the direct writer's bytes are the oracle's bytes, and
icalendar reads every value back as given."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import icalendar
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import vText

from calendars.ical import ClientEvent, _calendar, _client_vevent, render_client_event

ORIGIN = "https://teleroom.example.org"
START = dt.datetime(2026, 3, 29, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))


def oracle(event: ClientEvent) -> bytes:
    """The client's file as icalendar builds it."""
    name = f"Teleroom – {event.therapist_name}"
    cal = _calendar(name, None)
    cal["NAME"] = cal["X-WR-CALNAME"] = vText(name)
    cal.add_component(_client_vevent(event))
    body: bytes = cal.to_ical()
    return body


def event(**changes: object) -> ClientEvent:
    base = ClientEvent(
        booking_id="5b1c9f4e-8d3a-4c47-9a0e-2f6b7d1e3c55",
        start=START,
        end=START + dt.timedelta(minutes=50),
        sequence=2,
        created=START - dt.timedelta(days=3, microseconds=41),
        updated=START - dt.timedelta(days=1, seconds=7, microseconds=999),
        session_type="Individual session",
        therapist_name="Dr Grace Hopper",
        origin=ORIGIN,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_plain_event_is_byte_for_byte_what_icalendar_writes() -> None:
    for cancelled in (False, True):
        plain = event(cancelled=cancelled)
        assert render_client_event(plain) == oracle(plain)


def test_long_and_non_ascii_lines_fold_as_icalendar_folds_them() -> None:
    for name in (
        "Dr " + "Ærøskøbing-" * 12,
        "Dr Zoë Ç" + "\\" * 80,  # a backslash escape at every fold
        "Dr 山田 太郎 " * 9,
        "Dr 🦉" * 40,
        "x" * 56 + "\\,",  # the escape lands exactly on the 74th octet
        "Dr Plain Ascii " + "\\" * 80,  # the same on all-ASCII lines (cut by position)
        "Dr Plain Ascii " + ",;^" * 40,
    ):
        for session_type in ("Individual session", "Séance; longue, très longue " * 3):
            one = event(therapist_name=name, session_type=session_type)
            assert render_client_event(one) == oracle(one), name


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Co"))
    | st.sampled_from([",", ";", "\\", ":", '"', "^", "\r", "\n"]),
    min_size=1,
    max_size=160,
)


@settings(max_examples=150, deadline=None)
@given(therapist=names, session_type=names, sequence=st.integers(0, 10_000), cancelled=st.booleans())
def test_any_names_give_icalendars_bytes_and_read_back_as_given(
    therapist: str, session_type: str, sequence: int, cancelled: bool
) -> None:
    one = event(therapist_name=therapist, session_type=session_type, sequence=sequence, cancelled=cancelled)
    body = render_client_event(one)
    # icalendar turns a literal backslash-N into a line break; the direct writer escapes it.
    if "\\N" not in therapist + session_type:
        assert body == oracle(one)
    assert all(len(line.encode()) <= 75 for line in body.decode().split("\r\n"))
    (vevent,) = icalendar.Calendar.from_ical(body).walk("VEVENT")
    assert str(vevent["SUMMARY"]) == _lines_as_read(f"{session_type} with {therapist}")
    assert vevent.decoded("SEQUENCE") == sequence
    assert str(vevent["STATUS"]) == ("CANCELLED" if cancelled else "CONFIRMED")
    assert vevent.decoded("DTSTART") == START and vevent.decoded("DTEND") == START + dt.timedelta(minutes=50)


def _lines_as_read(text: str) -> str:
    """A value as a reader gets it back: any line break is the TEXT escape `\\n`, read as LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")
