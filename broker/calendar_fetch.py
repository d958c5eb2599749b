"""Fetching a therapist's external calendar address safely: validation, masking and the SSRF guard.

The addresses are the therapist's secrets (a Google or iCloud "secret address"): they are
fetched, never logged, never quoted in an error message, and shown only masked. A fetch
resolves the host once and refuses private, loopback and other non-public addresses, then
connects to exactly the addresses it checked, so DNS rebinding cannot slip past the check;
redirects are followed by hand (at most three) and each hop is checked again. Conditional
requests (RFC 9110 13.1), a size limit and a time limit keep a slow or huge source cheap.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from broker.errors import invalid

MAX_BYTES = 5 * 1024 * 1024
FETCH_SECONDS = 10.0
MAX_REDIRECTS = 3
USER_AGENT = "Teleroom busy-calendar fetcher"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
PRIVATE_REFUSED = "The address points into a private or local network, which is not allowed."


class CalendarFetchError(Exception):
    """A fetch failed; the message is fit to show the therapist (it never contains the URL)."""


class RefusedAddress(OSError):
    """A host resolved to an address we do not fetch from (private, loopback, ...)."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetch's answer; `body` is None on 304 (the stored copy is still current)."""

    body: bytes | None
    etag: str | None
    last_modified: str | None


def normalise_url(raw: str) -> str:
    """Check an address a therapist gave; webcal:// is https://. Invalid input `invalid_url` otherwise."""
    text = raw.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in {"webcal", "webcals"}:
        scheme = "https"
    if scheme not in {"http", "https"}:
        raise invalid("Calendar addresses must start with https://, http:// or webcal://.", code="invalid_url")
    try:
        port = parts.port
    except ValueError:
        raise invalid("A calendar address has an invalid port.", code="invalid_url") from None
    if not parts.hostname or port == 0:
        raise invalid("A calendar address must name a host.", code="invalid_url")
    return urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))


def mask_url(url: str) -> str:
    """`https://calendar.google.com/…/basic.ics`-like: the host and at most a short harmless tail."""
    parts = urlsplit(url)
    tail = parts.path.rsplit("/", 1)[-1]
    shown = tail if tail.lower().endswith(".ics") and len(tail) <= 16 else ""
    return f"{parts.scheme}://{parts.hostname}/…{('/' + shown) if shown else ''}"


def address_refused(address: str) -> bool:
    """Private, loopback, link-local, multicast, reserved, shared or unspecified: not the public internet."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_loopback


def normalise_redirect(current: str, location: str) -> str:
    """The absolute target of a redirect's `Location`; only http(s) is followed."""
    if not location:
        raise CalendarFetchError("The calendar server redirected without saying where.")
    target = urljoin(current, location)
    scheme = urlsplit(target).scheme.lower()
    if scheme not in {"http", "https"}:
        raise CalendarFetchError("The calendar server redirected to an address that is not http(s).")
    return target


class GuardedResolver(ThreadedResolver):
    """Resolves once and refuses if ANY address is off limits; aiohttp connects to exactly these.

    Checking and connecting with the same answer closes the DNS-rebinding gap (a name that
    resolves to a public address for the check and to 127.0.0.1 for the connection).
    """

    def __init__(self, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        if not self.allow_private and any(address_refused(r["host"]) for r in results):
            raise RefusedAddress("refused address")
        return results


def guarded_session(allow_private: bool) -> aiohttp.ClientSession:
    """A client session whose every connection passes the address guard (and ignores proxy variables)."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private), use_dns_cache=False, limit=8)
    return aiohttp.ClientSession(connector=connector, trust_env=False)


def _check_literal_host(url: str, allow_private: bool) -> None:
    # aiohttp does not consult the resolver for IP literals, so those are checked here.
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return
    if not allow_private and address_refused(host):
        raise CalendarFetchError(PRIVATE_REFUSED)


async def fetch_calendar(
    session: aiohttp.ClientSession,
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    allow_private: bool,
    max_bytes: int = MAX_BYTES,
    seconds: float = FETCH_SECONDS,
) -> Fetched:
    """GET an ICS with If-None-Match / If-Modified-Since, following at most 3 re-checked redirects."""
    headers = {"Accept": "text/calendar, */*;q=0.5", "User-Agent": USER_AGENT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    too_large = f"The calendar is larger than {max_bytes // (1024 * 1024)} MiB."
    try:
        async with asyncio.timeout(seconds):
            for _ in range(MAX_REDIRECTS + 1):
                _check_literal_host(url, allow_private)
                async with session.get(url, headers=headers, allow_redirects=False) as resp:
                    if resp.status in REDIRECTS:
                        url = normalise_redirect(url, resp.headers.get("Location", ""))
                        continue
                    if resp.status == 304:
                        return Fetched(None, etag, last_modified)
                    if resp.status != 200:
                        raise CalendarFetchError(f"The calendar server answered HTTP {resp.status}.")
                    if resp.content_length is not None and resp.content_length > max_bytes:
                        raise CalendarFetchError(too_large)
                    body = bytearray()
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        body += chunk
                        if len(body) > max_bytes:
                            raise CalendarFetchError(too_large)
                    return Fetched(bytes(body), resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
            raise CalendarFetchError(f"The calendar address redirected more than {MAX_REDIRECTS} times.")
    except TimeoutError:
        raise CalendarFetchError(f"The calendar server did not answer within {seconds:g} seconds.") from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, RefusedAddress):
            raise CalendarFetchError(PRIVATE_REFUSED) from None
        raise CalendarFetchError("The calendar server could not be reached.") from None
    except aiohttp.ClientError:
        raise CalendarFetchError("The calendar server broke off the connection.") from None
