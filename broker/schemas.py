"""The REST wire formats of the scheduling API, declared once for handlers and the OpenAPI document."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Slug = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$", description="lowercase letters, digits, -")]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Email = Annotated[str, Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Phone = Annotated[str, Meta(max_length=40, pattern=r"^[0-9+()./\- ]*$")]
Zone = Annotated[str, Meta(min_length=1, max_length=64, description="IANA time zone, e.g. Europe/Berlin")]
WallTime = Annotated[
    str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$", description="HH:MM; 24:00 = end of day")
]
Instant = Annotated[datetime, Meta(tz=True, description="RFC 3339 with an offset")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Id = Annotated[str, Meta(description="UUID")]


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    """Base for request bodies: unknown fields are an error, not silently dropped."""


class TherapistIn(Strict):
    slug: Slug
    name: Name
    email: Email
    timezone: Zone


class TherapistCreated(msgspec.Struct):
    id: Id
    slug: str
    name: str
    email: str
    timezone: str
    api_token: Annotated[str, Meta(description="shown once; stored only as a hash")]
    invite_url: str | None = None


class SessionTypeIn(Strict):
    name: Annotated[str, Meta(min_length=1, max_length=120)]
    duration_minutes: Annotated[int, Meta(ge=5, le=480)]
    buffer_before_minutes: Annotated[int, Meta(ge=0, le=240)] = 0
    buffer_after_minutes: Annotated[int, Meta(ge=0, le=240)] = 0
    min_notice_minutes: Annotated[int, Meta(ge=0, le=525600)] = 60
    horizon_days: Annotated[int, Meta(ge=1, le=730)] = 60
    slot_interval_minutes: Annotated[int, Meta(ge=5, le=1440)] | None = None


class SessionTypeOut(msgspec.Struct):
    id: Id
    name: str
    duration_minutes: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    min_notice_minutes: int
    horizon_days: int
    slot_interval_minutes: int


class TherapistPublic(msgspec.Struct):
    slug: str
    name: str
    timezone: str
    session_types: list[SessionTypeOut]


class WallInterval(Strict):
    start: WallTime
    end: WallTime


class WeeklyRule(Strict):
    day: Weekday
    start: WallTime
    end: WallTime


class DateOverride(Strict):
    date: date
    intervals: list[WallInterval]


class AvailabilityIn(Strict):
    timezone: Zone
    weekly: Annotated[list[WeeklyRule], Meta(max_length=200)]
    overrides: Annotated[list[DateOverride], Meta(max_length=1000)] = []


class AvailabilityOut(msgspec.Struct):
    timezone: str
    weekly: list[WeeklyRule]
    overrides: list[DateOverride]
    updated_at: datetime | None = None


class Slot(msgspec.Struct):
    start: datetime
    end: datetime


class SlotList(msgspec.Struct):
    timezone: str
    slots: list[Slot]


Place = Annotated[str, Meta(min_length=1, max_length=100, description="state or country the client will be in")]


class ClientIn(Strict):
    name: Name
    email: Email
    phone: Phone | None = None
    location: Place | None = None


class BookingIn(Strict):
    session_type: Id
    start: Instant
    client: ClientIn
    client_timezone: Zone | None = None


class BookingCreated(msgspec.Struct):
    id: Id
    status: Literal["confirmed", "cancelled"]
    start: datetime
    end: datetime
    booking_key: Annotated[str, Meta(description="shown once; the bearer credential for this booking")]
    manage_url: str
    join_url: str


class RescheduleIn(Strict):
    start: Instant


class CancelIn(Strict):
    reason: Annotated[str, Meta(max_length=500)] | None = None


class ClientOut(msgspec.Struct):
    name: str
    email: str
    phone: str | None
    location: str | None


class SessionTypeSummary(msgspec.Struct):
    id: Id
    name: str
    duration_minutes: int


class TherapistSummary(msgspec.Struct):
    slug: str
    name: str
    timezone: str


class BookingOut(msgspec.Struct):
    id: Id
    status: Literal["confirmed", "cancelled"]
    start: datetime
    end: datetime
    session_type: SessionTypeSummary
    therapist: TherapistSummary
    client: ClientOut
    client_timezone: str | None
    sequence: int
    created_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None
    manage_path: str
    join_path: str


class BookingList(msgspec.Struct):
    bookings: list[BookingOut]


class ProblemOut(msgspec.Struct):
    type: str
    title: str
    status: int
    detail: str
    code: str


class Health(msgspec.Struct):
    status: str

class ClientPatch(Strict):
    """A therapist's changes to a client record: fields left out stay; phone, location and notes may be null."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    email: Email | msgspec.UnsetType = msgspec.UNSET
    phone: Phone | msgspec.UnsetType | None = msgspec.UNSET
    location: Place | msgspec.UnsetType | None = msgspec.UNSET
    notes: Annotated[str, Meta(max_length=5000, description="the therapist's own notes")] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )
