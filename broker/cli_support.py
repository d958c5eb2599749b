"""What every `teleroom` subcommand shares: its type, logging, and a migrated database to work on.

Command modules (`broker.commands`, `signaling.commands`, `web.commands`) import this; only
`broker.cli`, the command line's composition root, imports them, so nothing here knows them.
Settings come from `broker.settings.from_args`, flags from `broker.settings.add_flags`.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeAlias, TypeVar

import asyncpg

from broker import database, logs
from broker.settings import Settings

T = TypeVar("T")
# A subcommand's entry point: parsed arguments in, exit status out.
Command = Callable[[argparse.Namespace], int]
# What `add_commands(sub)` receives: `parser.add_subparsers()` (not subscriptable at run time).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def setup_logging(level: str, form: str = "text") -> None:
    """Log to standard error in the service's line format (`broker.logs`)."""
    logs.setup(level, form)


@contextlib.asynccontextmanager
async def migrated_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the configured database (starting the embedded one if need be), migrated.

    As `teleroom serve` does, migrations run as the schema's owner and the pool connects as the
    request role. Safe beside a running `teleroom serve` on the same data directory: the embedded
    server is shared, and migrations run under an advisory lock."""
    timeout = settings.database_timeout_seconds
    async with database.connection_urls(
        settings.data_dir, settings.database_url, settings.migration_database_url, wait_seconds=timeout
    ) as urls:
        async with database.open_pool(urls.requests, min_size=1, max_size=2) as pool:
            await database.migrate_for(pool, urls.migrations, wait_seconds=timeout)
            yield pool


async def on_migrated_connection(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work` on one connection of a migrated database and return what it returns."""
    async with migrated_pool(settings) as pool, pool.acquire() as conn:
        return await work(conn)
