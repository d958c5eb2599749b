"""Who is calling: bearer tokens (admin, therapist API token, booking or series key) and pluggable authenticators.

Endpoint declarations (`broker.http.endpoints`) call `authenticate` before the handler runs; a
handler never authenticates by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from broker import admin_tokens, bookings, credentials, series, therapists
from broker.database import POOL
from broker.errors import Unauthenticated
from broker.principals import Principal
from broker.settings import SETTINGS

Authenticator = Callable[[web.Request], Awaitable[Principal | None]]
# Ways to authenticate a request besides bearer tokens (the web package adds the session cookie).
AUTHENTICATORS = web.AppKey("authenticators", list[Authenticator])
_PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(request: web.Request) -> Principal | None:
    """Resolve the caller once per request; None when anonymous. A bad bearer token is a 401."""
    if _PRINCIPAL in request:
        cached: Principal | None = request[_PRINCIPAL]
        return cached
    principal: Principal | None = None
    token = bearer(request)
    if token is not None:
        principal = await _from_bearer(request, token)
        if principal is None:
            raise Unauthenticated("The bearer token is not valid.")
    else:
        for authenticator in request.app[AUTHENTICATORS]:
            principal = await authenticator(request)
            if principal is not None:
                break
    request[_PRINCIPAL] = principal
    return principal


async def _from_bearer(request: web.Request, token: str) -> Principal | None:
    pool = request.app[POOL]
    if token.startswith(credentials.API_TOKEN):
        therapist_id = await therapists.for_api_token(pool, token)
        return Principal("therapist", therapist_id=therapist_id) if therapist_id else None
    if token.startswith(credentials.BOOKING_KEY):
        found = await bookings.for_key(pool, token)
        if found is None:
            return None
        return Principal("client", therapist_id=found.therapist_id, booking_id=found.id)
    if token.startswith(credentials.SERIES_KEY):
        opened = await series.for_key(pool, token)
        if opened is None:
            return None
        return Principal("client", therapist_id=opened.therapist_id, series_id=opened.id)
    if await admin_tokens.is_admin_token(pool, request.app[SETTINGS], token):
        return Principal("admin")
    return None
