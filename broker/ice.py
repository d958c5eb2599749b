"""ICE servers handed to room participants: STUN/TURN URLs, and TURN credentials when a secret is set.

With TELEROOM_TURN_SECRET, credentials follow coturn's "use-auth-secret" scheme (the TURN REST
API draft, draft-uberti-behave-turn-rest-00 section 2.2): username `<expiry epoch>:<participant>`,
password base64(HMAC-SHA1(secret, username)). coturn recomputes the password from the shared
secret and refuses it after the expiry, so nothing is stored and a leaked credential dies with
the join window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

import msgspec

from broker.settings import Settings


class IceServer(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of RTCConfiguration.iceServers (W3C webrtc-pc, the RTCIceServer dictionary).

    Declared once for both wire formats that carry it: the room-token answer and signaling's `joined`."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


def turn_credential(secret: str, username: str) -> str:
    """coturn's password for `username`: base64 of HMAC-SHA1 keyed with the shared secret."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def ice_servers(settings: Settings, participant: str, expires: datetime) -> list[IceServer]:
    """STUN servers as configured; TURN servers with credentials valid until `expires` (the window end)."""
    servers: list[IceServer] = []
    if settings.stun_urls:
        servers.append(IceServer(urls=list(settings.stun_urls)))
    if settings.turn_urls:
        if settings.turn_secret:
            username = f"{int(expires.timestamp())}:{participant}"
            servers.append(
                IceServer(
                    urls=list(settings.turn_urls),
                    username=username,
                    credential=turn_credential(settings.turn_secret, username),
                )
            )
        else:
            servers.append(IceServer(urls=list(settings.turn_urls)))
    return servers
