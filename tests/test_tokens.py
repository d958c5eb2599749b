"""Room tokens against a real PostgreSQL: every refusal the issue lists, key rotation, once-only use."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from jose import jwt

from broker import database, tokens
from broker.http.problems import status_of
from broker.settings import Settings
from broker.tokens import KeyRing, RoomClaims, TokenRejected

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW_END = NOW + timedelta(hours=1)
BOOKING = uuid.uuid4()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with database.open_pool(database_url, min_size=1, max_size=4) as pool:
        yield pool


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing()


async def mint(pool: asyncpg.Pool, settings: Settings, keys: KeyRing, **overrides: Any) -> tokens.MintedToken:
    fields: dict[str, Any] = {
        "booking_id": BOOKING,
        "role": "client",
        "name": "Client Example",
        "now": NOW,
        "window_end": WINDOW_END,
        "keys": keys,
    }
    fields.update(overrides)
    return await tokens.mint_room_token(pool, settings, **fields)


async def verify(pool: asyncpg.Pool, settings: Settings, token: str, **kw: Any) -> RoomClaims:
    kw.setdefault("now", NOW)
    return await tokens.verify_room_token(pool, settings, token, kw.pop("now"), **kw)


async def rejected(pool: asyncpg.Pool, settings: Settings, token: str, **kw: Any) -> str:
    with pytest.raises(TokenRejected) as caught:
        await verify(pool, settings, token, **kw)
    return caught.value.code


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


async def test_a_minted_token_verifies_with_every_claim(pool: asyncpg.Pool, settings: Settings, keys: KeyRing) -> None:
    minted = await mint(pool, settings, keys)
    claims = await verify(pool, settings, minted.token, room=str(BOOKING), keys=keys)
    assert claims.booking_id == BOOKING
    assert claims.room == str(BOOKING)
    assert claims.role == "client"
    assert claims.participant == tokens.participant_id(BOOKING, "client")
    assert claims.name == "Client Example"
    assert claims.jti == minted.jti
    assert claims.issued_at == NOW
    assert claims.expires_at == minted.expires_at == NOW + timedelta(seconds=settings.token_ttl_seconds)
    assert claims.window_end == WINDOW_END
    header, payload, _ = parts(minted.token)
    assert header["alg"] == "ES256" and header["kid"]
    assert payload["aud"] == "teleroom-signaling" and payload["iss"] == settings.origin
    assert len(base64.urlsafe_b64decode(minted.jti + "==")) >= 16


async def test_a_token_never_outlives_the_join_window(pool: asyncpg.Pool, settings: Settings, keys: KeyRing) -> None:
    minted = await mint(pool, settings, keys, window_end=NOW + timedelta(seconds=30))
    assert minted.expires_at == NOW + timedelta(seconds=30)


async def current_private_key(pool: asyncpg.Pool, keys: KeyRing) -> tuple[str, str]:
    kid, _ = await keys.signer(pool)
    pem: str = await pool.fetchval("SELECT private_pem FROM signing_keys WHERE kid = $1", kid)
    return kid, pem


def good_claims(settings: Settings) -> dict[str, Any]:
    return {
        "iss": settings.origin,
        "aud": "teleroom-signaling",
        "sub": tokens.participant_id(BOOKING, "client"),
        "iat": int(NOW.timestamp()),
        "nbf": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 120,
        "jti": "j" * 24,
        "room": str(BOOKING),
        "booking": str(BOOKING),
        "role": "client",
        "name": "Client Example",
        "window_end": int(WINDOW_END.timestamp()),
    }


def hand_made(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(signature)}"


async def test_our_own_signature_over_good_claims_is_accepted(
    pool: asyncpg.Pool, settings: Settings, keys: KeyRing
) -> None:
    """The control for the refusals below: hand-signed with the real key, nothing missing, accepted."""
    kid, pem = await current_private_key(pool, keys)
    token = jwt.encode(good_claims(settings), pem, algorithm="ES256", headers={"kid": kid})
    assert (await verify(pool, settings, token, keys=keys)).jti == "j" * 24


async def test_alg_none_is_refused(pool: asyncpg.Pool, settings: Settings, keys: KeyRing) -> None:
    kid, _ = await current_private_key(pool, keys)
    for alg in ("none", "None", "NONE"):
        token = hand_made({"alg": alg, "typ": "JWT", "kid": kid}, good_claims(settings))
        assert await rejected(pool, settings, token, keys=keys) == "token_invalid"


async def test_hs256_signed_with_the_public_key_is_refused(
    pool: asyncpg.Pool, settings: Settings, keys: KeyRing
) -> None:
    """The key-confusion attack (RFC 8725 section 2.1): the public key used as an HMAC secret."""
    kid, pem = await current_private_key(pool, keys)
    public_jwk = (await tokens.public_jwks(pool, now=NOW))["keys"][0]
    from jose import jwk as jose_jwk

    public_pem = jose_jwk.construct(pem, "ES256").public_key().to_pem()
    for secret in (public_pem, json.dumps(public_jwk).encode()):
        header = {"alg": "HS256", "typ": "JWT", "kid": kid}
        unsigned = hand_made(header, good_claims(settings)).rsplit(".", 1)[0]
        signature = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
        assert await rejected(pool, settings, f"{unsigned}.{b64(signature)}", keys=keys) == "token_invalid"


async def test_a_changed_claim_breaks_the_signature(pool: asyncpg.Pool, settings: Settings, keys: KeyRing) -> None:
    minted = await mint(pool, settings, keys)
    header, payload, signature = parts(minted.token)
    for change in (
        {"exp": payload["exp"] + 3600},
        {"name": "Someone Else"},
        {"window_end": payload["window_end"] + 60},
    ):
        forged = hand_made(header, {**payload, **change}).rsplit(".", 1)[0] + "." + signature
        assert await rejected(pool, settings, forged, keys=keys) == "token_invalid"


async def test_a_token_signed_by_a_foreign_key_under_our_kid_is_refused(
    pool: asyncpg.Pool, settings: Settings, keys: KeyRing
) -> None:
    kid, _ = await current_private_key(pool, keys)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    foreign = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    token = jwt.encode(good_claims(settings), foreign.decode(), algorithm="ES256", headers={"kid": kid})
    assert await rejected(pool, settings, token, keys=keys) == "token_invalid"


async def test_unknown_or_missing_kid_is_refused(pool: asyncpg.Pool, settings: Settings, keys: KeyRing) -> None:
    _, pem = await current_private_key(pool, keys)
    for headers in ({"kid": "20990101-unknownkid"}, {}):
        token = jwt.encode(good_claims(settings), pem, algorithm="ES256", headers=headers)
        assert await rejected(pool, settings, token, keys=keys) == "token_invalid"


async def test_a_token_for_another_room_is_refused(pool: asyncpg.Pool, settings: Settings, keys: KeyRing) -> None:
    minted = await mint(pool, settings, keys)
    with pytest.raises(TokenRejected) as caught:
        await verify(pool, settings, minted.token, room=str(uuid.uuid4()), keys=keys)
    assert (caught.value.code, status_of(caught.value)) == ("token_wrong_room", 403)


async def test_an_expired_token_is_refused(pool: asyncpg.Pool, settings: Settings, keys: KeyRing) -> None:
    minted = await mint(pool, settings, keys)
    later = minted.expires_at + timedelta(seconds=tokens.LEEWAY_SECONDS)
    assert await rejected(pool, settings, minted.token, now=later, keys=keys) == "token_expired"
    # within the skew leeway it still passes
    assert await verify(pool, settings, minted.token, now=minted.expires_at, keys=keys)


async def test_a_not_yet_valid_token_is_refused(pool: asyncpg.Pool, settings: Settings, keys: KeyRing) -> None:
    minted = await mint(pool, settings, keys, now=NOW + timedelta(minutes=1))
    assert await rejected(pool, settings, minted.token, now=NOW, keys=keys) == "token_not_yet_valid"


async def test_a_jti_opens_one_connection_once(pool: asyncpg.Pool, settings: Settings, keys: KeyRing) -> None:
    minted = await mint(pool, settings, keys)
    claims = await verify(pool, settings, minted.token, keys=keys)
    assert await verify(pool, settings, minted.token, keys=keys) == claims  # verifying does not use it up
    await tokens.consume_jti(pool, claims)
    with pytest.raises(TokenRejected) as caught:
        await tokens.consume_jti(pool, claims)
    assert caught.value.code == "token_replayed"
    assert await pool.fetchval("SELECT count(*) FROM room_token_uses WHERE jti = $1", minted.jti) == 1


async def test_concurrent_uses_of_one_jti_let_exactly_one_through(
    pool: asyncpg.Pool, settings: Settings, keys: KeyRing
) -> None:
    claims = await verify(pool, settings, (await mint(pool, settings, keys)).token, keys=keys)
    results = await asyncio.gather(*(tokens.consume_jti(pool, claims) for _ in range(8)), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, TokenRejected) and r.code == "token_replayed" for r in results if r is not None)


@pytest.mark.parametrize("claim", tokens.REQUIRED_CLAIMS)
async def test_a_token_missing_a_required_claim_is_refused(
    pool: asyncpg.Pool, settings: Settings, keys: KeyRing, claim: str
) -> None:
    kid, pem = await current_private_key(pool, keys)
    claims = good_claims(settings)
    del claims[claim]
    token = jwt.encode(claims, pem, algorithm="ES256", headers={"kid": kid})
    assert await rejected(pool, settings, token, keys=keys) == "token_invalid"


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"sub": "t-000000000000"},
        {"role": "therapist"},  # the sub no longer matches the role
        {"room": str(uuid.uuid4())},  # room and booking disagree
        {"booking": "not-a-uuid"},
        {"exp": "2099-01-01"},
        {"jti": "short"},
        {"exp": int(NOW.timestamp()) + 3600},  # longer than any token may live
        {"window_end": int(NOW.timestamp()) + 60},  # outlives its window
    ],
)
async def test_signed_but_wrong_claims_are_refused(
    pool: asyncpg.Pool, settings: Settings, keys: KeyRing, change: dict[str, Any]
) -> None:
    kid, pem = await current_private_key(pool, keys)
    token = jwt.encode({**good_claims(settings), **change}, pem, algorithm="ES256", headers={"kid": kid})
    assert await rejected(pool, settings, token, keys=keys) == "token_invalid"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "e30.e30.", "x" * 5000, "eyJhbGciOiJFUzI1NiJ9..."])
async def test_garbage_is_refused_as_invalid(
    pool: asyncpg.Pool, settings: Settings, keys: KeyRing, garbage: str
) -> None:
    assert await rejected(pool, settings, garbage, keys=keys) == "token_invalid"


async def test_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(
    pool: asyncpg.Pool, settings: Settings, keys: KeyRing
) -> None:
    old = await mint(pool, settings, keys)
    old_kid = parts(old.token)[0]["kid"]
    new_kid = await tokens.rotate(pool, settings, now=NOW, keys=keys)
    assert new_kid != old_kid
    assert await verify(pool, settings, old.token, keys=keys)
    assert await verify(pool, settings, old.token, keys=KeyRing())  # and on a node that never saw the old key
    new = await mint(pool, settings, keys)
    assert parts(new.token)[0]["kid"] == new_kid
    assert await verify(pool, settings, new.token, keys=keys)
    served = [k["kid"] for k in (await tokens.public_jwks(pool, now=NOW))["keys"]]
    assert served == [new_kid, old_kid]


async def test_a_rotated_out_key_stops_verifying_once_its_tokens_have_all_expired(
    pool: asyncpg.Pool, settings: Settings, keys: KeyRing
) -> None:
    later = NOW + tokens.TOKEN_TTL_CEILING + tokens.RETIRE_MARGIN + timedelta(seconds=1)
    # Signed by the old key but dated after its retirement: only the retirement can refuse it.
    late = await mint(pool, settings, keys, now=later, window_end=later + timedelta(hours=1))
    old_kid = parts(late.token)[0]["kid"]
    await tokens.rotate(pool, settings, now=NOW, keys=keys)
    assert await rejected(pool, settings, late.token, now=later, keys=keys) == "token_invalid"
    assert old_kid not in [k["kid"] for k in (await tokens.public_jwks(pool, now=later))["keys"]]
    await tokens.rotate(pool, settings, now=later, keys=keys)  # the next rotation deletes it, private half too
    assert await pool.fetchval("SELECT count(*) FROM signing_keys WHERE kid = $1", old_kid) == 0


async def test_nodes_starting_together_create_one_signing_key(pool: asyncpg.Pool) -> None:
    kids = await asyncio.gather(*(tokens.ensure_signing_key(pool) for _ in range(6)))
    assert len(set(kids)) == 1
    assert await pool.fetchval("SELECT count(*) FROM signing_keys") == 1


def test_participant_ids_are_stable_per_booking_and_role() -> None:
    booking = uuid.uuid4()
    assert tokens.participant_id(booking, "client") == tokens.participant_id(booking, "client")
    assert tokens.participant_id(booking, "client") != tokens.participant_id(booking, "therapist")
    assert tokens.participant_id(booking, "therapist").startswith("t-")
    assert tokens.participant_id(uuid.uuid4(), "client") != tokens.participant_id(booking, "client")


def test_join_window_uses_the_configured_minutes(settings: Settings) -> None:
    custom = dataclasses.replace(settings, join_early_minutes=15, join_late_minutes=5)
    opens, closes = tokens.join_window(NOW, NOW + timedelta(minutes=50), custom)
    assert (opens, closes) == (NOW - timedelta(minutes=15), NOW + timedelta(minutes=55))


async def test_with_a_signing_key_secret_the_stored_key_is_encrypted_and_still_signs(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    secret = "correct horse battery staple"
    locked = dataclasses.replace(settings, signing_key_secret=secret)
    await tokens.ensure_signing_key(pool, secret=secret)
    stored = await pool.fetchval("SELECT private_pem FROM signing_keys WHERE retire_after IS NULL")
    assert "ENCRYPTED PRIVATE KEY" in stored and "BEGIN PRIVATE KEY" not in stored
    minted = await mint(pool, locked, KeyRing(secret=secret))
    assert (await verify(pool, locked, minted.token, keys=KeyRing())).booking_id == BOOKING
    # A dump of the database alone cannot sign: without the secret, or with a wrong one, signing stops.
    with pytest.raises(tokens.SigningKeyLocked):
        await mint(pool, settings, KeyRing())
    with pytest.raises(tokens.SigningKeyLocked):
        await mint(pool, settings, KeyRing(secret="not the right secret at all"))


async def test_setting_the_secret_later_keeps_the_old_key_and_encrypts_the_next(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    await tokens.ensure_signing_key(pool)  # stored in the clear, before the secret existed
    locked = dataclasses.replace(settings, signing_key_secret="a secret set later on")
    assert await mint(pool, locked, KeyRing(secret=locked.signing_key_secret))
    await tokens.rotate(pool, locked, now=NOW)
    stored = await pool.fetchval("SELECT private_pem FROM signing_keys WHERE retire_after IS NULL")
    assert "ENCRYPTED PRIVATE KEY" in stored
