"""One typed settings object, declared once, read from the environment and CLI flags, validated at start.

Each field of `Settings` is declared with `setting(...)`: its environment variable, default,
parser (with its bounds), help text and, for a few, a command-line flag. Those declarations are
the only place a setting is described; the environment reader (`Settings.from_env`), the
`teleroom` flags (`add_flags`) and the configuration tables in README.md and docs/operations.md
(`markdown`, tested against the documents) are all built from them, as Radicale builds its
config file and command line from one schema.

    python -m broker.settings --markdown operations   # the table for docs/operations.md
    python -m broker.settings --markdown readme       # the shorter one for README.md
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


# --- parsers: text from the environment or a flag -> a typed value, with the rule it must meet ----


class Parser(Generic[T]):
    """Turns a variable's text into a value (`convert`) and states the rule values obey (`check`).

    Both raise ValueError with a reason that reads after the variable's name ("must be ...")."""

    def convert(self, raw: str) -> T:
        raise NotImplementedError

    def check(self, value: T) -> None:
        """Refuse a value outside the rule; overrides and parsed text both pass through here."""

    def allowed(self) -> str:
        """What values look like, for the documentation."""
        raise NotImplementedError

    def parse(self, raw: str) -> T:
        value = self.convert(raw)
        self.check(value)
        return value


@dataclasses.dataclass(frozen=True)
class Text(Parser[str]):
    shape: str

    def convert(self, raw: str) -> str:
        return raw

    def allowed(self) -> str:
        return self.shape


@dataclasses.dataclass(frozen=True)
class OptionalText(Parser[str | None]):
    """Text that may be absent (None); a secret sets `min_length`."""

    shape: str
    min_length: int = 0

    def convert(self, raw: str) -> str | None:
        return raw or None

    def check(self, value: str | None) -> None:
        if value is not None and len(value) < self.min_length:
            raise ValueError(f"must be at least {self.min_length} characters")

    def allowed(self) -> str:
        return f"{self.shape}, {self.min_length}+ characters" if self.min_length else self.shape


@dataclasses.dataclass(frozen=True)
class OptionalFile(Parser[Path | None]):
    """The path of a file holding a secret; absent is None (the default applies)."""

    def convert(self, raw: str) -> Path | None:
        return Path(raw) if raw else None

    def allowed(self) -> str:
        return "path of a file"


@dataclasses.dataclass(frozen=True)
class Origin(Parser[str]):
    """A web origin: scheme and host (and port), no path."""

    def convert(self, raw: str) -> str:
        return raw

    def check(self, value: str) -> None:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
                raise ValueError(f"must look like https://teleroom.example.org, got {value!r}")

    def allowed(self) -> str:
        return "`https://` or `http://` host, no path"


@dataclasses.dataclass(frozen=True)
class Directory(Parser[Path]):
    def convert(self, raw: str) -> Path:
        return Path(raw)

    def allowed(self) -> str:
        return "a directory"


@dataclasses.dataclass(frozen=True)
class Integer(Parser[int]):
    low: int
    high: int

    def convert(self, raw: str) -> int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None

    def check(self, value: int) -> None:
        if not self.low <= value <= self.high:
            raise ValueError(f"must be between {self.low} and {self.high}, got {value}")

    def allowed(self) -> str:
        return f"{self.low}–{self.high}"


@dataclasses.dataclass(frozen=True)
class Boolean(Parser[bool]):
    def convert(self, raw: str) -> bool:
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"must be true or false, got {raw!r}")

    def allowed(self) -> str:
        return "`true` or `false`"


@dataclasses.dataclass(frozen=True)
class Choice(Parser[str]):
    """One of a few words; `case` normalises what people type (`Info` -> `INFO`)."""

    options: tuple[str, ...]
    case: Callable[[str], str] = str.lower

    def convert(self, raw: str) -> str:
        return self.case(raw)

    def check(self, value: str) -> None:
        if value not in self.options:
            raise ValueError(f"must be {_or(self.options)}, got {value!r}")

    def allowed(self) -> str:
        return _or(f"`{option}`" for option in self.options)


