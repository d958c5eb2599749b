"""Webhook endpoints: the `webhook_endpoints` table, their signing secrets, and the events they hear.

A therapist registers endpoints for their own bookings; the admin registers endpoints (with no
therapist) that hear about every therapist's. Each notice (`broker.notices`) becomes, inside the
change's transaction, one outbox message per enabled endpoint subscribed to its kind, whose payload
is fixed then: the Standard Webhooks shape `{"type", "timestamp", "data"}` with ids, times and
statuses only. `broker.webhook_sender` signs and delivers it.

Secrets follow the Standard Webhooks specification: `whsec_` and the base64 of 32 random bytes,
the HMAC key being those bytes. They must be used again to sign, so they are sealed
(`broker.sealing`), never hashed; shown once, when made; never logged. A rotated-out secret keeps
signing beside the new one for a day, so a receiver can switch over without losing a delivery.

An endpoint's URL passes an address guard when registered and again at every delivery (DNS can
change): `https://` on the public internet only, unless `TELEROOM_ALLOW_PRIVATE_WEBHOOK_URLS`
allows private and loopback addresses (and plain `http://`) for a receiver on one's own network.
Link-local addresses (the cloud metadata service at 169.254.169.254) are refused either way.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import logging
import secrets
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, get_args
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

from broker import audit, outbox
from broker.calendar_fetch import address_refused
from broker.database import Executor, record_to
from broker.errors import Conflict, NotFound, invalid
from broker.notices import Notice, NoticeKind
from broker.outbox import Message, NewMessage
from broker.principals import Principal
from broker.sealing import Sealer

log = logging.getLogger("teleroom.webhooks")

EVENTS: tuple[str, ...] = get_args(NoticeKind)
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
ROTATION_OVERLAP = dt.timedelta(hours=24)
MAX_ENDPOINTS = 10  # per therapist, and for the admin's all-therapist endpoints
MAX_URL_CHARS = 2000
RESOLVE_SECONDS = 5.0
DELIVERY_PREFIX = "msg_"

# The owner is a therapist's id, or NULL for the admin's endpoints (hence IS NOT DISTINCT FROM).
SELECT_OWN = """
SELECT id, therapist_id, url, events, description, enabled, disabled_reason, previous_until, created_at, updated_at
FROM webhook_endpoints WHERE therapist_id IS NOT DISTINCT FROM $1 ORDER BY created_at, id
"""
SELECT_ONE = """
SELECT id, therapist_id, url, events, description, enabled, disabled_reason, previous_until, created_at, updated_at
FROM webhook_endpoints WHERE id = $1 AND therapist_id IS NOT DISTINCT FROM $2
"""
COUNT_OWN = "SELECT count(*) FROM webhook_endpoints WHERE therapist_id IS NOT DISTINCT FROM $1"
INSERT_ENDPOINT = """
INSERT INTO webhook_endpoints (id, therapist_id, url, events, description, secret_sealed, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
RETURNING id, therapist_id, url, events, description, enabled, disabled_reason, previous_until, created_at, updated_at
"""
UPDATE_ENDPOINT = """
UPDATE webhook_endpoints
SET url = $3, events = $4, description = $5, enabled = $6,
    disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END, updated_at = $7
WHERE id = $1 AND therapist_id IS NOT DISTINCT FROM $2
RETURNING id, therapist_id, url, events, description, enabled, disabled_reason, previous_until, created_at, updated_at
"""
DELETE_ENDPOINT = "DELETE FROM webhook_endpoints WHERE id = $1 AND therapist_id IS NOT DISTINCT FROM $2 RETURNING id"
ROTATE_SECRET = """
UPDATE webhook_endpoints
SET previous_secret_sealed = secret_sealed, previous_until = $4, secret_sealed = $3, updated_at = $5
WHERE id = $1 AND therapist_id IS NOT DISTINCT FROM $2
RETURNING id
"""
DISABLE_ENDPOINT = """
UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = $3 WHERE id = $1 AND enabled
"""
SELECT_SIGNING = """
SELECT id, url, enabled, secret_sealed, previous_secret_sealed, previous_until FROM webhook_endpoints WHERE id = $1
"""
SELECT_LISTENERS = """
SELECT id FROM webhook_endpoints
WHERE enabled AND (therapist_id = $1 OR therapist_id IS NULL) AND $2 = ANY(events)
ORDER BY id
"""
# The same question as an expression another statement can carry, for the therapist whose id is
# `therapist` (an SQL expression): the ids of the endpoints that hear of `booking.created`, in
# order. `broker.bookings` reads it with a therapist's other booking facts, and a booking's one
# statement compares it with what the booking's hooks were told (`BOOK`).
LISTENER_IDS_OF = """(
    SELECT coalesce(array_agg(w.id ORDER BY w.id), '{{}}') FROM webhook_endpoints w
    WHERE w.enabled AND (w.therapist_id = {therapist} OR w.therapist_id IS NULL) AND 'booking.created' = ANY(w.events)
)"""
LISTENER_IDS = LISTENER_IDS_OF.format(therapist="$2")
# The payload's view of bookings: ids, times and statuses; no column that names or reaches a person.
SELECT_BOOKING_TIMES = """
SELECT id, starts_at, ends_at, status FROM bookings WHERE id = ANY($1::uuid[]) ORDER BY starts_at, id
"""


class WebhookEndpoint(msgspec.Struct, frozen=True):
    """An endpoint as its owner sees it (the secrets stay sealed in their columns)."""

    id: uuid.UUID
    therapist_id: uuid.UUID | None  # None: the admin's, for every therapist
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    previous_until: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class Signing(msgspec.Struct, frozen=True):
    """What a delivery needs: where, whether, and the sealed secrets it signs with."""

    id: uuid.UUID
    url: str
    enabled: bool
    secret_sealed: bytes
    previous_secret_sealed: bytes | None
    previous_until: dt.datetime | None

    def __repr__(self) -> str:  # never the sealed secrets, never the URL (it may carry a token)
        return f"Signing({self.id}, enabled={self.enabled})"


class Rotated(msgspec.Struct, frozen=True):
    secret: str
    previous_valid_until: dt.datetime


class _BookingTimes(msgspec.Struct, frozen=True):
    id: uuid.UUID
    starts_at: dt.datetime
    ends_at: dt.datetime
    status: str


class _Listener(msgspec.Struct, frozen=True):
    id: uuid.UUID


# --- secrets --------------------------------------------------------------------------------------


def new_secret() -> str:
    """A signing secret as the Standard Webhooks specification writes one: `whsec_` + base64(key)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret stands for (the base64-decoded bytes after the prefix)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def seal_context(endpoint_id: uuid.UUID) -> str:
    """A secret is sealed to its endpoint: copied into another row, it does not open."""
    return f"webhook-secret:{endpoint_id}"


def signing_keys(signing: Signing, sealer: Sealer, now: dt.datetime) -> list[bytes]:
    """The keys a delivery is signed with now: the current one, and the previous one within its day."""
    context = seal_context(signing.id).encode()
    keys = [secret_key(sealer.open(signing.secret_sealed, context).decode())]
    if signing.previous_secret_sealed is not None and signing.previous_until and now < signing.previous_until:
        keys.append(secret_key(sealer.open(signing.previous_secret_sealed, context).decode()))
    return keys


# --- the address guard ----------------------------------------------------------------------------


def target_refused(address: str, allow_private: bool) -> bool:
    """An address a webhook may not reach: link-local always (cloud metadata lives there), and every
    non-public address unless private targets are allowed."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local:
        return True
    return not allow_private and address_refused(str(ip))


def refused_url(detail: str) -> Exception:
    return invalid(detail, code="webhook_url_refused")


def normalise_url(raw: str, allow_private: bool) -> str:
    """Check an endpoint address's form: https (http only where private targets are allowed), a host,
    a valid port, no fragment. The host's addresses are checked by `check_url`."""
    text = raw.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_private):
        raise refused_url("A webhook address must start with https://.")
    try:
        port = parts.port
    except ValueError:
        raise invalid("The webhook address has an invalid port.", code="invalid_url") from None
    if not parts.hostname or port == 0 or len(text) > MAX_URL_CHARS:
        raise invalid("The webhook address must name a host (and be at most 2000 characters).", code="invalid_url")
    return urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))


