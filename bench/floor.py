"""The stack's floor for a booking: a bare aiohttp handler on the same pool and schema, no more.

It answers the same `POST /api/v1/therapists/{slug}/bookings` as Teleroom: it decodes the body
into the same `BookingIn`, makes the same `INSERT INTO bookings` and the same audit row in one
transaction, and answers the same `BookingCreated`. It resolves nothing per request (the
therapist, the client record and the session type's length are looked up once per slug and kept),
checks nothing and tells nobody, so what Teleroom costs above it is what the product does.

    python -m bench.floor --port 8081 --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import asyncpg
import msgspec
from aiohttp import web

from broker import audit, credentials, database, schemas
from broker.bookings import INSERT_BOOKING
from broker.principals import PUBLIC_CLIENT


class _Known(msgspec.Struct, frozen=True):
    therapist_id: uuid.UUID
    client_id: uuid.UUID
    duration: dt.timedelta


POOL = web.AppKey("floor_pool", asyncpg.Pool)
KNOWN = web.AppKey("floor_known", dict[tuple[str, str], _Known])
FIRST_LOOKUP = web.AppKey("floor_first_lookup", asyncio.Lock)
DECODER = msgspec.json.Decoder(schemas.BookingIn, strict=True)
ENCODER = msgspec.json.Encoder()

SELECT_THERAPIST = "SELECT id FROM therapists WHERE slug = $1"
SELECT_DURATION = "SELECT duration_minutes FROM session_types WHERE id = $1"
CREATE_CLIENT = """
INSERT INTO clients (id, therapist_id, name, email) VALUES ($1, $2, 'Floor', 'floor@example.org')
RETURNING id
"""


async def _known(app: web.Application, slug: str, session_type: str) -> _Known:
    """What the floor needs of a therapist, looked up at its first booking and kept."""
    cache: dict[tuple[str, str], _Known] = app[KNOWN]
    known = cache.get((slug, session_type))
    if known is None:
        async with app[FIRST_LOOKUP]:
            known = cache.get((slug, session_type))
            if known is None:
                known = cache[(slug, session_type)] = await _look_up(app[POOL], slug, session_type)
    return known


async def _look_up(pool: asyncpg.Pool, slug: str, session_type: str) -> _Known:
    async with pool.acquire() as conn:
        therapist_id = await conn.fetchval(SELECT_THERAPIST, slug)
        minutes = await conn.fetchval(SELECT_DURATION, uuid.UUID(session_type))
        client_id = await conn.fetchval(CREATE_CLIENT, uuid.uuid4(), therapist_id)
    return _Known(therapist_id, client_id, dt.timedelta(minutes=minutes))


async def book(request: web.Request) -> web.Response:
    body = DECODER.decode(await request.read())
    known = await _known(request.app, request.match_info["slug"], body.session_type)
    start = body.start.astimezone(dt.UTC)
    end = start + known.duration
    booking_id = uuid.uuid4()
    key = credentials.new_secret(credentials.BOOKING_KEY)
    client = body.client
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await conn.execute(
            INSERT_BOOKING,
            booking_id,
            known.therapist_id,
            uuid.UUID(body.session_type),
            start,
            end,
            asyncpg.Range(start, end),
            client.name,
            client.email,
            client.phone,
            body.client_timezone,
            credentials.secret_hash(key),
            client.location,
            known.client_id,
            None,
            None,
        )
        await audit.record(
            conn, PUBLIC_CLIENT, "booking.created", booking_id=booking_id, therapist_id=known.therapist_id
        )
    answer = schemas.BookingCreated(
        id=str(booking_id),
        status="confirmed",
        start=start,
        end=end,
        booking_key=key,
        manage_url=f"/manage/{booking_id}#k={key}",
        join_url=f"/join/{booking_id}#k={key}",
    )
    return web.Response(body=ENCODER.encode(answer), status=201, content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app(database_url: str) -> web.Application:
    app = web.Application()
    app[KNOWN] = {}
    app[FIRST_LOOKUP] = asyncio.Lock()

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        async with database.open_pool(database_url) as pool:
            app[POOL] = pool
            yield

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_post("/api/v1/therapists/{slug}/bookings", book)
    app.router.add_get("/readyz", ready)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    web.run_app(create_app(args.database_url), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
