"""A queued email and the records it is about -> the email to send, or None when it is no longer needed.

Everything a message says is read here, when it is sent, from the records as they stand: the
booking (its time, status, policy), the client record (the address, and whether they asked for
confidential messages), the therapist (name, zone, preferences), the session type. The outbox
row only holds ids, times and the sealed key. So a corrected address is used, a therapist's
choice of detail applies to messages not yet sent, and a message about something that no longer
holds is not sent at all:

- a reminder whose session was cancelled, moved, or has started;
- a confirmation or a "moved" email whose booking was cancelled (its cancellation follows), or
  moved again (the later email says where to);
- a therapist's notice after the therapist turned notices off; a password link that expired.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import msgspec

from broker import bookings, clients, outbox, policies, safety_alerts, series, therapists
from broker.bookings import Booking
from broker.database import Executor, record_to
from broker.errors import NotFound
from broker.mail import notices, preferences, render
from broker.mail.render import Appointment, Mail, RenderedMail, Terms
from broker.sealing import Sealer, SealError
from calendars import ical

GENERIC_LABEL = "Appointment"  # the .ics summary when emails may not name the session type

# A message about one booking (a confirmation, a move, a reminder: most of what is sent) reads what
# it needs in one round trip: the booking as `bookings.get` reads it, the therapist's email
# preferences (`preferences.Preferences`) and the client record's address and wish for
# confidential messages (as `clients.of_booking` would give them).
SELECT_ABOUT_ONE = (
    """
SELECT b.*, t.notify_bookings, t.notice_detail, t.email_session_type,
       c.email AS record_email, c.confidential_messages AS record_confidential
FROM ("""
    + bookings.SELECT_BOOKING
    + """) b
