"""Mounted by broker.app.create_app: page routes, static files and the template environment."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from web import accounts, clients, dashboard, messages, pages, safety
from web.render import TEMPLATES, environment


def setup(app: web.Application) -> None:
    """Add the pages, the static files and the template environment to the app."""
    app[TEMPLATES] = environment()
    app.router.add_static("/static", str(resources.files("web") / "static"), append_version=False)
    pages.add_routes(app)
    accounts.setup(app)
    dashboard.setup(app)
    clients.setup(app)
    messages.setup(app)
    safety.setup(app)
