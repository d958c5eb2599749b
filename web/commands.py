"""Subcommands this package adds to `teleroom` (appended to broker.cli.EXTRA_COMMANDS on import).

`teleroom therapist add` also prints a one-time `invite_url`; `teleroom password-link --slug ...`
issues a fresh link for a therapist who lost theirs (there is no mailer yet).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import sys
import uuid
from typing import Any

from broker import cli
from broker.settings import Settings
from web import password_links

log = logging.getLogger("teleroom.accounts")
SELECT_THERAPIST = """
SELECT t.id, EXISTS (SELECT 1 FROM therapist_passwords p WHERE p.therapist_id = t.id) AS has_password
FROM therapists t WHERE t.slug = $1
"""


async def invite_on_add(conn: Any, settings: Settings, therapist_id: uuid.UUID) -> dict[str, str]:
    """THERAPIST_ADD_HOOKS entry: a one-time invite link (valid 7 days) to choose a password."""
    secret = await password_links.issue(conn, therapist_id, "invite", dt.datetime.now(dt.UTC))
    log.info("invite link issued for therapist %s", therapist_id)
    return {"invite_url": password_links.url(settings.origin, "invite", secret)}


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slug", required=True, help="the therapist's slug")


def password_link(args: argparse.Namespace) -> int:
    """Print a fresh one-time link: an invite if no password was ever set, else a reset link."""
    settings = cli._settings(args)
    logging.basicConfig(level="WARNING", stream=sys.stderr)

    async def work(conn: Any) -> dict[str, str] | None:
        row = await conn.fetchrow(SELECT_THERAPIST, args.slug)
        if row is None:
            return None
        purpose: password_links.Purpose = "reset" if row["has_password"] else "invite"
        secret = await password_links.issue(conn, row["id"], purpose, dt.datetime.now(dt.UTC))
        return {"id": str(row["id"]), "purpose": purpose, "url": password_links.url(settings.origin, purpose, secret)}

    result = asyncio.run(cli._with_connection(settings, work))
    if result is None:
        print(f"teleroom: no therapist with slug {args.slug!r}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


cli.THERAPIST_ADD_HOOKS.append(invite_on_add)
cli.EXTRA_COMMANDS.append(
    (
        "password-link",
        "print a one-time link for a therapist to choose a password (invite or reset)",
        _configure,
        password_link,
    )
)
