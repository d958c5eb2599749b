"""Therapist accounts, mounted as one part: what `setup` adds to the app, and in which order.

- `web.account_pages`: the /login, /logout, /forgot, /invite and /reset pages;
- `web.account_api`: the JSON endpoints those pages' scripts call (and /api/v1/session);
- `web.cookie_auth`: the session cookie as an authenticator, behind the CSRF middleware (`web.csrf`);
- `web.password_links.invite_by_email`: a new therapist's answer carries a one-time invite link, which is
  also emailed to them.

Storage: `web.sessions`, `web.passwords`, `web.password_links` and `web.throttle`, each owning its table.
"""

from __future__ import annotations

from aiohttp import web

from broker.http import openapi
from broker.http.auth import AUTHENTICATORS
from broker.routes.therapists import THERAPIST_CREATED
from broker.sealing import SEALER
from web import account_api, account_pages, cookie_auth, csrf
from web.password_links import invite_by_email


def setup(app: web.Application) -> None:
    """Account pages and API, the cookie authenticator, the CSRF middleware and the invite hook."""
    app.middlewares.append(csrf.middleware)
    app[AUTHENTICATORS].append(cookie_auth.cookie_principal)
    app[THERAPIST_CREATED].append(invite_by_email(app[SEALER]))
    openapi.mount(app, account_api.routes)
    account_pages.add_routes(app)
