"""The rules a node keeps for bookings (broker/bookable.py): bounded, least recently used first out.

That a kept rule is never trusted alone is tested across two nodes in tests/test_multi_node.py."""

from __future__ import annotations

import datetime as dt
import uuid

from broker.bookable import Bookable, Kept
from broker.session_types import SessionType
from calendars.slots import Availability


def _bookable(therapist_id: uuid.UUID) -> Bookable:
    st = SessionType(
        id=uuid.uuid4(),
        therapist_id=therapist_id,
        name="S",
        duration_minutes=50,
        buffer_before_minutes=0,
        buffer_after_minutes=10,
        min_notice_minutes=0,
        horizon_days=60,
        slot_interval_minutes=60,
        active=True,
        series_frequencies=[],
        series_max_sessions=1,
    )
    return Bookable(st, Availability("UTC"), dt.datetime(2030, 1, 1, tzinfo=dt.UTC))


def test_kept_rules_drop_the_least_recently_used_beyond_their_bound() -> None:
    kept = Kept(entries=2)
    a, b, c = (uuid.uuid4() for _ in range(3))
    kept.put(a, "t", _bookable(a))
    kept.put(b, "t", _bookable(b))
    assert kept.get(a, "t") is not None  # a is now the most recently used
    kept.put(c, "t", _bookable(c))
    assert kept.get(b, "t") is None
    assert kept.get(a, "t") is not None and kept.get(c, "t") is not None


def test_what_the_insert_compares_is_the_rules_when_the_hours_changed_and_the_reminders() -> None:
    kept = _bookable(uuid.uuid4())
    assert kept.compared() == (50, 0, 10, 0, 60, 60, dt.datetime(2030, 1, 1, tzinfo=dt.UTC), [1440, 60])
