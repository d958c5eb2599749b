"""Room tokens: short-lived ES256 JWTs (RFC 7519, RFC 7515) that let one participant into one room.

Interface promised to signaling (stable; extend, never rename):

- ``verify_room_token(pool, settings, token, now, *, room=None, keys=None) -> RoomClaims``
  checks signature, algorithm, key, claims and times; raises ``TokenRejected``. It does not
  consume the token: call ``consume_jti`` once the connection is accepted.
- ``consume_jti(pool, claims) -> None`` marks the token used (a PostgreSQL primary key, so it
  holds across nodes); a second use raises ``TokenRejected`` with code ``token_replayed``.
- ``RoomClaims``: frozen; ``jti, room, booking_id, role, participant, name, issued_at,
  expires_at, window_end`` (aware UTC datetimes).
- ``TokenRejected(Unauthenticated)``: ``.code`` is one of ``token_invalid``, ``token_expired``,
  ``token_not_yet_valid``, ``token_wrong_room``, ``token_replayed``.
- ``KEYRING``: the app's ``KeyRing`` (key cache); pass ``keys=app[KEYRING]`` to skip DB reads.
- ``participant_id(booking_id, role)``: the same id for every token of one (booking, role), so a
  reconnect with a fresh token is recognisably the same participant.
- ``MAX_TOKEN_CHARS``: the longest token anyone need accept (the `join` message's limit).
- Also: ``broker.attendance`` (record, was_admitted, end_room, room_ended_at) and
  ``broker.ice`` (``IceServer``, ``ice_servers``).

Why times are checked here and not by python-jose: jose compares ``exp``/``nbf`` with the
machine's wall clock, and turns ``require_exp``/``require_nbf`` into such checks. The
service's clock (``broker.clock``) is the authority, so jose is told to require the claims
that do not depend on time (``aud``, ``iss``, ``sub``, ``jti``) and every time claim is
checked against ``now`` below, with a small leeway for clock skew between nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

import asyncpg
import msgspec
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwk, jwt
from jose.exceptions import JOSEError

from broker.database import record_to
from broker.errors import Forbidden, Unauthenticated
from broker.settings import Settings

log = logging.getLogger(__name__)

Role = Literal["therapist", "client"]
ROLES: tuple[Role, ...] = ("therapist", "client")
ALGORITHM = "ES256"
AUDIENCE = "teleroom-signaling"
# No token we accept lives longer than this (the ceiling of TELEROOM_TOKEN_TTL_SECONDS), so a
# rotated-out key can stop verifying this long after rotation, plus a margin.
TOKEN_TTL_CEILING = timedelta(seconds=600)
RETIRE_MARGIN = timedelta(seconds=60)
# Clock skew tolerated between the node that minted a token and the node that checks it.
LEEWAY_SECONDS = 5
# Far above any token we mint: a longer string is refused before anything parses it.
MAX_TOKEN_CHARS = 4096
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "room", "role", "booking", "window_end")

SELECT_CURRENT_KEY = "SELECT kid, private_pem FROM signing_keys WHERE retire_after IS NULL"
SELECT_PUBLIC_KEYS = "SELECT kid, public_jwk, retire_after FROM signing_keys"
SELECT_SERVED_KEYS = """
SELECT public_jwk FROM signing_keys WHERE retire_after IS NULL OR retire_after > $1
ORDER BY retire_after DESC NULLS FIRST, created_at DESC
"""
INSERT_KEY = "INSERT INTO signing_keys (kid, private_pem, public_jwk, created_at) VALUES ($1, $2, $3, $4)"
RETIRE_CURRENT = "UPDATE signing_keys SET retire_after = $1 WHERE retire_after IS NULL"
DELETE_RETIRED = "DELETE FROM signing_keys WHERE retire_after <= $1"
INSERT_USE = """
INSERT INTO room_token_uses (jti, booking_id, participant, expires_at) VALUES ($1, $2, $3, $4)
"""
DELETE_OLD_USES = "DELETE FROM room_token_uses WHERE expires_at < $1"
# Serialises key creation and rotation among nodes and CLI runs.
KEYS_LOCK_KEY = 0x7E1E_0002


class TokenRejected(Unauthenticated):
    """A room token that must not open a room. `code` says why; the detail never echoes the token."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail, code=code)


class TokenForAnotherRoom(Forbidden, TokenRejected):
    """A valid token presented at the wrong room: the caller is known but may not enter (403)."""

    def __init__(self) -> None:
        TokenRejected.__init__(self, "token_wrong_room", "The room token is for another room.")


