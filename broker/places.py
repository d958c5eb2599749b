"""Places as ISO 3166 codes: countries (3166-1 alpha-2), their subdivisions (3166-2), and crisis lines.

The code lists come from `pycountry` (the Debian iso-codes data), never from a table of our own.
Wherever a rule depends on where someone is (a licence, a crisis line) the place is a pair of codes:
a country and, where it matters, a region, which is an ISO 3166-2 subdivision of that country.

A licence's jurisdiction is either kind of code. ISO 3166-2 nests some subdivisions (GB-KEN, Kent,
lies in GB-ENG, England), so a jurisdiction covers a place when it is the place's country, its
region, or a subdivision the region lies in: a country licence covers all of the country, a
subdivision licence covers itself and what lies within it, never a neighbouring subdivision.

Crisis lines are a shipped data file (`broker/data/crisis_lines.json`, edit it in place) looked up
by the most specific code that has an entry: the region, then the country, then a group the country
belongs to (`EU`: 112); where nothing is known, the fallback says to call the local emergency number.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec
import pycountry

from broker.errors import InvalidInput, invalid

COUNTRY_PATTERN = r"^[A-Za-z]{2}$"
SUBDIVISION_PATTERN = r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$"
JURISDICTION_PATTERN = r"^[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?$"
_COUNTRY = re.compile(COUNTRY_PATTERN)
_SUBDIVISION = re.compile(SUBDIVISION_PATTERN)
CRISIS_LINES_FILE = "crisis_lines.json"


class PlaceName(msgspec.Struct, frozen=True):
    """A code and its English name, as a picker lists it."""

    code: str
    name: str


class Region(msgspec.Struct, frozen=True):
    """An ISO 3166-2 subdivision: `parent` is the subdivision it lies in (None: directly in the country)."""

    code: str
    name: str
    type: str
    parent: str | None = None


class Place(msgspec.Struct, frozen=True):
    """Where someone is: a country and, where known, a region of it (both checked, canonical upper case)."""

    country: str
    region: str | None = None

    @property
    def code(self) -> str:
        """The most specific code: the region if there is one, else the country."""
        return self.region or self.country


def bad_place(detail: str, field: str) -> InvalidInput:
    """422 `invalid_place`: a code that is not in ISO 3166, or a region outside its country."""
    return invalid(detail, code="invalid_place", field=field)


def country(code: str, field: str = "country") -> PlaceName:
    """The ISO 3166-1 country with this alpha-2 code (any case); `invalid_place` if there is none."""
    if not _COUNTRY.match(code):
        raise bad_place(f"`{field}` must be an ISO 3166-1 alpha-2 country code such as US or DE.", field)
    found = pycountry.countries.get(alpha_2=code.upper())
    if found is None:
        raise bad_place(f"There is no country with the code {code.upper()}.", field)
    return PlaceName(found.alpha_2, found.name)


def region(code: str, field: str = "region") -> Region:
    """The ISO 3166-2 subdivision with this code (any case); `invalid_place` if there is none."""
    if not _SUBDIVISION.match(code):
        raise bad_place(f"`{field}` must be an ISO 3166-2 subdivision code such as US-NY or GB-ENG.", field)
    found = _subdivision_index().get(code.upper())
    if found is None:
        raise bad_place(f"There is no subdivision with the code {code.upper()}.", field)
    return _region(found)


@functools.cache
def _subdivision_index() -> dict[str, Any]:
    """pycountry's subdivisions by code (its own lookup is untyped; this one is built once)."""
    return {s.code: s for s in pycountry.subdivisions}


def _region(sub: Any) -> Region:
    return Region(code=sub.code, name=sub.name, type=sub.type, parent=sub.parent_code)


def place(country_code: str, region_code: str | None = None) -> Place:
    """A checked place; `invalid_place` for an unknown code or a region of another country."""
    c = country(country_code)
    if region_code is None:
        return Place(c.code)
    r = region(region_code)
    if not r.code.startswith(c.code + "-"):
        raise bad_place(f"{r.code} is not a subdivision of {c.code}.", "region")
    return Place(c.code, r.code)


def jurisdiction(code: str, field: str = "jurisdiction") -> str:
    """A licence's jurisdiction, checked and canonical: a country or a subdivision code."""
    if "-" in code:
        return region(code, field).code
    return country(code, field).code


