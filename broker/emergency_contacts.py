"""Emergency details: who to call for a client in a crisis, and where the client usually is.

This module owns `emergency_contacts`: one current row per client, given by the client on the join
page before their first session and replaced when they give it again (each change audited by id).
Only the client's therapist reads it (`broker.safety` audits every read); it is never part of a
feed, an email, a webhook or a log line.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from broker import audit, places
from broker.database import Executor, record_to
from broker.principals import Principal

UPSERT = """
INSERT INTO emergency_contacts (client_id, therapist_id, contact_name, contact_phone, usual_country, usual_region,
    usual_note, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (client_id) DO UPDATE SET
    contact_name = EXCLUDED.contact_name, contact_phone = EXCLUDED.contact_phone,
    usual_country = EXCLUDED.usual_country, usual_region = EXCLUDED.usual_region,
    usual_note = EXCLUDED.usual_note, updated_at = EXCLUDED.updated_at
RETURNING *
"""
SELECT = "SELECT * FROM emergency_contacts WHERE client_id = $1"
EXISTS = "SELECT EXISTS (SELECT 1 FROM emergency_contacts WHERE client_id = $1)"


class EmergencyContact(msgspec.Struct, frozen=True):
    """A client's emergency contact and usual place."""

    client_id: uuid.UUID
    contact_name: str
    contact_phone: str
    usual_country: str
    usual_region: str | None
    usual_note: str | None
    updated_at: dt.datetime

    @property
    def usual_place(self) -> places.Place:
        return places.Place(self.usual_country, self.usual_region)


async def save(
    conn: Executor,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID,
    *,
    name: str,
    phone: str,
    usual: places.Place,
    note: str | None,
    actor: Principal,
    booking_id: uuid.UUID | None,
    now: dt.datetime,
) -> EmergencyContact:
    """Set the client's emergency contact and usual place (replacing any before); audited by id.
    `usual` must be a checked place (`places.place`). Run it in a transaction with the audit row."""
    row = await conn.fetchrow(UPSERT, client_id, therapist_id, name, phone, usual.country, usual.region, note, now)
    assert row is not None
    await audit.record(
        conn, actor, "emergency_contact.saved", booking_id=booking_id, therapist_id=therapist_id, client_id=client_id
    )
    return record_to(EmergencyContact, row)


async def of_client(conn: Executor, client_id: uuid.UUID) -> EmergencyContact | None:
    """The client's emergency contact, if given (the caller audits the read)."""
    row = await conn.fetchrow(SELECT, client_id)
    return None if row is None else record_to(EmergencyContact, row)


async def exists(conn: Executor, client_id: uuid.UUID) -> bool:
    found: bool = await conn.fetchval(EXISTS, client_id)
    return found
