"""Therapist passwords: argon2id hashing (RFC 9106), checked off the event loop, stored per therapist.

This module owns the `therapist_passwords` table.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import uuid

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from broker.database import Executor
from broker.errors import invalid

MIN_LENGTH = 10
# argon2 hashes any length, but a megabyte "password" is a cheap way to burn our CPU.
MAX_LENGTH = 256

UPSERT_PASSWORD = """
INSERT INTO therapist_passwords (therapist_id, password_hash, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (therapist_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, updated_at = EXCLUDED.updated_at
"""
UPDATE_HASH = "UPDATE therapist_passwords SET password_hash = $2 WHERE therapist_id = $1"
SELECT_HASH = "SELECT password_hash FROM therapist_passwords WHERE therapist_id = $1"

# argon2-cffi's defaults are RFC 9106's second recommended option (t=3, 64 MiB, p=4), argon2id.
_hasher = PasswordHasher(type=Type.ID)


@functools.cache
def _decoy() -> str:
    """A hash to verify against when the account has no password, so both paths cost the same."""
    return _hasher.hash("no account has this password")


def check_policy(password: str) -> None:
    """Length is what matters (NIST SP 800-63B); no composition rules. 422 `weak_password` otherwise."""
    if len(password) < MIN_LENGTH:
        raise invalid(f"Choose a password of at least {MIN_LENGTH} characters.", code="weak_password")
    if len(password) > MAX_LENGTH:
        raise invalid(f"Choose a password of at most {MAX_LENGTH} characters.", code="weak_password")
    if not password.strip():
        raise invalid("A password cannot be only spaces.", code="weak_password")


async def hash_password(password: str) -> str:
    """The argon2id hash of `password`, computed in a thread (it takes a while on purpose)."""
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _decoy(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored`; with no stored hash, spend the same time and say no."""
    if len(password) > MAX_LENGTH:  # never stored, so never right; still spend the time
        await asyncio.to_thread(_verify, None, password[:MAX_LENGTH])
        return False
    return await asyncio.to_thread(_verify, stored, password)


def needs_rehash(stored: str) -> bool:
    """True when `stored` was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(stored)


async def stored_hash(conn: Executor, therapist_id: uuid.UUID) -> str | None:
    """The therapist's password hash, or None before they chose one (an invited therapist)."""
    stored: str | None = await conn.fetchval(SELECT_HASH, therapist_id)
    return stored


async def is_set(conn: Executor, therapist_id: uuid.UUID) -> bool:
    """Whether the therapist has chosen a password yet."""
    return await stored_hash(conn, therapist_id) is not None


async def store(conn: Executor, therapist_id: uuid.UUID, password_hash: str, now: dt.datetime) -> None:
    """Keep a hash made by `hash_password` (hash first, outside any transaction: it takes a while)."""
    await conn.execute(UPSERT_PASSWORD, therapist_id, password_hash, now)


async def rehash(pool: Executor, therapist_id: uuid.UUID, password: str) -> None:
    """After a successful login, bring an old hash up to the current parameters."""
    await pool.execute(UPDATE_HASH, therapist_id, await hash_password(password))
