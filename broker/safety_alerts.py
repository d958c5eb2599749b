"""Safety alerts: a questionnaire answer that needs the therapist's attention (PHQ-9 item 9 above 0).

Raised by `broker.measures.complete` in the transaction that stores the form, with everything the
protocol owes the therapist: the alert row (the dashboard's and the room's banner read the open
ones), an audit entry, and an email through the outbox (kind `therapist.review_alert`) that says
only that a client's answers need review, with a link to the dashboard: no name, no answer, no
score. The alert stays open until the therapist marks it reviewed (`review`, audited); every list
of alerts is a read of clinical data and is audited per client.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

from broker import audit, outbox
from broker.database import Executor, record_to
from broker.errors import NotFound
from broker.outbox import NewMessage
from broker.principals import Principal

REVIEW_ALERT = "therapist.review_alert"  # the outbox kind of the email (broker/mail/compose.py)
MAX_LISTED = 200

INSERT_ALERT = """
INSERT INTO safety_alerts (id, therapist_id, client_id, response_id, created_at) VALUES ($1, $2, $3, $4, $5)
"""
# An alert with what the therapist's pages show beside it: the client's name and the session.
SELECT_ALERTS = """
SELECT s.id, s.client_id, c.name AS client_name, r.booking_id, r.instrument, s.created_at, s.reviewed_at
FROM safety_alerts s
JOIN clients c ON c.id = s.client_id
JOIN measure_responses r ON r.id = s.response_id
WHERE s.therapist_id = $1 AND ($2::uuid IS NULL OR s.client_id = $2) AND ($3 OR s.reviewed_at IS NULL)
ORDER BY s.created_at DESC, s.id
LIMIT $4
"""
REVIEW = """
UPDATE safety_alerts SET reviewed_at = $3, reviewed_by = $1
WHERE id = $2 AND therapist_id = $1 AND reviewed_at IS NULL
RETURNING id
"""
SELECT_ONE = """
SELECT s.id, s.client_id, c.name AS client_name, r.booking_id, r.instrument, s.created_at, s.reviewed_at
FROM safety_alerts s
JOIN clients c ON c.id = s.client_id
JOIN measure_responses r ON r.id = s.response_id
WHERE s.id = $1 AND s.therapist_id = $2
"""
IS_OPEN = "SELECT reviewed_at IS NULL FROM safety_alerts WHERE id = $1"


class Alert(msgspec.Struct, frozen=True):
    """An alert as the therapist sees it (never in an email, feed, webhook or log)."""

    id: uuid.UUID
    client_id: uuid.UUID
    client_name: str
    booking_id: uuid.UUID
    instrument: str
    created_at: dt.datetime
    reviewed_at: dt.datetime | None


async def raise_alert(
    conn: asyncpg.Connection,
    *,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID,
    booking_id: uuid.UUID,
    response_id: uuid.UUID,
    now: dt.datetime,
    actor: Principal,
) -> uuid.UUID:
    """Open an alert for a stored response, audit it and queue the therapist's email (run in its transaction)."""
    alert_id = uuid.uuid4()
    await conn.execute(INSERT_ALERT, alert_id, therapist_id, client_id, response_id, now)
    await audit.record(
        conn, actor, "safety_alert.raised", booking_id=booking_id, therapist_id=therapist_id, client_id=client_id
    )
    await outbox.enqueue(
        conn,
        [
            NewMessage(
                channel="email",
                kind=REVIEW_ALERT,
                recipient="therapist",
                due_at=now,
                therapist_id=therapist_id,
                payload={"alert": str(alert_id)},
            )
        ],
        now,
    )
    return alert_id


async def _listed(conn: Executor, reader: Principal, therapist_id: uuid.UUID, found: list[Alert]) -> list[Alert]:
    await audit.record_clients(
        conn, reader, "safety_alert.listed", sorted({a.client_id for a in found}), therapist_id=therapist_id
    )
    return found


async def list_for_reader(
    conn: Executor, therapist_id: uuid.UUID, reader: Principal, *, include_reviewed: bool = False
) -> list[Alert]:
    """The therapist's alerts, newest first (open ones only unless asked); audited per client listed."""
    rows = await conn.fetch(SELECT_ALERTS, therapist_id, None, include_reviewed, MAX_LISTED)
    return await _listed(conn, reader, therapist_id, [record_to(Alert, r) for r in rows])


async def open_for_client(conn: Executor, therapist_id: uuid.UUID, client_id: uuid.UUID) -> list[Alert]:
    """A client's open alerts (the caller audits the read it is part of)."""
    rows = await conn.fetch(SELECT_ALERTS, therapist_id, client_id, False, MAX_LISTED)
    return [record_to(Alert, r) for r in rows]


async def review(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, alert_id: uuid.UUID, now: dt.datetime, actor: Principal
) -> Alert:
    """Mark an alert reviewed (audited). Reviewing it again changes nothing: the first review's time stays."""
    async with conn.transaction():
        reviewed = await conn.fetchval(REVIEW, therapist_id, alert_id, now)
        row = await conn.fetchrow(SELECT_ONE, alert_id, therapist_id)
        if row is None:
            raise NotFound("alert")
        alert = record_to(Alert, row)
        if reviewed is not None:
            await audit.record(
                conn,
                actor,
                "safety_alert.reviewed",
                booking_id=alert.booking_id,
                therapist_id=therapist_id,
                client_id=alert.client_id,
            )
    return alert


async def is_open(conn: Executor, alert_id: uuid.UUID) -> bool:
    """Whether the alert still waits for review (its email is not sent once it was reviewed)."""
    return bool(await conn.fetchval(IS_OPEN, alert_id))