@dataclass(frozen=True, slots=True)
class RoomClaims:
    """What a verified room token says: one participant, one role, one room, for a short while."""

    jti: str
    room: str
    booking_id: uuid.UUID
    role: Role
    participant: str
    name: str
    issued_at: datetime
    expires_at: datetime
    window_end: datetime


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    jti: str
    expires_at: datetime


class _SigningKey(msgspec.Struct, frozen=True):
    kid: str
    private_pem: str


class _PublicKey(msgspec.Struct, frozen=True):
    kid: str
    public_jwk: str
    retire_after: datetime | None


@dataclass(frozen=True, slots=True)
class _Verifier:
    key: Any  # a jose Key
    retire_after: datetime | None


class KeyRing:
    """One app's cache of parsed keys. A node keeps only what it can lose: the database decides.

    The current signing key is re-read every `refresh_seconds`, so a rotation made elsewhere
    (another node, the CLI) is picked up well within RETIRE_MARGIN. An unknown `kid` triggers a
    reload at most once per `miss_seconds`, so random kids cannot turn into a query flood.
    """

    def __init__(self, *, refresh_seconds: float = 5.0, miss_seconds: float = 1.0, secret: str | None = None) -> None:
        self.secret = secret
        self.refresh_seconds = refresh_seconds
        self.miss_seconds = miss_seconds
        self._signer: tuple[str, Any] | None = None
        self._signer_at = float("-inf")
        self._verifiers: dict[str, _Verifier] = {}
        self._verifiers_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._signer = None
        self._signer_at = float("-inf")
        self._verifiers_at = float("-inf")

    async def signer(self, pool: asyncpg.Pool) -> tuple[str, Any]:
        """(kid, private key) of the current signing key, creating one if the database has none."""
        if self._signer is not None and time.monotonic() - self._signer_at < self.refresh_seconds:
            return self._signer
        row = await pool.fetchrow(SELECT_CURRENT_KEY)
        if row is None:
            await ensure_signing_key(pool, secret=self.secret)
            row = await pool.fetchrow(SELECT_CURRENT_KEY)
            assert row is not None
        current = record_to(_SigningKey, row)
        if self._signer is None or self._signer[0] != current.kid:
            self._signer = (current.kid, jwk.construct(_open_private(current.private_pem, self.secret), ALGORITHM))
        self._signer_at = time.monotonic()
        return self._signer

    async def verifier(self, pool: asyncpg.Pool, kid: str, now: datetime) -> Any | None:
        """The public key for `kid`, or None when it is unknown or retired at `now`."""
        stamp = self._verifiers_at
        age = time.monotonic() - stamp
        if age >= self.refresh_seconds * 6 or (kid not in self._verifiers and age >= self.miss_seconds):
            async with self._lock:
                if self._verifiers_at == stamp:  # nobody refreshed while we waited for the lock
                    keys = [record_to(_PublicKey, r) for r in await pool.fetch(SELECT_PUBLIC_KEYS)]
                    self._verifiers = {
                        k.kid: _Verifier(jwk.construct(json.loads(k.public_jwk), ALGORITHM), k.retire_after)
                        for k in keys
                    }
                    self._verifiers_at = time.monotonic()
        found = self._verifiers.get(kid)
        if found is None or (found.retire_after is not None and found.retire_after <= now):
            return None
        return found.key


KEYRING = web.AppKey("room_token_keys", KeyRing)


class SigningKeyLocked(RuntimeError):
    """The stored signing key is encrypted and TELEROOM_SIGNING_KEY_SECRET is missing or wrong."""


def _open_private(stored: str, secret: str | None) -> str:
    """The private key as plain PKCS#8 PEM for jose, decrypting it when stored encrypted.

    With TELEROOM_SIGNING_KEY_SECRET set, keys are stored as encrypted PKCS#8 (RFC 5958), so a
    database dump or backup alone cannot mint room tokens. Keys stored before the secret was set
    stay readable; the next rotation stores an encrypted one.
    """
    if "ENCRYPTED PRIVATE KEY" not in stored:
        return stored
    if secret is None:
        raise SigningKeyLocked("the room-token signing key is encrypted: set TELEROOM_SIGNING_KEY_SECRET")
    try:
        private = serialization.load_pem_private_key(stored.encode("ascii"), password=secret.encode())
    except ValueError:
        raise SigningKeyLocked("TELEROOM_SIGNING_KEY_SECRET does not open the stored signing key") from None
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _new_key(now: datetime, secret: str | None = None) -> tuple[str, str, dict[str, Any]]:
    """A fresh P-256 key: (kid, PKCS#8 PEM of the private key, encrypted under `secret` if given, public JWK)."""
    private = ec.generate_private_key(ec.SECP256R1())
    plain = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret.encode()) if secret else serialization.NoEncryption()
    )
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode(
        "ascii"
    )
    kid = f"{now:%Y%m%d}-{secrets.token_urlsafe(9)}"
    public = jwk.construct(plain, ALGORITHM).public_key().to_dict()
    public_jwk = {**public, "kid": kid, "use": "sig", "alg": ALGORITHM}
    return kid, pem, public_jwk


