"""The REST wire formats of the scheduling API, declared once for handlers and the OpenAPI document."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

# Every string in a request is one line without any control character (`invalid_text`), unless
# its field carries this mark: then it may hold line breaks (LF only). broker/http/endpoints.check_text
# reads the mark, and the OpenAPI document shows it as `"x-multiline": true`.
MULTILINE = "x-multiline"

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$"
Slug = Annotated[str, Meta(pattern=SLUG_PATTERN, description="lowercase letters, digits, -")]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
# No space and no control character (like every request pattern: the document's text rule).
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f-\x9f]+"
Email = Annotated[str, Meta(min_length=3, max_length=254, pattern=rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$")]
Phone = Annotated[str, Meta(max_length=40, pattern=r"^[0-9+()./\- ]*$")]
Zone = Annotated[str, Meta(min_length=1, max_length=64, description="IANA time zone, e.g. Europe/Berlin")]
WallTime = Annotated[
    str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$", description="HH:MM; 24:00 = end of day")
]
Instant = Annotated[datetime, Meta(tz=True, description="RFC 3339 with an offset")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Id = Annotated[str, Meta(description="UUID")]
Frequency = Literal["weekly", "biweekly"]
# A booking's status: cancelled by the client inside the policy's window is late_cancelled; after
# the start the therapist (or the attendance record) says attended or no_show (broker/outcomes.py).
BookingStatus = Literal["confirmed", "cancelled", "late_cancelled", "no_show", "attended"]


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


class Fee(Strict):
    """An amount owed under a policy: information for billing, never charged by Teleroom."""

    amount: Annotated[str, Meta(pattern=r"^(0|[1-9][0-9]{0,7})(\.[0-9]{1,3})?$", description="decimal, e.g. 60.00")]
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")]


class PolicyIn(Strict):
    """A session type's cancellation policy; a change of any field is a new version."""

    window_hours: Annotated[
        int, Meta(ge=0, le=720, description="a client's cancellation this close to the start is late; 0 = never")
    ]
    text: Annotated[
        str, Meta(max_length=4000, description="the policy as clients read it", extra_json_schema={MULTILINE: True})
    ] = ""
    late_cancel_fee: Fee | None = None
    no_show_fee: Fee | None = None


class PolicyOut(msgspec.Struct):
    version: int
    window_hours: int
    text: str
    late_cancel_fee: Fee | None
    no_show_fee: Fee | None


ReminderMinutes = Annotated[
    list[Annotated[int, Meta(ge=1, le=20160)]],
    Meta(max_length=5, description="when clients' email reminders go out, in minutes before the start; [] = none"),
]


class SessionTypeIn(Strict):
    name: Annotated[str, Meta(min_length=1, max_length=120)]
    duration_minutes: Annotated[int, Meta(ge=5, le=480)]
    buffer_before_minutes: Annotated[int, Meta(ge=0, le=240)] = 0
    buffer_after_minutes: Annotated[int, Meta(ge=0, le=240)] = 0
    min_notice_minutes: Annotated[int, Meta(ge=0, le=525600)] = 60
    horizon_days: Annotated[int, Meta(ge=1, le=730)] = 60
    slot_interval_minutes: Annotated[int, Meta(ge=5, le=1440)] | None = None
    series_frequencies: Annotated[
        list[Frequency], Meta(max_length=2, description="how often clients may book it as a series; [] = never")
    ] = []
    series_max_sessions: Annotated[int, Meta(ge=1, le=52, description="the most sessions one series may hold")] = 12
    policy: Annotated[PolicyIn, Meta(description="cancellation policy (version 1)")] | None = None
    reminder_minutes: ReminderMinutes = msgspec.field(default_factory=lambda: [1440, 60])


