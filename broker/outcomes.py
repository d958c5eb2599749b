"""Session outcomes and the fee review: attended or no_show, what attendance shows, charge or waive.

After a session's start its therapist marks it `attended` or `no_show`. Sessions the attendance
record shows happened (therapist and admitted client in the room together for any time) are
marked `attended` without asking: when the therapist reads the review list (`review`, which the
dashboard shows) or exports sessions (`sessions_csv`), every session of theirs that ended in the
last `SETTLE_DAYS` and is still `confirmed` is looked at first (`settle`). There is no background
sweep: nothing depends on the mark before the therapist looks.

The review list holds what needs the therapist: late cancellations and no-shows whose policy
names a fee and that have no decision yet, each with the attendance evidence and, with the
therapist's option on, a suggestion to waive a late cancellation whose time someone else booked
afterwards; and started sessions still `confirmed`, to mark.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Iterable

from broker import attendance, audit, bookings, policies, schemas, tokens
from broker.attendance import AttendanceEvent
from broker.bookings import Booking
from broker.database import Executor
from broker.errors import Conflict, Forbidden, invalid
from broker.principals import SYSTEM, Principal
from broker.settings import Settings
from broker.zones import zone
from calendars.slots import Span

# How far back `settle` looks, and the review lists sessions to mark.
SETTLE_DAYS = 30
MAX_REVIEW = 200
MAX_EXPORT = 2000

# Late cancellations and no-shows whose policy names a fee and that have no decision yet.
SELECT_UNDECIDED_FEES = """
SELECT b.id FROM bookings b
JOIN cancellation_policies p ON p.id = b.policy_id
LEFT JOIN fee_decisions d ON d.booking_id = b.id
WHERE b.therapist_id = $1 AND d.booking_id IS NULL
  AND ((b.status = 'late_cancelled' AND p.late_cancel_amount IS NOT NULL)
    OR (b.status = 'no_show' AND p.no_show_amount IS NOT NULL))
ORDER BY b.starts_at, b.id
LIMIT $2
"""
# Someone else booked (some of) the time this cancelled booking had freed, after it was freed.
WAS_REBOOKED = """
SELECT EXISTS (
    SELECT 1 FROM bookings b JOIN bookings o ON o.therapist_id = b.therapist_id AND o.id <> b.id
    WHERE b.id = $1 AND o.status IN ('confirmed', 'attended', 'no_show')
      AND tstzrange(o.starts_at, o.ends_at) && tstzrange(b.starts_at, b.ends_at)
      AND o.created_at > b.cancelled_at
)
"""
REBOOKED_REASON = "Someone else booked this time after it was cancelled."
# A CSV cell a spreadsheet would run as a formula (OWASP "CSV injection"): =, +, -, @, tab, CR.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "date",
    "start",
    "end",
    "timezone",
    "client",
    "client_email",
    "session_type",
    "status",
    "fee_amount",
    "fee_currency",
    "fee_decision",
    "decision_reason",
    "policy_version",
)


async def mark(
    conn: Executor, booking_id: uuid.UUID, outcome: schemas.Outcome, actor: Principal, now: dt.datetime
) -> Booking:
    """The therapist says a started session was attended or a no-show (they may change their mind); audited."""
    if actor.kind != "therapist":
        raise Forbidden("Only the therapist can record how a session went.")
    booking = await bookings.get(conn, booking_id)
    if booking.status in bookings.CANCELLED:
        raise Conflict("A cancelled session has no outcome to record.", code="outcome_not_allowed")
    if now < booking.starts_at:
        raise Conflict(
            "A session's outcome can be recorded once it has started.",
            code="outcome_too_early",
            starts_at=booking.starts_at.isoformat(),
        )
    if await bookings.set_outcome(conn, booking_id, outcome):
        await audit.record(conn, actor, f"booking.{outcome}", booking_id=booking_id, therapist_id=booking.therapist_id)
    return await bookings.get(conn, booking_id)


async def decide_fee(
    conn: Executor, booking_id: uuid.UUID, body: schemas.FeeDecisionIn, actor: Principal
) -> schemas.FeeDecisionOut:
    """Charge or waive the fee a late cancellation or a no-show owes, with a reason; audited."""
    booking = await bookings.get(conn, booking_id)
    if policies.fee_owed(booking.status, booking.policy) is None:
        raise Conflict(
            "Only a late cancellation or a no-show whose policy names a fee has one to charge or waive.",
            code="no_fee_due",
        )
    decided = await policies.decide(conn, booking_id, booking.therapist_id, body.decision, body.reason, actor)
    return decided.to_wire()


def client_seconds(events: Iterable[AttendanceEvent], until: dt.datetime) -> int:
    """How long a client was connected (waiting room included), from `joined` to `left`/`removed`."""
    since: dt.datetime | None = None
    total = 0.0
    for ev in events:
        if ev.at > until:
            break
        if ev.role != "client":
            continue
        if ev.event == "joined" and since is None:
            since = ev.at
        elif ev.event in ("left", "removed") and since is not None:
            total += (ev.at - since).total_seconds()
            since = None
    if since is not None and until > since:
        total += (until - since).total_seconds()
    return int(total)


async def evidence(conn: Executor, booking: Booking, settings: Settings, now: dt.datetime) -> schemas.Evidence:
    """What attendance shows of a session: who joined, the client's minutes and the minutes together."""
    window = tokens.join_window(booking.starts_at, booking.ends_at, settings)
    until = min(now, window.closes_at)
    found = await attendance.summary(conn, booking.id, until)
    return schemas.Evidence(
        therapist_joined=any(e.role == "therapist" and e.event == "joined" for e in found.events),
        client_joined=any(e.role == "client" and e.event == "joined" for e in found.events),
        client_minutes=round(client_seconds(found.events, until) / 60, 1),
        together_minutes=found.connected_minutes,
    )