async def ensure_signing_key(pool: asyncpg.Pool, *, now: datetime | None = None, secret: str | None = None) -> str:
    """Create the first signing key unless a current one exists (safe when nodes start together)."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", KEYS_LOCK_KEY)
        kid: str | None = await conn.fetchval("SELECT kid FROM signing_keys WHERE retire_after IS NULL")
        if kid is not None:
            return kid
        kid, pem, public_jwk = _new_key(now, secret)
        await conn.execute(INSERT_KEY, kid, pem, _jsonb(public_jwk), now)
    log.info("created room-token signing key %s", kid)
    return kid


async def rotate(
    pool: asyncpg.Pool, settings: Settings, *, now: datetime | None = None, keys: KeyRing | None = None
) -> str:
    """Add a new current signing key; the previous one verifies until its last token has expired.

    Keys whose retire_after has passed are deleted, private half included.
    """
    now = now or datetime.now(UTC)
    lifetime = max(timedelta(seconds=settings.token_ttl_seconds), TOKEN_TTL_CEILING)
    kid, pem, public_jwk = _new_key(now, settings.signing_key_secret)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", KEYS_LOCK_KEY)
        await conn.execute(DELETE_RETIRED, now)
        await conn.execute(RETIRE_CURRENT, now + lifetime + RETIRE_MARGIN)
        await conn.execute(INSERT_KEY, kid, pem, _jsonb(public_jwk), now)
    if keys is not None:
        keys.invalidate()
    log.info("rotated room-token signing key; new kid %s", kid)
    return kid


async def public_jwks(pool: asyncpg.Pool, *, now: datetime | None = None) -> dict[str, Any]:
    """The JWK Set (RFC 7517 section 5) of every key that still verifies: current first."""
    served: list[str] = [r[0] for r in await pool.fetch(SELECT_SERVED_KEYS, now or datetime.now(UTC))]
    return {"keys": [json.loads(text) for text in served]}


def _jsonb(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def participant_id(booking_id: uuid.UUID, role: Role) -> str:
    """Deterministic per (booking, role): a reconnect with a fresh token is the same participant."""
    digest = hashlib.sha256(f"{booking_id}{role}".encode()).hexdigest()
    return f"{role[0]}-{digest[:12]}"


JoinState = Literal["later", "open", "over"]


class JoinWindow(NamedTuple):
    """When a booking's room may be entered: from `opens_at` until (not including) `closes_at`."""

    opens_at: datetime
    closes_at: datetime

    def state(self, now: datetime) -> JoinState:
        """Whether the room is not open yet, open, or over at `now`."""
        return "later" if now < self.opens_at else "open" if now < self.closes_at else "over"


