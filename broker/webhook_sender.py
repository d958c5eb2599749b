"""Delivering webhooks: the outbox's sender for the `webhook` channel, signing per Standard Webhooks.

Each delivery is an HTTP POST of the payload fixed when the change happened, byte for byte, with
the headers of the Standard Webhooks specification (https://www.standardwebhooks.com/):

    webhook-id:        msg_<outbox message id>     the same on every retry and on "send again"
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>  (space-separated,
                       one per secret while a rotated-out secret still signs)

The timestamp is the real time of the attempt (not the service clock an operator may shift): the
receiver compares it with its own clock to refuse a replayed delivery.

What an answer means: 2xx delivered; 410 Gone: the receiver says the endpoint is gone for good, so
it is disabled (with the reason) and the message fails; any other status, a timeout or a network
error: tried again on the outbox's schedule. Redirects are not followed (a 3xx is a failure), at
most a little of the answer is read, and the address passes the guard again on every attempt.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from broker import webhooks
from broker.calendar_fetch import RefusedAddress
from broker.outbox import Message, Outcome
from broker.sealing import Sealer, SealError

log = logging.getLogger("teleroom.webhooks")

TIMEOUT_SECONDS = 10.0
ANSWER_BYTES = 1024  # read at most this much of an answer, then drop the connection
USER_AGENT = "Teleroom-Webhooks/1"


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,` signature: base64 of HMAC-SHA256 over `id.timestamp.body` (Standard Webhooks, "Signature scheme")."""
    signed = message_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: a signature per key, space-separated (the newest first)."""
    return " ".join(sign(key, message_id, timestamp, body) for key in keys)


class WebhookResolver(ThreadedResolver):
    """Resolves once and refuses if any address is off limits; aiohttp connects to exactly these, so a
    name cannot pass the check with one address and connect to another (DNS rebinding)."""

    def __init__(self, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        if any(webhooks.target_refused(r["host"], self.allow_private) for r in results):
            raise RefusedAddress("refused address")
        return results


def _literal_refused(url: str, allow_private: bool) -> bool:
    # aiohttp does not ask the resolver about an IP literal, so those are checked here.
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return webhooks.target_refused(host, allow_private)


class WebhookSender:
    """The `webhook` channel of the outbox (`broker.outbox.Sender`)."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        sealer: Sealer,
        now: Callable[[], dt.datetime],
        *,
        allow_private: bool,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self._pool = pool
        self._sealer = sealer
        self._now = now
        self._allow_private = allow_private
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._lookups: dict[uuid.UUID, asyncio.Task[webhooks.Signing | None]] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=WebhookResolver(self._allow_private), use_dns_cache=False, limit=32
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # no proxy from the environment: the guard must see the real target
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def _signing(self, endpoint_id: uuid.UUID) -> webhooks.Signing | None:
        """The endpoint as it is now; sends to one endpoint at the same moment share one query (a batch
        of deliveries to one receiver would otherwise each ask), and none is answered from an old one."""
        lookup = self._lookups.get(endpoint_id)
        if lookup is None:
            lookup = asyncio.create_task(webhooks.signing(self._pool(), endpoint_id))
            self._lookups[endpoint_id] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(endpoint_id, None))
        return await asyncio.shield(lookup)

    async def send(self, message: Message) -> Outcome:
        if message.endpoint_id is None:
            return Outcome(False, error="not a webhook message", permanent=True)
        target = await self._signing(message.endpoint_id)
        if target is None:
            return Outcome(False, error="endpoint deleted", permanent=True)
        if not target.enabled:
            return Outcome(False, error="endpoint disabled", permanent=True)
        try:
            keys = webhooks.signing_keys(target, self._sealer, self._now())
        except SealError:
            log.error("webhook %s: its secret does not open with this node's seal key", target.id)
            return Outcome(False, error="secret does not open with this node's seal key")
        if _literal_refused(target.url, self._allow_private):
            return Outcome(False, error="address refused: private, local or link-local network")
        body = message.payload.encode()
        message_id = webhooks.delivery_id(message.id)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(keys, message_id, timestamp, body),
        }
        try:
            async with self._client().post(target.url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.content.read(ANSWER_BYTES)
                status = resp.status
                if not resp.content.at_eof():
                    resp.close()  # a long answer is not read: drop the connection rather than reuse it
        except TimeoutError:
            return Outcome(False, error=f"no answer within {self._timeout:g} s")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):
                return Outcome(False, error="address refused: private, local or link-local network")
            return Outcome(False, error="could not connect")
        except aiohttp.ClientError as exc:
            return Outcome(False, error=f"connection failed ({type(exc).__name__})")
        if 200 <= status < 300:
            return Outcome(True, status=status)
        if status == 410:
            now = self._now()
            reason = f"The endpoint answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC."
            if await webhooks.disable(self._pool(), target.id, reason, now):
                log.warning("webhook %s disabled: its receiver answered 410 Gone", target.id)
            return Outcome(False, status=status, error="410 Gone: endpoint disabled", permanent=True)
        return Outcome(False, status=status, error=f"HTTP {status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
