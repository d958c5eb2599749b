"""The outbox's email sender: compose at send time, then SMTP (aiosmtplib), or `.eml` files without SMTP.

`TELEROOM_SMTP_URL`: `smtp://` connects and upgrades with STARTTLS (port 587 unless given),
`smtps://` speaks TLS from the start (port 465). The server's certificate is verified against the
system's CAs or, with `TELEROOM_SMTP_CA_FILE`, a private CA; there is no switch that turns
verification off. A relay without TLS (one on the same host) must be asked for in the URL:
`smtp://localhost:25?starttls=off`. User and password come from the URL (percent-decoded) or the
password from `TELEROOM_SMTP_PASSWORD_FILE`, which wins.

Connections are kept and reused: up to one per message in flight (the outbox worker sends
`outbox.CONCURRENCY` at a time), each returned to the pool after a send, dropped after any error.
A reused connection the server has closed meanwhile is replaced and the message sent on the new
one. Outcomes: accepted -> delivered; a recipient or the message refused with 5xx, or an address
the message cannot carry (`broker.mail.message`: not ASCII, a header with a line break) -> failed
for good (the dashboard shows it; it can be sent again once the address is corrected); 4xx,
timeouts and connection errors -> tried again later (the outbox's backoff). Errors recorded say
the code and what failed, never the address (a server's reply may echo it).

Without `TELEROOM_SMTP_URL` every email is written to `<data dir>/mail/<message id>.eml` (whole or
not at all) and the log says where, once at start and then by message id.

A message that is no longer needed (`broker.mail.compose`: a reminder of a cancelled or moved
session, a notice turned off since) is withdrawn, not sent: its row ends `withdrawn`, which the
dashboard tells apart from delivered and failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
from aiohttp import web

from broker import outbox
from broker.clock import CLOCK
from broker.database import POOL
from broker.mail import message as mime
from broker.mail.compose import Composer
from broker.outbox import SENDERS, Message, Outcome
from broker.sealing import SEALER
from broker.settings import SETTINGS, Settings, SettingsError

log = logging.getLogger("teleroom.mail")

SMTP_TIMEOUT_SECONDS = 30.0
MAIL_DIR = "mail"


@dataclass(frozen=True, slots=True)
class Server:
    """Where and how to reach the SMTP server (parsed once from the settings)."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never the password
        return f"Server({self.host}:{self.port}, tls={self.implicit_tls}, starttls={self.starttls})"


def server(settings: Settings) -> Server | None:
    """The SMTP server of TELEROOM_SMTP_URL (None: write .eml files); SettingsError if malformed."""
    if not settings.smtp_url:
        return None
    parts = urlsplit(settings.smtp_url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise SettingsError("TELEROOM_SMTP_URL must look like smtp://user:password@host:587 or smtps://host:465")
    query = parse_qs(parts.query)
    starttls_off = query.get("starttls", [""])[-1].lower() in ("off", "false", "no", "0")
    if starttls_off and parts.scheme == "smtps":
        raise SettingsError("TELEROOM_SMTP_URL: starttls=off makes no sense with smtps://")
    try:
        port = parts.port
    except ValueError:
        raise SettingsError("TELEROOM_SMTP_URL has an invalid port") from None
    password = unquote(parts.password) if parts.password is not None else None
    if settings.smtp_password_file is not None:
        try:
            password = settings.smtp_password_file.read_text().splitlines()[0]
        except (OSError, IndexError):
            raise SettingsError(f"TELEROOM_SMTP_PASSWORD_FILE {settings.smtp_password_file}: cannot read it") from None
    return Server(
        host=parts.hostname,
        port=port or (465 if parts.scheme == "smtps" else 587),
        implicit_tls=parts.scheme == "smtps",
        starttls=parts.scheme == "smtp" and not starttls_off,
        username=unquote(parts.username) if parts.username else None,
        password=password,
    )


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verification on, always: the system's CAs, or the private CA of TELEROOM_SMTP_CA_FILE."""
    cafile = str(settings.smtp_ca_file) if settings.smtp_ca_file is not None else None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError):
        raise SettingsError(f"TELEROOM_SMTP_CA_FILE {cafile}: cannot read a PEM certificate from it") from None


