"""An email as mail systems expect it (RFC 5322, MIME), written straight to the bytes SMTP sends.

`build` takes a rendered message and returns the envelope and the bytes: `From`, `To`, `Subject`,
`Date`, a `Message-ID` that is the outbox row's id at our host (the same on every attempt, so a
receiver can recognise a duplicate), `Auto-Submitted: auto-generated` (RFC 3834 5.1: no vacation
replies), a `multipart/alternative` with the `text/plain` part first (always there) and the HTML
second, and, for confirmations, the `.ics` as `text/calendar; method=PUBLISH` (RFC 6047 2.4 names
the method parameter; the body carries `METHOD:PUBLISH`, RFC 5546 1.4) in a `multipart/mixed`.

Why not `email.message.EmailMessage`: its header registry parses every value it is given and its
generator refolds it, which cost a delivering node about 4 ms of CPU per message, more than
everything else it does. The shape of these messages is fixed, so they are written directly:

- A header value holding a CR or LF is refused (`ValueError`), whatever the caller let through:
  no header injection. The subject is written as it is when it is printable ASCII, folded at
  spaces to 78 columns (RFC 5322 2.2.3); otherwise as RFC 2047 encoded words (UTF-8, base64),
  each whole characters and short enough for 76-column lines. The sender's header is made once
  per setting by the standard library (RFC 2047 for a non-ASCII display name).
- The recipient must be a dot-atom address (RFC 5322 3.4.1); a non-ASCII domain is written in
  IDNA form, a non-ASCII local part is refused (it would need SMTPUTF8).
- Bodies are quoted-printable (text, HTML) and base64 (the calendar file), encoded by `binascii`,
  with CRLF line ends. The boundaries are `=_` and the message id: neither encoding can produce
  `=_`, so no body line can ever be taken for a boundary.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.policy
import email.utils
import re
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from functools import lru_cache
from urllib.parse import urlsplit

from broker.mail.render import RenderedMail

CRLF = "\r\n"
LINE = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
# Printable ASCII without "=?" (which a reader would take for the start of an encoded word).
_PLAIN_SUBJECT = re.compile(r"(?:[ -<>-~]|=(?!\?))*")
_FILENAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_WORD_BYTES = 39  # UTF-8 bytes per encoded word: "=?utf-8?b?" + 52 base64 chars + "?=" = 64 columns


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One email as handed to SMTP: the envelope's sender and recipient, and the message's bytes."""

    sender: str
    recipient: str
    data: bytes

    def __repr__(self) -> str:  # never the address
        return f"Outgoing({len(self.data)} bytes)"


def message_id(outbox_id: uuid.UUID, origin: str) -> str:
    """`<outbox id@host of the public origin>`: stable across attempts, unique to the message."""
    return f"<{outbox_id}@{_host(origin)}>"


@lru_cache(maxsize=16)
def _host(origin: str) -> str:
    return urlsplit(origin).hostname or "teleroom.invalid"


def _refuse_line_breaks(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} holds a carriage return or linefeed: refused (header injection)")


@lru_cache(maxsize=16)
def from_header(mail_from: str) -> tuple[str, str]:
    """The `From:` line and the envelope sender of TELEROOM_MAIL_FROM, made once by the standard
    library (ValueError if it is not one address; the sender checks it at start)."""
    _refuse_line_breaks("From", mail_from)
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = mail_from
    header = msg["From"]
    addresses = header.addresses
    if len(addresses) != 1 or not addresses[0].addr_spec or "@" not in addresses[0].addr_spec:
        raise ValueError("must be one address, as `Name <address>` or `address`")
    return header.fold(policy=email.policy.SMTP), addresses[0].addr_spec


