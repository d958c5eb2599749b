"""Mounted by broker.app.create_app; see the issue this part belongs to."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Add this part's routes, hooks and cleanup contexts to the app."""
