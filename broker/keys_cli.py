"""`teleroom keys rotate`: add a new room-token signing key; the old one verifies until its tokens expire."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from broker import cli, database, tokens


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["rotate", "list"], help="rotate: new current key; list: keys served now")


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    settings = cli._settings(args)
    with database.database_url(settings.data_dir, settings.database_url) as url:
        async with database.open_pool(url, min_size=1, max_size=2) as pool:
            async with pool.acquire() as conn:
                await database.migrate(conn)
            if args.action == "rotate":
                await tokens.ensure_signing_key(pool, secret=settings.signing_key_secret)
                kid = await tokens.rotate(pool, settings)
                return {"current_kid": kid, "served": [k["kid"] for k in (await tokens.public_jwks(pool))["keys"]]}
            return {"served": [k["kid"] for k in (await tokens.public_jwks(pool))["keys"]]}


def keys(args: argparse.Namespace) -> int:
    cli._logging("WARNING")
    result = asyncio.run(_run(args))
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


cli.EXTRA_COMMANDS.append(("keys", "room-token signing keys: rotate, list", _configure, keys))
