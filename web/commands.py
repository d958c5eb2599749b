"""The web package's subcommand of `teleroom` (`broker.cli` calls `add_commands`).

`teleroom password-link --slug ...` prints a fresh one-time link for a therapist who lost theirs:
the operator's fallback when email does not reach them (the API and /forgot email the link). The
invite link `teleroom therapist add` prints comes from `web.password_links.invite_on_create`,
which `broker.cli` hands to that command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import asyncpg

from broker import therapists
from broker.cli_support import Subcommands, on_migrated_connection, setup_logging
from broker.clock import Clock
from broker.errors import NotFound
from broker.settings import add_flags, from_args
from web import password_links


def password_link(args: argparse.Namespace) -> int:
    """Print a fresh one-time link: an invite if no password was ever set, else a reset link."""
    settings = from_args(args)
    setup_logging("WARNING")

    async def work(conn: asyncpg.Connection) -> dict[str, str] | None:
        try:
            therapist = await therapists.by_slug(conn, args.slug)
        except NotFound:
            return None
        purpose = await password_links.purpose_for(conn, therapist.id)
        secret = await password_links.issue(conn, therapist.id, purpose, Clock().now())
        link = password_links.url(settings.origin, purpose, secret)
        return {"id": str(therapist.id), "purpose": purpose, "url": link}

    result = asyncio.run(on_migrated_connection(settings, work))
    if result is None:
        print(f"teleroom: no therapist with slug {args.slug!r}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def add_commands(sub: Subcommands) -> None:
    """Add `password-link`."""
    p = sub.add_parser(
        "password-link", help="print a one-time link for a therapist to choose a password (invite or reset)"
    )
    add_flags(p, "data_dir")
    p.add_argument("--slug", required=True, help="the therapist's slug")
    p.set_defaults(run=password_link)