def join_window(starts_at: datetime, ends_at: datetime, settings: Settings) -> JoinWindow:
    """The one computation of the window: TELEROOM_JOIN_EARLY_MINUTES before the start until LATE after the end."""
    return JoinWindow(
        starts_at - timedelta(minutes=settings.join_early_minutes),
        ends_at + timedelta(minutes=settings.join_late_minutes),
    )


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def _instant(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


async def mint_room_token(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    booking_id: uuid.UUID,
    role: Role,
    name: str,
    now: datetime,
    window_end: datetime,
    participant: str | None = None,
    keys: KeyRing | None = None,
) -> MintedToken:
    """Sign a token for one participant of one room; it expires after the TTL or at window end.

    Raises ValueError when the window has already closed (the caller answers 410 before that).
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    kid, key = await (keys or KeyRing(secret=settings.signing_key_secret)).signer(pool)
    issued = _epoch(now)
    expires = min(issued + settings.token_ttl_seconds, _epoch(window_end))
    if expires <= issued:
        raise ValueError("the join window has closed")
    jti = secrets.token_urlsafe(18)  # 144 random bits
    claims = {
        "iss": settings.origin,
        "aud": AUDIENCE,
        "sub": participant or participant_id(booking_id, role),
        "iat": issued,
        "nbf": issued,
        "exp": expires,
        "jti": jti,
        "room": str(booking_id),
        "booking": str(booking_id),
        "role": role,
        "name": name,
        "window_end": _epoch(window_end),
    }
    token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})
    return MintedToken(token=token, jti=jti, expires_at=_instant(expires))


async def verify_room_token(
    pool: asyncpg.Pool,
    settings: Settings,
    token: str,
    now: datetime,
    *,
    room: str | None = None,
    keys: KeyRing | None = None,
) -> RoomClaims:
    """Check a room token completely, without consuming it. Raises TokenRejected.

    Algorithm allow-list ES256 (so `alg: none` and HS256-with-the-public-key fail, RFC 8725
    section 3.1); `kid` must name a key that is not retired; iss/aud/sub/iat/nbf/exp/jti and
    room/role/booking must be present and well-formed; `room`, when given, must match.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenRejected("token_invalid", "The room token is missing or malformed.")
    try:
        header = jwt.get_unverified_header(token)
    except JOSEError:
        raise TokenRejected("token_invalid", "The room token is malformed.") from None
    if header.get("alg") != ALGORITHM:
        raise TokenRejected("token_invalid", "The room token is not signed with ES256.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRejected("token_invalid", "The room token names no signing key.")
    key = await (keys or KeyRing()).verifier(pool, kid, now)
    if key is None:
        raise TokenRejected("token_invalid", "The room token's signing key is unknown or retired.")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=settings.origin,
            options={
                "require_aud": True,
                "require_iss": True,
                "require_sub": True,
                "require_jti": True,
                # Time claims are checked against the service clock below (see the module docstring).
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except JOSEError:
        raise TokenRejected("token_invalid", "The room token's signature or claims are not valid.") from None
    return _room_claims(claims, now, room)


def _room_claims(claims: dict[str, Any], now: datetime, room: str | None) -> RoomClaims:
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise TokenRejected("token_invalid", f"The room token lacks required claims: {', '.join(missing)}.")
    times = {name: claims[name] for name in ("iat", "nbf", "exp")}
    window_end = claims["window_end"]
    if not all(type(v) is int for v in (*times.values(), window_end)):
        raise TokenRejected("token_invalid", "The room token's times must be whole seconds.")
    text = {name: claims[name] for name in ("sub", "jti", "room", "booking", "role")}
    name = claims.get("name", "")
    if not all(isinstance(v, str) for v in (*text.values(), name)):
        raise TokenRejected("token_invalid", "The room token's claims have the wrong types.")
    try:
        booking_id = uuid.UUID(text["booking"])
    except ValueError:
        raise TokenRejected("token_invalid", "The room token names no valid booking.") from None
    role = text["role"]
    if role not in ROLES or text["room"] != str(booking_id) or text["sub"] != participant_id(booking_id, role):
        raise TokenRejected("token_invalid", "The room token's room, role and participant do not agree.")
    if not 16 <= len(text["jti"]) <= 64:
        raise TokenRejected("token_invalid", "The room token's jti is not valid.")
    if times["exp"] - times["iat"] > TOKEN_TTL_CEILING.total_seconds() or times["exp"] > window_end:
        raise TokenRejected("token_invalid", "The room token lives longer than allowed.")
    current = now.timestamp()
    if times["nbf"] > current + LEEWAY_SECONDS or times["iat"] > current + LEEWAY_SECONDS:
        raise TokenRejected("token_not_yet_valid", "The room token is not valid yet.")
    if times["exp"] <= current - LEEWAY_SECONDS:
        raise TokenRejected("token_expired", "The room token has expired; ask for a fresh one.")
    if room is not None and room != text["room"]:
        raise TokenForAnotherRoom()
    return RoomClaims(
        jti=text["jti"],
        room=text["room"],
        booking_id=booking_id,
        role=role,
        participant=text["sub"],
        name=name,
        issued_at=_instant(times["iat"]),
        expires_at=_instant(times["exp"]),
        window_end=_instant(window_end),
    )


async def consume_jti(pool: asyncpg.Pool | asyncpg.Connection, claims: RoomClaims) -> None:
    """Use the token up: its jti opens one signaling connection, once, on any node."""
    try:
        await pool.execute(INSERT_USE, claims.jti, claims.booking_id, claims.participant, claims.expires_at)
    except asyncpg.UniqueViolationError:
        raise TokenRejected("token_replayed", "This room token has already been used; ask for a fresh one.") from None


async def prune_token_uses(pool: asyncpg.Pool, now: datetime) -> int:
    """Forget used jtis whose tokens have expired (those tokens are refused as expired anyway)."""
    status: str = await pool.execute(DELETE_OLD_USES, now - timedelta(seconds=LEEWAY_SECONDS) - RETIRE_MARGIN)
    return int(status.rsplit(" ", 1)[-1])
