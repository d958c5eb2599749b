"""Telehealth consent: a therapist's versioned consent text, and each client's acceptance of a version.

This module owns `consent_texts` and `client_consents`. The text is versioned: an edit adds the
next version, and a consent names the version (the row, so the words accepted are kept verbatim).
A therapist who never wrote one has the shipped default (`broker/data/consent_default.txt`, edit it
in place) as version 1, written the first time it is needed, so a later change of the shipped file
never changes what a client already accepted. A client has consented while they have accepted the
therapist's latest version: a changed text asks again at the next join.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from importlib import resources

import asyncpg
import msgspec

from broker import audit
from broker.database import Executor, record_to
from broker.errors import Conflict, invalid
from broker.principals import Principal

DEFAULT_TEXT_FILE = "consent_default.txt"
MAX_TEXT_LENGTH = 20000

SELECT_CURRENT = "SELECT * FROM consent_texts WHERE therapist_id = $1 ORDER BY version DESC LIMIT 1"
SELECT_VERSIONS = "SELECT * FROM consent_texts WHERE therapist_id = $1 ORDER BY version DESC"
# Version 1 from the shipped default, unless a first version exists (a racing reader wrote it).
INSERT_DEFAULT = """
INSERT INTO consent_texts (id, therapist_id, version, text) VALUES ($1, $2, 1, $3)
ON CONFLICT (therapist_id, version) DO NOTHING
"""
# The next version: the unique key (therapist_id, version) refuses a racing edit of the same number.
INSERT_NEXT = """
INSERT INTO consent_texts (id, therapist_id, version, text)
SELECT $1, $2, coalesce(max(version), 0) + 1, $3 FROM consent_texts WHERE therapist_id = $2
RETURNING *
"""
VERSION_KEY = "consent_texts_version_key"
INSERT_CONSENT = """
INSERT INTO client_consents (id, therapist_id, client_id, consent_text_id, version, typed_name, accepted_at, booking_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (client_id, consent_text_id) DO NOTHING
RETURNING *
"""
SELECT_CONSENT = "SELECT * FROM client_consents WHERE client_id = $1 AND consent_text_id = $2"
SELECT_CONSENTS = "SELECT * FROM client_consents WHERE client_id = $1 ORDER BY accepted_at DESC, version DESC"
# Whether a client has accepted their therapist's latest version (false while the therapist has none:
# the default is written when the client is first shown it).
HAS_CURRENT = """
SELECT EXISTS (
    SELECT 1 FROM client_consents cc
    WHERE cc.client_id = $1 AND cc.consent_text_id = (
        SELECT id FROM consent_texts WHERE therapist_id = $2 ORDER BY version DESC LIMIT 1)
)
"""


class ConsentText(msgspec.Struct, frozen=True):
    """One version of a therapist's consent text."""

    id: uuid.UUID
    therapist_id: uuid.UUID
    version: int
    text: str
    created_at: dt.datetime


class Consent(msgspec.Struct, frozen=True):
    """A client's acceptance of one version: the name they typed, and when."""

    id: uuid.UUID
    client_id: uuid.UUID
    consent_text_id: uuid.UUID
    version: int
    typed_name: str
    accepted_at: dt.datetime
    booking_id: uuid.UUID | None = None


@functools.cache
def default_text() -> str:
    """The shipped default consent text."""
    text = (resources.files("broker") / "data" / DEFAULT_TEXT_FILE).read_text(encoding="utf-8").strip()
    return text.replace("\r\n", "\n")


async def current(conn: Executor, therapist_id: uuid.UUID) -> ConsentText:
    """The therapist's latest consent text; the shipped default becomes version 1 if there is none yet."""
    row = await conn.fetchrow(SELECT_CURRENT, therapist_id)
    if row is None:
        await conn.execute(INSERT_DEFAULT, uuid.uuid4(), therapist_id, default_text())
        row = await conn.fetchrow(SELECT_CURRENT, therapist_id)
    assert row is not None  # written above, by us or a racing reader
    return record_to(ConsentText, row)


async def versions(conn: Executor, therapist_id: uuid.UUID) -> list[ConsentText]:
    """Every version of the therapist's text, latest first (the default written if there is none)."""
    await current(conn, therapist_id)
    return [record_to(ConsentText, r) for r in await conn.fetch(SELECT_VERSIONS, therapist_id)]


async def change(conn: asyncpg.Connection, therapist_id: uuid.UUID, text: str, actor: Principal) -> ConsentText:
    """Make `text` the current version; the same text as now adds no version. Clients who accepted an
    earlier one are asked again at their next join. Invalid `consent_text_empty` for blank text;
    Conflict `consent_text_changed` if another edit took the version number first (read the
    versions, then try again)."""
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise invalid("The consent text cannot be empty.", code="consent_text_empty")
    async with conn.transaction():
        now = await current(conn, therapist_id)
        if now.text == text:
            return now
        try:
            async with conn.transaction():
                row = await conn.fetchrow(INSERT_NEXT, uuid.uuid4(), therapist_id, text)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != VERSION_KEY:
                raise
            raise Conflict(
                "The consent text was changed at the same time; reload it.", code="consent_text_changed"
            ) from None
        assert row is not None
        await audit.record(conn, actor, "consent_text.changed", therapist_id=therapist_id)
        return record_to(ConsentText, row)


async def has_current(conn: Executor, therapist_id: uuid.UUID, client_id: uuid.UUID) -> bool:
    """Whether the client has accepted the therapist's latest version."""
    accepted: bool = await conn.fetchval(HAS_CURRENT, client_id, therapist_id)
    return accepted


async def accepted(conn: Executor, client_id: uuid.UUID, text: ConsentText) -> Consent | None:
    """The client's acceptance of this version, if given."""
    row = await conn.fetchrow(SELECT_CONSENT, client_id, text.id)
    return None if row is None else record_to(Consent, row)


async def accept(
    conn: asyncpg.Connection,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID,
    version: int,
    typed_name: str,
    *,
    booking_id: uuid.UUID | None,
    actor: Principal,
    now: dt.datetime,
) -> Consent:
    """Record that the client accepted `version` with the name they typed (audited, ids only).

    Conflict `consent_outdated` (with `current_version`) when `version` is not the therapist's latest:
    the client read a text that has since changed. Accepting the same version again keeps the first."""
    async with conn.transaction():
        text = await current(conn, therapist_id)
        if version != text.version:
            raise Conflict(
                f"This consent text is not the current one (version {text.version}). Please read it again.",
                code="consent_outdated",
                current_version=text.version,
            )
        row = await conn.fetchrow(
            INSERT_CONSENT, uuid.uuid4(), therapist_id, client_id, text.id, text.version, typed_name, now, booking_id
        )
        if row is None:
            row = await conn.fetchrow(SELECT_CONSENT, client_id, text.id)
            assert row is not None  # the conflicting row: consents are never deleted but with their client
            return record_to(Consent, row)
        await audit.record(
            conn, actor, "consent.accepted", booking_id=booking_id, therapist_id=therapist_id, client_id=client_id
        )
        return record_to(Consent, row)


async def history(conn: Executor, client_id: uuid.UUID) -> list[Consent]:
    """Every version the client accepted, latest first (the caller audits the read)."""
    return [record_to(Consent, r) for r in await conn.fetch(SELECT_CONSENTS, client_id)]
