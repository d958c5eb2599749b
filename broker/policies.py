"""Cancellation policies: versioned texts, the late-cancellation window and fees; fee options and decisions.

This module owns `cancellation_policies`, `policy_settings` and `fee_decisions`. A session type's
policy is versioned: changing its text, window or fees adds the next version, and a booking keeps
the version it was made under (`bookings.policy_id`, set at insert by a trigger in migration 009,
so every way of inserting a booking gets it). The rules:

- a cancellation is *late* when the client cancels less than `window_hours` before the start
  (`window_hours` 0: never). The therapist cancelling is never late: the fee is the client's;
- a late cancellation owes the policy's late-cancel fee, a no-show its no-show fee; a fee is
  information for billing (an amount and an ISO 4217 code), never charged here;
- each fee owed is charged or waived with a reason (`fee_decisions`, audited); with the
  therapist's option on, the first late cancellation of each client is waived at once.

It imports no other domain module but `audit`: `bookings` asks it whether a cancellation is late.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

import asyncpg
import msgspec

from broker import audit, schemas
from broker.database import Executor, record_to
from broker.errors import NotFound
from broker.principals import SYSTEM, Principal

Decision = Literal["charge", "waive"]

INSERT_POLICY = """
INSERT INTO cancellation_policies (id, session_type_id, version, window_hours, text,
    late_cancel_amount, late_cancel_currency, no_show_amount, no_show_currency)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING *
"""
SELECT_CURRENT = """
SELECT DISTINCT ON (session_type_id) * FROM cancellation_policies
WHERE session_type_id = ANY($1::uuid[])
ORDER BY session_type_id, version DESC
"""
SELECT_VERSIONS = "SELECT * FROM cancellation_policies WHERE session_type_id = $1 ORDER BY version"
# Versions are numbered per session type; the type's row lock orders two concurrent changes.
LOCK_SESSION_TYPE = "SELECT id FROM session_types WHERE id = $1 AND therapist_id = $2 AND active FOR UPDATE"
SELECT_OWN_TYPE = "SELECT id FROM session_types WHERE id = $1 AND therapist_id = $2"
SELECT_SETTINGS = "SELECT * FROM policy_settings WHERE therapist_id = $1"
UPSERT_SETTINGS = """
INSERT INTO policy_settings (therapist_id, waive_first_late_cancellation, suggest_waiver_when_rebooked)
VALUES ($1, $2, $3)
ON CONFLICT (therapist_id) DO UPDATE SET
    waive_first_late_cancellation = EXCLUDED.waive_first_late_cancellation,
    suggest_waiver_when_rebooked = EXCLUDED.suggest_waiver_when_rebooked,
    updated_at = now()
RETURNING *
"""
UPSERT_DECISION = """
INSERT INTO fee_decisions (booking_id, decision, reason, decided_by) VALUES ($1, $2, $3, $4)
ON CONFLICT (booking_id) DO UPDATE SET
    decision = EXCLUDED.decision, reason = EXCLUDED.reason,
    decided_by = EXCLUDED.decided_by, decided_at = now()
RETURNING *
"""
SELECT_DECISIONS = "SELECT * FROM fee_decisions WHERE booking_id = ANY($1::uuid[])"
# Whether this late cancellation is its client's first with this therapist.
IS_FIRST_LATE_CANCELLATION = """
SELECT NOT EXISTS (
    SELECT 1 FROM bookings b JOIN bookings o
      ON o.therapist_id = b.therapist_id AND o.client_id = b.client_id AND o.id <> b.id
    WHERE b.id = $1 AND o.status = 'late_cancelled'
)
"""

FIRST_LATE_WAIVER = "The client's first late cancellation: waived automatically (your setting)."


class Policy(msgspec.Struct, frozen=True):
    """One version of a session type's cancellation policy."""

    id: uuid.UUID
    version: int
    window_hours: int
    text: str
    late_cancel_amount: Decimal | None = None
    late_cancel_currency: str | None = None
    no_show_amount: Decimal | None = None
    no_show_currency: str | None = None

    @property
    def late_cancel_fee(self) -> schemas.Fee | None:
        return _fee(self.late_cancel_amount, self.late_cancel_currency)

    @property
    def no_show_fee(self) -> schemas.Fee | None:
        return _fee(self.no_show_amount, self.no_show_currency)

    def window_opens(self, starts_at: dt.datetime) -> dt.datetime | None:
        """From when a cancellation of a session starting at `starts_at` is late (None: never)."""
        return starts_at - dt.timedelta(hours=self.window_hours) if self.window_hours else None

    def same_terms(self, body: schemas.PolicyIn) -> bool:
        """Whether `body` says what this version says (then no new version is needed)."""
        return (
            self.window_hours == body.window_hours
            and self.text == body.text
            and self.late_cancel_fee == _normal(body.late_cancel_fee)
            and self.no_show_fee == _normal(body.no_show_fee)
        )

    def to_wire(self) -> schemas.PolicyOut:
        return schemas.PolicyOut(
            version=self.version,
            window_hours=self.window_hours,
            text=self.text,
            late_cancel_fee=self.late_cancel_fee,
            no_show_fee=self.no_show_fee,
        )


