"""The service as an operator meets it: the CLI, the embedded database, migrations, OpenAPI, readiness."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openapi_spec_validator import validate

from broker import database
from broker.app import create_app
from broker.http.openapi import API_ROUTES
from broker.settings import Settings, SettingsError
from tests.support import Api, free_port, with_database

TELEROOM = [sys.executable, "-m", "broker.cli"]


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"teleroom serve exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("teleroom serve did not become ready")


def test_serve_on_embedded_database_with_therapist_add_alongside(embedded_data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "TELEROOM_ADMIN_TOKEN"}}
    port = free_port()
    data = embedded_data_dir / "data"
    proc = subprocess.Popen(
        [*TELEROOM, "serve", "--port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(port, proc)
        token_file = data / "admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        added = subprocess.run(
            [
                *TELEROOM,
                "therapist",
                "add",
                "--slug",
                "dr-cli",
                "--name",
                "Dr CLI",
                "--email",
                "cli@example.org",
                "--timezone",
                "America/New_York",
                "--data-dir",
                str(data),
            ],
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        created = json.loads(added.stdout)
        assert created["slug"] == "dr-cli" and created["api_token"].startswith("tra_")
        # The running server sees the therapist the CLI wrote into the shared embedded database.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/therapists/dr-cli", timeout=5) as resp:
            assert json.load(resp)["timezone"] == "America/New_York"
        dup = subprocess.run(
            [
                *TELEROOM,
                "therapist",
                "add",
                "--slug",
                "dr-cli",
                "--name",
                "X",
                "--email",
                "x@example.org",
                "--timezone",
                "UTC",
                "--data-dir",
                str(data),
            ],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert dup.returncode == 1 and b"slug_taken" in dup.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        logs = proc.stderr.read().decode() if proc.stderr else ""
        assert created["api_token"] not in logs and "cli@example.org" not in logs
        # The embedded server stopped with the last process using it.
        assert not (data / "pgdata" / "postmaster.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_therapist_add_rejects_an_unknown_zone(tmp_path: Path, database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    bad = subprocess.run(
        [
            *TELEROOM,
            "therapist",
            "add",
            "--slug",
            "dr-x",
            "--name",
            "X",
            "--email",
            "x@example.org",
            "--timezone",
            "Atlantis/Capital",
        ],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert bad.returncode == 1 and b"unknown_timezone" in bad.stderr


async def test_two_nodes_migrating_at_once_apply_each_migration_once(pg_url: str) -> None:
    name = "migrate_race"
    conn = await asyncpg.connect(pg_url)
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    url = with_database(pg_url, name)
    conns = [await asyncpg.connect(url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(database.migrate(c) for c in conns))
        applied = [name for ran in results for name in ran]
        assert sorted(applied) == sorted(n for _, n, _ in database.migration_files())
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == len(database.migration_files())
    finally:
        for c in conns:
            await c.close()


async def test_openapi_documents_every_api_route(server: TestServer, api: Api) -> None:
    status, doc = await api.call("GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    validate(doc)  # a valid OpenAPI 3.1 document, by an independent validator
    app: web.Application = server.app
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for resource in app.router.resources():
        path = resource.canonical
        if not path.startswith("/api/v1/") or path == "/api/v1/openapi.json":
            continue
        for route in resource:
            if route.method in {"HEAD", "OPTIONS"}:
                continue
            assert (route.method, path) in documented, f"{route.method} {path} is missing from OpenAPI"
    # Every request body the handlers validate with is the schema the document shows.
    booking = doc["paths"]["/api/v1/therapists/{slug}/bookings"]["post"]
    ref = booking["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(doc["components"]["schemas"][ref]["required"]) >= {"session_type", "start", "client"}
    assert sum(len(t.endpoints) for t in app[API_ROUTES]) >= 10


async def test_readyz_is_503_when_the_database_is_gone(settings: Settings, pg_url: str) -> None:
    app = create_app(settings)
    srv = TestServer(app, host="127.0.0.1", port=free_port())
    await srv.start_server()
    try:
        admin = await asyncpg.connect(pg_url)
        assert settings.database_url is not None
        db = urlsplit(settings.database_url).path.lstrip("/")
        await admin.execute(f"DROP DATABASE {db} WITH (FORCE)")
        await admin.close()
        import aiohttp

        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{srv.port}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json(content_type=None))["code"] == "database_unavailable"
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{srv.port}/healthz") as resp:
            assert resp.status == 200
    finally:
        await srv.close()


def test_settings_fail_loudly_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="TELEROOM_JOIN_EARLY_MINUTES"):
        Settings.from_env({"TELEROOM_JOIN_EARLY_MINUTES": "soon"})
    with pytest.raises(SettingsError, match="TELEROOM_ADMIN_TOKEN"):
        Settings.from_env({"TELEROOM_ADMIN_TOKEN": "short"})
    with pytest.raises(SettingsError, match="TELEROOM_PUBLIC_ORIGIN"):
        Settings.from_env({"TELEROOM_PUBLIC_ORIGIN": "teleroom.example.org"})
