"""The transactional outbox: every message a change owes somebody, and the workers that deliver them.

A change that should tell someone (a booking made, moved or cancelled, a password link issued)
calls `enqueue` on its own connection, inside its own transaction: the message exists if and only
if the change committed. A row carries ids, times and the kind of message, never a person's name
or contact details; the channel's sender reads what it may reveal from the records when it sends.

Every node runs one worker (`worker_ctx`). It claims due rows with `FOR UPDATE SKIP LOCKED` and a
lease, so each row is in one node's hands at a time, sends them through the channel's `Sender`,
and records the outcome. A failed attempt is tried again after an exponential backoff with jitter
(30 s, 1 min, 2 min, … capped at 6 h) until the message is 3 days old; then it is `failed` and shown
on the dashboard. A node killed mid-send leaves its rows leased; when the lease runs out another
node sends them again. That is the one window in which a message can arrive twice: after the
receiving server accepted it and before our commit recorded it (docs/operations.md measures it).
Each message keeps its id across attempts, so the email `Message-ID` and the `webhook-id` let the
receiver recognise a duplicate.

Reminders are rows whose `due_at` is their time; a reschedule or cancellation withdraws them
(`withdraw`) in its own transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

import asyncpg
import msgspec
from aiohttp import web

from broker.clock import CLOCK
from broker.database import HEALTH, POOL, Executor, record_to
from broker.errors import NotFound
from broker.settings import SETTINGS

log = logging.getLogger("teleroom.outbox")

Channel = Literal["email", "webhook"]
Recipient = Literal["client", "therapist", "endpoint"]
State = Literal["pending", "delivered", "failed", "withdrawn"]

CLAIM_BATCH = 64
CONCURRENCY = 16  # messages one node sends at once
LEASE = dt.timedelta(minutes=2)  # the default of TELEROOM_OUTBOX_LEASE_SECONDS
SHUTDOWN_GRACE_SECONDS = 5.0
GIVE_UP_AFTER = dt.timedelta(days=3)
FIRST_RETRY = dt.timedelta(seconds=30)
LONGEST_RETRY = dt.timedelta(hours=6)
MAX_ERROR_CHARS = 300

# A message's columns, and their types, in the order `columns` passes them.
COLUMNS = "id, channel, kind, recipient, therapist_id, booking_id, series_id, endpoint_id, payload, sealed, due_at"
COLUMNS += ", created_at"
_TYPES: tuple[str, ...] = ("uuid", "text", "text", "text", "uuid", "uuid", "uuid", "uuid", "jsonb", "bytea")
_TYPES += ("timestamptz", "timestamptz")


def unnest_messages(first: int) -> str:
    """SQL for the rows of `columns(...)` passed as the parameters from $first on: one per message."""
    arrays = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(_TYPES))
    return f"unnest({arrays})"


INSERT_MESSAGES = f"INSERT INTO outbox ({COLUMNS}) SELECT * FROM {unnest_messages(1)}"  # noqa: S608 (constants)
CLAIM_DUE = """
UPDATE outbox o SET lease_until = clock_timestamp() + $2::interval, attempts = o.attempts + 1, last_attempt_at = $1
FROM (
    SELECT id FROM outbox
    WHERE state = 'pending' AND due_at <= $1 AND (lease_until IS NULL OR lease_until <= clock_timestamp())
    ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED
) due
WHERE o.id = due.id
RETURNING o.id, o.channel, o.kind, o.recipient, o.therapist_id, o.booking_id, o.series_id, o.endpoint_id,
          o.payload::text AS payload, o.sealed, o.state, o.due_at, o.created_at, o.attempts, o.lease_until,
          o.last_attempt_at, o.last_status, o.last_error, o.delivered_at
"""
MARK_DELIVERED = """
UPDATE outbox o SET state = 'delivered', delivered_at = $2, lease_until = NULL, last_error = NULL,
    last_status = d.status
