"""broker.mail.message writes MIME directly; the standard library reads it back as it was meant.

The oracle is the message the standard library's `EmailMessage` (policy SMTP) builds from the same
inputs, as the builder did before: parsed with `policy=default`, both give the same headers, the
same parts in the same order with the same parameters, and the same contents, for non-ASCII names
and subjects, long lines, and text that looks like MIME syntax."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import email.utils
import uuid
from email.headerregistry import Address
from email.message import EmailMessage

import asyncpg
import hypothesis
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from broker import outbox
from broker.app import create_app
from broker.clock import Clock
from broker.mail import message as mime
from broker.mail.render import RenderedMail
from broker.settings import Settings, SettingsError
from tests.support import Api, next_grid_start

SENDER = "Appointments <appointments@example.org>"
ORIGIN = "https://tr.example.org"
DATE = dt.datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)
ICS = "BEGIN:VCALENDAR\r\nNAME:Teleroom – Dr Zoë\r\nMETHOD:PUBLISH\r\nEND:VCALENDAR\r\n".encode()


def oracle(rendered: RenderedMail, *, sender: str, to: str, outbox_id: uuid.UUID, ics: bytes | None) -> EmailMessage:
    """The message as the standard library builds it."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = Address(addr_spec=to)
    msg["Subject"] = rendered.subject
    msg["Date"] = email.utils.format_datetime(DATE)
    msg["Message-ID"] = mime.message_id(outbox_id, ORIGIN)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if ics is not None:
        msg.make_mixed()
        msg.add_attachment(
            ics,
            maintype="text",
            subtype="calendar",
            filename="appointment.ics",
            params={"method": "PUBLISH", "charset": "utf-8"},
        )
    return msg


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def shape(msg: EmailMessage) -> list[tuple[str, dict[str, str], str | None, str | bytes | None]]:
    """Each part in order: content type, its parameters but the boundary, disposition, content."""
    out = []
    for part in msg.walk():
        assert isinstance(part, EmailMessage)
        params = {k: v for k, v in part["Content-Type"].params.items() if k != "boundary"}
        content = None if part.is_multipart() else part.get_content()
        out.append((part.get_content_type(), params, part.get_content_disposition(), content))
    return out


def build(
    rendered: RenderedMail, *, sender: str = SENDER, to: str = "client@example.org", ics: bytes | None = ICS
) -> tuple[EmailMessage, EmailMessage, bytes]:
    outbox_id = uuid.uuid4()
    made = mime.build(rendered, sender=sender, to=to, outbox_id=outbox_id, origin=ORIGIN, date=DATE, ics=ics)
    expected = oracle(rendered, sender=sender, to=to, outbox_id=outbox_id, ics=ics)
    return parse(made.data), parse(expected.as_bytes()), made.data


def assert_same(got: EmailMessage, expected: EmailMessage, subject: str) -> None:
    for name in ("From", "To", "Date", "Message-ID", "Auto-Submitted", "MIME-Version"):
        assert str(got[name]) == str(expected[name]), name
    # The subject reads back as given. (The standard library's folding can lose a space between
    # encoded words: "0¡ ¡ ¡" came back "0¡¡ ¡" from the oracle; hypothesis found it.)
    assert str(got["Subject"]) == subject
    assert got["Date"].datetime == DATE.replace(microsecond=0)
    assert shape(got) == shape(expected)
    for part in got.walk():
        assert not part.defects, part.defects


def mail(subject: str, text: str = "Hello,\nsee you.\n", html: str = "<p>Hello</p>\n") -> RenderedMail:
    return RenderedMail(template="confirmation", subject=subject, text=text, html=html)


def test_a_confirmation_has_the_headers_and_parts_the_standard_library_would_write() -> None:
    got, expected, raw = build(mail("Your appointment on Tue 1 Dec at 10:00 CET"))
    assert_same(got, expected, "Your appointment on Tue 1 Dec at 10:00 CET")
    assert [t for t, *_ in shape(got)] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar",
    ]  # fmt: skip
    calendar = list(got.walk())[-1]
    assert calendar.get_param("method") == "PUBLISH" and calendar.get_filename() == "appointment.ics"
    assert got["Auto-Submitted"] == "auto-generated"
    assert raw.count(b"\r\n") == raw.count(b"\n") and b"\r\n\r\n" in raw  # CRLF only


def test_without_a_calendar_file_it_is_an_alternative_of_text_and_html() -> None:
    got, expected, _ = build(mail("Your appointment is cancelled"), ics=None)
    assert_same(got, expected, "Your appointment is cancelled")
    assert [t for t, *_ in shape(got)] == ["multipart/alternative", "text/plain", "text/html"]