async def check_url(raw: str, allow_private: bool) -> str:
    """The normalised address, once its host resolves only to addresses a webhook may reach
    (`webhook_url_refused` otherwise). Delivery checks again: a name may resolve elsewhere later."""
    url = normalise_url(raw, allow_private)
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses = [host]
    except ValueError:
        try:
            async with asyncio.timeout(RESOLVE_SECONDS):
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError):
            raise refused_url("The webhook address's host name does not resolve.") from None
        addresses = [str(info[4][0]) for info in infos]
    if not addresses or any(target_refused(a, allow_private) for a in addresses):
        raise refused_url("The webhook address points into a private, local or link-local network.")
    return url


def check_events(events: Sequence[str]) -> list[str]:
    """The events, each a notice kind (`unknown_event` otherwise), deduplicated in a stable order."""
    unknown = sorted({e for e in events if e not in EVENTS})
    if unknown:
        raise invalid(
            f"Unknown event {unknown[0]!r}; the events are {', '.join(EVENTS)}.", code="unknown_event", events=EVENTS
        )
    if not events:
        raise invalid("Name at least one event.", code="unknown_event", events=EVENTS)
    return [e for e in EVENTS if e in set(events)]


# --- the owner's endpoints ------------------------------------------------------------------------


async def listing(conn: Executor, owner: uuid.UUID | None) -> list[WebhookEndpoint]:
    """A therapist's endpoints (owner None: the admin's all-therapist ones), oldest first."""
    return [record_to(WebhookEndpoint, r) for r in await conn.fetch(SELECT_OWN, owner)]


