"""The append-only audit trail: who created, changed, cancelled or read a booking (ids only)."""

from __future__ import annotations

import uuid

import asyncpg

from broker.principals import Principal

INSERT_EVENT = """
INSERT INTO audit_events (actor_kind, actor_id, action, booking_id, therapist_id, client_id)
VALUES ($1, $2, $3, $4, $5, $6)
"""


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    actor: Principal,
    action: str,
    *,
    booking_id: uuid.UUID | None = None,
    therapist_id: uuid.UUID | None = None,
    client_id: uuid.UUID | None = None,
) -> None:
    await conn.execute(INSERT_EVENT, actor.kind, actor.actor_id, action, booking_id, therapist_id, client_id)


async def record_many(
    conn: asyncpg.Connection | asyncpg.Pool,
    actor: Principal,
    action: str,
    booking_ids: list[uuid.UUID],
    *,
    therapist_id: uuid.UUID | None = None,
) -> None:
    """One event per booking (a therapist reading a list reads each booking on it)."""
    if booking_ids:
        await conn.executemany(
            INSERT_EVENT, [(actor.kind, actor.actor_id, action, bid, therapist_id, None) for bid in booking_ids]
        )


async def record_clients(
    conn: asyncpg.Connection | asyncpg.Pool,
    actor: Principal,
    action: str,
    client_ids: list[uuid.UUID],
    *,
    therapist_id: uuid.UUID,
) -> None:
    """One event per client record (a therapist reading the client list reads each record on it)."""
    if client_ids:
        await conn.executemany(
            INSERT_EVENT, [(actor.kind, actor.actor_id, action, None, therapist_id, cid) for cid in client_ids]
        )