class PolicySettings(msgspec.Struct, frozen=True):
    """A therapist's options about fees (both off until turned on)."""

    waive_first_late_cancellation: bool = False
    suggest_waiver_when_rebooked: bool = False

    def to_wire(self) -> schemas.PolicySettingsOut:
        return schemas.PolicySettingsOut(
            waive_first_late_cancellation=self.waive_first_late_cancellation,
            suggest_waiver_when_rebooked=self.suggest_waiver_when_rebooked,
        )


class FeeDecision(msgspec.Struct, frozen=True):
    booking_id: uuid.UUID
    decision: Decision
    reason: str
    decided_by: Literal["therapist", "system"]
    decided_at: dt.datetime

    def to_wire(self) -> schemas.FeeDecisionOut:
        return schemas.FeeDecisionOut(
            decision=self.decision, reason=self.reason, decided_by=self.decided_by, decided_at=self.decided_at
        )


def _fee(amount: Decimal | None, currency: str | None) -> schemas.Fee | None:
    return None if amount is None or currency is None else schemas.Fee(amount=str(amount), currency=currency)


def _normal(fee: schemas.Fee | None) -> schemas.Fee | None:
    """A fee as the database gives it back (numeric keeps the scale written: "60.00" stays "60.00")."""
    return None if fee is None else schemas.Fee(amount=str(Decimal(fee.amount)), currency=fee.currency)


def is_late(policy: Policy | None, starts_at: dt.datetime, now: dt.datetime, actor: Principal) -> bool:
    """Whether `actor` cancelling now is a late cancellation under `policy` (only a client's can be)."""
    if policy is None or actor.kind != "client":
        return False
    opens = policy.window_opens(starts_at)
    return opens is not None and now >= opens


def cancel_now(policy: Policy | None, starts_at: dt.datetime, now: dt.datetime) -> schemas.CancelNow:
    """What the client cancelling at `now` would be: late or not, and the fee a late one owes."""
    opens = policy.window_opens(starts_at) if policy is not None else None
    late = opens is not None and now >= opens
    return schemas.CancelNow(
        late=late,
        fee=policy.late_cancel_fee if late and policy is not None else None,
        late_from=opens,
    )


def fee_owed(status: str, policy: Policy | None) -> schemas.Fee | None:
    """The fee a booking in `status` owes under its policy: late-cancel or no-show, or none."""
    if policy is None:
        return None
    if status == "late_cancelled":
        return policy.late_cancel_fee
    if status == "no_show":
        return policy.no_show_fee
    return None


async def current(conn: Executor, session_type_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Policy]:
    """The latest policy version of each of these session types that has one."""
    if not session_type_ids:
        return {}
    rows = await conn.fetch(SELECT_CURRENT, list(session_type_ids))
    return {r["session_type_id"]: record_to(Policy, r) for r in rows}


async def versions(conn: Executor, session_type_id: uuid.UUID) -> list[Policy]:
    return [record_to(Policy, r) for r in await conn.fetch(SELECT_VERSIONS, session_type_id)]


