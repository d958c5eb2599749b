"""Room-token mint+verify through broker.tokens, next to bare python-jose encode/decode.

Both sides sign the same claims with the same ES256 key (already parsed, so neither pays for
PEM parsing per token) and verify them with its public half. Ours adds the key cache lookup,
the header pre-check, the allow-list and every claim check; the ratio is what that costs. The
once-only `consume_jti` (one INSERT into PostgreSQL) is timed on its own, for scale.

    python -m bench.tokens [--tokens 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from jose import jwt

from bench.harness import running_service
from broker import tokens
from broker.database import POOL
from broker.settings import SETTINGS


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.tokens
    async with running_service() as svc:
        app = svc.app
        pool, settings, keys = app[POOL], app[SETTINGS], app[tokens.KEYRING]
        booking = uuid.uuid4()
        window_end = datetime.now(UTC) + timedelta(hours=1)
        kid, private = await keys.signer(pool)
        public = await keys.verifier(pool, kid, datetime.now(UTC))

        async def ours() -> float:
            began = time.perf_counter()
            for _ in range(n):
                now = datetime.now(UTC)
                minted = await tokens.mint_room_token(
                    pool, settings, booking_id=booking, role="client", name="C", now=now,
                    window_end=window_end, keys=keys,
                )  # fmt: skip
                await tokens.verify_room_token(pool, settings, minted.token, now, room=str(booking), keys=keys)
            return (time.perf_counter() - began) / n

        def bare() -> float:
            began = time.perf_counter()
            for _ in range(n):
                issued = int(time.time())
                claims = {
                    "iss": settings.origin, "aud": tokens.AUDIENCE, "sub": "c-000000000000", "iat": issued,
                    "nbf": issued, "exp": issued + 120, "jti": secrets.token_urlsafe(18), "room": str(booking),
                    "booking": str(booking), "role": "client", "name": "C", "window_end": int(window_end.timestamp()),
                }  # fmt: skip
                token = jwt.encode(claims, private, algorithm="ES256", headers={"kid": kid})
                jwt.decode(token, public, algorithms=["ES256"], audience=tokens.AUDIENCE, issuer=settings.origin)
            return (time.perf_counter() - began) / n

        async def consume() -> float:
            now = datetime.now(UTC)
            batch = []
            for _ in range(n // 4):
                minted = await tokens.mint_room_token(
                    pool, settings, booking_id=booking, role="client", name="C", now=now,
                    window_end=window_end, keys=keys,
                )  # fmt: skip
                batch.append(await tokens.verify_room_token(pool, settings, minted.token, now, keys=keys))
            began = time.perf_counter()
            for claims in batch:
                await tokens.consume_jti(pool, claims)
            return (time.perf_counter() - began) / len(batch)

        await ours()  # warm up caches and code paths on both sides
        bare()
        ours_t, bare_t, consume_t = [], [], []
        for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits both alike
            ours_t.append(await ours())
            bare_t.append(bare())
            consume_t.append(await consume())
    o, b, c = statistics.median(ours_t), statistics.median(bare_t), statistics.median(consume_t)
    print(f"tokens={n} rounds={args.rounds} (median per token)")
    print(f"broker.tokens mint+verify : {o * 1e6:8.1f} µs  ({1 / o:7.0f}/s)")
    print(f"bare python-jose          : {b * 1e6:8.1f} µs  ({1 / b:7.0f}/s)")
    print(f"ratio ours/bare           : {o / b:8.2f}")
    print(f"consume_jti (PostgreSQL)  : {c * 1e6:8.1f} µs  (for scale; once per connection)")


if __name__ == "__main__":
    asyncio.run(main())
