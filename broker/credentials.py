"""Secrets we hand out: random bearer strings with a readable prefix, stored only as hashes.

The prefixes make a leaked string easy to recognise and scan for:
`trk_` booking key, `tra_` therapist API token, `trf_` feed token, `trm_` admin token,
`tri_` invite link, `trr_` password reset link, `trs_` dashboard session (the cookie's value),
`trw_` series key (a standing series, weekly or every two weeks: opens the series and each session).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

BOOKING_KEY = "trk_"
API_TOKEN = "tra_"
FEED_TOKEN = "trf_"
ADMIN_TOKEN = "trm_"
INVITE_LINK = "tri_"
RESET_LINK = "trr_"
SESSION = "trs_"
SERIES_KEY = "trw_"
# A one-time password link: an invite or a reset.
LINK_PREFIXES = (INVITE_LINK, RESET_LINK)
# Ours are 36 characters; anything much longer is not worth a lookup.
MAX_SECRET_LENGTH = 100

# 24 random bytes: 192 bits, comfortably above the 128 the design asks for.
_RANDOM_BYTES = 24


def new_secret(prefix: str) -> str:
    """A fresh secret: the prefix and 192 random bits, URL-safe."""
    return prefix + secrets.token_urlsafe(_RANDOM_BYTES)


def secret_hash(secret: str) -> bytes:
    """SHA-256 of a high-entropy secret (a slow hash adds nothing at 192 bits)."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def same_secret(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def looks_like(value: str, prefixes: tuple[str, ...]) -> bool:
    """Shaped like one of our secrets with one of these prefixes (checked before any lookup)."""
    return value.startswith(prefixes) and len(value) <= MAX_SECRET_LENGTH
