"""Settings are declared once; the environment reader, the flags and the docs' tables follow from it."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import re
from pathlib import Path

import pytest

from broker import settings as settings_module
from broker.settings import DECLARATIONS, Settings, SettingsError, add_flags, from_args, markdown

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "regenerate it with `python -m broker.settings --markdown {audience}` and paste it under {heading!r}"


def table_under(path: Path, heading: str) -> str:
    """The first Markdown table after `heading` (its lines, each ending in a newline)."""
    text = path.read_text()
    assert heading in text, f"{path.name} has no {heading!r} section"
    lines = text[text.index(heading) :].splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "".join(lines[start:end])


@pytest.mark.parametrize(
    ("path", "heading", "audience"),
    [
        (ROOT / "docs" / "operations.md", "## Environment variables", "operations"),
        (ROOT / "README.md", "## Configuration", "readme"),
    ],
    ids=["operations", "readme"],
)
def test_the_docs_hold_exactly_the_declared_settings(path: Path, heading: str, audience: str) -> None:
    documented = table_under(path, heading)
    assert documented == markdown(audience), f"{path.name}: the table is stale; " + REGENERATE.format(
        audience=audience, heading=heading
    )


def test_every_field_is_declared_once_with_its_own_variable() -> None:
    assert [d.field for d in DECLARATIONS] == [f.name for f in dataclasses.fields(Settings)]
    names = [d.env for d in DECLARATIONS]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"TELEROOM_[A-Z0-9_]+|DATABASE_URL", name) for name in names)
    assert all(d.summary and d.details for d in DECLARATIONS)


def test_an_empty_environment_gives_the_declared_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({d.env: "" for d in DECLARATIONS}) == Settings()  # empty counts as unset


def test_values_are_read_and_normalised() -> None:
    env = {
        "TELEROOM_PORT": "9000",
        "TELEROOM_DATA_DIR": "/var/lib/teleroom",
        "TELEROOM_ALLOW_PRIVATE_CALENDAR_URLS": "yes",
        "TELEROOM_STUN_URLS": " stun:a.example:3478 , ,stun:b.example ",
        "TELEROOM_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7",
        "TELEROOM_SIGNALING_RELAY": "Postgres",
        "TELEROOM_LOG_LEVEL": "warning",
    }
    s = Settings.from_env(env)
    assert s.port == 9000 and s.data_dir == Path("/var/lib/teleroom") and s.allow_private_calendar_urls
    assert s.stun_urls == ("stun:a.example:3478", "stun:b.example")
    assert s.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.7/32"))
    assert (s.signaling_relay, s.log_level) == ("postgres", "WARNING")


def test_proxies_given_as_strings_are_parsed_once_into_networks() -> None:
    s = dataclasses.replace(Settings(), trusted_proxies=("10.0.0.0/8",))  # type: ignore[arg-type]
    assert s.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),)
    assert dataclasses.replace(s).trusted_proxies == s.trusted_proxies


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TELEROOM_PORT", "eighty"),
        ("TELEROOM_PORT", "70000"),
        ("TELEROOM_JOIN_EARLY_MINUTES", "soon"),
        ("TELEROOM_JOIN_LATE_MINUTES", "121"),
        ("TELEROOM_TOKEN_TTL_SECONDS", "9"),
        ("TELEROOM_SESSION_IDLE_MINUTES", "0"),
        ("TELEROOM_MAX_BODY_BYTES", "100"),
        ("TELEROOM_BUSY_REFRESH_SECONDS", "1"),
        ("TELEROOM_BOOKING_ATTEMPTS_PER_HOUR", "-1"),
        ("TELEROOM_ALLOW_PRIVATE_CALENDAR_URLS", "maybe"),
        ("TELEROOM_ADMIN_TOKEN", "short"),
        ("TELEROOM_SIGNING_KEY_SECRET", "short"),
        ("TELEROOM_PUBLIC_ORIGIN", "teleroom.example.org"),
        ("TELEROOM_PUBLIC_ORIGIN", "https://teleroom.example.org/app"),
        ("TELEROOM_SIGNALING_RELAY", "redis"),
        ("TELEROOM_LOG_LEVEL", "LOUD"),
        ("TELEROOM_TRUSTED_PROXIES", "10.0.0.0/8,not-an-ip"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable} "):
        Settings.from_env({variable: value})


def test_a_turn_secret_needs_turn_urls() -> None:
    with pytest.raises(SettingsError, match="TELEROOM_TURN_SECRET is set but TELEROOM_TURN_URLS is empty"):
        Settings.from_env({"TELEROOM_TURN_SECRET": "s3cret"})
    assert Settings.from_env({"TELEROOM_TURN_SECRET": "s3cret", "TELEROOM_TURN_URLS": "turn:t.example"}).turn_secret


def test_overrides_win_and_obey_the_same_rules() -> None:
    assert Settings.from_env({"TELEROOM_PORT": "9000"}, port=9001, host=None).port == 9001
    with pytest.raises(SettingsError, match=r"^TELEROOM_PORT "):
        Settings.from_env({}, port=70000)
    with pytest.raises(SettingsError, match=r"^TELEROOM_LOG_LEVEL "):
        Settings.from_env({}, log_level="LOUD")


def flag_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="teleroom serve", exit_on_error=False)
    add_flags(parser, "host", "port", "data_dir")
    return parser


def test_flags_come_from_the_declarations_and_win_over_the_environment() -> None:
    parser = flag_parser()
    flags = {a.dest: a.option_strings for a in parser._actions if a.dest != "help"}
    assert flags == {"host": ["--host"], "port": ["--port"], "data_dir": ["--data-dir"]}
    args = parser.parse_args(["--port", "9002", "--data-dir", "/tmp/x"])
    s = from_args(args, {"TELEROOM_PORT": "9000", "TELEROOM_HOST": "0.0.0.0"})
    assert (s.host, s.port, s.data_dir) == ("0.0.0.0", 9002, Path("/tmp/x"))


def test_a_bad_flag_is_refused_with_the_rule_it_broke(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="teleroom serve")
    add_flags(parser, "port")
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--port", "70000"])
    assert exited.value.code == 2
    assert "argument --port: must be between 0 and 65535, got 70000" in capsys.readouterr().err


def test_only_declared_flags_can_be_added() -> None:
    with pytest.raises(ValueError, match="log_level has no command-line flag"):
        add_flags(argparse.ArgumentParser(), "log_level")


def test_the_module_prints_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert settings_module.main(["--markdown", "operations"]) == 0
    out = capsys.readouterr().out
    assert out == markdown("operations")
    assert all(f"`{d.env}`" in out for d in DECLARATIONS)
