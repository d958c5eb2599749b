"""What a new booking is checked against, kept per node: its session type's rules and the therapist's hours.

Reading both costs a booking two round trips, and they change seldom. A node keeps the last read
for each therapist and session type, and never trusts it alone: the booking's insert repeats the
comparison inside PostgreSQL (`bookings.BOOK`: the type still active with the same
rules, the hours still of the same `updated_at`) and inserts nothing if either changed, whichever
node changed it; the booking then reads them afresh and tries again. Nor is a time refused on kept
rules: a time they do not offer is checked against a fresh read before the answer says so.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from aiohttp import web

from broker import availability, session_types
from broker.database import Executor
from broker.recent import Recent
from broker.session_types import SessionType
from calendars.slots import Availability

KEPT_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class Bookable:
    """A session type and its therapist's hours, as read at one moment."""

    session_type: SessionType
    hours: Availability
    hours_changed_at: dt.datetime | None  # None: the therapist has published no hours

    def compared(self) -> tuple[int, int, int, int, int, int, dt.datetime | None, list[int]]:
        """What the insert compares with the rows: the type's rules, when the hours last changed, and
        the type's reminder minutes (which its messages were made with)."""
        st = self.session_type
        return (
            st.duration_minutes,
            st.buffer_before_minutes,
            st.buffer_after_minutes,
            st.min_notice_minutes,
            st.horizon_days,
            st.slot_interval_minutes,
            self.hours_changed_at,
            st.reminder_minutes,
        )


async def read(conn: Executor, therapist_id: uuid.UUID, therapist_zone: str, raw_type: str) -> Bookable:
    """A fresh read: invalid input `unknown_session_type` unless the type is the therapist's and active."""
    session_type = await session_types.active(conn, therapist_id, raw_type)
    hours, changed_at = await availability.load(conn, therapist_id, therapist_zone)
    return Bookable(session_type, hours, changed_at)


@dataclass(frozen=True, slots=True)
class Quiet:
    """Checks a therapist's booking found nothing for: no busy calendar; no licence rule that refuses."""

    calendars: bool = False
    licences: bool = False


NOISY = Quiet()


@dataclass(frozen=True, slots=True)
class Audience:
    """Who hears of a therapist's new booking besides the client: whether the therapist asked to
    (`notify_bookings`), and the webhook endpoints that listen (`webhooks.LISTENER_IDS`, in order)."""

    notify_bookings: bool
    listeners: tuple[uuid.UUID, ...]


class Kept:
    """The last read of each therapist's session types on this node; the least recently used go first.

    It also remembers what a therapist's last booking here found of the checks that mostly have
    nothing to check (`Quiet`): no busy calendar, no licence rule that refuses; and who heard of it
    (`Audience`). Their next booking skips those queries, and its statement makes sure that is
    still so (`bookings.BOOK`)."""

    def __init__(self, entries: int = KEPT_ENTRIES) -> None:
        self._kept: Recent[tuple[uuid.UUID, str], Bookable] = Recent(entries)
        self._quiet: Recent[uuid.UUID, Quiet] = Recent(entries)
        self._audience: Recent[uuid.UUID, Audience] = Recent(entries)

    def audience(self, therapist_id: uuid.UUID) -> Audience | None:
        """Who heard of this therapist's last booking on this node (None: not known here)."""
        return self._audience.get(therapist_id)

    def heard(self, therapist_id: uuid.UUID, audience: Audience | None) -> None:
        """Note who hears of the therapist's bookings (None: forget it, it changed)."""
        if audience is None:
            self._audience.drop(therapist_id)
        else:
            self._audience.put(therapist_id, audience)

    def quiet(self, therapist_id: uuid.UUID) -> Quiet:
        """What this therapist's last booking on this node found nothing to check in (nothing known: NOISY)."""
        return self._quiet.get(therapist_id) or NOISY

    def seen(self, therapist_id: uuid.UUID, quiet: Quiet) -> None:
        """Note what a booking's insert found for the therapist."""
        if quiet == NOISY:
            self._quiet.drop(therapist_id)
        else:
            self._quiet.put(therapist_id, quiet)

    def get(self, therapist_id: uuid.UUID, raw_type: str) -> Bookable | None:
        return self._kept.get((therapist_id, raw_type))

    def put(self, therapist_id: uuid.UUID, raw_type: str, value: Bookable) -> None:
        self._kept.put((therapist_id, raw_type), value)


KEPT = web.AppKey("bookable_kept", Kept)