async def _insert(conn: Executor, session_type_id: uuid.UUID, version: int, body: schemas.PolicyIn) -> Policy:
    late, no_show = body.late_cancel_fee, body.no_show_fee
    row = await conn.fetchrow(
        INSERT_POLICY,
        uuid.uuid4(),
        session_type_id,
        version,
        body.window_hours,
        body.text,
        Decimal(late.amount) if late else None,
        late.currency if late else None,
        Decimal(no_show.amount) if no_show else None,
        no_show.currency if no_show else None,
    )
    return record_to(Policy, row)


async def first_version(conn: Executor, session_type_id: uuid.UUID, body: schemas.PolicyIn) -> Policy:
    """The policy a new session type starts with (version 1)."""
    return await _insert(conn, session_type_id, 1, body)


async def change(
    pool: asyncpg.Pool, therapist_id: uuid.UUID, raw_type_id: str, body: schemas.PolicyIn, actor: Principal
) -> Policy:
    """Set a session type's policy: a new version when the terms differ, the current one when they do not.

    Bookings already made keep the version they were made under."""
    try:
        type_id = uuid.UUID(raw_type_id)
    except ValueError:
        raise NotFound("session type") from None
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(LOCK_SESSION_TYPE, type_id, therapist_id) is None:
            raise NotFound("session type")
        latest = (await current(conn, [type_id])).get(type_id)
        if latest is not None and latest.same_terms(body):
            return latest
        policy = await _insert(conn, type_id, (latest.version if latest else 0) + 1, body)
        await audit.record(conn, actor, "policy.versioned", therapist_id=therapist_id)
        return policy


async def history(pool: Executor, therapist_id: uuid.UUID, raw_type_id: str) -> list[Policy]:
    """Every version of a session type's policy, oldest first (archived types included)."""
    try:
        type_id = uuid.UUID(raw_type_id)
    except ValueError:
        raise NotFound("session type") from None
    if await pool.fetchval(SELECT_OWN_TYPE, type_id, therapist_id) is not None:
        return await versions(pool, type_id)
    raise NotFound("session type")


async def settings(conn: Executor, therapist_id: uuid.UUID) -> PolicySettings:
    row = await conn.fetchrow(SELECT_SETTINGS, therapist_id)
    return PolicySettings() if row is None else record_to(PolicySettings, row)


async def change_settings(
    conn: Executor, therapist_id: uuid.UUID, body: schemas.PolicySettingsIn, actor: Principal
) -> PolicySettings:
    row = await conn.fetchrow(
        UPSERT_SETTINGS, therapist_id, body.waive_first_late_cancellation, body.suggest_waiver_when_rebooked
    )
    await audit.record(conn, actor, "policy_settings.changed", therapist_id=therapist_id)
    return record_to(PolicySettings, row)


async def decide(
    conn: Executor,
    booking_id: uuid.UUID,
    therapist_id: uuid.UUID,
    decision: Decision,
    reason: str,
    actor: Principal,
) -> FeeDecision:
    """Record (or change) whether a booking's fee is charged or waived, and why; audited."""
    row = await conn.fetchrow(
        UPSERT_DECISION, booking_id, decision, reason, "system" if actor.kind == "system" else "therapist"
    )
    action = "fee.charged" if decision == "charge" else "fee.waived"
    await audit.record(conn, actor, action, booking_id=booking_id, therapist_id=therapist_id)
    return record_to(FeeDecision, row)


async def decisions(conn: Executor, booking_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, FeeDecision]:
    if not booking_ids:
        return {}
    return {r["booking_id"]: record_to(FeeDecision, r) for r in await conn.fetch(SELECT_DECISIONS, list(booking_ids))}


async def after_late_cancellation(
    conn: asyncpg.Connection, booking_id: uuid.UUID, therapist_id: uuid.UUID, policy: Policy | None
) -> None:
    """In the cancelling transaction: waive the fee of a client's first late cancellation, if the therapist chose so."""
    if policy is None or policy.late_cancel_fee is None:
        return
    if not (await settings(conn, therapist_id)).waive_first_late_cancellation:
        return
    if await conn.fetchval(IS_FIRST_LATE_CANCELLATION, booking_id):
        await decide(conn, booking_id, therapist_id, "waive", FIRST_LATE_WAIVER, SYSTEM)
