"""The broker's subcommands: `serve`, `migrate`, `therapist add` and `keys`.

`therapist add` creates a therapist exactly as `POST /api/v1/therapists` does, the same hooks
included (which ones is for the composition root, `broker.cli`, to say), and prints the same
fields as JSON. `keys rotate` adds a new room-token signing key; the old one verifies until its
tokens expire, so a rotation needs no restart.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from broker import schemas, therapists, tokens, workers
from broker.app import AccessLogger, create_app
from broker.cli_support import Subcommands, migrated_pool, on_migrated_connection, setup_logging
from broker.clock import Clock
from broker.errors import TeleroomError
from broker.principals import Principal
from broker.settings import Settings, add_flags, from_args

log = logging.getLogger("teleroom")
# Whoever runs `teleroom` on the service's data directory or database holds the admin's power;
# the audit log records their actions as the admin's.
OPERATOR = Principal("admin")


def serve(args: argparse.Namespace) -> int:
    settings = from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:
        log.info(
            "Teleroom on http://%s:%s with %d worker processes (public origin %s)",
            settings.host,
            settings.port,
            settings.workers,
            settings.origin,
        )
        return workers.supervise(settings, serve_worker)
    log.info("Teleroom on http://%s:%s (public origin %s)", settings.host, settings.port, settings.origin)
    run_server(settings)
    return 0


def serve_worker(settings: Settings, lifeline: workers.Lifeline) -> None:
    """One of `serve`'s worker processes (broker.workers): the same server, its port shared."""
    setup_logging(settings.log_level, settings.log_format)
    run_server(settings, lifeline)


def run_server(settings: Settings, lifeline: workers.Lifeline | None = None) -> None:
    """Serve until SIGINT/SIGTERM; as a worker, bind with SO_REUSEPORT and tell the parent when listening."""
    app = create_app(settings)
    if lifeline is not None:
        lifeline.attach(app)
    # The ~100,000 objects of the imported code and the built app live as long as the process:
    # moved out of the collector's generations, they are not walked again by every full
    # collection (pauses of 0.1–0.4 s with thousands of sockets open, per bench.signaling).
    gc.collect()
    gc.freeze()
    # run_app handles SIGINT/SIGTERM: it stops accepting, runs cleanup contexts (the embedded
    # database included) and returns.
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLogger,
        print=None if lifeline is None else lifeline.serving,
        handle_signals=True,
        shutdown_timeout=10,
        reuse_port=lifeline is not None,
    )


def migrate(args: argparse.Namespace) -> int:
    settings = from_args(args)
    setup_logging(settings.log_level)

    async def work(conn: asyncpg.Connection) -> None:
        return None

    asyncio.run(on_migrated_connection(settings, work))
    print("migrations are up to date")
    return 0


class TherapistAdd:
    """`therapist add`: create a therapist, running the hooks the API runs, and print JSON."""

    def __init__(self, hooks: Sequence[therapists.TherapistCreatedHook]) -> None:
        self.hooks = tuple(hooks)

    def __call__(self, args: argparse.Namespace) -> int:
        settings = from_args(args)
        setup_logging("WARNING")
        try:
            body = msgspec.convert(
                {"slug": args.slug, "name": args.name, "email": args.email, "timezone": args.timezone},
                schemas.TherapistIn,
            )
        except msgspec.ValidationError as exc:
            print(f"teleroom: {exc}", file=sys.stderr)
            return 2

        async def work(conn: asyncpg.Connection) -> dict[str, str | None]:
            created = await therapists.create_therapist(
                conn, body, settings=settings, now=Clock().now(), actor=OPERATOR, hooks=self.hooks
            )
            t = created.therapist
            return {
                "id": str(t.id),
                "slug": t.slug,
                "name": t.name,
                "email": t.email,
                "timezone": t.timezone,
                "api_token": created.api_token,
                "invite_url": created.invite_url,
            }

        try:
            result = asyncio.run(on_migrated_connection(settings, work))
        except TeleroomError as error:
            print(f"teleroom: {error.detail} ({error.code})", file=sys.stderr)
            return 1
        print(json.dumps(result, indent=2))
        return 0


async def _keys(args: argparse.Namespace) -> dict[str, Any]:
    settings = from_args(args)
    async with migrated_pool(settings) as pool:
        if args.action == "rotate":
            await tokens.ensure_signing_key(pool, secret=settings.signing_key_secret)
            kid = await tokens.rotate(pool, settings)
            return {"current_kid": kid, "served": [k["kid"] for k in (await tokens.public_jwks(pool))["keys"]]}
        return {"served": [k["kid"] for k in (await tokens.public_jwks(pool))["keys"]]}


def keys(args: argparse.Namespace) -> int:
    setup_logging("WARNING")
    result = asyncio.run(_keys(args))
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


def add_commands(sub: Subcommands, *, therapist_hooks: Sequence[therapists.TherapistCreatedHook]) -> None:
    """Add serve, migrate, therapist add and keys; `therapist add` runs `therapist_hooks`."""
    p = sub.add_parser("serve", help="run the service (embedded PostgreSQL unless DATABASE_URL is set)")
    add_flags(p, "host", "port", "workers", "data_dir")
    p.set_defaults(run=serve)

    p = sub.add_parser("migrate", help="apply database migrations and exit")
    add_flags(p, "data_dir")
    p.set_defaults(run=migrate)

    therapist = sub.add_parser("therapist", help="manage therapists").add_subparsers(dest="action", required=True)
    p = therapist.add_parser("add", help="create a therapist; prints JSON with its API token")
    p.add_argument("--slug", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--timezone", required=True, help="IANA zone, e.g. Europe/Berlin")
    add_flags(p, "data_dir")
    p.set_defaults(run=TherapistAdd(therapist_hooks))

    p = sub.add_parser("keys", help="room-token signing keys: rotate, list")
    add_flags(p, "data_dir")
    p.add_argument("action", choices=["rotate", "list"], help="rotate: new current key; list: keys served now")
    p.set_defaults(run=keys)