def recipient(to: str) -> str:
    """The address as the `To` header and `RCPT TO` carry it: ASCII, the domain in IDNA form."""
    _refuse_line_breaks("To", to)
    local, at, domain = to.rpartition("@")
    if not at or not _DOT_ATOM.fullmatch(local):
        raise ValueError("the recipient's address is not a plain ASCII address (local part)")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("the recipient's domain cannot be written in IDNA form") from None
    if not _DOT_ATOM.fullmatch(domain):
        raise ValueError("the recipient's address is not a plain address (domain)")
    return f"{local}@{domain}"


def subject_header(subject: str) -> str:
    """`Subject: ...` with its CRLF: folded plain ASCII, or RFC 2047 encoded words (RFC 2047 2, 5)."""
    _refuse_line_breaks("Subject", subject)
    if _PLAIN_SUBJECT.fullmatch(subject) and all(len(w) < LINE - 10 for w in subject.split(" ")):
        return _fold_plain("Subject: " + subject) + CRLF
    words = []
    chunk: list[str] = []
    size = 0
    for char in subject:
        width = len(char.encode())
        if size + width > _WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += width
    words.append("".join(chunk))
    encoded = [f"=?utf-8?b?{binascii.b2a_base64(w.encode(), newline=False).decode()}?=" for w in words]
    return "Subject: " + (CRLF + " ").join(encoded) + CRLF


def _fold_plain(line: str) -> str:
    """Fold at spaces so lines stay within 78 columns (each fold keeps its space: RFC 5322 2.2.3)."""
    if len(line) <= LINE:
        return line
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > LINE:
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return CRLF.join(out)


def _quoted_printable(text: str) -> bytes:
    """RFC 2045 6.7 with CRLF lines of at most 76 columns; any line end in `text` becomes CRLF."""
    lines = text.encode().splitlines()
    body: bytes = binascii.b2a_qp(b"\r\n".join(lines) + b"\r\n", istext=True)
    return body


def _base64(data: bytes) -> bytes:
    """RFC 2045 6.8: lines of 76 characters."""
    return b"".join(binascii.b2a_base64(data[i : i + 57]).replace(b"\n", b"\r\n") for i in range(0, len(data), 57))


def _text_part(subtype: str, text: str) -> bytes:
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    return head.encode() + _quoted_printable(text)


def _multipart(subtype: str, boundary: str, parts: list[bytes]) -> bytes:
    """A multipart body (RFC 2046 5.1.1): its Content-Type line, then each part after a boundary line."""
    head = f'Content-Type: multipart/{subtype};\r\n boundary="{boundary}"\r\n\r\n'.encode()
    delimiter = f"--{boundary}\r\n".encode()
    return head + b"".join(delimiter + part + b"\r\n" for part in parts) + f"--{boundary}--\r\n".encode()


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
) -> Outgoing:
    """The envelope and the bytes of one rendered email to one address (ValueError: refused)."""
    from_line, envelope_sender = from_header(sender)
    address = recipient(to)
    if not _FILENAME.fullmatch(ics_name):
        raise ValueError("the calendar file's name must be letters, digits, dots, dashes or underscores")
    head = (
        f"{from_line}"
        f"To: {address}\r\n"
        f"{subject_header(rendered.subject)}"
        f"Date: {email.utils.format_datetime(date.astimezone(dt.UTC))}\r\n"
        f"Message-ID: {message_id(outbox_id, origin)}\r\n"
        "Auto-Submitted: auto-generated\r\n"
        "MIME-Version: 1.0\r\n"
    ).encode()
    marker = outbox_id.hex
    body = _multipart(
        "alternative", f"=_{marker}_alt", [_text_part("plain", rendered.text), _text_part("html", rendered.html)]
    )
    if ics is not None:
        calendar = (
            'Content-Type: text/calendar; method="PUBLISH"; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: base64\r\n"
            f'Content-Disposition: attachment; filename="{ics_name}"\r\n\r\n'
        ).encode() + _base64(ics)
        body = _multipart("mixed", f"=_{marker}_mix", [body, calendar])
    return Outgoing(sender=envelope_sender, recipient=address, data=head + body)