def name_of(code: str) -> str:
    """The English name of a country or subdivision code (the code itself if ISO 3166 does not know it)."""
    try:
        return region(code).name if "-" in code else country(code).name
    except InvalidInput:
        return code


@functools.cache
def countries() -> tuple[PlaceName, ...]:
    """Every ISO 3166-1 country, by name."""
    return tuple(sorted((PlaceName(c.alpha_2, c.name) for c in pycountry.countries), key=lambda p: p.name))


@functools.cache
def subdivisions(country_code: str, *, nested: bool = False) -> tuple[Region, ...]:
    """A country's subdivisions by name: only those directly in the country (states, provinces,
    GB's four countries) unless `nested`; `invalid_place` for an unknown country."""
    code = country(country_code).code
    found = [_region(s) for s in _subdivision_index().values() if s.country_code == code]
    return tuple(sorted((r for r in found if nested or r.parent is None), key=lambda r: r.name))


def enclosing(region_code: str) -> Iterator[str]:
    """A subdivision's code, then the codes of the subdivisions it lies in, innermost first."""
    seen: set[str] = set()
    code: str | None = region_code
    while code is not None and code not in seen:  # the data has no cycles; the guard keeps it so
        seen.add(code)
        yield code
        sub = _subdivision_index().get(code)
        code = None if sub is None else sub.parent_code


def covers(jurisdiction_code: str, where: Place) -> bool:
    """Whether a licence in this jurisdiction covers this place (see the module doc).

    A region-level jurisdiction cannot cover a place given only as its country: the client may be
    anywhere in it."""
    if jurisdiction_code == where.country:
        return True
    if where.region is None or "-" not in jurisdiction_code:
        return False
    return jurisdiction_code in enclosing(where.region)


# Crisis lines ------------------------------------------------------------------------------------


class CrisisLine(msgspec.Struct, frozen=True):
    """A number to call in a crisis (`crisis`: a listening or suicide prevention line) or for help now
    (`emergency`). `phone` is None only for the fallback, which names no number."""

    kind: Literal["crisis", "emergency"]
    name: str
    phone: str | None = None
    hours: str | None = None
    note: str | None = None
    url: str | None = None


class CrisisLines(msgspec.Struct, frozen=True):
    """The data file: lines by ISO code or group name, groups' member countries, and the fallback."""

    lines: dict[str, list[CrisisLine]]
    fallback: list[CrisisLine]
    groups: dict[str, list[str]] = {}
    source: str | None = None
    checked: str | None = None


def load_crisis_lines(path: Path | None = None) -> CrisisLines:
    """Read and check the crisis line table (the shipped one unless `path` is given).

    Every key must be a known country or subdivision code, or a group; every group's members known
    countries: a typo in an edited file fails loudly at start, not in a crisis."""
    raw = (
        path.read_bytes() if path is not None else (resources.files("broker") / "data" / CRISIS_LINES_FILE).read_bytes()
    )
    table = msgspec.json.decode(raw, type=CrisisLines, strict=True)
    for group, members in table.groups.items():
        for member in members:
            country(member, f"groups.{group}")
    for key in table.lines:
        if key not in table.groups:
            jurisdiction(key, f"lines.{key}")
    if not table.fallback:
        raise ValueError("the crisis line table needs a fallback")
    return table


@functools.cache
def shipped_crisis_lines() -> CrisisLines:
    return load_crisis_lines()


def crisis_resources(
    country_code: str | None, region_code: str | None = None, table: CrisisLines | None = None
) -> list[CrisisLine]:
    """The crisis lines for a place, most specific first: the crisis lines of the region, else of the
    country, else of a group it belongs to; then the emergency number found the same way. Where
    neither is known (or no place is given, or the codes are unknown) the table's fallback."""
    table = table or shipped_crisis_lines()
    codes: list[str] = []
    if region_code:
        codes.extend(c for c in enclosing(region_code.upper()))
    if country_code:
        upper = country_code.upper()
        codes.append(upper)
        codes.extend(g for g, members in table.groups.items() if upper in members)
    crisis = _first(table, codes, "crisis")
    emergency = _first(table, codes, "emergency")
    if not crisis and not emergency:
        return list(table.fallback)
    if not emergency:
        emergency = [line for line in table.fallback if line.kind == "emergency"]
    return crisis + emergency


def _first(table: CrisisLines, codes: list[str], kind: str) -> list[CrisisLine]:
    for code in codes:
        found = [line for line in table.lines.get(code, ()) if line.kind == kind]
        if found:
            return found
    return []
