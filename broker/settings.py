"""One typed settings object, read from the environment and CLI flags, validated at start."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything Teleroom can be configured with. See README "Configuration"."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".teleroom")
    database_url: str | None = None
    admin_token: str | None = None
    public_origin: str = ""
    join_early_minutes: int = 10
    join_late_minutes: int = 10
    token_ttl_seconds: int = 120
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    session_idle_minutes: int = 15
    max_body_bytes: int = 64 * 1024
    allow_private_calendar_urls: bool = False
    busy_refresh_seconds: int = 600
    # Strings on the way in (environment, tests); parsed networks once constructed.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    signing_key_secret: str | None = None
    signaling_relay: str = "auto"
    booking_attempts_per_hour: int = 60
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read TELEROOM_* variables (and DATABASE_URL); keyword overrides win (CLI flags)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "host": env.get("TELEROOM_HOST", "127.0.0.1"),
            "port": _int(env, "TELEROOM_PORT", 8080, low=0, high=65535),
            "data_dir": Path(env.get("TELEROOM_DATA_DIR", ".teleroom")),
            "database_url": env.get("DATABASE_URL") or None,
            "admin_token": env.get("TELEROOM_ADMIN_TOKEN") or None,
            "public_origin": env.get("TELEROOM_PUBLIC_ORIGIN", ""),
            "join_early_minutes": _int(env, "TELEROOM_JOIN_EARLY_MINUTES", 10, low=0, high=120),
            "join_late_minutes": _int(env, "TELEROOM_JOIN_LATE_MINUTES", 10, low=0, high=120),
            "token_ttl_seconds": _int(env, "TELEROOM_TOKEN_TTL_SECONDS", 120, low=10, high=600),
            "stun_urls": _list(env, "TELEROOM_STUN_URLS"),
            "turn_urls": _list(env, "TELEROOM_TURN_URLS"),
            "turn_secret": env.get("TELEROOM_TURN_SECRET") or None,
            "session_idle_minutes": _int(env, "TELEROOM_SESSION_IDLE_MINUTES", 15, low=1, high=24 * 60),
            "max_body_bytes": _int(env, "TELEROOM_MAX_BODY_BYTES", 64 * 1024, low=1024, high=16 * 1024 * 1024),
            "allow_private_calendar_urls": _bool(env, "TELEROOM_ALLOW_PRIVATE_CALENDAR_URLS", False),
            "busy_refresh_seconds": _int(env, "TELEROOM_BUSY_REFRESH_SECONDS", 600, low=5, high=86400),
            "trusted_proxies": _list(env, "TELEROOM_TRUSTED_PROXIES"),
            "signing_key_secret": env.get("TELEROOM_SIGNING_KEY_SECRET") or None,
            "signaling_relay": (env.get("TELEROOM_SIGNALING_RELAY") or "auto").lower(),
            "booking_attempts_per_hour": _int(env, "TELEROOM_BOOKING_ATTEMPTS_PER_HOUR", 60, low=0, high=1_000_000),
            "log_level": env.get("TELEROOM_LOG_LEVEL", "INFO").upper(),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def __post_init__(self) -> None:
        # Parsed once here, not on every request that asks for the client's address.
        networks = []
        for item in self.trusted_proxies:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise SettingsError(f"TELEROOM_TRUSTED_PROXIES: not an IP address or network: {item!r}") from None
        object.__setattr__(self, "trusted_proxies", tuple(networks))

    def validate(self) -> None:
        if self.public_origin:
            parts = urlsplit(self.public_origin)
            if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
                raise SettingsError(
                    f"TELEROOM_PUBLIC_ORIGIN must look like https://teleroom.example.org, got {self.public_origin!r}"
                )
        if self.turn_secret and not self.turn_urls:
            raise SettingsError("TELEROOM_TURN_SECRET is set but TELEROOM_TURN_URLS is empty")
        if self.signing_key_secret is not None and len(self.signing_key_secret) < 16:
            raise SettingsError("TELEROOM_SIGNING_KEY_SECRET must be at least 16 characters")
        if self.admin_token is not None and len(self.admin_token) < 24:
            raise SettingsError("TELEROOM_ADMIN_TOKEN must be at least 24 characters")
        if self.signaling_relay not in {"auto", "local", "postgres"}:
            raise SettingsError(
                f"TELEROOM_SIGNALING_RELAY must be auto, local or postgres, got {self.signaling_relay!r}"
            )
        if self.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError(f"TELEROOM_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")

    @property
    def origin(self) -> str:
        """The public origin links are built from and WebSocket Origin headers are checked against."""
        if self.public_origin:
            return self.public_origin.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def secure_cookies(self) -> bool:
        return self.origin.startswith("https://")
