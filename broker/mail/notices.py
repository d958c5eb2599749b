"""The notice hook that queues emails, inside the transaction of the change that causes them.

What each notice queues (kinds are the outbox's `kind`):

- `booking.created`: the client's `client.confirmation` (with the booking key, sealed), a
  `client.reminder` at each of the session type's `reminder_minutes` before the start that is
  still ahead, and, if the therapist turned notices on and did not make the booking, a
  `therapist.notice`;
- `booking.rescheduled`: `client.rescheduled`; the booking's pending reminders are withdrawn and
  new ones queued for the new time (the sealed key is copied from the booking's earlier messages);
- `booking.cancelled` / `booking.late_cancelled`: `client.cancelled` (the fee line is decided when
  it is sent), reminders withdrawn, and the therapist's notice if on;
- `series.created`: one `client.series_confirmation` (with the series key) and reminders for each
  booked session (their links open the session with the series key); the therapist's notice;
- `series.cancelled`: one `client.cancelled` for the sessions cancelled together, their reminders
  withdrawn, the therapist's notice.

A row holds ids, times and the kind of key it carries (`payload.key`: `booking` or `series`),
never a name or an address; the sender reads those from the records when it sends
(`broker.mail.compose`). The key is sealed (`broker.sealing`) under a context naming the kind of
secret and whose it is: `teleroom.mail.booking-key:<booking id>`, `teleroom.mail.series-key:<series
id>`, `teleroom.mail.password-link:<therapist id>`; a sealed value moved to another row does not
open there, and every message of one booking can share its sealed key.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
from aiohttp import web

from broker import bookings, outbox, session_types
from broker.clock import CLOCK
from broker.database import Executor
from broker.mail import preferences
from broker.notices import NOTICES, Notice
from broker.outbox import NewMessage
from broker.sealing import SEALER, Sealer

CONFIRMATION = "client.confirmation"
SERIES_CONFIRMATION = "client.series_confirmation"
RESCHEDULED = "client.rescheduled"
CANCELLED = "client.cancelled"
REMINDER = "client.reminder"
THERAPIST_NOTICE = "therapist.notice"
PASSWORD_INVITE = "password.invite"
PASSWORD_RESET = "password.reset"
KINDS = (
    CONFIRMATION,
    SERIES_CONFIRMATION,
    RESCHEDULED,
    CANCELLED,
    REMINDER,
    THERAPIST_NOTICE,
    PASSWORD_INVITE,
    PASSWORD_RESET,
)

KeyKind = Literal["booking", "series"]


def key_context(kind: KeyKind, owner: uuid.UUID) -> str:
    """The sealing context of a client's key: which kind of key, and whose."""
    return f"teleroom.mail.{kind}-key:{owner}"


def password_link_context(therapist_id: uuid.UUID) -> str:
    return f"teleroom.mail.password-link:{therapist_id}"


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _email(
    kind: str, recipient: outbox.Recipient, therapist_id: uuid.UUID, due: dt.datetime, **fields: Any
) -> NewMessage:
    return NewMessage(channel="email", kind=kind, recipient=recipient, due_at=due, therapist_id=therapist_id, **fields)


def reminders(
    therapist_id: uuid.UUID,
    booking_id: uuid.UUID,
    start: dt.datetime,
    minutes: Sequence[int],
    now: dt.datetime,
    *,
    key: KeyKind | None,
    sealed: bytes | None,
    series_id: uuid.UUID | None = None,
) -> list[NewMessage]:
    """A reminder due `m` minutes before `start` for each `m`, except those already past."""
    return [
        _email(
            REMINDER,
            "client",
            therapist_id,
            start - dt.timedelta(minutes=m),
            booking_id=booking_id,
            series_id=series_id,
            payload={"key": key, "start": _iso(start), "minutes": m},
            sealed=sealed,
        )
        for m in sorted(set(minutes), reverse=True)
        if start - dt.timedelta(minutes=m) > now
    ]


async def _earlier_key(conn: Executor, booking_id: uuid.UUID) -> tuple[KeyKind | None, bytes | None, str | None]:
    """The sealed key a booking's earlier messages carried (and which kind), and the start the most
    recent of them was about."""
    key: KeyKind | None = None
    sealed: bytes | None = None
    start: str | None = None
    latest: dt.datetime | None = None
    for m in await outbox.for_booking(conn, booking_id):
        if m.channel != "email" or m.recipient != "client":
            continue
        data = m.data()
        if m.sealed is not None and data.get("key") in ("booking", "series"):
            key, sealed = data["key"], m.sealed
        if "start" in data and (latest is None or m.created_at >= latest):
            latest, start = m.created_at, data["start"]
    return key, sealed, start