FROM unnest($1::uuid[], $3::int[]) AS d(id, status)
WHERE o.id = d.id AND o.state = 'pending'
"""
MARK_RETRY = """
UPDATE outbox SET due_at = $2, lease_until = NULL, last_status = $3, last_error = $4
WHERE id = $1 AND state = 'pending'
"""
MARK_FAILED = """
UPDATE outbox SET state = 'failed', lease_until = NULL, last_status = $2, last_error = $3
WHERE id = $1 AND state = 'pending'
"""
WITHDRAW = """
UPDATE outbox SET state = 'withdrawn', lease_until = NULL
WHERE booking_id = ANY($1::uuid[]) AND kind = ANY($2::text[]) AND state = 'pending'
"""
SEND_AGAIN = """
UPDATE outbox SET state = 'pending', due_at = $2, lease_until = NULL, created_at = $2
WHERE id = $1 AND state IN ('delivered', 'failed')
RETURNING id
"""
SELECT_MESSAGE = """
SELECT id, channel, kind, recipient, therapist_id, booking_id, series_id, endpoint_id, payload::text AS payload, sealed,
       state, due_at, created_at, attempts, lease_until, last_attempt_at, last_status, last_error, delivered_at
FROM outbox WHERE id = $1
"""
SELECT_FAILED = """
SELECT id, channel, kind, recipient, therapist_id, booking_id, series_id, endpoint_id, payload::text AS payload, sealed,
       state, due_at, created_at, attempts, lease_until, last_attempt_at, last_status, last_error, delivered_at
FROM outbox WHERE therapist_id = $1 AND state = 'failed' ORDER BY created_at DESC LIMIT $2
"""
SELECT_FOR_THERAPIST = """
SELECT id, channel, kind, recipient, therapist_id, booking_id, series_id, endpoint_id, payload::text AS payload, sealed,
       state, due_at, created_at, attempts, lease_until, last_attempt_at, last_status, last_error, delivered_at
FROM outbox WHERE therapist_id = $1 AND ($2::text IS NULL OR state = $2) ORDER BY created_at DESC, id LIMIT $3
"""
NOT_NEEDED = "UPDATE outbox SET state = 'withdrawn', lease_until = NULL WHERE id = $1 AND state = 'pending'"
SELECT_FOR_ENDPOINT = """
SELECT id, channel, kind, recipient, therapist_id, booking_id, series_id, endpoint_id, payload::text AS payload, sealed,
       state, due_at, created_at, attempts, lease_until, last_attempt_at, last_status, last_error, delivered_at
FROM outbox WHERE endpoint_id = $1 ORDER BY created_at DESC, id LIMIT $2
"""
SELECT_FOR_BOOKING = """
SELECT id, channel, kind, recipient, therapist_id, booking_id, series_id, endpoint_id, payload::text AS payload, sealed,
       state, due_at, created_at, attempts, lease_until, last_attempt_at, last_status, last_error, delivered_at
FROM outbox WHERE booking_id = $1 ORDER BY due_at, id
"""
SELECT_QUEUE = """
SELECT count(*) AS depth, min(due_at) AS oldest_due FROM outbox WHERE state = 'pending' AND due_at <= $1
"""


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message to queue. `payload` holds ids, times and flags only (never names or contact
    details); `sealed` a secret the message must carry, already sealed (`broker.sealing`)."""

    channel: Channel
    kind: str
    recipient: Recipient
    due_at: dt.datetime
    therapist_id: uuid.UUID | None = None
    booking_id: uuid.UUID | None = None
    series_id: uuid.UUID | None = None
    endpoint_id: uuid.UUID | None = None
    payload: Mapping[str, Any] = msgspec.field(default_factory=dict)
    sealed: bytes | None = None


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A queued message as stored, with its delivery state."""

    id: uuid.UUID
    channel: Channel
    kind: str
    recipient: Recipient
    therapist_id: uuid.UUID | None
    booking_id: uuid.UUID | None
    series_id: uuid.UUID | None
    endpoint_id: uuid.UUID | None
    payload: str  # the stored JSON text (a webhook sends exactly these bytes); `data()` decodes it
    sealed: bytes | None
    state: State
    due_at: dt.datetime
    created_at: dt.datetime
    attempts: int
    lease_until: dt.datetime | None
    last_attempt_at: dt.datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: dt.datetime | None

    def data(self) -> dict[str, Any]:
        decoded: dict[str, Any] = msgspec.json.decode(self.payload)
        return decoded

    def __repr__(self) -> str:  # never the sealed secret, never the payload
        return f"Message({self.id}, {self.channel}, {self.kind}, {self.state})"


class Outcome(msgspec.Struct, frozen=True):
    """What one delivery attempt came to. `status` is the SMTP reply code or the HTTP status;
    `error` a short reason without personal data; `permanent` means trying again cannot help."""

    delivered: bool
    status: int | None = None
    error: str | None = None
    permanent: bool = False


class Sender(Protocol):
    """One channel's way out (email, webhook). `send` never raises for a failed delivery: it says so."""

    async def send(self, message: Message) -> Outcome: ...

    async def close(self) -> None: ...


