"""Throttling password guesses: failed attempts per email and per address within a sliding window.

After `limits` failures inside `WINDOW` the next attempt is refused until the oldest counted
failure leaves the window. An attempt is counted as a failure when it is admitted, before its
password is checked (a success then wipes the email's failures), and the check and the count
happen in one transaction under advisory locks on the email's and the address's keys: however
many attempts race, on however many nodes, at most `limits` of them get to try a password.
Emails and addresses are stored as SHA-256 only. This module owns the `login_attempts` table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from typing import Literal

import asyncpg

from broker.database import Executor

Kind = Literal["login", "reset"]
WINDOW = dt.timedelta(minutes=15)
KEEP = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Limits:
    per_email: int
    per_address: int


LOGIN_LIMITS = Limits(per_email=5, per_address=20)
# "Forgot password" issues a link per request: few are needed, and each one is printed to the log.
RESET_LIMITS = Limits(per_email=3, per_address=10)

INSERT_ATTEMPT = """
INSERT INTO login_attempts (at, kind, email_hash, address_hash, succeeded) VALUES ($1, $2, $3, $4, $5)
"""
# The limit-th most recent failure: while it is inside the window, the caller waits for it to leave.
_NTH_FAILURE = """
SELECT at FROM login_attempts
WHERE {column} = $1 AND kind = $2 AND NOT succeeded AND at > $3
ORDER BY at DESC OFFSET $4 - 1 LIMIT 1
"""
NTH_FAILURE_BY_EMAIL = _NTH_FAILURE.format(column="email_hash")
NTH_FAILURE_BY_ADDRESS = _NTH_FAILURE.format(column="address_hash")
FORGET_FAILURES = "DELETE FROM login_attempts WHERE email_hash = $1 AND kind = $2 AND NOT succeeded"
PURGE = "DELETE FROM login_attempts WHERE at < $1"
# The advisory-lock key space (namespace, key) under which one email's or address's attempts queue.
LOCK_NAMESPACE = 0x7E1E_0004
LOCK_KEY = "SELECT pg_advisory_xact_lock($1, $2)"


def email_key(email: str) -> bytes:
    """What attempts are counted under for an email (its hash, case and spaces ignored)."""
    return hashlib.sha256(b"email\0" + email.strip().lower().encode()).digest()


def address_key(address: str | None) -> bytes:
    """What attempts are counted under for a client address (its hash)."""
    return hashlib.sha256(b"address\0" + (address or "unknown").encode()).digest()


def _lock_id(key: bytes) -> int:
    return int.from_bytes(key[:4], "big", signed=True)


async def admit(
    pool: asyncpg.Pool,
    kind: Kind,
    email: bytes,
    address: bytes,
    now: dt.datetime,
    limits: Limits,
) -> int | None:
    """Seconds to wait before trying again, or None when the attempt may go ahead: then it is
    already counted as a failure (`record` a success to wipe it).

    The email's and the address's locks are taken in one order (by key), so attempts sharing
    either queue behind each other and never deadlock."""
    async with pool.acquire() as conn, conn.transaction():
        for lock in sorted({_lock_id(email), _lock_id(address)}):
            await conn.execute(LOCK_KEY, LOCK_NAMESPACE, lock)
        wait = await retry_after(conn, kind, email, address, now, limits)
        if wait is None:
            await conn.execute(INSERT_ATTEMPT, now, kind, email, address, False)
        return wait


async def retry_after(
    conn: Executor,
    kind: Kind,
    email: bytes,
    address: bytes,
    now: dt.datetime,
    limits: Limits,
) -> int | None:
    """Seconds to wait before trying again, or None when the attempt may go ahead."""
    since = now - WINDOW
    waits: list[dt.timedelta] = []
    for query, key, limit in (
        (NTH_FAILURE_BY_EMAIL, email, limits.per_email),
        (NTH_FAILURE_BY_ADDRESS, address, limits.per_address),
    ):
        at: dt.datetime | None = await conn.fetchval(query, key, kind, since, limit)
        if at is not None:
            waits.append(at + WINDOW - now)
    if not waits:
        return None
    return max(1, math.ceil(max(waits).total_seconds()))


async def record(
    conn: Executor,
    kind: Kind,
    email: bytes,
    address: bytes,
    now: dt.datetime,
    *,
    succeeded: bool,
) -> None:
    """Note an attempt; a success wipes the email's failures, the one `admit` counted for it included
    (a typo should not linger)."""
    await conn.execute(INSERT_ATTEMPT, now, kind, email, address, succeeded)
    if succeeded:
        await conn.execute(FORGET_FAILURES, email, kind)
        await conn.execute(PURGE, now - KEEP)
