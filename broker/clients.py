"""Client records: a therapist's clients, matched on each booking by email (case-insensitive).

A first booking creates the record; later bookings with the same email (in any case) point at it.
The record belongs to the therapist: a booking from the public page never overwrites what is
there (the therapist may have corrected a name or a phone), it only fills a phone or a location
the record does not have yet. Each booking keeps the details as given when it was made.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from broker import audit
from broker.database import Executor, record_to
from broker.principals import PUBLIC_CLIENT, Principal

# Race-safe: two first bookings of one client meet on the unique index clients_therapist_email,
# and the second (after the first commits) takes the existing row. DO UPDATE rather than DO
# NOTHING so that the row comes back (RETURNING) and stays locked until the booking commits.
MATCH_OR_CREATE = """
INSERT INTO clients AS c (id, therapist_id, name, email, phone, location)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (therapist_id, lower(email)) DO UPDATE
SET phone = COALESCE(c.phone, EXCLUDED.phone),
    location = COALESCE(c.location, EXCLUDED.location),
    updated_at = CASE
        WHEN (c.phone IS NULL AND EXCLUDED.phone IS NOT NULL)
          OR (c.location IS NULL AND EXCLUDED.location IS NOT NULL) THEN now()
        ELSE c.updated_at
    END
RETURNING c.*, (c.xmax = 0) AS created
"""


class Client(msgspec.Struct, frozen=True):
    """A therapist's client: the details the therapist keeps, which bookings point at."""

    id: uuid.UUID
    therapist_id: uuid.UUID
    name: str
    email: str
    phone: str | None
    location: str | None
    notes: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class _Upserted(msgspec.Struct, frozen=True):
    created: bool  # xmax = 0: the statement inserted the row rather than updating an existing one


async def match_or_create(
    conn: Executor,
    therapist_id: uuid.UUID,
    *,
    name: str,
    email: str,
    phone: str | None,
    location: str | None,
    actor: Principal = PUBLIC_CLIENT,
) -> Client:
    """The therapist's client with this email (any case), created if there is none.

    An existing record keeps its name, email and notes; only an empty phone or location is filled
    from the booking. Run it in the booking's transaction, so a booking that loses its slot leaves
    no new client behind. A new record is audited as `client.created` by `actor`."""
    row = await conn.fetchrow(MATCH_OR_CREATE, uuid.uuid4(), therapist_id, name, email, phone, location)
    assert row is not None  # INSERT ... ON CONFLICT DO UPDATE ... RETURNING always returns the row
    client = record_to(Client, row)
    if record_to(_Upserted, row).created:
        await audit.record(conn, actor, "client.created", therapist_id=therapist_id, client_id=client.id)
    return client