def test_non_ascii_names_and_subjects_and_long_lines_come_back_as_written() -> None:
    subject = "Ihr Termin am Dienstag, 1. Dezember um 10:00 MEZ bei Dr Zoë Ærøskøbing-Ñúñez 山田 – bestätigt " * 2
    text = "Grüße aus Köln. " * 40 + "\n" + "x" * 300 + "\ntrailing space \n.dot\nFrom here\n=3D not encoded\n"
    html = "<p>" + "Ünïcödé " * 80 + "</p>\n"
    got, expected, raw = build(
        mail(subject.strip(), text, html), sender="Praxis Müller-Lüdenscheidt <praxis@example.org>"
    )
    assert_same(got, expected, subject.strip())
    assert got["From"].addresses[0].display_name == "Praxis Müller-Lüdenscheidt"
    plain = next(p for p in got.walk() if p.get_content_type() == "text/plain")
    assert plain.get_content().replace("\r\n", "\n") == text
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert raw.isascii()


def test_a_long_ascii_subject_is_folded_at_spaces_and_unfolds_to_itself() -> None:
    subject = "Reminder: your appointment on Tue 1 Dec at 10:00 CET with Dr Ada Example of the Example Practice"
    got, expected, raw = build(mail(subject))
    assert_same(got, expected, subject)
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "Subject: Reminder" in head and "=?" not in head  # readable as it is
    assert max(len(line) for line in head.split("\r\n")) <= 78


def test_text_that_looks_like_an_encoded_word_or_a_boundary_stays_text() -> None:
    outbox_id = uuid.uuid4()
    trap = f"--=_{outbox_id.hex}_alt\n--=_{outbox_id.hex}_mix--\n"
    rendered = mail("=?utf-8?q?not_encoded?= really", trap, trap)
    made = mime.build(rendered, sender=SENDER, to="c@example.org", outbox_id=outbox_id, origin=ORIGIN, date=DATE)
    got = parse(made.data)
    assert str(got["Subject"]) == "=?utf-8?q?not_encoded?= really"
    assert [p.get_content().replace("\r\n", "\n") for p in got.walk() if not p.is_multipart()] == [trap, trap]


@pytest.mark.parametrize(
    "field",
    ["subject", "to", "sender"],
)
@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r"])
def test_a_line_break_in_any_header_value_is_refused(field: str, breaker: str) -> None:
    values = {"subject": "Hi", "to": "b@example.org", "sender": SENDER}
    values[field] = values[field] + breaker + "Bcc: victim@example.org"
    with pytest.raises(ValueError, match="linefeed"):
        mime.build(
            mail(values["subject"]),
            sender=values["sender"],
            to=values["to"],
            outbox_id=uuid.uuid4(),
            origin=ORIGIN,
            date=DATE,
        )


def test_an_international_domain_is_written_in_idna_and_a_non_ascii_mailbox_is_refused() -> None:
    made = mime.build(
        mail("Hi"), sender=SENDER, to="anna@bücher.example", outbox_id=uuid.uuid4(), origin=ORIGIN, date=DATE
    )
    assert made.recipient == "anna@xn--bcher-kva.example" and made.sender == "appointments@example.org"
    assert str(parse(made.data)["To"]) == "anna@xn--bcher-kva.example"
    for bad in ("zoë@example.org", "a b@example.org", 'a"b@example.org', "no-at-sign", "a@b@"):
        with pytest.raises(ValueError):
            mime.recipient(bad)


words = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")) | st.sampled_from("=?_-.:"),
    min_size=1,
    max_size=30,
)
bodies = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Co")) | st.sampled_from(["\r", "\n", " ", "=", ".", "\t"]),
    max_size=400,
)
names = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters='"\\'), max_size=40)


@hypothesis.settings(max_examples=120, deadline=None)
@given(subject=st.lists(words, min_size=1, max_size=20).map(" ".join), text=bodies, html=bodies, name=names)
def test_any_subject_body_and_sender_name_read_back_as_the_standard_librarys_message_does(
    subject: str, text: str, html: str, name: str
) -> None:
    sender = email.utils.formataddr((name.strip(), "appointments@example.org"))
    got, expected, raw = build(mail(subject, text, html), sender=sender)
    assert_same(got, expected, subject)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


# --- what the sender does with an address or setting the message cannot carry ---------------------


async def test_an_address_smtp_cannot_carry_fails_for_good_without_naming_it(
    api: Api, server: TestServer, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, session_type = await api.ready_therapist()
    start = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    status, booking = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={
            "session_type": session_type["id"],
            "start": start.isoformat(),
            "client": {"name": "Zoë Quux", "email": "zoë@example.org"},  # needs SMTPUTF8
        },
    )
    assert status == 201, booking
    await outbox.deliver_due(server.app)
    [row] = [m for m in await outbox.for_booking(db, uuid.UUID(booking["id"])) if m.kind == "client.confirmation"]
    assert row.state == "failed" and row.attempts == 1
    assert row.last_error is not None and row.last_error.startswith("refused before sending: ")
    assert "zoë" not in row.last_error and "example.org" not in row.last_error


def test_a_sender_setting_that_is_not_one_address_stops_the_start(settings: Settings) -> None:
    for bad in ("Appointments", "a@example.org, b@example.org", "Appointments <a@example.org>\r\nBcc: x@y.org"):
        with pytest.raises(SettingsError, match="TELEROOM_MAIL_FROM"):
            create_app(dataclasses.replace(settings, mail_from=bad))