def _refusal(exc: aiosmtplib.SMTPException) -> Outcome:
    """An SMTP error as an outcome: 5xx for the recipient or the message is final, the rest is retried."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        code = exc.recipients[0].code
        return Outcome(False, status=code, error=f"recipient refused ({code})", permanent=500 <= code < 600)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        what = "recipient refused" if isinstance(exc, aiosmtplib.SMTPRecipientRefused) else "message refused"
        return Outcome(False, status=exc.code, error=f"{what} ({exc.code})", permanent=500 <= exc.code < 600)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return Outcome(False, status=exc.code, error=f"{type(exc).__name__} ({exc.code})")
    return Outcome(False, error=type(exc).__name__)


class Connections:
    """Open SMTP connections, reused across messages: at most `size` at once."""

    def __init__(self, target: Server, tls: ssl.SSLContext, size: int) -> None:
        self.target = target
        self.tls = tls
        self.idle: list[aiosmtplib.SMTP] = []
        self.gate = asyncio.Semaphore(size)
        self.opened = 0  # connections made (tests and the benchmark read it)

    async def _open(self) -> aiosmtplib.SMTP:
        t = self.target
        client = aiosmtplib.SMTP(
            hostname=t.host,
            port=t.port,
            use_tls=t.implicit_tls,
            start_tls=t.starttls,
            tls_context=self.tls if (t.implicit_tls or t.starttls) else None,
            timeout=SMTP_TIMEOUT_SECONDS,
        )
        await client.connect()
        if t.username is not None and t.password is not None:
            await client.login(t.username, t.password)
        self.opened += 1
        return client

    @staticmethod
    async def _drop(client: aiosmtplib.SMTP) -> None:
        with contextlib.suppress(Exception):
            client.close()

    async def send(self, mail: mime.Outgoing) -> int:
        """Send on a pooled connection (a fresh one if the reused one was closed); the reply code."""
        async with self.gate:
            for attempt in (1, 2):
                reused = bool(self.idle)
                client = self.idle.pop() if reused else await self._open()
                try:
                    # The bytes as built: send_message would flatten a message object again.
                    _, reply = await client.sendmail(mail.sender, [mail.recipient], mail.data)
                except aiosmtplib.SMTPServerDisconnected:
                    await self._drop(client)
                    if reused and attempt == 1:
                        continue  # the server closed an idle connection: once more on a new one
                    raise
                except BaseException:
                    await self._drop(client)
                    raise
                self.idle.append(client)
                return int(reply.split()[0]) if reply[:3].isdigit() else 250
        raise AssertionError("unreachable")

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for client in idle:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await client.quit()
            await self._drop(client)


def _write_eml(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.eml"
    draft = folder / f".{name}.{os.getpid()}.tmp"
    draft.write_bytes(data)
    os.replace(draft, path)  # whole or not at all
    return path


class MailSender:
    """outbox.Sender for the `email` channel."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        settings = app[SETTINGS]
        self.settings = settings
        self.composer = Composer(app[SEALER], settings.origin)
        try:
            mime.from_header(settings.mail_from)
        except ValueError as exc:
            raise SettingsError(f"TELEROOM_MAIL_FROM: {exc}") from None
        target = server(settings)
        self.connections = (
            Connections(target, tls_context(settings), outbox.CONCURRENCY) if target is not None else None
        )
        self.folder = settings.data_dir / MAIL_DIR
        if target is None:
            log.info("no TELEROOM_SMTP_URL: emails are written as .eml files under %s", self.folder)
        else:
            log.info("emails go through SMTP at %s:%d", target.host, target.port)

    async def send(self, message: Message) -> Outcome:
        app = self.app
        now = app[CLOCK].now()
        async with app[POOL].acquire() as conn:
            composed = await self.composer.compose(conn, message, now)
            if composed is None:
                await outbox.not_needed(conn, message.id)
                log.info("message %s (%s) is no longer needed: withdrawn", message.id, message.kind)
                return Outcome(True, error="not needed")
        try:
            mail = mime.build(
                composed.rendered,
                sender=self.settings.mail_from,
                to=composed.to,
                outbox_id=message.id,
                origin=self.settings.origin,
                date=now,
                ics=composed.ics,
            )
        except ValueError as exc:  # an address SMTP cannot carry, a header with a line break
            return Outcome(False, error=f"refused before sending: {exc}", permanent=True)
        if self.connections is None:
            path = await asyncio.to_thread(_write_eml, self.folder, str(message.id), mail.data)
            log.info("message %s (%s) written to %s", message.id, message.kind, path)
            return Outcome(True)
        try:
            status = await self.connections.send(mail)
        except aiosmtplib.SMTPException as exc:
            return _refusal(exc)
        except (OSError, TimeoutError) as exc:
            return Outcome(False, error=type(exc).__name__)
        return Outcome(True, status=status)

    async def close(self) -> None:
        if self.connections is not None:
            await self.connections.close()


def setup(app: web.Application) -> None:
    app[SENDERS]["email"] = MailSender(app)