@dataclasses.dataclass(frozen=True)
class CommaList(Parser[tuple[str, ...]]):
    shape: str

    def convert(self, raw: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    def allowed(self) -> str:
        return f"comma-separated {self.shape}"


def network(item: str | IPNetwork) -> IPNetwork:
    """An address or CIDR as a network (an address is a network of one)."""
    try:
        return ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise ValueError(f"must list IP addresses or networks, got {str(item)!r}") from None


@dataclasses.dataclass(frozen=True)
class Networks(Parser[tuple[IPNetwork, ...]]):
    def convert(self, raw: str) -> tuple[IPNetwork, ...]:
        return tuple(network(part) for part in CommaList("").convert(raw))

    def allowed(self) -> str:
        return "comma-separated addresses or CIDRs"


def _or(words: Iterable[str]) -> str:
    *rest, last = words
    return f"{', '.join(rest)} or {last}" if rest else last


# --- declarations ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Declaration:
    """One setting: where it comes from, how it is read, and what the documentation says of it."""

    env: str
    parser: Parser[Any]
    default: Any
    summary: str  # a line: README's table and `--help`
    details: str  # the full story: docs/operations.md
    flag: str | None = None  # e.g. "--port": the command line may set it too
    shown_default: str | None = None  # the default as documented, when the value alone would mislead
    field: str = ""  # the Settings field; filled in from the class

    def documented_default(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None:
            return "unset"
        if self.default in ("", ()):
            return "empty"
        if isinstance(self.default, bool):
            return f"`{str(self.default).lower()}`"
        return f"`{self.default}`"

    def read(self, env: Mapping[str, str]) -> Any:
        """The variable's value from `env`; unset or empty means the default."""
        raw = env.get(self.env)
        if raw is None or raw == "":
            return self.default
        try:
            return self.parser.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{self.env} {exc}") from None

    def check(self, value: Any) -> None:
        try:
            self.parser.check(value)
        except ValueError as exc:
            raise SettingsError(f"{self.env} {exc}") from None

    def flag_type(self, raw: str) -> Any:
        """argparse's `type=`: the same parser, its reason in argparse's error line."""
        try:
            return self.parser.parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


_DECLARATION = "teleroom.setting"


def setting(
    env: str,
    parser: Parser[T],
    default: T,
    *,
    summary: str,
    details: str,
    flag: str | None = None,
    shown_default: str | None = None,
) -> T:
    """A Settings field declared with everything else about it (see the module docstring)."""
    declaration = Declaration(env, parser, default, summary, details, flag, shown_default)
    return dataclasses.field(default=default, metadata={_DECLARATION: declaration})


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything Teleroom can be configured with; each field declares its variable and rules."""

    host: str = setting(
        "TELEROOM_HOST",
        Text("host name or address"),
        "127.0.0.1",
        flag="--host",
        summary="address to bind",
        details="address to bind. The container image passes `--host 0.0.0.0`.",
    )
    port: int = setting(
        "TELEROOM_PORT",
        Integer(0, 65535),
        8080,
        flag="--port",
        summary="port to bind",
        details="port to bind.",
    )
    workers: int = setting(
        "TELEROOM_WORKERS",
        Integer(1, 64),
        1,
        flag="--workers",
        summary="worker processes `serve` runs on the one port (`SO_REUSEPORT`), each a node of the cluster",
        details="how many worker processes `teleroom serve` runs, all on the same host and port "
        "(`SO_REUSEPORT`: the kernel spreads new connections over them), so one node uses several cores. "
        "Each worker is a member of the cluster like a separate node: its own pool, hub and outbox worker, "
        "signaling relayed through PostgreSQL (so `TELEROOM_SIGNALING_RELAY` may not be `local`), the "
        "embedded database shared. A parent process starts them, restarts one that dies after it was "
        "serving, forwards SIGTERM, and exits non-zero when a worker fails to start (see *Worker "
        "processes*). Around one per core; each holds up to 20 database connections.",
    )
    data_dir: Path = setting(
        "TELEROOM_DATA_DIR",
        Directory(),
        Path(".teleroom"),
        flag="--data-dir",
        summary="where the embedded database and generated secrets live",
        details="embedded database and the generated admin-token file. The image uses `/var/lib/teleroom`.",
    )
    database_url: str | None = setting(
        "DATABASE_URL",
        OptionalText("`postgresql://` URL"),
        None,
        summary="use this PostgreSQL 14+ instead of the embedded one",
        details="PostgreSQL 14+ connection URL. Unset: the embedded database in the data directory.",
    )
    migration_database_url: str | None = setting(
        "TELEROOM_MIGRATION_DATABASE_URL",
        OptionalText("`postgresql://` URL"),
        None,
        shown_default="unset: `DATABASE_URL`",
        summary="the schema owner's URL, for migrations only; requests use `DATABASE_URL`",
        details="URL of the role that owns Teleroom's tables, used only to apply migrations and to grant "
        "`DATABASE_URL`'s role what requests need, so that role owns nothing and cannot rewrite the audit "
        "trail (see *Database roles*). Unset: `DATABASE_URL` does both, and its role, owning the tables, "
        "could. Needs `DATABASE_URL`; the embedded database creates its own two roles.",
    )
    database_timeout_seconds: int = setting(
        "TELEROOM_DATABASE_TIMEOUT_SECONDS",
        Integer(1, 600),
        3,
        summary="longest wait for the database (connect, a pooled connection, one statement); 503 beyond",
        details="the longest a request waits on the database: to connect, for a connection from the pool, "
        "and for one statement. Beyond it the request gets 503 `database_unavailable` with `Retry-After`, "
        "so a stopped or unreachable database never holds requests open (see *When the database is lost*). "
        "Migrations are not bound by it.",
    )
    admin_token: str | None = setting(
        "TELEROOM_ADMIN_TOKEN",
        OptionalText("text", min_length=24),
        None,
        shown_default="generated",
        summary="admin bearer token; generated into the data dir when unset",
        details="admin bearer token (use `trm_` + random). Unset: one is generated on first start into "
        "`<data dir>/admin-token`.",
    )
    public_origin: str = setting(
        "TELEROOM_PUBLIC_ORIGIN",
        Origin(),
        "",
        shown_default="`http://<host>:<port>`",
        summary="the origin links are built from and WebSocket `Origin` is checked against",
        details="the URL people use, e.g. `https://teleroom.example.org`. Links, cookie security and the "
        "WebSocket `Origin` check use it. Set it behind any proxy.",
    )
    join_early_minutes: int = setting(
        "TELEROOM_JOIN_EARLY_MINUTES",
        Integer(0, 120),
        10,
        summary="how long before a session its room opens",
        details="how long before a session its room opens.",
    )
    join_late_minutes: int = setting(
        "TELEROOM_JOIN_LATE_MINUTES",
        Integer(0, 120),
        10,
        summary="how long after a session's end its room stays open",
        details="how long after a session's end its room stays open.",
    )
    token_ttl_seconds: int = setting(
        "TELEROOM_TOKEN_TTL_SECONDS",
        Integer(10, 600),
        120,
        summary="room token lifetime",
        details="lifetime of a room token.",
    )
    stun_urls: tuple[str, ...] = setting(
        "TELEROOM_STUN_URLS",
        CommaList("URLs"),
        (),
        summary="STUN servers handed to browsers",
        details="STUN URLs handed to browsers, e.g. `stun:turn.example.org:3478`.",
    )
    turn_urls: tuple[str, ...] = setting(
        "TELEROOM_TURN_URLS",
        CommaList("URLs"),
        (),
        summary="TURN servers handed to browsers",
        details="TURN URLs (see TURN). Required when `TELEROOM_TURN_SECRET` is set.",
    )
    turn_secret: str | None = setting(
        "TELEROOM_TURN_SECRET",
        OptionalText("text"),
        None,
        summary="coturn `static-auth-secret` for time-limited TURN credentials",
        details="secret shared with coturn's `static-auth-secret`.",
    )
    session_idle_minutes: int = setting(
        "TELEROOM_SESSION_IDLE_MINUTES",
        Integer(1, 24 * 60),
        15,
        summary="therapist dashboard idle logout",
        details="a therapist's dashboard session ends after this many minutes without a request.",
    )
    max_body_bytes: int = setting(
        "TELEROOM_MAX_BODY_BYTES",
        Integer(1024, 16 * 1024 * 1024),
        64 * 1024,
        summary="request body limit (413 beyond)",
        details="largest accepted request body; larger gets 413.",
    )
    allow_private_calendar_urls: bool = setting(
        "TELEROOM_ALLOW_PRIVATE_CALENDAR_URLS",
        Boolean(),
        False,
        summary="let busy calendars be fetched from private/loopback addresses",
        details="allow imported busy calendars at private or loopback addresses. Off, such URLs are refused, "
        "so a calendar URL cannot be used to probe your internal network.",
    )
    allow_private_webhook_urls: bool = setting(
        "TELEROOM_ALLOW_PRIVATE_WEBHOOK_URLS",
        Boolean(),
        False,
        summary="let webhooks target private/loopback addresses (and plain `http://`)",
        details="allow webhook endpoints at private or loopback addresses, and plain `http://` there (a "
        "receiver on your own network). Off, only `https://` addresses on the public internet are "
        "accepted, at registration and again at every delivery, so a webhook cannot probe your internal "
        "network. Link-local addresses (cloud metadata, `169.254.169.254`) are refused either way.",
    )
    busy_refresh_seconds: int = setting(
        "TELEROOM_BUSY_REFRESH_SECONDS",
        Integer(5, 86400),
        600,
        summary="how often external busy calendars are fetched",
        details="how often external busy calendars are fetched again.",
    )
    # Networks once constructed; strings given directly (tests, dataclasses.replace) are parsed in
    # __post_init__, so no request ever parses them.
    trusted_proxies: tuple[IPNetwork, ...] = setting(
        "TELEROOM_TRUSTED_PROXIES",
        Networks(),
        (),
        summary="your reverse proxies; only their `X-Forwarded-For` is believed by rate limits",
        details="your own reverse proxies (e.g. `10.0.0.0/8`); only from these is `X-Forwarded-For` believed "
        "when rate limits (booking flood control, login throttling, the echo peer) count a caller's address.",
    )
    signing_key_secret: str | None = setting(
        "TELEROOM_SIGNING_KEY_SECRET",
        OptionalText("text", min_length=16),
        None,
        summary="encrypts the stored room-token signing keys, so a database backup alone cannot mint tokens",
        details="when set, room-token signing keys are stored encrypted (PKCS#8) with it, so a database dump "
        "or backup alone cannot mint tokens. Keep it outside the database (a Secret); every node needs the "
        "same one. Keys stored before it was set keep working; `teleroom keys rotate` replaces them with "
        "an encrypted one.",
    )
    signaling_relay: str = setting(
        "TELEROOM_SIGNALING_RELAY",
        Choice(("auto", "local", "postgres")),
        "auto",
        summary="how signaling reaches other nodes; `auto` is `postgres` when `DATABASE_URL` is set or workers > 1",
        details="how signaling reaches participants on other nodes: `local` (one node only), `postgres` "
        "(LISTEN/NOTIFY on the shared database) or `auto` (postgres when `DATABASE_URL` is set or "
        "`TELEROOM_WORKERS` is above 1, local for one process on the embedded database).",
    )
    signaling_heartbeat_seconds: int = setting(
        "TELEROOM_SIGNALING_HEARTBEAT_SECONDS",
        Integer(1, 300),
        10,
        summary="seconds between pings on /ws; a participant that misses one is dropped",
        details="seconds between the pings signaling sends every joined participant. One that has not "
        "answered a ping by the next (gone, or not reading what it is sent) is disconnected and the "
        "others in the room receive `peer-left`: within two heartbeats. Keep a proxy's read timeout "
        "above it.",
    )
    booking_attempts_per_hour: int = setting(
        "TELEROOM_BOOKING_ATTEMPTS_PER_HOUR",
        Integer(0, 1_000_000),
        60,
        summary="booking attempts one address may make per hour on one node (429 beyond; `0` = no limit)",
        details="flood control on the public booking endpoint: attempts per client address per hour, counted "
        "per node in memory (429 `rate_limited` with `Retry-After` beyond it); `0` turns it off. Set "
        "`TELEROOM_TRUSTED_PROXIES` behind a proxy, or every client shares the proxy's address.",
    )
    slot_listings_per_minute: int = setting(
        "TELEROOM_SLOT_LISTINGS_PER_MINUTE",
        Integer(0, 1_000_000),
        60,
        summary="free-slot listings one address may ask for per minute on one node (429 beyond; `0` = no limit)",
        details="flood control on the public slot listing (`GET /api/v1/therapists/{slug}/slots`): requests "
        "per client address per minute, counted per node in memory (429 `rate_limited` with `Retry-After` "
        "beyond it); `0` turns it off. The booking page asks once per month shown. Set "
        "`TELEROOM_TRUSTED_PROXIES` behind a proxy, or every client shares the proxy's address.",
    )
    smtp_url: str | None = setting(
        "TELEROOM_SMTP_URL",
        OptionalText("`smtp://[user[:password]@]host[:port]` (STARTTLS) or `smtps://…` (TLS)"),
        None,
        shown_default="unset: `.eml` files",
        summary="where email goes; unset writes each message as a `.eml` file under the data dir",
        details="the SMTP server email is sent through: `smtp://` upgrades with STARTTLS (port 587 unless "
        "given), `smtps://` is TLS from the start (port 465); credentials may be in the URL "
        "(percent-encoded) or the password in `TELEROOM_SMTP_PASSWORD_FILE`. Unset (the `make run` "
        "trial): every message is written as a `.eml` file under `<data dir>/mail/` and the log says "
        "where; nothing is dropped.",
    )
    smtp_password_file: Path | None = setting(
        "TELEROOM_SMTP_PASSWORD_FILE",
        OptionalFile(),
        None,
        summary="file holding the SMTP password (instead of putting it in the URL)",
        details="a file whose first line is the SMTP password, for secrets mounted as files (Kubernetes, "
        "Compose); it wins over a password in `TELEROOM_SMTP_URL`.",
    )
    smtp_ca_file: Path | None = setting(
        "TELEROOM_SMTP_CA_FILE",
        OptionalFile(),
        None,
        shown_default="unset: the system's CAs",
        summary="PEM file of the CA the SMTP server's certificate is checked against (a private CA)",
        details="a PEM file of the certificate authority the SMTP server's certificate is verified against, "
        "for a server with a private CA. Unset: the system's CAs. Verification is never turned off; a relay "
        "without TLS must be asked for explicitly with `?starttls=off` in `TELEROOM_SMTP_URL`.",
    )
    mail_from: str = setting(
        "TELEROOM_MAIL_FROM",
        Text("`Name <address>` or an address"),
        "Appointments <appointments@localhost>",
        summary="the sender of every email (keep the name neutral)",
        details="the `From` of every email. Keep the display name neutral (it is shown in a client's "
        "inbox): no practice specialty, nothing that says therapy.",
    )
    seal_key_file: Path | None = setting(
        "TELEROOM_SEAL_KEY_FILE",
        OptionalFile(),
        None,
        shown_default="`<data dir>/seal-key`, generated",
        summary="key that seals secrets the service must use again (webhook secrets, links in queued email)",
        details="a file holding the 32-byte key (base64) that seals, with AES-GCM, the secrets Teleroom "
        "must use again: webhook signing secrets and the links queued emails carry. Unset: generated "
        "on first start into `<data dir>/seal-key` (mode 0600). Every node of a cluster needs the same "
        "key; keep it out of database backups.",
    )
    outbox_poll_seconds: int = setting(
        "TELEROOM_OUTBOX_POLL_SECONDS",
        Integer(1, 300),
        1,
        summary="how often each node looks for due emails and webhooks",
        details="how often each node's delivery worker looks for due messages in the outbox (emails, "
        "webhooks, reminders). Every node delivers; a row is claimed by one at a time.",
    )
    outbox_lease_seconds: int = setting(
        "TELEROOM_OUTBOX_LEASE_SECONDS",
        Integer(10, 3600),
        120,
        summary="how long a node holds a claimed message before another node may send it",
        details="how long a node holds a message it claimed. A node that dies mid-send leaves its "
        "messages claimed; after this long another node sends them. Keep it above the senders' "
        "timeouts (SMTP 30 s, webhooks 10 s) so a slow send is never duplicated by a live node.",
    )
    metrics_token: str | None = setting(
        "TELEROOM_METRICS_TOKEN",
        OptionalText("text", min_length=24),
        None,
        shown_default="unset: no `/metrics`",
        summary="bearer token Prometheus scrapes `/metrics` with; unset, there is no `/metrics`",
        details="when set, `GET /metrics` serves Prometheus metrics to a request carrying "
        "`Authorization: Bearer <token>` (404 to anyone else); unset, the route does not exist. "
        "Labels hold route patterns, methods, statuses and outcomes, never a person's identifier.",
    )
    log_format: str = setting(
        "TELEROOM_LOG_FORMAT",
        Choice(("text", "json"), case=str.lower),
        "text",
        summary="`text` (readable lines) or `json` (one object per line, for log shippers)",
        details="`text`: readable lines. `json`: one JSON object per line with `time`, `level`, "
        "`logger`, `message` and `request_id` (the `X-Request-Id` every answer carries), for log "
        "shippers. Either way lines hold identifiers only.",
    )
    log_level: str = setting(
        "TELEROOM_LOG_LEVEL",
        Choice(("DEBUG", "INFO", "WARNING", "ERROR"), case=str.upper),
        "INFO",
        summary="how much to log",
        details="how much to log to standard error.",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read TELEROOM_* variables (and DATABASE_URL); keyword overrides win (CLI flags)."""
        env = os.environ if env is None else env
        values = {d.field: d.read(env) for d in DECLARATIONS}
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def __post_init__(self) -> None:
        # Parsed once here, not on every request that asks for the client's address.
        try:
            networks = tuple(network(item) for item in self.trusted_proxies)
        except ValueError as exc:
            raise SettingsError(f"TELEROOM_TRUSTED_PROXIES {exc}") from None
        object.__setattr__(self, "trusted_proxies", networks)

    def validate(self) -> None:
        """Each value against its declared rule, then the rules that span settings."""
        for declaration in DECLARATIONS:
            declaration.check(getattr(self, declaration.field))
        if self.turn_secret and not self.turn_urls:
            raise SettingsError("TELEROOM_TURN_SECRET is set but TELEROOM_TURN_URLS is empty")
        if self.workers > 1 and self.signaling_relay == "local":
            raise SettingsError(
                "TELEROOM_SIGNALING_RELAY is local but TELEROOM_WORKERS is above 1 (workers relay through PostgreSQL)"
            )
        if self.workers > 1 and self.port == 0:
            raise SettingsError(
                "TELEROOM_WORKERS is above 1 but TELEROOM_PORT is 0 (every worker must bind the same port)"
            )
        if self.migration_database_url and not self.database_url:
            raise SettingsError("TELEROOM_MIGRATION_DATABASE_URL is set but DATABASE_URL is not")

    @property
    def origin(self) -> str:
        """The public origin links are built from and WebSocket Origin headers are checked against."""
        if self.public_origin:
            return self.public_origin.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def secure_cookies(self) -> bool:
        return self.origin.startswith("https://")


DECLARATIONS: tuple[Declaration, ...] = tuple(
    dataclasses.replace(f.metadata[_DECLARATION], field=f.name) for f in dataclasses.fields(Settings)
)


# --- the command line ---------------------------------------------------------------------------


def add_flags(parser: argparse.ArgumentParser, *fields: str) -> None:
    """Add the declared flags of these Settings fields (e.g. "host", "port", "data_dir")."""
    for declaration in DECLARATIONS:
        if declaration.field in fields:
            if declaration.flag is None:
                raise ValueError(f"{declaration.field} has no command-line flag")
            parser.add_argument(
                declaration.flag,
                dest=declaration.field,
                type=declaration.flag_type,
                metavar=declaration.flag.removeprefix("--").replace("-", "_").upper(),
                help=f"{declaration.summary} (default {declaration.documented_default().strip('`')}; "
                f"{declaration.env})",
            )


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, with whichever declared flags this command has and was given."""
    flags = {d.field: getattr(args, d.field) for d in DECLARATIONS if d.flag and hasattr(args, d.field)}
    return Settings.from_env(env, **flags)


# --- the documentation --------------------------------------------------------------------------

Audience = Literal["operations", "readme"]


def markdown(audience: Audience) -> str:
    """The configuration table for docs/operations.md (full) or README.md (one line each)."""
    if audience == "operations":
        rows = ["| variable | default | values | meaning |", "| --- | --- | --- | --- |"]
        rows += [f"| `{d.env}` | {d.documented_default()} | {d.parser.allowed()} | {d.details} |" for d in DECLARATIONS]
    else:
        rows = ["| variable | default | values | meaning |", "| --- | --- | --- | --- |"]
        rows += [f"| `{d.env}` | {d.documented_default()} | {d.parser.allowed()} | {d.summary} |" for d in DECLARATIONS]
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m broker.settings", description="Print the configuration tables the docs hold."
    )
    parser.add_argument(
        "--markdown", choices=["operations", "readme"], required=True, help="print that document's table"
    )
    args = parser.parse_args(argv)
    sys.stdout.write(markdown(args.markdown))
    return 0


# The app's settings object (the composition root stores it; handlers read it).
SETTINGS = web.AppKey("settings", Settings)


if __name__ == "__main__":
    sys.exit(main())