class Hook:
    """Turns notices into the outbox rows they owe (`Notices.due` queues them on the change's connection)."""

    def __init__(self, sealer: Sealer, app: web.Application) -> None:
        self.sealer = sealer
        self.app = app

    async def __call__(self, conn: asyncpg.Connection, notice: Notice) -> list[NewMessage]:
        now = self.app[CLOCK].now()
        if notice.kind == "booking.created":
            return await self.booked(conn, notice, now)
        if notice.kind == "booking.rescheduled":
            return await self.rescheduled(conn, notice, now)
        if notice.kind in ("booking.cancelled", "booking.late_cancelled", "series.cancelled"):
            return await self.cancelled(conn, notice, now)
        if notice.kind == "series.created":
            return await self.series_booked(conn, notice, now)
        return []

    async def _therapist_notice(
        self, conn: Executor, notice: Notice, event: str, now: dt.datetime, notify: bool | None = None, **fields: Any
    ) -> list[NewMessage]:
        """The therapist's notice, if they asked for them (`notify`, read here when not given)."""
        if notice.by == "therapist":
            return []
        if notify is None:
            notify = (await preferences.get(conn, notice.therapist_id)).notify_bookings
        if not notify:
            return []
        payload = {"event": event, "bookings": [str(b) for b in notice.booking_ids]}
        return [_email(THERAPIST_NOTICE, "therapist", notice.therapist_id, now, payload=payload, **fields)]

    async def booked(self, conn: asyncpg.Connection, notice: Notice, now: dt.datetime) -> list[NewMessage]:
        """A new booking's messages, from its notice alone: it runs before the booking is written
        (`broker.bookings.BOOK`), which carries its start, its type's reminder minutes and whether
        the therapist asked to hear of bookings."""
        [booking_id] = notice.booking_ids
        start, minutes, notify = notice.start, notice.reminder_minutes, notice.notify_therapist
        assert start is not None and minutes is not None and notify is not None, "a new booking's notice says all"
        sealed = None
        if notice.secret is not None:
            sealed = self.sealer.seal_text(notice.secret, key_context("booking", booking_id))
        queued = [
            _email(
                CONFIRMATION,
                "client",
                notice.therapist_id,
                now,
                booking_id=booking_id,
                payload={"key": "booking", "start": _iso(start)},
                sealed=sealed,
            ),
            *reminders(notice.therapist_id, booking_id, start, minutes, now, key="booking", sealed=sealed),
            *await self._therapist_notice(conn, notice, "booked", now, notify=notify, booking_id=booking_id),
        ]
        return queued

    async def rescheduled(self, conn: asyncpg.Connection, notice: Notice, now: dt.datetime) -> list[NewMessage]:
        [booking_id] = notice.booking_ids
        booking = await bookings.get(conn, booking_id)
        session_type = await session_types.get(conn, booking.session_type_id)
        key, sealed, previous = await _earlier_key(conn, booking_id)
        await outbox.withdraw(conn, [booking_id], [REMINDER])
        queued = [
            _email(
                RESCHEDULED,
                "client",
                notice.therapist_id,
                now,
                booking_id=booking_id,
                series_id=booking.series_id,
                payload={"key": key, "start": _iso(booking.starts_at), "previous_start": previous},
                sealed=sealed,
            ),
            *reminders(
                notice.therapist_id,
                booking_id,
                booking.starts_at,
                session_type.reminder_minutes,
                now,
                key=key,
                sealed=sealed,
                series_id=booking.series_id,
            ),
        ]
        return queued

    async def cancelled(self, conn: asyncpg.Connection, notice: Notice, now: dt.datetime) -> list[NewMessage]:
        ids = list(notice.booking_ids)
        if not ids:
            return []
        key, sealed, _ = await _earlier_key(conn, ids[0])
        await outbox.withdraw(conn, ids, [REMINDER])
        event = {"booking.late_cancelled": "late_cancelled", "series.cancelled": "series_cancelled"}.get(
            notice.kind, "cancelled"
        )
        single = ids[0] if len(ids) == 1 else None
        queued = [
            _email(
                CANCELLED,
                "client",
                notice.therapist_id,
                now,
                booking_id=single,
                series_id=notice.series_id,
                payload={"key": key, "bookings": [str(b) for b in ids], "by": notice.by},
                sealed=sealed,
            ),
            *await self._therapist_notice(conn, notice, event, now, booking_id=single, series_id=notice.series_id),
        ]
        return queued

    async def series_booked(self, conn: asyncpg.Connection, notice: Notice, now: dt.datetime) -> list[NewMessage]:
        series_id = notice.series_id
        if series_id is None or not notice.booking_ids:
            return []
        sealed = None
        if notice.secret is not None:
            sealed = self.sealer.seal_text(notice.secret, key_context("series", series_id))
        queued = [
            _email(
                SERIES_CONFIRMATION,
                "client",
                notice.therapist_id,
                now,
                series_id=series_id,
                payload={"key": "series", "bookings": [str(b) for b in notice.booking_ids]},
                sealed=sealed,
            )
        ]
        minutes: dict[uuid.UUID, list[int]] = {}
        for booking_id in notice.booking_ids:
            booking = await bookings.get(conn, booking_id)
            if booking.session_type_id not in minutes:
                minutes[booking.session_type_id] = (
                    await session_types.get(conn, booking.session_type_id)
                ).reminder_minutes
            queued += reminders(
                notice.therapist_id,
                booking_id,
                booking.starts_at,
                minutes[booking.session_type_id],
                now,
                key="series",
                sealed=sealed,
                series_id=series_id,
            )
        queued += await self._therapist_notice(conn, notice, "series_booked", now, series_id=series_id)
        return queued


async def queue_password_link(
    conn: Executor,
    sealer: Sealer,
    therapist_id: uuid.UUID,
    purpose: Literal["invite", "reset"],
    secret: str,
    expires_at: dt.datetime,
    now: dt.datetime,
) -> uuid.UUID:
    """Queue the therapist's invite or reset email (its link's secret sealed), in the caller's
    transaction, so the email exists exactly when the link does."""
    [message_id] = await outbox.enqueue(
        conn,
        [
            _email(
                PASSWORD_INVITE if purpose == "invite" else PASSWORD_RESET,
                "therapist",
                therapist_id,
                now,
                payload={"expires_at": _iso(expires_at)},
                sealed=sealer.seal_text(secret, password_link_context(therapist_id)),
            )
        ],
        now,
    )
    return message_id


def setup(app: web.Application) -> None:
    app[NOTICES].hooks.append(Hook(app[SEALER], app))