class SessionTypeOut(msgspec.Struct):
    id: Id
    name: str
    duration_minutes: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    min_notice_minutes: int
    horizon_days: int
    slot_interval_minutes: int
    series_frequencies: list[Frequency]
    series_max_sessions: int
    policy: Annotated[PolicyOut, Meta(description="the current cancellation policy; null: none")] | None = None
    reminder_minutes: Annotated[list[int], Meta(description="email reminders, minutes before the start")] = []


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
# Places as ISO 3166 codes (broker/places.py checks that they exist: `invalid_place`).
Country = Annotated[str, Meta(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country code, e.g. US, DE, GB")]
Region = Annotated[
    str, Meta(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$", description="ISO 3166-2 subdivision of a country, e.g. US-NY")
]


class ClientIn(Strict):
    name: Name
    email: Email
    phone: Phone | None = None
    # Free text kept as a note beside the codes (before the codes, the only place given).
    location: Place | None = None
    country: Annotated[Country, Meta(description="where the client will be for sessions")] | None = None
    region: Annotated[Region, Meta(description="the region of `country` where it matters, e.g. a state")] | None = None


ConfidentialMessages = Annotated[
    bool,
    Meta(description="emails only say there is an appointment and give the link (no time); stays on the client"),
]


class BookingIn(Strict):
    session_type: Id
    start: Instant
    client: ClientIn
    client_timezone: Zone | None = None
    confidential_messages: ConfidentialMessages = False


class BookingCreated(msgspec.Struct):
    id: Id
    status: BookingStatus
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
    country: str | None = None
    region: str | None = None


class SessionTypeSummary(msgspec.Struct):
    id: Id
    name: str
    duration_minutes: int


class TherapistSummary(msgspec.Struct):
    slug: str
    name: str
    timezone: str


class CancelNow(msgspec.Struct):
    late: Annotated[bool, Meta(description="the client cancelling now is a late cancellation")]
    fee: Annotated[Fee, Meta(description="what a late cancellation now owes")] | None
    late_from: Annotated[datetime, Meta(description="from when cancelling is late; null: never")] | None


class BookingOut(msgspec.Struct):
    id: Id
    status: BookingStatus
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
    series_id: Annotated[Id, Meta(description="the standing series this session belongs to")] | None = None
    policy: Annotated[PolicyOut, Meta(description="the cancellation policy it was booked under")] | None = None
    cancel_now: (
        Annotated[CancelNow, Meta(description="a cancellation by the client now (GET, while confirmed)")] | None
    ) = None


class BookingList(msgspec.Struct):
    bookings: list[BookingOut]


class AvailabilitySaved(AvailabilityOut):
    """The PUT availability answer: the saved hours, and the booked sessions they now leave outside."""

    outside_hours: Annotated[
        list[BookingOut],
        Meta(description="upcoming confirmed sessions not inside the new hours (nothing is cancelled)"),
    ] = []


# Standing series (broker/series.py): one rule, its occurrences ordinary bookings.
SeriesCount = Annotated[int, Meta(ge=1, le=1000, description="number of sessions (the session type's maximum applies)")]
OccurrenceStatus = Literal[
    "free", "taken", "not_offered", "not_booked", "confirmed", "cancelled", "late_cancelled", "no_show", "attended"
]


class SeriesPreviewIn(Strict):
    session_type: Id
    start: Instant
    frequency: Frequency
    count: SeriesCount
    client_timezone: Zone | None = None


class SeriesIn(Strict):
    session_type: Id
    start: Instant
    frequency: Frequency
    count: SeriesCount
    client: ClientIn
    client_timezone: Zone | None = None
    all_or_nothing: Annotated[bool, Meta(description="book none unless every occurrence is free")] = False
    confidential_messages: ConfidentialMessages = False


class ClientSeriesIn(Strict):
    """A series the therapist books for an existing client (notice and horizon waived)."""

    session_type: Id
    start: Instant
    frequency: Frequency
    count: SeriesCount
    client_timezone: Zone | None = None
    all_or_nothing: bool = False


class OccurrenceOut(msgspec.Struct):
    index: int
    start: datetime
    end: datetime
    therapist_start: Annotated[datetime, Meta(description="the start with the therapist's UTC offset that day")]
    client_start: Annotated[datetime, Meta(description="the start with the client's UTC offset that day")]
    status: Annotated[
        OccurrenceStatus,
        Meta(description="preview: free, taken, not_offered; booked: the booking's status; else not_booked"),
    ]
    client_time_differs: Annotated[bool, Meta(description="the client's local time is not the first session's")]
    booking_id: Id | None = None


class SeriesPreviewOut(msgspec.Struct):
    timezone: str
    client_timezone: str
    frequency: Frequency
    occurrences: list[OccurrenceOut]
    client_time_changes: Annotated[bool, Meta(description="some session is at another local time for the client")]


class SeriesCreated(msgspec.Struct):
    id: Id
    series_key: Annotated[str, Meta(description="shown once; opens the series and each of its sessions")]
    manage_url: str
    join_url: str
    booked: int
    occurrences: list[OccurrenceOut]


class SeriesOut(msgspec.Struct):
    id: Id
    frequency: Frequency
    count: int
    timezone: str
    client_timezone: str | None
    session_type: SessionTypeSummary
    therapist: TherapistSummary
    created_at: datetime
    occurrences: list[OccurrenceOut]


class SeriesCancelIn(Strict):
    scope: Annotated[Literal["one", "following", "all"], Meta(description="this session, it and all after, or all")]
    booking: Annotated[Id, Meta(description="the session (booking id) the scope counts from")] | None = None
    reason: Annotated[str, Meta(max_length=500)] | None = None


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
    notes: (
        Annotated[
            str, Meta(max_length=5000, description="the therapist's own notes", extra_json_schema={MULTILINE: True})
        ]
        | msgspec.UnsetType
        | None
    ) = msgspec.UNSET
    confidential_messages: (
        Annotated[bool, Meta(description="emails to this client only say there is an appointment, with the link")]
        | msgspec.UnsetType
    ) = msgspec.UNSET


# Cancellation policies and session outcomes (broker/policies.py, broker/outcomes.py).
Outcome = Literal["attended", "no_show"]


class PolicyVersions(msgspec.Struct):
    versions: list[PolicyOut]


class PolicySettingsIn(Strict):
    waive_first_late_cancellation: Annotated[bool, Meta(description="waive each client's first late cancellation")]
    suggest_waiver_when_rebooked: Annotated[
        bool, Meta(description="suggest waiving a late cancellation whose time someone else then booked")
    ]


class PolicySettingsOut(msgspec.Struct):
    waive_first_late_cancellation: bool
    suggest_waiver_when_rebooked: bool


class OutcomeIn(Strict):
    status: Outcome


class FeeDecisionIn(Strict):
    decision: Literal["charge", "waive"]
    reason: Annotated[str, Meta(min_length=1, max_length=500, description="why, for the record")]


class FeeDecisionOut(msgspec.Struct):
    decision: Literal["charge", "waive"]
    reason: str
    decided_by: Literal["therapist", "system"]
    decided_at: datetime


class Evidence(msgspec.Struct):
    """What the attendance record says of a session (ids and times only, see broker/attendance.py)."""

    therapist_joined: bool
    client_joined: bool
    client_minutes: Annotated[float, Meta(description="minutes the client was connected, waiting room included")]
    together_minutes: Annotated[float, Meta(description="minutes therapist and admitted client were in together")]


class Suggestion(msgspec.Struct):
    decision: Literal["waive"]
    code: Literal["rebooked"]
    reason: str


class ReviewItem(msgspec.Struct):
    booking_id: Id
    start: datetime
    end: datetime
    status: BookingStatus
    client_name: str
    session_type: str
    cancelled_at: datetime | None
    policy_version: int | None
    fee: Annotated[Fee, Meta(description="what the policy says is owed")] | None
    evidence: Evidence | None
    suggestion: Suggestion | None
    decision: FeeDecisionOut | None


class ReviewOut(msgspec.Struct):
    fees: Annotated[list[ReviewItem], Meta(description="late cancellations and no-shows with a fee, undecided")]
    outcomes: Annotated[list[ReviewItem], Meta(description="started sessions still confirmed: mark them")]
    marked_attended: Annotated[int, Meta(description="sessions this read marked attended from attendance")]
    settings: PolicySettingsOut
