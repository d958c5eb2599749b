"""Safe to start: what a client gives before a session, what the therapist sees of it, and the gate.

Composes `consent`, `emergency_contacts`, `join_locations`, `licences` and `places` for their three
readers:

- the client on the join page (`join_steps`, `accept_consent`, `save_contact`, `confirm_location`):
  the current consent text and whether it is accepted, whether an emergency contact exists (never
  the contact itself), and a place to prefill;
- the room-token gate (`missing_steps`): a client gets no room token until they have accepted the
  therapist's current consent text and given an emergency contact (`403 consent_required`);
- the therapist (`client_record` on the client page, `emergency_panel` in the room), every read
  audited by id. None of it goes into feeds, emails, webhooks or logs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

import asyncpg
import msgspec

from broker import audit, bookings, clients, consent, emergency_contacts, join_locations, licences, places
from broker.clients import Client
from broker.consent import Consent, ConsentText
from broker.database import Executor
from broker.emergency_contacts import EmergencyContact
from broker.errors import Forbidden, NotFound
from broker.join_locations import JoinLocation
from broker.principals import Principal
from broker.zones import zone

Step = Literal["consent", "emergency_contact"]
STEP_TEXT: dict[Step, str] = {
    "consent": "accept the current consent text",
    "emergency_contact": "give an emergency contact and where you usually are",
}


class JoinSteps(msgspec.Struct, frozen=True):
    """What the join page needs before the waiting room."""

    consent_text: ConsentText
    consent: Consent | None  # the client's acceptance of the current version
    has_emergency_contact: bool
    location: places.Place | None  # a place to prefill: last confirmed, else as booked, else usual
    location_note: str | None
    missing: list[Step]


class SafetyRecord(msgspec.Struct, frozen=True):
    """A client's consents, emergency details and confirmed places, for their therapist."""

    client: Client
    current_text: ConsentText
    consented: bool  # has accepted the current version
    consents: list[Consent]
    emergency_contact: EmergencyContact | None
    locations: list[JoinLocation]


class EmergencyPanel(msgspec.Struct, frozen=True):
    """What the room shows the therapist: where the client is today, who to call, the crisis lines
    there, and whether a valid licence covers that place on the session's date."""

    booking_id: uuid.UUID
    client_id: uuid.UUID | None
    today: JoinLocation | None  # confirmed at this session's join
    booked: places.Place | None  # as given when booking
    place: places.Place | None  # the one the rest is about: today's, else as booked, else the usual one
    place_source: Literal["today", "booking", "usual"] | None
    emergency_contact: EmergencyContact | None
    crisis_lines: list[places.CrisisLine]
    coverage: licences.Coverage
    consented: bool


def missing_of(consented: bool, has_contact: bool) -> list[Step]:
    steps: list[Step] = []
    if not consented:
        steps.append("consent")
    if not has_contact:
        steps.append("emergency_contact")
    return steps


async def _client(conn: Executor, booking_id: uuid.UUID) -> Client:
    client = await clients.of_booking(conn, booking_id)
    if client is None:  # every booking has had a client since migration 007
        raise NotFound("client")
    return client


async def missing_steps(conn: Executor, booking_id: uuid.UUID) -> list[Step]:
    """What the booking's client must still do before a room token: accept the current consent text,
    give an emergency contact. Read from PostgreSQL each time, so every node gives the same answer."""
    client = await _client(conn, booking_id)
    return missing_of(
        await consent.has_current(conn, client.therapist_id, client.id),
        await emergency_contacts.exists(conn, client.id),
    )


def required(missing: list[Step]) -> Forbidden:
    """403 `consent_required`, naming the missing steps."""
    listed = " and ".join(STEP_TEXT[step] for step in missing)
    return Forbidden(f"Before joining, please {listed}.", code="consent_required", missing=list(missing))


async def join_steps(conn: Executor, booking_id: uuid.UUID) -> JoinSteps:
    """The current consent text and what is missing, for the booking's client (no personal details)."""
    client = await _client(conn, booking_id)
    text = await consent.current(conn, client.therapist_id)
    accepted = await consent.accepted(conn, client.id, text)
    contact = await emergency_contacts.of_client(conn, client.id)
    latest = await join_locations.latest(conn, booking_id)
    if latest is None:
        earlier = await join_locations.of_client(conn, client.id)
        latest = earlier[0] if earlier else None
    location: places.Place | None
    booked, booked_note = await join_locations.booked(conn, booking_id)
    if latest is not None:
        location, note = latest.place, latest.note
    elif booked is not None:
        location, note = booked, booked_note
    else:
        location, note = (contact.usual_place if contact else None), None
    return JoinSteps(
        consent_text=text,
        consent=accepted,
        has_emergency_contact=contact is not None,
        location=location,
        location_note=note,
        missing=missing_of(accepted is not None, contact is not None),
    )


