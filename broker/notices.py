"""Notices a change owes to people: the hook the outbound channel (email, webhooks) plugs into.

Every change a client or therapist should hear about (a booking made, moved or cancelled, a series
booked or cancelled) calls `Notices.due` inside the transaction that makes the change, so whatever
a hook writes (the outbox of the issue "Reaching people") commits or rolls back with it: nothing is
announced that did not happen, and nothing that happened goes unannounced. A notice carries ids and
the kind of change; a hook reads what it may reveal from the records themselves.

A hook returns the outbox messages it owes instead of writing them: `Notices.due` writes every
hook's messages in one `outbox.enqueue`, on the change's connection. A new booking goes further:
its notice carries everything its hooks need (its times, its type's reminder minutes, whether the
therapist asked to hear of bookings, which webhook endpoints listen), so its hooks run before it
(`Notices.owed`) and the booking's one statement writes their messages with it
(`broker.bookings.BOOK`), which makes sure those facts are still the stored ones.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import asyncpg
import msgspec
from aiohttp import web

from broker import outbox
from broker.outbox import NewMessage
from broker.principals import PrincipalKind

NoticeKind = Literal[
    "booking.created",
    "booking.rescheduled",
    "booking.cancelled",
    "booking.late_cancelled",
    "series.created",
    "series.cancelled",
]


class Notice(msgspec.Struct, frozen=True):
    """One change someone should hear about: what happened, to which bookings, and who did it."""

    kind: NoticeKind
    therapist_id: uuid.UUID
    booking_ids: tuple[uuid.UUID, ...]
    by: PrincipalKind
    series_id: uuid.UUID | None = None
    # The key the client was handed by this very change (a new booking's or series' key), for the
    # messages that must carry the client's link; a hook seals it before storing it, and it is
    # never logged. None for every other change.
    secret: str | None = msgspec.field(default=None)
    # What a new booking knows before it is written (its statement makes sure it is still so), so
    # its hooks read nothing; None where the change did not say (a hook then reads the records).
    # `start` and `end` are the booking's (the single one of `booking_ids`); `listeners` the
    # enabled webhook endpoints subscribed to this kind (`broker.webhooks.LISTENER_IDS`).
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    reminder_minutes: tuple[int, ...] | None = None
    notify_therapist: bool | None = None
    listeners: tuple[uuid.UUID, ...] | None = None

    def __repr__(self) -> str:  # a notice may be logged; its secret never is
        return f"Notice({self.kind!r}, therapist={self.therapist_id}, bookings={len(self.booking_ids)})"


# A hook returns the outbox messages it owes (or None when it queues nothing).
NoticeHook = Callable[[asyncpg.Connection, Notice], Awaitable[Sequence[NewMessage] | None]]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Notices:
    """The hooks each notice runs, in order, on the connection of the change that causes it.

    `now` is the clock the queued messages are stamped with (the app's, which tests move)."""

    def __init__(self, now: Callable[[], dt.datetime] = _utc_now) -> None:
        self.hooks: list[NoticeHook] = []
        self.now = now

    async def owed(self, conn: asyncpg.Connection, notice: Notice) -> list[NewMessage]:
        """Every hook's messages for a notice, not yet queued: for a change that queues them itself."""
        queued: list[NewMessage] = []
        for hook in self.hooks:
            owed = await hook(conn, notice)
            if owed:
                queued.extend(owed)
        return queued

    async def due(self, conn: asyncpg.Connection, notice: Notice) -> None:
        """Run every hook, then queue all their messages in one statement (none: no statement)."""
        queued = await self.owed(conn, notice)
        if queued:
            await outbox.enqueue(conn, queued, self.now())


# For callers that tell nobody (a series cancelling its occurrences announces the series once).
SILENT = Notices()
# The app's notices: parts that reach people append their hook in setup().
NOTICES = web.AppKey("notices", Notices)
