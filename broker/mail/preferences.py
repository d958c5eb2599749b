"""What a therapist chose to hear by email and to let clients' emails say.

Three columns of `therapists` (migration 011), read and written only here: `notify_bookings`
(email me about new bookings and cancellations), `notice_detail` (how much of the client those
notices name: busy, initials or full, as the calendar feed's tiers) and `email_session_type`
(clients' emails may name the session type; off, they say "appointment").
"""

from __future__ import annotations

import uuid

import msgspec

from broker import audit
from broker.database import Executor, record_to
from broker.errors import NotFound
from broker.mail.render import Tier
from broker.principals import Principal

SELECT_PREFERENCES = "SELECT notify_bookings, notice_detail, email_session_type FROM therapists WHERE id = $1"
UPDATE_PREFERENCES = """
UPDATE therapists SET notify_bookings = $2, notice_detail = $3, email_session_type = $4 WHERE id = $1
RETURNING notify_bookings, notice_detail, email_session_type
"""


class Preferences(msgspec.Struct, frozen=True):
    notify_bookings: bool = False
    notice_detail: Tier = "busy"
    email_session_type: bool = False


async def get(conn: Executor, therapist_id: uuid.UUID) -> Preferences:
    row = await conn.fetchrow(SELECT_PREFERENCES, therapist_id)
    if row is None:
        raise NotFound("therapist")
    return record_to(Preferences, row)


async def change(conn: Executor, therapist_id: uuid.UUID, wanted: Preferences, actor: Principal) -> Preferences:
    """Store the therapist's choices (all three at once); audited."""
    row = await conn.fetchrow(
        UPDATE_PREFERENCES, therapist_id, wanted.notify_bookings, wanted.notice_detail, wanted.email_session_type
    )
    if row is None:
        raise NotFound("therapist")
    await audit.record(conn, actor, "notifications.changed", therapist_id=therapist_id)
    return record_to(Preferences, row)
