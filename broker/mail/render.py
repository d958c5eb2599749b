"""Emails as text and HTML: typed inputs, Jinja2 templates from files, neutral subjects.

Each message has an input struct that holds only what that message may say. None of them has a
field for a client's email address or phone number, a specialty, a diagnosis, the therapist's
notes or another client, so no template can print one: there is nothing to print (the design
`calendars.ical.FeedEvent` follows). A session type's name is a field only where the therapist
let emails name it (`email_session_type`); a client's name reaches a therapist's notice only at
the detail tier the therapist chose.

The templates are files in `broker/mail/templates/`: `<name>.txt` (its first line is
`Subject: ...`, then a blank line, then the plain-text body) and `<name>.html` (the HTML body,
autoescaped). Both are rendered with `StrictUndefined`, so a misspelt variable fails loudly in
the tests and previews instead of sending a blank. Filters: `day` ("Tue 3 Dec"), `clock`
("10:00"), `date` ("Tuesday 3 December 2026") and `zone` (the time zone, as "CET").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Literal
from zoneinfo import ZoneInfo

import jinja2
import msgspec

from calendars.ical import initials

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LONG_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

Tier = Literal["busy", "initials", "full"]
TIERS: tuple[Tier, ...] = ("busy", "initials", "full")


class RenderedMail(msgspec.Struct, frozen=True):
    """A message ready for MIME: which template, its subject line, and both bodies."""

    template: str
    subject: str
    text: str
    html: str


# --- what each message may say ------------------------------------------------------------------


class Appointment(msgspec.Struct, frozen=True, kw_only=True):
    """One session as a client's email shows it: when (in `zone`), with whom, and the client's links.

    `session_type` is None unless the therapist lets emails name it. The links carry the client's
    key in the fragment; they are None when the message has no key to give (then the email points
    to the earlier confirmation)."""

    start: dt.datetime
    end: dt.datetime
    zone: str
    therapist_name: str
    session_type: str | None = None
    manage_url: str | None = None
    join_url: str | None = None


class Terms(msgspec.Struct, frozen=True, kw_only=True):
    """The cancellation terms a client agreed to: from when cancelling is late, and the fee then."""

    late_from: dt.datetime | None
    fee: str | None  # "60.00 EUR"


class Confirmation(msgspec.Struct, frozen=True, kw_only=True):
    template: Literal["confirmation"] = "confirmation"
    appointment: Appointment
    terms: Terms | None = None


class SeriesConfirmation(msgspec.Struct, frozen=True, kw_only=True):
    template: Literal["series_confirmation"] = "series_confirmation"
    sessions: list[Appointment]  # booked sessions, soonest first (each with its own links)
    frequency: Literal["weekly", "biweekly"]
    manage_url: str | None
    terms: Terms | None = None


class Rescheduled(msgspec.Struct, frozen=True, kw_only=True):
    template: Literal["rescheduled"] = "rescheduled"
    appointment: Appointment
    previous_start: dt.datetime | None = None


class Cancelled(msgspec.Struct, frozen=True, kw_only=True):
    template: Literal["cancelled"] = "cancelled"
    sessions: list[Appointment]  # one, or the sessions of a series cancelled together
    by_therapist: bool
    fee: str | None = None  # the late-cancellation fee owed, when one applies and was not waived
    book_again_url: str | None = None


class Reminder(msgspec.Struct, frozen=True, kw_only=True):
    template: Literal["reminder"] = "reminder"
    appointment: Appointment
    minutes_before: int


class Confidential(msgspec.Struct, frozen=True, kw_only=True):
    """For a client who asked for confidential messages: no time, no name, only the link."""

    template: Literal["confidential"] = "confidential"
    link: str | None
    update: bool = False  # a change to an appointment rather than a new one or a reminder


class PasswordLink(msgspec.Struct, frozen=True, kw_only=True):
    """An invite or a reset link for a therapist (to the therapist's own address)."""

    template: Literal["password_invite", "password_reset"]
    name: str
    url: str
    expires_at: dt.datetime
    zone: str


NoticeEvent = Literal["booked", "cancelled", "late_cancelled", "series_booked", "series_cancelled"]


class TherapistNotice(msgspec.Struct, frozen=True, kw_only=True):
    """A new booking or cancellation, told to the therapist at the detail tier they chose.

    `client` is what the tier allows: None (busy), initials, or the name; `session_type` is shown
    from the initials tier up, as in the therapist's feed."""

    template: Literal["therapist_notice"] = "therapist_notice"
    event: NoticeEvent
    starts: list[dt.datetime]
    zone: str
    client: str | None
    session_type: str | None
    dashboard_url: str


class ReviewAlert(msgspec.Struct, frozen=True, kw_only=True):
    """A client's questionnaire answers need the therapist's review (broker/safety_alerts.py): which client,
    what they answered and the score stay in the dashboard, so the message has no field for them."""

    template: Literal["review_alert"] = "review_alert"
    dashboard_url: str


Mail = (
    Confirmation
    | SeriesConfirmation
    | Rescheduled
    | Cancelled
    | Reminder
    | Confidential
    | PasswordLink
    | TherapistNotice
    | ReviewAlert
)


def client_label(name: str, tier: Tier) -> str | None:
    """What a therapist's notice may say of the client: nothing, initials ("J. D."), or the name."""
    if tier == "busy":
        return None
    if tier == "initials":
        return initials(name).replace(".", ". ").strip()
    return name


# --- formatting ---------------------------------------------------------------------------------


def _aware(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise TypeError(f"a time in an email must be a timezone-aware datetime, got {value!r}")
    return value


def day(value: dt.datetime) -> str:
    """ "Tue 3 Dec", in the value's own zone (put it there first: `local`)."""
    v = _aware(value)
    return f"{DAYS[v.weekday()]} {v.day} {MONTHS[v.month - 1]}"


def long_date(value: dt.datetime) -> str:
    v = _aware(value)
    return f"{LONG_DAYS[v.weekday()]} {v.day} {LONG_MONTHS[v.month - 1]} {v.year}"


def clock(value: dt.datetime) -> str:
    v = _aware(value)
    return f"{v.hour:02d}:{v.minute:02d}"


def zone_label(value: dt.datetime) -> str:
    """The zone as people read it: its abbreviation ("CET") where it has one, else the UTC offset."""
    v = _aware(value)
    name = v.tzname() or ""
    if name.isalpha():
        return name
    offset = v.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def local(value: dt.datetime, zone: str) -> dt.datetime:
    return _aware(value).astimezone(ZoneInfo(zone))


def when(value: dt.datetime, zone: str) -> str:
    """ "Tue 3 Dec at 10:00 CET": the subject lines' time, in `zone`."""
    v = local(value, zone)
    return f"{day(v)} at {clock(v)} {zone_label(v)}"


def before(minutes: int) -> str:
    """ "in 1 hour", "tomorrow"-free wording of a reminder's lead time."""
    if minutes % 1440 == 0:
        days = minutes // 1440
        return "in 1 day" if days == 1 else f"in {days} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "in 1 hour" if hours == 1 else f"in {hours} hours"
    return f"in {minutes} minutes"


@cache
def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    folder = str(resources.files("broker.mail") / "templates")
    common: dict[str, Any] = {
        "loader": jinja2.FileSystemLoader(folder),
        "undefined": jinja2.StrictUndefined,
        "keep_trailing_newline": True,
        "trim_blocks": True,
        "lstrip_blocks": True,
    }
    text = jinja2.Environment(autoescape=False, **common)  # noqa: S701  # plain text is not HTML
    html = jinja2.Environment(autoescape=True, **common)
    for env in (text, html):
        env.filters.update(day=day, date=long_date, clock=clock, zone=zone_label, before=before)
        env.globals.update(when=when, local=local)
    return text, html


_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")  # templates' conditional lines leave runs of blank lines


def _context(mail: Mail) -> dict[str, Any]:
    return {f: getattr(mail, f) for f in mail.__struct_fields__}


def render(mail: Mail) -> RenderedMail:
    """Both bodies and the subject of one message (its struct names its template)."""
    text_env, html_env = _environments()
    context = _context(mail)
    head, sep, body = text_env.get_template(f"{mail.template}.txt").render(context).partition("\n\n")
    if not sep or not head.startswith("Subject: ") or "\n" in head:
        raise ValueError(f"template {mail.template}.txt must start with one 'Subject: ...' line and a blank line")
    subject = " ".join(head.removeprefix("Subject: ").split())
    text = _BLANK_LINES.sub("\n\n", body.strip()) + "\n"
    html = html_env.get_template(f"{mail.template}.html").render(context)
    return RenderedMail(template=mail.template, subject=subject, text=text, html=html)


# --- sample data, for the dashboard's previews -------------------------------------------------

_ORIGIN = "https://teleroom.example.org"
_ZONE = "Europe/Berlin"
_START = dt.datetime(2026, 12, 1, 10, 0, tzinfo=ZoneInfo(_ZONE))
_ID = "00000000-0000-4000-8000-000000000000"


def _sample_appointment(start: dt.datetime = _START, *, session_type: str | None = None) -> Appointment:
    return Appointment(
        start=start,
        end=start + dt.timedelta(minutes=50),
        zone=_ZONE,
        therapist_name="Dr Ada Example",
        session_type=session_type,
        manage_url=f"{_ORIGIN}/manage/{_ID}#k=trk_sample",
        join_url=f"{_ORIGIN}/join/{_ID}#k=trk_sample",
    )


def _samples() -> Mapping[str, Mail]:
    terms = Terms(late_from=_START - dt.timedelta(hours=24), fee="60.00 EUR")
    weekly = [_sample_appointment(_START + dt.timedelta(weeks=i)) for i in range(4)]
    return {
        "confirmation": Confirmation(appointment=_sample_appointment(), terms=terms),
        "series_confirmation": SeriesConfirmation(
            sessions=weekly, frequency="weekly", manage_url=weekly[0].manage_url, terms=terms
        ),
        "rescheduled": Rescheduled(appointment=_sample_appointment(), previous_start=_START - dt.timedelta(days=1)),
        "cancelled": Cancelled(
            sessions=[_sample_appointment()], by_therapist=False, fee="60.00 EUR", book_again_url=f"{_ORIGIN}/book/x"
        ),
        "reminder": Reminder(appointment=_sample_appointment(), minutes_before=60),
        "confidential": Confidential(link=f"{_ORIGIN}/manage/{_ID}#k=trk_sample"),
        "password_invite": PasswordLink(
            template="password_invite",
            name="Dr Ada Example",
            url=f"{_ORIGIN}/invite#t=tri_sample",
            expires_at=_START + dt.timedelta(days=7),
            zone=_ZONE,
        ),
        "password_reset": PasswordLink(
            template="password_reset",
            name="Dr Ada Example",
            url=f"{_ORIGIN}/reset#t=trr_sample",
            expires_at=_START + dt.timedelta(hours=24),
            zone=_ZONE,
        ),
        "therapist_notice": TherapistNotice(
            event="booked",
            starts=[_START],
            zone=_ZONE,
            client=client_label("Jane Doe", "initials"),
            session_type="Consultation",
            dashboard_url=f"{_ORIGIN}/dashboard",
        ),
        "review_alert": ReviewAlert(dashboard_url=f"{_ORIGIN}/dashboard"),
    }


TEMPLATES: tuple[str, ...] = tuple(_samples())


def preview(template: str) -> RenderedMail:
    """A template rendered with sample data (no real person's); KeyError for an unknown name."""
    return render(_samples()[template])
