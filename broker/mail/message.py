"""An email as mail systems expect it (RFC 5322, MIME), built with the standard library's `email`.

`build` takes a rendered message and returns an `EmailMessage`: `From`, `To`, `Subject`, `Date`,
a `Message-ID` that is the outbox row's id at our host (the same on every attempt, so a receiver
can recognise a duplicate), `Auto-Submitted: auto-generated` (RFC 3834 5.1: no vacation replies),
a `multipart/alternative` with the `text/plain` part first (always there) and the HTML second,
and, for confirmations, the `.ics` as `text/calendar; method=PUBLISH` (RFC 6047 2.4 names the
method parameter; the body carries `METHOD:PUBLISH`, RFC 5546 1.4).

Headers are built by `email.policy.SMTP`'s header registry, which refuses a CR or LF in any
header value (header injection), whatever the API let through.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from urllib.parse import urlsplit

from broker.mail.render import RenderedMail

POLICY = email.policy.SMTP  # CRLF line ends, lines folded at 78, raise on a header with CR or LF


def message_id(outbox_id: uuid.UUID, origin: str) -> str:
    """`<outbox id@host of the public origin>`: stable across attempts, unique to the message."""
    host = urlsplit(origin).hostname or "teleroom.invalid"
    return f"<{outbox_id}@{host}>"


def build(
    rendered: RenderedMail,
    *,
    sender: str,
    to: str,
    outbox_id: uuid.UUID,
    origin: str,
    date: dt.datetime,
    ics: bytes | None = None,
    ics_name: str = "appointment.ics",
) -> EmailMessage:
    """The MIME message for one rendered email to one address."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = Address(addr_spec=to)
    msg["Subject"] = rendered.subject
    msg["Date"] = email.utils.format_datetime(date.astimezone(dt.UTC))
    msg["Message-ID"] = message_id(outbox_id, origin)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if ics is not None:
        # multipart/mixed: the alternative bodies, then the calendar file.
        msg.make_mixed()
        msg.add_attachment(
            ics,
            maintype="text",
            subtype="calendar",
            filename=ics_name,
            params={"method": "PUBLISH", "charset": "utf-8"},
        )
    return msg