async def get(conn: Executor, owner: uuid.UUID | None, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """One of the owner's endpoints; anyone else's is NotFound."""
    row = await conn.fetchrow(SELECT_ONE, endpoint_id, owner)
    if row is None:
        raise NotFound("webhook")
    return record_to(WebhookEndpoint, row)


async def register(
    pool: asyncpg.Pool,
    owner: uuid.UUID | None,
    *,
    url: str,
    events: Sequence[str],
    description: str | None,
    sealer: Sealer,
    now: dt.datetime,
    allow_private: bool,
    actor: Principal,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (shown this once). 409 `too_many_webhooks` beyond the limit."""
    checked_events = check_events(events)
    checked_url = await check_url(url, allow_private)
    endpoint_id = uuid.uuid4()
    secret = new_secret()
    sealed = sealer.seal_text(secret, seal_context(endpoint_id))
    async with pool.acquire() as conn, conn.transaction():
        # Serialise one owner's registrations so the limit holds under races.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"webhooks:{owner}")
        if await conn.fetchval(COUNT_OWN, owner) >= MAX_ENDPOINTS:
            raise Conflict(f"At most {MAX_ENDPOINTS} webhook endpoints.", code="too_many_webhooks")
        row = await conn.fetchrow(
            INSERT_ENDPOINT, endpoint_id, owner, checked_url, checked_events, description, sealed, now
        )
        await audit.record(conn, actor, "webhook.created", therapist_id=owner)
    log.info("webhook %s registered (%s)", endpoint_id, "all therapists" if owner is None else f"therapist {owner}")
    return record_to(WebhookEndpoint, row), secret


async def update(
    pool: asyncpg.Pool,
    owner: uuid.UUID | None,
    endpoint_id: uuid.UUID,
    *,
    changes: dict[str, Any],
    now: dt.datetime,
    allow_private: bool,
    actor: Principal,
) -> WebhookEndpoint:
    """Change `url`, `events`, `enabled` or `description` (keys left out stay). Enabling clears the
    reason it was disabled; a new URL passes the address guard again."""
    current = await get(pool, owner, endpoint_id)
    url = await check_url(changes["url"], allow_private) if "url" in changes else current.url
    events = check_events(changes["events"]) if "events" in changes else current.events
    description = changes.get("description", current.description)
    enabled = bool(changes.get("enabled", current.enabled))
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(UPDATE_ENDPOINT, endpoint_id, owner, url, events, description, enabled, now)
        if row is None:
            raise NotFound("webhook")
        await audit.record(conn, actor, "webhook.changed", therapist_id=owner)
    log.info("webhook %s changed (enabled=%s)", endpoint_id, enabled)
    return record_to(WebhookEndpoint, row)


async def delete(pool: asyncpg.Pool, owner: uuid.UUID | None, endpoint_id: uuid.UUID, actor: Principal) -> None:
    """Remove an endpoint with its delivery log (queued deliveries go with it)."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(DELETE_ENDPOINT, endpoint_id, owner) is None:
            raise NotFound("webhook")
        await audit.record(conn, actor, "webhook.deleted", therapist_id=owner)
    log.info("webhook %s deleted", endpoint_id)


async def rotate(
    pool: asyncpg.Pool,
    owner: uuid.UUID | None,
    endpoint_id: uuid.UUID,
    *,
    sealer: Sealer,
    now: dt.datetime,
    actor: Principal,
) -> Rotated:
    """A new secret (shown this once); the current one keeps signing beside it for 24 hours, so each
    delivery meanwhile carries both signatures (`webhook-signature: v1,<new> v1,<old>`)."""
    secret = new_secret()
    until = now + ROTATION_OVERLAP
    sealed = sealer.seal_text(secret, seal_context(endpoint_id))
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(ROTATE_SECRET, endpoint_id, owner, sealed, until, now) is None:
            raise NotFound("webhook")
        await audit.record(conn, actor, "webhook.secret_rotated", therapist_id=owner)
    log.info("webhook %s secret rotated", endpoint_id)
    return Rotated(secret=secret, previous_valid_until=until)


async def disable(conn: Executor, endpoint_id: uuid.UUID, reason: str, now: dt.datetime) -> bool:
    """Turn an endpoint off (a receiver answered 410 Gone); False if it already was."""
    result: str = await conn.execute(DISABLE_ENDPOINT, endpoint_id, reason[:200], now)
    return result.endswith(" 1")


async def signing(conn: Executor, endpoint_id: uuid.UUID) -> Signing | None:
    """What delivering to an endpoint needs, or None if it was deleted."""
    row = await conn.fetchrow(SELECT_SIGNING, endpoint_id)
    return None if row is None else record_to(Signing, row)


# --- deliveries -----------------------------------------------------------------------------------


def delivery_id(message_id: uuid.UUID) -> str:
    """The `webhook-id` of a delivery: stable across its retries and a "send again"."""
    return f"{DELIVERY_PREFIX}{message_id}"


def parse_delivery_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text.removeprefix(DELIVERY_PREFIX))
    except ValueError:
        raise NotFound("delivery") from None


async def deliveries(
    conn: Executor, owner: uuid.UUID | None, endpoint_id: uuid.UUID, limit: int = 100
) -> list[Message]:
    """An endpoint's delivery log, newest first."""
    await get(conn, owner, endpoint_id)
    return await outbox.for_endpoint(conn, endpoint_id, limit)


async def send_again(
    pool: asyncpg.Pool, owner: uuid.UUID | None, endpoint_id: uuid.UUID, message_id: uuid.UUID, now: dt.datetime
) -> Message:
    """Queue a delivered or failed delivery again, under the same `webhook-id`. 409 `webhook_disabled`
    on a disabled endpoint (enable it first); 409 `delivery_pending` while it is still queued."""
    endpoint = await get(pool, owner, endpoint_id)
    if not endpoint.enabled:
        raise Conflict("The webhook endpoint is disabled; enable it first.", code="webhook_disabled")
    try:
        message = await outbox.get(pool, message_id)
    except NotFound:
        raise NotFound("delivery") from None
    if message.endpoint_id != endpoint_id:
        raise NotFound("delivery")
    if message.state not in ("delivered", "failed"):
        raise Conflict("This delivery is still queued.", code="delivery_pending", state=message.state)
    return await outbox.send_again(pool, message_id, now)


# --- the notice hook ------------------------------------------------------------------------------


def payload(notice: Notice, bookings: Sequence[_BookingTimes], now: dt.datetime) -> dict[str, Any]:
    """The thin event body (Standard Webhooks' suggested shape): what happened, when, to which ids.

    Built from a notice and the bookings' times only; there is no field a name, email, phone,
    note or key could travel in (`notice.secret` in particular never does)."""
    return {
        "type": notice.kind,
        "timestamp": now,
        "data": {
            "therapist_id": str(notice.therapist_id),
            "series_id": None if notice.series_id is None else str(notice.series_id),
            "by": notice.by,
            "bookings": [
                {"id": str(b.id), "start": b.starts_at, "end": b.ends_at, "status": b.status} for b in bookings
            ],
        },
    }


def notice_hook(
    now: Callable[[], dt.datetime],
) -> Callable[[asyncpg.Connection, Notice], Awaitable[list[NewMessage]]]:
    """The hook `broker.notices` runs in each change's transaction: one outbox message per enabled
    endpoint (the therapist's and the admin's) subscribed to the notice's kind.

    A new booking's notice says who listens and the booking's times (the hook runs before the
    booking is written, `broker.bookings.BOOK`), so it costs no read here; any other notice reads
    both."""

    async def queue_webhooks(conn: asyncpg.Connection, notice: Notice) -> list[NewMessage]:
        if notice.listeners is not None:
            listeners = list(notice.listeners)
        else:
            rows = await conn.fetch(SELECT_LISTENERS, notice.therapist_id, notice.kind)
            listeners = [record_to(_Listener, r).id for r in rows]
        if not listeners:
            return []
        if notice.kind == "booking.created" and notice.start is not None and notice.end is not None:
            times = [_BookingTimes(notice.booking_ids[0], notice.start, notice.end, "confirmed")]
        else:
            rows = await conn.fetch(SELECT_BOOKING_TIMES, list(notice.booking_ids))
            times = [record_to(_BookingTimes, r) for r in rows]
        at = now()
        body = payload(notice, times, at)
        return [
            NewMessage(
                channel="webhook",
                kind=notice.kind,
                recipient="endpoint",
                due_at=at,
                therapist_id=notice.therapist_id,
                series_id=notice.series_id,
                endpoint_id=listener,
                payload=body,
            )
            for listener in listeners
        ]

    return queue_webhooks
