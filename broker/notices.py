"""Notices a change owes to people: the hook the outbound channel (email, webhooks) plugs into.

Every change a client or therapist should hear about (a booking made, moved or cancelled, a series
booked or cancelled) calls `Notices.due` inside the transaction that makes the change, so whatever
a hook writes (the outbox of the issue "Reaching people") commits or rolls back with it: nothing is
announced that did not happen, and nothing that happened goes unannounced. A notice carries ids and
the kind of change only; a hook reads what it may reveal from the records themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

import asyncpg
import msgspec
from aiohttp import web

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

    def __repr__(self) -> str:  # a notice may be logged; its secret never is
        return f"Notice({self.kind!r}, therapist={self.therapist_id}, bookings={len(self.booking_ids)})"


NoticeHook = Callable[[asyncpg.Connection, Notice], Awaitable[None]]


class Notices:
    """The hooks each notice runs, in order, on the connection of the change that causes it."""

    def __init__(self) -> None:
        self.hooks: list[NoticeHook] = []

    async def due(self, conn: asyncpg.Connection, notice: Notice) -> None:
        for hook in self.hooks:
            await hook(conn, notice)


# For callers that tell nobody (a series cancelling its occurrences announces the series once).
SILENT = Notices()
# The app's notices: parts that reach people append their hook in setup().
NOTICES = web.AppKey("notices", Notices)
