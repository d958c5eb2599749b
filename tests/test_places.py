"""Places as ISO 3166 codes: checking, listing, what a jurisdiction covers, and the crisis line lookup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker import places
from broker.errors import InvalidInput


def test_codes_are_checked_and_made_canonical() -> None:
    assert places.place("gb", "gb-eng") == places.Place("GB", "GB-ENG")
    assert places.place("DE") == places.Place("DE")
    assert places.jurisdiction("us-ny") == "US-NY"
    assert places.jurisdiction("ca") == "CA"


@pytest.mark.parametrize(
    ("country", "region"),
    [("XX", None), ("USA", None), ("", None), ("U1", None), ("US", "US-ZZ"), ("US", "CA-ON"), ("GB", "ENG")],
)
def test_unknown_or_mismatched_codes_are_invalid_place(country: str, region: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        places.place(country, region)
    assert caught.value.code == "invalid_place"


def test_lists_countries_and_top_level_subdivisions() -> None:
    codes = {c.code for c in places.countries()}
    assert {"US", "GB", "DE", "CA", "AU"} <= codes and len(codes) > 240
    gb = places.subdivisions("GB")
    assert [r.code for r in gb] == ["GB-ENG", "GB-NIR", "GB-SCT", "GB-WLS"]
    assert "GB-KEN" in {r.code for r in places.subdivisions("GB", nested=True)}
    assert len(places.subdivisions("US")) >= 50
    assert places.subdivisions("VA") == ()


def test_a_country_licence_covers_all_of_its_country() -> None:
    assert places.covers("US", places.place("US"))
    assert places.covers("US", places.place("US", "US-NY"))
    assert not places.covers("US", places.place("CA", "CA-ON"))


def test_a_subdivision_licence_covers_itself_and_what_lies_within_it_only() -> None:
    assert places.covers("US-NY", places.place("US", "US-NY"))
    assert not places.covers("US-NY", places.place("US", "US-NJ"))
    assert places.covers("GB-ENG", places.place("GB", "GB-KEN"))  # Kent lies in England (ISO 3166-2)
    assert not places.covers("GB-SCT", places.place("GB", "GB-KEN"))
    assert not places.covers("GB-KEN", places.place("GB", "GB-ENG"))


def test_a_subdivision_licence_does_not_cover_a_place_given_only_as_its_country() -> None:
    assert not places.covers("US-NY", places.place("US"))


def test_crisis_lines_by_the_most_specific_code() -> None:
    us = places.crisis_resources("US", "US-NY")
    assert [(line.kind, line.phone) for line in us] == [("crisis", "988"), ("emergency", "911")]
    assert {line.phone for line in places.crisis_resources("GB")} >= {"116 123"}
    assert {line.phone for line in places.crisis_resources("IE")} >= {"116 123"}
    assert {line.phone for line in places.crisis_resources("AU")} >= {"13 11 14"}
    assert "988" in {line.phone for line in places.crisis_resources("CA", "CA-ON")}


def test_an_eu_country_gets_its_own_line_and_112() -> None:
    de = places.crisis_resources("DE")
    assert [line.kind for line in de] == ["crisis", "emergency"]
    assert de[0].phone == "0800 111 0 111" and de[1].phone == "112"
    assert [line.phone for line in places.crisis_resources("GR")] == ["112"]


def test_an_unknown_or_missing_place_gets_the_fallback() -> None:
    for found in (places.crisis_resources("JP"), places.crisis_resources(None), places.crisis_resources("ZZ")):
        assert len(found) == 1 and found[0].phone is None
        assert "emergency" in (found[0].note or "").lower()


def test_a_region_entry_wins_over_its_country(tmp_path: Path) -> None:
    table = json.loads((Path(places.__file__).parent / "data" / places.CRISIS_LINES_FILE).read_text())
    table["lines"]["GB-SCT"] = [{"kind": "crisis", "name": "Breathing Space", "phone": "0800 83 85 87"}]
    edited = tmp_path / "lines.json"
    edited.write_text(json.dumps(table))
    loaded = places.load_crisis_lines(edited)
    scotland = places.crisis_resources("GB", "GB-SCT", loaded)
    assert [line.phone for line in scotland] == ["0800 83 85 87", "999"]
    assert places.crisis_resources("GB", "GB-ENG", loaded)[0].phone == "116 123"


def test_an_edited_table_with_an_unknown_code_fails_loudly(tmp_path: Path) -> None:
    table = json.loads((Path(places.__file__).parent / "data" / places.CRISIS_LINES_FILE).read_text())
    table["lines"]["UK"] = [{"kind": "crisis", "name": "typo", "phone": "1"}]
    edited = tmp_path / "lines.json"
    edited.write_text(json.dumps(table))
    with pytest.raises(InvalidInput):
        places.load_crisis_lines(edited)


def test_the_shipped_table_loads() -> None:
    table = places.load_crisis_lines()
    assert table.fallback and "EU" in table.groups