async def settle(conn: Executor, therapist_id: uuid.UUID, settings: Settings, now: dt.datetime) -> int:
    """Mark `attended` each session that ended in the last SETTLE_DAYS, is still confirmed and that
    therapist and client attended together; returns how many were marked (each audited as the system)."""
    ended = await bookings.list_for_therapist(
        conn, therapist_id, Span(now - dt.timedelta(days=SETTLE_DAYS), now), "confirmed"
    )
    marked = 0
    for booking in ended:
        if booking.ends_at > now:
            continue
        seen = await evidence(conn, booking, settings, now)
        if seen.together_minutes > 0 and await bookings.set_outcome(conn, booking.id, "attended"):
            await audit.record(conn, SYSTEM, "booking.attended", booking_id=booking.id, therapist_id=therapist_id)
            marked += 1
    return marked


def _item(
    booking: Booking,
    seen: schemas.Evidence | None,
    suggestion: schemas.Suggestion | None = None,
    decision: schemas.FeeDecisionOut | None = None,
) -> schemas.ReviewItem:
    policy = booking.policy
    return schemas.ReviewItem(
        booking_id=str(booking.id),
        start=booking.starts_at,
        end=booking.ends_at,
        status=booking.status,
        client_name=booking.client_name,
        session_type=booking.session_type_name,
        cancelled_at=booking.cancelled_at,
        policy_version=policy.version if policy is not None else None,
        fee=policies.fee_owed(booking.status, policy),
        evidence=seen,
        suggestion=suggestion,
        decision=decision,
    )


async def review(
    conn: Executor, therapist_id: uuid.UUID, reader: Principal, settings: Settings, now: dt.datetime
) -> schemas.ReviewOut:
    """What needs the therapist: undecided fees and started sessions to mark (after `settle`); audited."""
    marked = await settle(conn, therapist_id, settings, now)
    options = await policies.settings(conn, therapist_id)
    fees: list[schemas.ReviewItem] = []
    for row in await conn.fetch(SELECT_UNDECIDED_FEES, therapist_id, MAX_REVIEW):
        booking = await bookings.get(conn, row["id"])
        suggestion = None
        if (
            booking.status == "late_cancelled"
            and options.suggest_waiver_when_rebooked
            and await conn.fetchval(WAS_REBOOKED, booking.id)
        ):
            suggestion = schemas.Suggestion(decision="waive", code="rebooked", reason=REBOOKED_REASON)
        seen = await evidence(conn, booking, settings, now) if booking.status == "no_show" else None
        fees.append(_item(booking, seen, suggestion))
    started = await bookings.list_for_therapist(
        conn, therapist_id, Span(now - dt.timedelta(days=SETTLE_DAYS), now), "confirmed"
    )
    to_mark = [_item(b, await evidence(conn, b, settings, now)) for b in started[:MAX_REVIEW] if b.starts_at <= now]
    listed = [uuid.UUID(i.booking_id) for i in (*fees, *to_mark)]
    await audit.record_many(conn, reader, "booking.reviewed", listed, therapist_id=therapist_id)
    return schemas.ReviewOut(fees=fees, outcomes=to_mark, marked_attended=marked, settings=options.to_wire())


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one that would start a formula gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


async def sessions_csv(
    conn: Executor,
    therapist_id: uuid.UUID,
    therapist_zone: str,
    window: Span,
    reader: Principal,
    settings: Settings,
    now: dt.datetime,
) -> str:
    """Every session in `window` (any status) with its fee and fee decision, as CSV for billing; audited."""
    await settle(conn, therapist_id, settings, now)
    found = await bookings.list_for_therapist(conn, therapist_id, window, None)
    if len(found) >= MAX_EXPORT:
        raise invalid(f"More than {MAX_EXPORT - 1} sessions: export a shorter range.", code="range_too_long")
    decided = await policies.decisions(conn, [b.id for b in found])
    tz = zone(therapist_zone)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for b in found:
        start, end = b.starts_at.astimezone(tz), b.ends_at.astimezone(tz)
        fee = policies.fee_owed(b.status, b.policy)
        decision = decided.get(b.id) if fee is not None else None
        policy = b.policy
        writer.writerow(
            safe_cell(v)
            for v in (
                start.date().isoformat(),
                start.strftime("%H:%M"),
                end.strftime("%H:%M"),
                therapist_zone,
                b.client_name,
                b.client_email,
                b.session_type_name,
                b.status,
                fee.amount if fee else "",
                fee.currency if fee else "",
                decision.decision if decision else ("pending" if fee else ""),
                decision.reason if decision else "",
                policy.version if policy else "",
            )
        )
    await audit.record_many(conn, reader, "booking.exported", [b.id for b in found], therapist_id=therapist_id)
    return out.getvalue()
