"""Rendering pages: Jinja2 templates with autoescaping, and the security headers every page sends."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from broker.settings import SETTINGS

TEMPLATES = web.AppKey("templates", jinja2.Environment)

# No inline script anywhere, nothing from another origin. `media-src blob:` lets <video> play
# MediaStreams; `connect-src` allows our own WebSocket (ws: or wss: on the same host).
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self' {ws}; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def environment() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(str(resources.files("web") / "templates"))
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    return env


def page_headers(request: web.Request, *, media: bool = False) -> dict[str, str]:
    """Strict CSP, no referrer, no framing; camera and microphone only on pages that need them."""
    origin = request.app[SETTINGS].origin
    ws = origin.replace("https://", "wss://").replace("http://", "ws://")
    allow = "(self)" if media else "()"
    return {
        "Content-Security-Policy": _CSP.format(ws=ws),
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Permissions-Policy": f"camera={allow}, microphone={allow}, geolocation=(), payment=(), usb=()",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    media: bool = False,
) -> web.Response:
    """Render `template` with the base context; `media=True` lets the page use camera and microphone."""
    env = request.app[TEMPLATES]
    ctx: dict[str, Any] = {"request_path": request.path, "nonce": secrets.token_urlsafe(8)}
    ctx.update(context or {})
    body = env.get_template(template).render(**ctx)
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=page_headers(request, media=media)
    )
