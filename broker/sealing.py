"""Sealing: secrets Teleroom must use again (webhook signing secrets, links a queued email carries)
are stored encrypted with AES-GCM under one key that lives outside the database.

A database dump alone then reveals none of them. The key is `TELEROOM_SEAL_KEY_FILE` (base64 of 32
bytes), or `<data dir>/seal-key`, generated on first start with mode 0600. Every node of a cluster
needs the same key. Each sealed value is bound to a context (what it is and whose), so a sealed
value copied into another row does not open there.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.settings import Settings, SettingsError

KEY_BYTES = 32
NONCE_BYTES = 12
DEFAULT_FILE = "seal-key"


class SealError(ValueError):
    """A sealed value does not open with this key and context (another key, or tampered)."""


class Sealer:
    """Seals and opens short secrets with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a seal key is {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, plain: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)
        except (InvalidTag, ValueError):
            raise SealError("sealed value does not open with this key") from None

    def seal_text(self, plain: str, context: str) -> bytes:
        return self.seal(plain.encode(), context.encode())

    def open_text(self, sealed: bytes, context: str) -> str:
        return self.open(sealed, context.encode()).decode()

    def __repr__(self) -> str:
        return "Sealer(<key>)"


def _read_key(path: Path) -> bytes:
    try:
        raw = path.read_text().strip()
        key = base64.b64decode(raw, validate=True)
    except (OSError, binascii.Error, ValueError) as exc:
        raise SettingsError(f"TELEROOM_SEAL_KEY_FILE {path}: cannot read a base64 key ({type(exc).__name__})") from None
    if len(key) != KEY_BYTES:
        raise SettingsError(f"TELEROOM_SEAL_KEY_FILE {path}: the key must be {KEY_BYTES} bytes, base64-encoded")
    return key


def load(settings: Settings) -> Sealer:
    """The configured key, or the data dir's (created on first use, readable by its owner only)."""
    if settings.seal_key_file is not None:
        return Sealer(_read_key(settings.seal_key_file))
    path = settings.data_dir / DEFAULT_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n"
        draft = path.with_name(f".{DEFAULT_FILE}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(fresh)
        try:  # whole or not at all: another process of this node may be making it too
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return Sealer(_read_key(path))


# The app's sealer, loaded once at start (broker.app).
SEALER = web.AppKey("sealer", Sealer)