class QueueState(msgspec.Struct, frozen=True):
    depth: int
    oldest_due: dt.datetime | None


def _json(payload: Mapping[str, Any]) -> str:
    return msgspec.json.encode(payload).decode()


def columns(batch: Sequence[NewMessage], now: dt.datetime) -> tuple[list[Any], ...]:
    """The parameters of `unnest_messages`: one array per column, each message under a new id, created `now`."""
    raw = os.urandom(16 * len(batch))  # one read of the system's randomness for every id
    return (
        [uuid.UUID(bytes=raw[i : i + 16], version=4) for i in range(0, len(raw), 16)],
        [m.channel for m in batch],
        [m.kind for m in batch],
        [m.recipient for m in batch],
        [m.therapist_id for m in batch],
        [m.booking_id for m in batch],
        [m.series_id for m in batch],
        [m.endpoint_id for m in batch],
        [_json(m.payload) for m in batch],
        [m.sealed for m in batch],
        [m.due_at for m in batch],
        [now] * len(batch),
    )


async def enqueue(conn: Executor, messages: Iterable[NewMessage], now: dt.datetime) -> list[uuid.UUID]:
    """Queue messages on the caller's connection (inside the change's transaction). Returns their ids."""
    batch = list(messages)
    if not batch:
        return []
    arrays = columns(batch, now)
    await conn.execute(INSERT_MESSAGES, *arrays)
    ids: list[uuid.UUID] = arrays[0]
    return ids


async def withdraw(conn: Executor, booking_ids: Sequence[uuid.UUID], kinds: Sequence[str]) -> int:
    """Withdraw the pending messages of these kinds for these bookings (reminders of a moved or
    cancelled session). Returns how many."""
    result: str = await conn.execute(WITHDRAW, list(booking_ids), list(kinds))
    return int(result.split()[-1])


async def get(conn: Executor, message_id: uuid.UUID) -> Message:
    row = await conn.fetchrow(SELECT_MESSAGE, message_id)
    if row is None:
        raise NotFound("message")
    return record_to(Message, row)


async def send_again(conn: Executor, message_id: uuid.UUID, now: dt.datetime) -> Message:
    """Queue a delivered or failed message again, due now, under the same id (so the receiver can
    tell it is the same message). NotFound if there is none, or it is still pending."""
    if await conn.fetchval(SEND_AGAIN, message_id, now) is None:
        raise NotFound("message", detail="No delivered or failed message with this id.")
    return await get(conn, message_id)


async def failed_for(conn: Executor, therapist_id: uuid.UUID, limit: int = 50) -> list[Message]:
    """A therapist's messages that could not be delivered, newest first (for the dashboard)."""
    return [record_to(Message, r) for r in await conn.fetch(SELECT_FAILED, therapist_id, limit)]


async def for_therapist(
    conn: Executor, therapist_id: uuid.UUID, state: State | None = None, limit: int = 100
) -> list[Message]:
    """A therapist's messages (every channel), newest first, optionally in one state (the dashboard)."""
    return [record_to(Message, r) for r in await conn.fetch(SELECT_FOR_THERAPIST, therapist_id, state, limit)]


async def not_needed(conn: Executor, message_id: uuid.UUID) -> None:
    """Withdraw one pending message its sender found no longer needed (a reminder whose session was
    moved or cancelled meanwhile); recording its attempt afterwards leaves it withdrawn."""
    await conn.execute(NOT_NEEDED, message_id)


async def for_endpoint(conn: Executor, endpoint_id: uuid.UUID, limit: int = 50) -> list[Message]:
    """A webhook endpoint's deliveries, newest first (its delivery log)."""
    return [record_to(Message, r) for r in await conn.fetch(SELECT_FOR_ENDPOINT, endpoint_id, limit)]


