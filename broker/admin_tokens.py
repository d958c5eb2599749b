"""The admin token: TELEROOM_ADMIN_TOKEN, or one generated on first start into the data dir (0600)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import asyncpg

from broker import credentials
from broker.database import Executor
from broker.settings import Settings

log = logging.getLogger("teleroom")

SELECT_ADMIN_TOKEN = "SELECT 1 FROM admin_tokens WHERE token_hash = $1"


async def is_admin_token(conn: Executor, settings: Settings, token: str) -> bool:
    """Whether `token` is the configured admin token or a generated one (compared by hash)."""
    digest = credentials.secret_hash(token)
    if settings.admin_token is not None and credentials.same_secret(
        digest, credentials.secret_hash(settings.admin_token)
    ):
        return True
    return bool(await conn.fetchval(SELECT_ADMIN_TOKEN, digest))


async def ensure_admin_token(pool: asyncpg.Pool, settings: Settings) -> None:
    """With TELEROOM_ADMIN_TOKEN unset, make one on first start and leave it in the data dir (0600)."""
    if settings.admin_token is not None:
        return
    path = settings.data_dir / "admin-token"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE admin_tokens IN EXCLUSIVE MODE")
        if await conn.fetchval("SELECT count(*) FROM admin_tokens"):
            if path.exists():
                log.info("admin token: %s", path.resolve())
            return
        token = credentials.new_secret(credentials.ADMIN_TOKEN)
        await conn.execute("INSERT INTO admin_tokens (token_hash) VALUES ($1)", credentials.secret_hash(token))
        write_secret_file(path, token)
    log.warning("generated an admin token; it is in %s (mode 0600)", path.resolve())


def write_secret_file(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    path.chmod(0o600)
