"""Cross-site request forgery defence for requests the session cookie would authenticate.

The token is derived from the session cookie's secret (SHA-256 over a label and the secret): it
needs no storage, changes with every login, and no page can compute it without reading the
HttpOnly cookie. Pages carry it in `<meta name="csrf-token">` and in forms' hidden `csrf_token`
field; scripts send it as `X-CSRF-Token` (OWASP's "signed double-submit", bound to the session).

The middleware looks at every POST, PUT, PATCH and DELETE that carries our cookie and no bearer
token (a bearer token is not sent by browsers on their own, so it needs no defence):
- a foreign `Origin` is refused at once with 403 `csrf_failed`;
- otherwise it notes whether the token matched, and whatever would act on the cookie (the cookie
  authenticator, the logout and login forms) calls `require` first. Public endpoints that never
  look at the cookie, such as booking, keep working for a therapist who is logged in.

`Origin: null` is not foreign: Chromium sends it on our own form posts because every page has
`Referrer-Policy: no-referrer` (Fetch standard, "append a request Origin header"); the token decides.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from broker.errors import Forbidden
from broker.http.auth import bearer
from broker.settings import SETTINGS
from web.sessions import cookie_secret

HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORMS = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_PASSED: web.RequestKey[bool] = web.RequestKey("teleroom_csrf_passed")


def token_for(secret: str) -> str:
    """The CSRF token bound to a session cookie's secret."""
    digest = hashlib.sha256(b"teleroom csrf v1\0" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token(request: web.BaseRequest) -> str:
    """The token for the request's cookie (empty without one: then no form can pass)."""
    secret = cookie_secret(request)
    return token_for(secret) if secret is not None else ""


def failed() -> Forbidden:
    """403 `csrf_failed`: the request did not prove it came from one of our pages."""
    return Forbidden(
        "This request did not come from a Teleroom page (the CSRF token is missing or wrong). Reload and try again.",
        code="csrf_failed",
    )


def passed(request: web.Request) -> bool:
    """True for safe methods, bearer calls and requests whose token matches their cookie."""
    verdict: bool = request.get(_PASSED, True)
    return verdict


def require(request: web.Request) -> None:
    """Raise `failed()` unless the request passed (see `passed`)."""
    if not passed(request):
        raise failed()


def _same_origin(request: web.Request, origin: str) -> bool:
    allowed = {request.app[SETTINGS].origin, f"{request.scheme}://{request.host}"}
    return origin in allowed


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a foreign Origin at once; note whether the token matched for `require` to decide."""
    secret = cookie_secret(request)
    if request.method in UNSAFE and secret is not None and bearer(request) is None:
        origin = request.headers.get("Origin")
        if origin is not None and origin != "null" and not _same_origin(request, origin):
            raise failed()
        sent = request.headers.get(HEADER)
        if sent is None and request.content_type in _FORMS:
            form = await request.post()
            field = form.get(FIELD)
            sent = field if isinstance(field, str) else None
        request[_PASSED] = sent is not None and hmac.compare_digest(sent.encode(), token_for(secret).encode())
    return await handler(request)
