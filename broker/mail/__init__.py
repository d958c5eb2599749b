"""Email: what Teleroom tells clients and therapists, rendered from templates and sent over SMTP.

`render` (typed inputs, templates, previews), `message` (MIME), `compose` (a queued message and
the records it is about -> a rendered email), `smtp` (the outbox's email sender), `notices` (the
notice hook that queues emails in the change's transaction), `preferences` (what a therapist
chose to hear and let emails say).
"""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Add the email sender to the outbox and the notice hook that queues emails (broker.app calls
    this through `broker.routes.notifications`)."""
    from broker.mail import notices, smtp

    smtp.setup(app)
    notices.setup(app)
