"""Who is acting: an authenticated caller, as the domain sees it (audit records name it by id)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

PrincipalKind = Literal["admin", "therapist", "client", "system"]
# How the caller proved who they are; endpoint declarations name these (`auth=`).
AuthMode = Literal["admin", "therapist", "session", "booking"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. A client is known only by the booking, or the series, its key opens."""

    kind: PrincipalKind
    therapist_id: uuid.UUID | None = None
    booking_id: uuid.UUID | None = None
    series_id: uuid.UUID | None = None
    via: Literal["bearer", "session"] = "bearer"

    @property
    def actor_id(self) -> str | None:
        if self.kind == "therapist":
            return str(self.therapist_id)
        if self.kind == "client":
            return str(self.series_id if self.booking_id is None and self.series_id else self.booking_id)
        return None

    @property
    def mode(self) -> AuthMode | None:
        """The endpoint auth mode this caller satisfies."""
        if self.kind == "admin":
            return "admin"
        if self.kind == "therapist":
            return "session" if self.via == "session" else "therapist"
        if self.kind == "client":
            return "booking"
        return None


SYSTEM = Principal("system")
# A booking made on the public page: a client not yet known by any key.
PUBLIC_CLIENT = Principal("client")
