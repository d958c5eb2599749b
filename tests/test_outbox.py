"""The outbox's own rules, on a real PostgreSQL: a message exists only if its change committed, a
due row is in one worker's hands at a time, a dead worker's rows come back after the lease,
failures back off and give up after three days, reminders can be withdrawn, and a delivered or
failed message can be sent again under its own id."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid

import asyncpg
import pytest

from broker import outbox
from broker.outbox import NewMessage, Outcome
from tests.support import Api, next_grid_start

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def webhookless(
    kind: str = "password.reset", *, due: dt.datetime = NOW, booking_id: uuid.UUID | None = None
) -> NewMessage:
    return NewMessage(channel="email", kind=kind, recipient="therapist", due_at=due, booking_id=booking_id)


@pytest.fixture
async def pool(database_url: str) -> asyncpg.Pool:
    async with asyncpg.create_pool(database_url, min_size=2, max_size=4) as pool:
        yield pool


async def states(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT state, count(*) AS n FROM outbox GROUP BY state")
    return {r["state"]: r["n"] for r in rows}


async def test_a_message_exists_only_if_its_change_committed(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await outbox.enqueue(conn, [webhookless()], NOW)
                raise RuntimeError("the change fails after queueing its message")
        async with conn.transaction():
            [kept] = await outbox.enqueue(conn, [webhookless()], NOW)
    assert await states(pool) == {"pending": 1}
    message = await outbox.get(pool, kept)
    assert (message.state, message.attempts, message.data()) == ("pending", 0, {})


async def test_racing_workers_claim_disjoint_rows_and_together_all_of_them(pool: asyncpg.Pool) -> None:
    await outbox.enqueue(pool, [webhookless() for _ in range(200)], NOW)
    batches = await asyncio.gather(*(outbox.claim(pool, NOW, limit=30) for _ in range(10)))
    ids = [m.id for batch in batches for m in batch]
    assert len(ids) == len(set(ids)) == 200
    assert all(m.attempts == 1 and m.lease_until is not None for batch in batches for m in batch)
    assert await outbox.claim(pool, NOW) == []  # all leased


async def test_a_dead_workers_rows_come_back_when_the_lease_runs_out(pool: asyncpg.Pool) -> None:
    [message_id] = await outbox.enqueue(pool, [webhookless()], NOW)
    lease = dt.timedelta(seconds=1)
    [first] = await outbox.claim(pool, NOW, lease=lease)
    # The worker dies without recording anything: nobody else may take it while the lease holds,
    # however far the service clock is moved (leases run on real time)...
    assert await outbox.claim(pool, NOW + dt.timedelta(days=1)) == []
    # ...and once it ran out, the next worker does, counting a second attempt.
    await asyncio.sleep(1.1)
    [again] = await outbox.claim(pool, NOW)
    assert (first.id, again.id, again.attempts) == (message_id, message_id, 2)


async def test_not_due_is_not_claimed(pool: asyncpg.Pool) -> None:
    await outbox.enqueue(pool, [webhookless("reminder", due=NOW + dt.timedelta(hours=1))], NOW)
    assert await outbox.claim(pool, NOW) == []
    assert len(await outbox.claim(pool, NOW + dt.timedelta(hours=1))) == 1


async def test_outcomes_are_recorded_and_failures_back_off_then_give_up(pool: asyncpg.Pool) -> None:
    rng = random.Random(7)
    ok_id, retry_id, permanent_id = await outbox.enqueue(pool, [webhookless() for _ in range(3)], NOW)
    claimed = {m.id: m for m in await outbox.claim(pool, NOW)}
    await outbox.record(
        pool,
        [
            (claimed[ok_id], Outcome(True, status=250)),
            (claimed[retry_id], Outcome(False, status=451, error="try later")),
            (claimed[permanent_id], Outcome(False, status=550, error="no such mailbox", permanent=True)),
        ],
        NOW,
        rng,
    )
    ok, retry, permanent = [await outbox.get(pool, i) for i in (ok_id, retry_id, permanent_id)]
    assert (ok.state, ok.delivered_at, ok.last_status, ok.lease_until) == ("delivered", NOW, 250, None)
    assert (permanent.state, permanent.last_status, permanent.last_error) == ("failed", 550, "no such mailbox")
    assert retry.state == "pending" and retry.last_error == "try later"
    assert NOW + outbox.FIRST_RETRY / 2 <= retry.due_at <= NOW + outbox.FIRST_RETRY
    assert await outbox.failed_for(pool, uuid.uuid4()) == []  # not this therapist's

    # Keep failing: the waits double up to the cap, and a message three days old is given up.
    at = retry.due_at
    while True:
        [message] = await outbox.claim(pool, at)
        await outbox.record(pool, [(message, Outcome(False, error="down"))], at, rng)
        message = await outbox.get(pool, retry_id)
        if message.state == "failed":
            break
        assert message.due_at - at <= outbox.LONGEST_RETRY
        at = message.due_at
    assert message.due_at - message.created_at <= outbox.GIVE_UP_AFTER
    assert at - message.created_at > outbox.GIVE_UP_AFTER - outbox.LONGEST_RETRY
    assert 10 <= message.attempts <= 30


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    for attempts in range(1, 40):
        ceiling = min(outbox.FIRST_RETRY * 2 ** (attempts - 1), outbox.LONGEST_RETRY)
        waits = [outbox.backoff(attempts, rng) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1  # jittered, not in lockstep


async def test_withdraw_takes_only_pending_rows_of_the_kinds_and_bookings_named(api: Api, pool: asyncpg.Pool) -> None:
    therapist, session_type = await api.ready_therapist()
    first = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(days=2), 60)
    booked = []
    for hours in (0, 2):
        status, body = await api.book(therapist, session_type, (first + dt.timedelta(hours=hours)).isoformat())
        assert status == 201, body
        booked.append(uuid.UUID(body["id"]))
    a, b = booked
    probes = [
        webhookless("probe.reminder", booking_id=a),
        webhookless("probe.reminder", booking_id=a),
        webhookless("probe.note", booking_id=a),
        webhookless("probe.reminder", booking_id=b),
    ]
    ids = await outbox.enqueue(pool, probes, NOW)
    [done] = [m for m in await outbox.claim(pool, NOW, limit=100) if m.id == ids[1]] or [None]
    assert done is not None
    await outbox.record(pool, [(done, Outcome(True, status=250))], NOW, random.Random(0))

    assert await outbox.withdraw(pool, [a], ["probe.reminder"]) == 1
    assert [(await outbox.get(pool, i)).state for i in ids] == ["withdrawn", "delivered", "pending", "pending"]
    assert await outbox.withdraw(pool, [a], ["probe.reminder"]) == 0  # nothing left to withdraw


async def test_send_again_keeps_the_id_and_only_for_finished_messages(pool: asyncpg.Pool) -> None:
    [message_id] = await outbox.enqueue(pool, [webhookless()], NOW)
    with pytest.raises(outbox.NotFound):  # still pending: nothing to send again
        await outbox.send_again(pool, message_id, NOW)
    [message] = await outbox.claim(pool, NOW)
    await outbox.record(pool, [(message, Outcome(True, status=250))], NOW, random.Random(0))
    later = NOW + dt.timedelta(hours=2)
    again = await outbox.send_again(pool, message_id, later)
    assert (again.id, again.state, again.due_at) == (message_id, "pending", later)
    [claimed] = await outbox.claim(pool, later)
    assert claimed.id == message_id and claimed.attempts == 2
