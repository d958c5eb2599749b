"""Idempotency-Key for booking: a retry with the same key and body gets the first answer back.

The first answer contains the booking key, which must never be stored in the clear. So the
idempotency key is stored only as a hash, and the answer is sealed (AES-GCM) under a key
derived from the idempotency key itself: only a caller who knows it can read the answer.

A caller that can tell its answer before making the change (a booking whose rules this node
keeps) hands it over, and the claim stores it sealed at once: the row's answer then needs no
second write while the therapist's times lock is held. It is written again only when the answer
made differs, and every write is in the change's transaction, so a retry never reads an answer
the change did not commit. A change made in one statement can carry the claim itself
(`CLAIM_FROM`, as `broker.bookings.BOOK_KEYED` does): the claim, its answer and the change then
commit together, and a request that finds the key claimed takes `once`, which replays.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.database import record_to
from broker.errors import Conflict, TeleroomError, invalid

MAX_KEY_LENGTH = 200
# Visible ASCII, spaces only inside: what an HTTP header carries unchanged (the OpenAPI document
# publishes this pattern for the Idempotency-Key header).
KEY = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
_KEY = re.compile(KEY)
T = TypeVar("T")

CLAIM_KEY = """
INSERT INTO idempotency_keys (therapist_id, key_hash, request_hash, response_status, response_sealed)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
RETURNING true
"""
SELECT_KEY = """
SELECT request_hash, response_status, response_sealed FROM idempotency_keys
WHERE therapist_id = $1 AND key_hash = $2
"""
STORE_RESPONSE = """
UPDATE idempotency_keys SET response_status = $3, response_sealed = $4
WHERE therapist_id = $1 AND key_hash = $2
"""


class _Stored(msgspec.Struct, frozen=True):
    request_hash: bytes
    response_status: int | None
    response_sealed: bytes | None


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: bytes


def check_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not _KEY.fullmatch(raw):
        raise invalid(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (spaces inside).")
    return raw


def _aead(key: str, scope: uuid.UUID) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=scope.bytes, info=b"teleroom idempotency").derive(
        key.encode()
    )
    return AESGCM(derived)


def _key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _seal(key: str, scope: uuid.UUID, body: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + _aead(key, scope).encrypt(nonce, body, scope.bytes)


async def claim(
    conn: asyncpg.Connection, scope: uuid.UUID, key: str, request_hash: bytes, expected: bytes | None = None
) -> Replay | None:
    """Claim `key` for this request inside the caller's transaction, or return the first answer.

    `expected`: the 201 answer the request will give if it succeeds, stored (sealed) with the claim.
    A concurrent request with the same key waits on the primary key until the first commits.
    """
    status, sealed_answer = (None, None) if expected is None else (201, _seal(key, scope, expected))
    if await conn.fetchval(CLAIM_KEY, scope, _key_hash(key), request_hash, status, sealed_answer):
        return None
    row = await conn.fetchrow(SELECT_KEY, scope, _key_hash(key))
    stored = None if row is None else record_to(_Stored, row)
    if stored is None or stored.response_status is None or stored.response_sealed is None:
        raise Conflict("A request with this Idempotency-Key is still in progress.", code="idempotency_in_progress")
    if stored.request_hash != request_hash:
        raise invalid("This Idempotency-Key was already used with a different request.", code="idempotency_key_reused")
    sealed = stored.response_sealed
    body = _aead(key, scope).decrypt(sealed[:12], sealed[12:], scope.bytes)
    return Replay(status=stored.response_status, body=body)


def claim_values(scope: uuid.UUID, key: str, request_hash: bytes, answer: bytes) -> tuple[bytes, bytes, bytes]:
    """What `CLAIM_FROM` stores: the key's hash, the request's, and the 201 answer sealed."""
    return _key_hash(key), request_hash, _seal(key, scope, answer)


# A claim with its 201 answer, as a data-modifying CTE that a statement making the change carries
# (`broker.bookings.BOOK`): `{scope}` and `{values}` (the three of `claim_values`) are SQL
# expressions, and it claims only if `{source}` has a row. Its RETURNING is empty when the key
# was claimed before, by a committed request or (after waiting for it) a concurrent one.
CLAIM_FROM = """
    INSERT INTO idempotency_keys (therapist_id, key_hash, request_hash, response_status, response_sealed)
    SELECT {scope}, {values[0]}, {values[1]}, 201, {values[2]} FROM {source}
    ON CONFLICT DO NOTHING
    RETURNING true
"""


async def store(conn: asyncpg.Connection, scope: uuid.UUID, key: str, status: int, body: bytes) -> None:
    await conn.execute(STORE_RESPONSE, scope, _key_hash(key), status, _seal(key, scope, body))


async def once(
    pool: asyncpg.Pool,
    scope: uuid.UUID,
    raw_key: str | None,
    request_hash: bytes,
    make: Callable[[asyncpg.Connection], Awaitable[tuple[T, bytes]]],
    refusal: Callable[[TeleroomError], bytes],
    expected: bytes | None = None,
    *,
    atomic: bool = False,
    first: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> tuple[T, bytes] | Replay:
    """Run `make` (which returns what it made and its encoded answer) in one transaction under an
    Idempotency-Key: a retry with the same key and body gets the first answer back.

    A `Conflict` is a first answer too (the time was taken): its encoding (`refusal`) is stored and
    committed before the error is raised, so the retry hears the same. `make` rolls back its own
    writes on a conflict (a savepoint), so nothing else of a refused request stays behind.
    `expected`: the answer `make` is expected to encode, stored with the claim (see the module).
    `atomic`: `make` writes in one statement (or a transaction of its own), so a request without a
    key runs it on a plain connection and spares the BEGIN and COMMIT round trips.
    `first`: what the transaction does before it claims the key: a lock that the request's change
    takes, so that a request which claims the key in the same statement as it takes that lock
    (`broker.bookings.BOOK_KEYED`) and this one take the two in the same order."""
    key = check_key(raw_key)
    if key is None and atomic:
        async with pool.acquire() as conn:
            return await make(conn)
    refused: Conflict | None = None
    async with pool.acquire() as conn, conn.transaction():
        if first is not None:
            await first(conn)
        if key is not None:
            replay = await claim(conn, scope, key, request_hash, expected)
            if replay is not None:
                return replay
        try:
            made, encoded = await make(conn)
        except Conflict as error:
            if key is None:
                raise
            await store(conn, scope, key, 409, refusal(error))
            refused = error
        else:
            if key is not None and encoded != expected:
                await store(conn, scope, key, 201, encoded)
    if refused is not None:
        raise refused
    return made, encoded