async def accept_consent(
    pool: asyncpg.Pool,
    booking_id: uuid.UUID,
    version: int,
    typed_name: str,
    actor: Principal,
    now: dt.datetime,
) -> Consent:
    """The booking's client accepts the consent text `version` (Conflict `consent_outdated` if not current)."""
    async with pool.acquire() as conn:
        client = await _client(conn, booking_id)
        return await consent.accept(
            conn, client.therapist_id, client.id, version, typed_name, booking_id=booking_id, actor=actor, now=now
        )


async def save_contact(
    pool: asyncpg.Pool,
    booking_id: uuid.UUID,
    *,
    name: str,
    phone: str,
    usual: places.Place,
    note: str | None,
    actor: Principal,
    now: dt.datetime,
) -> EmergencyContact:
    """The booking's client gives their emergency contact and usual place (replacing any earlier one)."""
    async with pool.acquire() as conn, conn.transaction():
        client = await _client(conn, booking_id)
        return await emergency_contacts.save(
            conn,
            client.therapist_id,
            client.id,
            name=name,
            phone=phone,
            usual=usual,
            note=note,
            actor=actor,
            booking_id=booking_id,
            now=now,
        )


async def confirm_location(
    pool: asyncpg.Pool, booking_id: uuid.UUID, where: places.Place, note: str | None, actor: Principal, now: dt.datetime
) -> JoinLocation:
    """The booking's client confirms where they are for this session."""
    async with pool.acquire() as conn, conn.transaction():
        client = await _client(conn, booking_id)
        return await join_locations.confirm(
            conn, booking_id, where, note, therapist_id=client.therapist_id, client_id=client.id, actor=actor, now=now
        )


async def client_record(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, client_id: uuid.UUID, reader: Principal
) -> SafetyRecord:
    """A client's consent record, emergency contact and confirmed places, for their therapist (audited)."""
    async with conn.transaction(isolation="repeatable_read"):
        client = await clients.get(conn, therapist_id, client_id)
        text = await consent.current(conn, therapist_id)
        given = await consent.history(conn, client_id)
        record = SafetyRecord(
            client=client,
            current_text=text,
            consented=any(c.consent_text_id == text.id for c in given),
            consents=given,
            emergency_contact=await emergency_contacts.of_client(conn, client_id),
            locations=await join_locations.of_client(conn, client_id),
        )
        await audit.record(conn, reader, "safety.read", therapist_id=therapist_id, client_id=client_id)
    return record


async def emergency_panel(conn: asyncpg.Connection, booking_id: uuid.UUID, reader: Principal) -> EmergencyPanel:
    """The room's emergency panel for the booking's therapist (audited by booking and client)."""
    if reader.kind != "therapist":
        raise Forbidden("Only the therapist can read a client's emergency details.")
    async with conn.transaction(isolation="repeatable_read"):
        booking = await bookings.get(conn, booking_id)
        client = await clients.of_booking(conn, booking_id)
        contact = None if client is None else await emergency_contacts.of_client(conn, client.id)
        today = await join_locations.latest(conn, booking_id)
        booked, _ = await join_locations.booked(conn, booking_id)
        place, source = _place_for_panel(today, booked, contact)
        day = booking.starts_at.astimezone(zone(booking.therapist_timezone)).date()
        coverage = await licences.coverage(conn, booking.therapist_id, place, day)
        consented = client is not None and await consent.has_current(conn, booking.therapist_id, client.id)
        await audit.record(
            conn,
            reader,
            "emergency.read",
            booking_id=booking_id,
            therapist_id=booking.therapist_id,
            client_id=None if client is None else client.id,
        )
    return EmergencyPanel(
        booking_id=booking_id,
        client_id=None if client is None else client.id,
        today=today,
        booked=booked,
        place=place,
        place_source=source,
        emergency_contact=contact,
        crisis_lines=places.crisis_resources(*((place.country, place.region) if place else (None, None))),
        coverage=coverage,
        consented=consented,
    )


def _place_for_panel(
    today: JoinLocation | None, booked: places.Place | None, contact: EmergencyContact | None
) -> tuple[places.Place | None, Literal["today", "booking", "usual"] | None]:
    if today is not None:
        return today.place, "today"
    if booked is not None:
        return booked, "booking"
    if contact is not None:
        return contact.usual_place, "usual"
    return None, None
