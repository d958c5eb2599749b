"""The `teleroom` command line: composed in broker/cli.py from each package's `add_commands`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from pathlib import Path

import asyncpg
import pytest

from broker import cli, commands
from broker.settings import Settings
from broker.therapists import NewTherapist, TherapistCreatedHook
from web.password_links import invite_on_create

THERAPIST = ("--slug", "dr-cli-hooks", "--name", "Dr Hooks", "--email", "hooks@example.org", "--timezone", "UTC")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options(parser: argparse.ArgumentParser) -> list[str]:
    """Each argument's flags, or its name if positional (help left out)."""
    return ["/".join(a.option_strings) or a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def test_help_lists_every_subcommand_each_package_adds() -> None:
    parser = cli.build_parser()
    assert list(subcommands(parser)) == ["serve", "migrate", "therapist", "keys", "probe", "password-link"]
    assert list(subcommands(subcommands(parser)["therapist"])) == ["add"]
    assert "{serve,migrate,therapist,keys,probe,password-link}" in parser.format_help()


def test_each_subcommand_keeps_its_arguments() -> None:
    sub = subcommands(cli.build_parser())
    assert options(sub["serve"]) == ["--host", "--port", "--workers", "--data-dir"]
    assert options(sub["migrate"]) == ["--data-dir"]
    assert options(subcommands(sub["therapist"])["add"]) == ["--slug", "--name", "--email", "--timezone", "--data-dir"]
    assert options(sub["keys"]) == ["--data-dir", "action"]
    assert options(sub["probe"]) == ["--data-dir", "url", "--token", "--timeout"]
    assert options(sub["password-link"]) == ["--data-dir", "--slug"]


def test_flags_are_parsed_by_the_settings_they_set(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(["serve", "--port", "8081", "--data-dir", "/srv/teleroom"])
    assert (args.port, args.data_dir, args.host) == (8081, Path("/srv/teleroom"), None)
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["serve", "--port", "80000"])
    assert exited.value.code == 2
    assert "must be between 0 and 65535" in capsys.readouterr().err


def test_a_bad_variable_stops_a_command_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEROOM_JOIN_EARLY_MINUTES", "soon")
    assert cli.main(["migrate"]) == 2
    assert "configuration error: TELEROOM_JOIN_EARLY_MINUTES" in capsys.readouterr().err


def test_therapist_add_runs_the_hooks_the_api_runs() -> None:
    assert cli.THERAPIST_CREATED_HOOKS == (invite_on_create,)


def run_therapist_add(hooks: tuple[TherapistCreatedHook, ...], tmp_path: Path) -> int:
    """`therapist add` composed with these hooks instead of the ones broker/cli.py chooses."""
    parser = argparse.ArgumentParser(prog="teleroom")
    commands.add_commands(parser.add_subparsers(dest="command", required=True), therapist_hooks=hooks)
    args = parser.parse_args(["therapist", "add", *THERAPIST, "--data-dir", str(tmp_path)])
    code: int = args.run(args)
    return code


def test_therapist_add_prints_the_api_fields_as_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TELEROOM_PUBLIC_ORIGIN", "https://teleroom.example.org")
    assert cli.main(["therapist", "add", *THERAPIST, "--data-dir", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["id", "slug", "name", "email", "timezone", "api_token", "invite_url"]
    assert (printed["slug"], printed["email"], printed["timezone"]) == ("dr-cli-hooks", "hooks@example.org", "UTC")
    assert printed["api_token"].startswith("tra_")
    assert printed["invite_url"].startswith("https://teleroom.example.org/invite#t=tri_")


def test_a_failing_hook_leaves_no_therapist_behind(
    monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path
) -> None:
    """Hooks run inside the creating transaction: if one fails, nothing of the therapist is kept."""

    async def refuse(
        conn: asyncpg.Connection, settings: Settings, created: NewTherapist, now: dt.datetime
    ) -> NewTherapist:
        raise RuntimeError("the hook failed")

    monkeypatch.setenv("DATABASE_URL", database_url)
    with pytest.raises(RuntimeError, match="the hook failed"):
        run_therapist_add((refuse,), tmp_path)

    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            found: int = await conn.fetchval("SELECT count(*) FROM therapists WHERE slug = 'dr-cli-hooks'")
            return found
        finally:
            await conn.close()

    assert asyncio.run(count()) == 0