async def for_booking(conn: Executor, booking_id: uuid.UUID) -> list[Message]:
    """Every message of a booking, by due time (tests and the dashboard)."""
    return [record_to(Message, r) for r in await conn.fetch(SELECT_FOR_BOOKING, booking_id)]


async def queue_state(conn: Executor, now: dt.datetime) -> QueueState:
    """How many messages are due and not yet delivered, and since when the oldest (metrics)."""
    row = await conn.fetchrow(SELECT_QUEUE, now)
    assert row is not None
    return record_to(QueueState, row)


# --- delivery ------------------------------------------------------------------------------------


def backoff(attempts: int, rng: random.Random) -> dt.timedelta:
    """The wait before attempt `attempts + 1`: doubling from 30 s, capped at 6 h, with jitter
    (between half and all of it) so that failed messages do not retry in lockstep."""
    ceiling = min(FIRST_RETRY * (2 ** max(0, attempts - 1)), LONGEST_RETRY)
    wait: dt.timedelta = ceiling * rng.uniform(0.5, 1.0)
    return wait


async def claim(
    pool: Executor, now: dt.datetime, limit: int = CLAIM_BATCH, lease: dt.timedelta = LEASE
) -> list[Message]:
    """Lease due messages to this node (each row to one node at a time). Counts the attempt.

    What is due is judged by the service's clock (`now`: a reminder's time); a lease runs on the
    database server's real clock, so moving the service clock (a rehearsal, a test) never frees a
    message another worker is sending."""
    return [record_to(Message, r) for r in await pool.fetch(CLAIM_DUE, now, lease, limit)]


async def record(
    pool: Executor, outcomes: Sequence[tuple[Message, Outcome]], now: dt.datetime, rng: random.Random
) -> None:
    """Store what each attempt came to: delivered, retry later, or failed for good."""
    delivered = [(m.id, o.status) for m, o in outcomes if o.delivered]
    if delivered:
        await pool.execute(MARK_DELIVERED, [i for i, _ in delivered], now, [s for _, s in delivered])
    for message, outcome in outcomes:
        if outcome.delivered:
            continue
        error = (outcome.error or "failed")[:MAX_ERROR_CHARS]
        retry_at = now + backoff(message.attempts, rng)
        if outcome.permanent or retry_at - message.created_at > GIVE_UP_AFTER:
            await pool.execute(MARK_FAILED, message.id, outcome.status, error)
            log.warning("message %s (%s %s) failed: %s", message.id, message.channel, message.kind, error)
        else:
            await pool.execute(MARK_RETRY, message.id, retry_at, outcome.status, error)
            log.info("message %s (%s %s) will be tried again: %s", message.id, message.channel, message.kind, error)


class Senders(dict[str, Sender]):
    """The senders of this app by channel; each channel's module adds its own in setup()."""


SENDERS = web.AppKey("outbox_senders", Senders)
WAKE = web.AppKey("outbox_wake", asyncio.Event)


async def _attempt(sender: Sender | None, message: Message, gate: asyncio.Semaphore) -> Outcome:
    if sender is None:
        return Outcome(False, error=f"no sender for channel {message.channel} on this node")
    async with gate:
        try:
            return await sender.send(message)
        except Exception as exc:  # a sender bug must not stop the worker; the message is retried
            log.exception("sender for %s raised on message %s", message.channel, message.id)
            return Outcome(False, error=type(exc).__name__)