JOIN therapists t ON t.id = b.therapist_id
LEFT JOIN clients c ON c.id = b.client_id
"""
)


class Composed(msgspec.Struct, frozen=True):
    """An email ready for MIME: the address, the rendered bodies, and the calendar file, if any."""

    to: str
    rendered: RenderedMail
    ics: bytes | None = None

    def __repr__(self) -> str:  # never the address
        return f"Composed({self.rendered.template})"


def _fee(fee: object) -> str | None:
    if fee is None:
        return None
    amount = getattr(fee, "amount", None)
    currency = getattr(fee, "currency", None)
    return f"{amount} {currency}" if amount and currency else None


class Composer:
    """Reads what one message may say and renders it (one per sender: holds the sealer and origin)."""

    def __init__(self, sealer: Sealer, origin: str) -> None:
        self.sealer = sealer
        self.origin = origin

    def _key(self, message: outbox.Message, owner: uuid.UUID | None) -> str | None:
        kind = message.data().get("key")
        if message.sealed is None or owner is None or kind not in ("booking", "series"):
            return None
        try:
            return self.sealer.open_text(message.sealed, notices.key_context(kind, owner))
        except SealError:
            return None  # another seal key: the email still goes, pointing at the earlier confirmation

    def _links(self, booking_id: uuid.UUID, key: str | None) -> tuple[str | None, str | None]:
        if key is None:
            return None, None
        return f"{self.origin}/manage/{booking_id}#k={key}", f"{self.origin}/join/{booking_id}#k={key}"

    async def _key_for(self, message: outbox.Message, booking: Booking) -> str | None:
        if message.data().get("key") == "series":
            return self._key(message, message.series_id or booking.series_id)
        return self._key(message, booking.id)

    def _appointment(self, booking: Booking, prefs: preferences.Preferences, key: str | None) -> Appointment:
        manage, join = self._links(booking.id, key)
        return Appointment(
            start=booking.starts_at,
            end=booking.ends_at,
            zone=booking.client_timezone or booking.therapist_timezone,
            therapist_name=booking.therapist_name,
            session_type=booking.session_type_name if prefs.email_session_type else None,
            manage_url=manage,
            join_url=join,
        )

    @staticmethod
    def _terms(booking: Booking) -> Terms | None:
        policy = booking.policy
        if policy is None or not policy.window_hours:
            return None
        return Terms(late_from=policy.window_opens(booking.starts_at), fee=_fee(policy.late_cancel_fee))

    @staticmethod
    async def _client(conn: Executor, booking: Booking) -> tuple[str, bool]:
        record = await clients.of_booking(conn, booking.id)
        if record is None:
            return booking.client_email, False
        return record.email, record.confidential_messages

    def _label(self, booking: Booking, prefs: preferences.Preferences) -> str:
        return booking.session_type_name if prefs.email_session_type else GENERIC_LABEL

    def _client_ics(self, booking: Booking, prefs: preferences.Preferences) -> bytes:
        return ical.render_client_event(
            ical.ClientEvent(
                booking_id=str(booking.id),
                start=booking.starts_at,
                end=booking.ends_at,
                sequence=booking.sequence,
                created=booking.created_at,
                updated=booking.updated_at,
                session_type=self._label(booking, prefs),
                therapist_name=booking.therapist_name,
                origin=self.origin,
            )
        )

    async def compose(self, conn: Executor, message: outbox.Message, now: dt.datetime) -> Composed | None:
        """The email this message is now, or None if it is no longer needed."""
        kind = message.kind
        if kind in (notices.PASSWORD_INVITE, notices.PASSWORD_RESET):
            return await self._password(conn, message, now)
        if kind == notices.THERAPIST_NOTICE:
            return await self._therapist_notice(conn, message)
        if kind == safety_alerts.REVIEW_ALERT:
            return await self._review_alert(conn, message)
        if kind == notices.SERIES_CONFIRMATION:
            return await self._series_confirmation(conn, message)
        if kind == notices.CANCELLED:
            return await self._cancelled(conn, message)
        if kind in (notices.CONFIRMATION, notices.RESCHEDULED, notices.REMINDER):
            return await self._about_one(conn, message, now)
        raise ValueError(f"no email for message kind {kind!r}")

    async def _about_one(self, conn: Executor, message: outbox.Message, now: dt.datetime) -> Composed | None:
        if message.booking_id is None:
            return None
        row = await conn.fetchrow(SELECT_ABOUT_ONE, message.booking_id)
        if row is None:
            return None
        booking = record_to(Booking, row)
        data = message.data()
        if booking.status != "confirmed":
            return None
        if (
            message.kind in (notices.RESCHEDULED, notices.REMINDER)
            and data.get("start") != booking.starts_at.astimezone(dt.UTC).isoformat()
        ):
            return None  # moved since: the email about the newer time says it
        if message.kind == notices.REMINDER and booking.starts_at <= now:
            return None
        prefs = record_to(preferences.Preferences, row)
        key = await self._key_for(message, booking)
        if row["record_email"] is None:  # a booking made before client records
            to, confidential = booking.client_email, False
        else:
            to, confidential = row["record_email"], bool(row["record_confidential"])
        appointment = self._appointment(booking, prefs, key)
        ics = None
        mail: Mail
        if confidential:
            mail = render.Confidential(link=appointment.manage_url, update=message.kind == notices.RESCHEDULED)
        elif message.kind == notices.CONFIRMATION:
            mail = render.Confirmation(appointment=appointment, terms=self._terms(booking))
            ics = self._client_ics(booking, prefs)
        elif message.kind == notices.RESCHEDULED:
            previous = data.get("previous_start")
            mail = render.Rescheduled(
                appointment=appointment,
                previous_start=dt.datetime.fromisoformat(previous) if isinstance(previous, str) else None,
            )
        else:
            mail = render.Reminder(appointment=appointment, minutes_before=int(data.get("minutes", 0)))
        return Composed(to=to, rendered=render.render(mail), ics=ics)

    async def _bookings(self, conn: Executor, message: outbox.Message) -> list[Booking]:
        ids = message.data().get("bookings") or ([str(message.booking_id)] if message.booking_id else [])
        found = []
        for raw in ids:
            try:
                found.append(await bookings.get(conn, uuid.UUID(raw)))
            except NotFound:
                continue
        return sorted(found, key=lambda b: b.starts_at)

    async def _series_confirmation(self, conn: Executor, message: outbox.Message) -> Composed | None:
        booked = [b for b in await self._bookings(conn, message) if b.status == "confirmed"]
        if not booked or message.series_id is None:
            return None  # every session was cancelled before this went out
        first = booked[0]
        prefs = await preferences.get(conn, first.therapist_id)
        key = self._key(message, message.series_id)
        record = await clients.of_series(conn, message.series_id)
        to, confidential = (record.email, record.confidential_messages) if record else (first.client_email, False)
        manage, _ = self._links(first.id, key)
        if confidential:
            return Composed(to=to, rendered=render.render(render.Confidential(link=manage)))
        found = await series.get(conn, message.series_id)
        event, _ = await series.series_event(
            conn, found, self.origin, label=None if prefs.email_session_type else GENERIC_LABEL
        )
        mail = render.SeriesConfirmation(
            sessions=[self._appointment(b, prefs, key) for b in booked],
            frequency=found.frequency,
            manage_url=manage,
            terms=self._terms(first),
        )
        return Composed(to=to, rendered=render.render(mail), ics=ical.render_series_event(event))

    async def _late_fee(self, conn: Executor, cancelled: Sequence[Booking]) -> str | None:
        owed: dict[uuid.UUID, str] = {}
        for b in cancelled:
            fee = _fee(policies.fee_owed(b.status, b.policy))
            if fee is not None:
                owed[b.id] = fee
        if not owed:
            return None
        waived = {i for i, d in (await policies.decisions(conn, list(owed))).items() if d.decision == "waive"}
        fees = [f for i, f in owed.items() if i not in waived]
        if not fees:
            return None
        if len(fees) == 1:
            return fees[0]
        return f"{fees[0]} for each of {len(fees)} sessions" if len(set(fees)) == 1 else ", ".join(fees)

    async def _cancelled(self, conn: Executor, message: outbox.Message) -> Composed | None:
        found = await self._bookings(conn, message)
        gone = [b for b in found if b.status in bookings.CANCELLED]
        if not gone:
            return None
        first = gone[0]
        prefs = await preferences.get(conn, first.therapist_id)
        key = await self._key_for(message, first)
        to, confidential = await self._client(conn, first)
        if confidential:
            link, _ = self._links(first.id, key)
            return Composed(to=to, rendered=render.render(render.Confidential(link=link, update=True)))
        mail = render.Cancelled(
            sessions=[self._appointment(b, prefs, None) for b in gone],
            by_therapist=message.data().get("by") == "therapist",
            fee=await self._late_fee(conn, gone),
            book_again_url=f"{self.origin}/book/{first.therapist_slug}",
        )
        return Composed(to=to, rendered=render.render(mail))

    async def _therapist_notice(self, conn: Executor, message: outbox.Message) -> Composed | None:
        if message.therapist_id is None:
            return None
        prefs = await preferences.get(conn, message.therapist_id)
        if not prefs.notify_bookings:
            return None  # turned off since
        therapist = await therapists.by_id(conn, message.therapist_id)
        found = await self._bookings(conn, message)
        if not found:
            return None
        first = found[0]
        record = await clients.of_booking(conn, first.id)
        name = record.name if record is not None else first.client_name
        event = message.data().get("event", "booked")
        mail = render.TherapistNotice(
            event=event,
            starts=[b.starts_at for b in found],
            zone=therapist.timezone,
            client=render.client_label(name, prefs.notice_detail),
            session_type=None if prefs.notice_detail == "busy" else first.session_type_name,
            dashboard_url=f"{self.origin}/dashboard",
        )
        return Composed(to=therapist.email, rendered=render.render(mail))

    async def _review_alert(self, conn: Executor, message: outbox.Message) -> Composed | None:
        """Only that a client's answers need review; not sent once the alert was reviewed."""
        alert = message.data().get("alert")
        if message.therapist_id is None or not isinstance(alert, str):
            return None
        if not await safety_alerts.is_open(conn, uuid.UUID(alert)):
            return None
        therapist = await therapists.by_id(conn, message.therapist_id)
        mail = render.ReviewAlert(dashboard_url=f"{self.origin}/dashboard")
        return Composed(to=therapist.email, rendered=render.render(mail))

    async def _password(self, conn: Executor, message: outbox.Message, now: dt.datetime) -> Composed | None:
        if message.therapist_id is None or message.sealed is None:
            return None
        expires_at = dt.datetime.fromisoformat(message.data()["expires_at"])
        if expires_at <= now:
            return None
        try:
            secret = self.sealer.open_text(message.sealed, notices.password_link_context(message.therapist_id))
        except SealError:
            return None
        therapist = await therapists.by_id(conn, message.therapist_id)
        purpose = "invite" if message.kind == notices.PASSWORD_INVITE else "reset"
        mail = render.PasswordLink(
            template="password_invite" if purpose == "invite" else "password_reset",
            name=therapist.name,
            url=f"{self.origin}/{purpose}#t={secret}",
            expires_at=expires_at,
            zone=therapist.timezone,
        )
        return Composed(to=therapist.email, rendered=render.render(mail))