class _Recorder:
    """Writes outcomes as they arrive, many in one statement when they arrive together.

    A message is recorded moments after the receiver accepted it (that gap is the only window in
    which a node's death can cause a duplicate), and under load the writes batch themselves."""

    def __init__(self, app: web.Application, rng: random.Random) -> None:
        self.app = app
        self.rng = rng
        self.queue: list[tuple[Message, Outcome, asyncio.Future[None]]] = []
        self.ready = asyncio.Event()

    async def add(self, message: Message, outcome: Outcome) -> None:
        done = asyncio.get_running_loop().create_future()
        self.queue.append((message, outcome, done))
        self.ready.set()
        await done

    async def flush(self) -> None:
        batch, self.queue = self.queue, []
        if not batch:
            return
        try:
            await record(self.app[POOL], [(m, o) for m, o, _ in batch], self.app[CLOCK].now(), self.rng)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Not recorded: the rows stay leased and are tried again when the lease runs out. The
            # outage itself is logged once, by the database's health (broker.database.Health).
            self.app[HEALTH].failed(type(exc).__name__)
            log.info("outbox worker: %d outcomes not recorded; they will be retried", len(batch))
        for _, _, done in batch:
            if not done.done():
                done.set_result(None)

    async def run(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            await self.flush()


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """One delivery worker per node (per process). It keeps up to 2 × CONCURRENCY messages in hand
    (claimed, leased), sends CONCURRENCY at a time, records each outcome as it comes, and claims
    more a batch at a time as slots free up; when nothing is due it waits for the next poll or a
    wake-up. On shutdown it stops claiming, lets sends in flight finish for a few seconds, records
    them, and closes the senders; whatever was cut short comes back to some node when its lease
    runs out."""
    settings = app[SETTINGS]
    wake = app[WAKE]
    poll = float(settings.outbox_poll_seconds)
    lease = dt.timedelta(seconds=settings.outbox_lease_seconds)
    rng = random.Random()  # noqa: S311  # jitter, not a secret
    gate = asyncio.Semaphore(CONCURRENCY)
    recorder = _Recorder(app, rng)
    inflight: set[asyncio.Task[None]] = set()
    room = 2 * CONCURRENCY

    async def deliver(message: Message) -> None:
        outcome = await _attempt(app[SENDERS].get(message.channel), message, gate)
        await recorder.add(message, outcome)

    async def run() -> None:
        while True:
            free = room - len(inflight)
            # Claim in batches: once the first 2 × CONCURRENCY are in hand, wait until a whole
            # CONCURRENCY of them is done (the other half keeps the senders busy meanwhile) rather
            # than spend a round trip on each slot as it frees.
            wanted = min(CLAIM_BATCH, free) if free >= CONCURRENCY else 0
            claimed: list[Message] = []
            if wanted > 0:
                try:
                    claimed = await claim(app[POOL], app[CLOCK].now(), wanted, lease)
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    app[HEALTH].failed(type(exc).__name__)  # one log line per outage, not per poll
            for message in claimed:
                task = asyncio.create_task(deliver(message), name=f"outbox-{message.id}")
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            if claimed and len(claimed) == wanted:
                continue  # more may be due: claim again while there is room
            if wanted == 0:  # no room for a batch yet
                await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await wake.wait()

    recording = asyncio.create_task(recorder.run(), name="outbox-recorder")
    task = asyncio.create_task(run(), name="outbox-worker")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if inflight:
            _, cut = await asyncio.wait(set(inflight), timeout=SHUTDOWN_GRACE_SECONDS)
            for pending in cut:
                pending.cancel()
            await asyncio.gather(*cut, return_exceptions=True)
        recording.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recording
        await recorder.flush()
        for sender in app[SENDERS].values():
            await sender.close()


async def deliver_due(app: web.Application, now: dt.datetime | None = None) -> int:
    """Claim every message due now and deliver it, in this task (the CLI's `outbox deliver` and
    tests that want delivery without waiting for a poll). Returns how many were attempted."""
    rng = random.Random()  # noqa: S311  # jitter, not a secret
    gate = asyncio.Semaphore(CONCURRENCY)
    lease = dt.timedelta(seconds=app[SETTINGS].outbox_lease_seconds)
    total = 0
    while True:
        claimed = await claim(app[POOL], now or app[CLOCK].now(), CLAIM_BATCH, lease)
        if not claimed:
            return total
        senders = app[SENDERS]
        results = await asyncio.gather(*(_attempt(senders.get(m.channel), m, gate) for m in claimed))
        await record(app[POOL], list(zip(claimed, results, strict=True)), app[CLOCK].now(), rng)
        total += len(claimed)


def setup(app: web.Application) -> None:
    """Called by the composition root before the channels add their senders."""
    app[SENDERS] = Senders()
    app[WAKE] = asyncio.Event()
    app.cleanup_ctx.append(worker_ctx)
