"""Outcome measures without a server: the shipped definitions, scoring against worked examples, property
tests (totals in range, bands contiguous and covering, no score from an incomplete form), the trend's
marks, what is due per schedule, and the chart."""

from __future__ import annotations

import datetime as dt
import json
import uuid
import xml.etree.ElementTree as ET
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import measure_chart, measures
from broker.errors import InvalidInput
from broker.measures import DueFacts, InstrumentError

PHQ9 = measures.catalogue()["phq9"]
GAD7 = measures.catalogue()["gad7"]
ZONE = ZoneInfo("Europe/Berlin")


def form(values: list[int], **extra: int) -> dict[str, int]:
    return {str(i + 1): v for i, v in enumerate(values)} | extra


def code_of(instrument: measures.Instrument, answers: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as caught:
        measures.score(instrument, answers)
    return caught.value.code


def test_the_shipped_instruments_are_phq9_and_gad7_with_their_bands_and_rules() -> None:
    assert set(measures.catalogue()) >= {"phq9", "gad7"}
    assert [i.id for i in PHQ9.items] == [*map(str, range(1, 10)), "difficulty"]
    assert [(i.scored, i.required) for i in PHQ9.items][-1] == (False, False)
    assert [(b.min, b.max) for b in PHQ9.bands] == [(0, 4), (5, 9), (10, 14), (15, 19), (20, 27)]
    assert [(b.min, b.max) for b in GAD7.bands] == [(0, 4), (5, 9), (10, 14), (15, 21)]
    assert (PHQ9.max_total, GAD7.max_total) == (27, 21)
    assert (PHQ9.reliable_change, GAD7.reliable_change) == (5, 4)
    assert (PHQ9.remission_below, GAD7.remission_below) == (5, None)
    assert [(r.item, r.above) for r in PHQ9.safety] == [("9", 0)] and GAD7.safety == []
    assert [o.value for o in PHQ9.options] == [0, 1, 2, 3] and PHQ9.options[0].label == "Not at all"


@pytest.mark.parametrize(
    ("instrument", "answers", "total", "band", "safety"),
    [
        (PHQ9, form([0] * 9), 0, "Minimal", False),
        (PHQ9, form([1, 1, 1, 1, 0, 0, 0, 0, 0]), 4, "Minimal", False),
        (PHQ9, form([1, 1, 1, 1, 1, 0, 0, 0, 0]), 5, "Mild", False),
        (PHQ9, form([1, 2, 0, 3, 1, 1, 2, 0, 0]), 10, "Moderate", False),
        (PHQ9, form([2, 2, 2, 2, 2, 2, 1, 1, 0], difficulty=3), 14, "Moderate", False),  # difficulty unscored
        (PHQ9, form([2, 2, 2, 2, 2, 2, 2, 1, 0]), 15, "Moderately severe", False),
        (PHQ9, form([3, 3, 3, 2, 2, 2, 2, 1, 1]), 19, "Moderately severe", True),
        (PHQ9, form([3, 3, 3, 3, 2, 2, 2, 2, 0]), 20, "Severe", False),
        (PHQ9, form([3] * 9), 27, "Severe", True),
        (PHQ9, form([0, 0, 0, 0, 0, 0, 0, 0, 1]), 1, "Minimal", True),  # item 9 alone starts the protocol
        (GAD7, form([0] * 7), 0, "Minimal", False),
        (GAD7, form([1, 1, 1, 1, 1, 0, 0]), 5, "Mild", False),
        (GAD7, form([2, 2, 2, 1, 1, 1, 1]), 10, "Moderate", False),
        (GAD7, form([3, 2, 2, 2, 2, 2, 2]), 15, "Severe", False),
        (GAD7, form([3] * 7), 21, "Severe", False),
    ],
)
def test_worked_examples_score_to_their_total_and_band(
    instrument: measures.Instrument, answers: dict[str, int], total: int, band: str, safety: bool
) -> None:
    scored = measures.score(instrument, answers)
    assert (scored.total, scored.band, scored.safety) == (total, band, safety)
    assert scored.answers == answers  # kept item by item, the unscored ones too


def test_bad_forms_are_refused_with_stable_codes() -> None:
    assert code_of(PHQ9, form([0] * 8)) == "answers_incomplete"
    assert code_of(PHQ9, form([0] * 8 + [4])) == "answer_out_of_range"
    assert code_of(PHQ9, form([0] * 8 + [-1])) == "answer_out_of_range"
    assert code_of(PHQ9, form([0] * 9, difficulty=4)) == "answer_out_of_range"
    assert code_of(PHQ9, form([0] * 9) | {"10": 0}) == "answer_item_unknown"
    assert code_of(GAD7, form([0] * 7) | {"8": 1}) == "answer_item_unknown"
    with pytest.raises(InvalidInput) as caught:
        measures.score(PHQ9, form([0] * 6))
    assert caught.value.extra["missing"] == ["7", "8", "9"]


instruments = st.sampled_from(list(measures.catalogue().values()))


@st.composite
def complete_forms(draw: st.DrawFn) -> tuple[measures.Instrument, dict[str, int]]:
    instrument = draw(instruments)
    answers = {}
    for item in instrument.items:
        if item.required or draw(st.booleans()):
            answers[item.id] = draw(st.sampled_from([o.value for o in instrument.options_of(item)]))
    return instrument, answers


@given(complete_forms())
def test_a_complete_form_scores_within_range_into_the_one_band_that_holds_it(
    case: tuple[measures.Instrument, dict[str, int]],
) -> None:
    instrument, answers = case
    scored = measures.score(instrument, answers)
    assert 0 <= scored.total <= instrument.max_total
    [band] = [b for b in instrument.bands if b.min <= scored.total <= b.max]
    assert scored.band == band.label
    assert scored.total == sum(v for k, v in answers.items() if k != "difficulty")


@given(instruments)
def test_bands_are_contiguous_and_cover_every_total(instrument: measures.Instrument) -> None:
    assert instrument.bands[0].min == 0 and instrument.bands[-1].max == instrument.max_total
    for before, after in zip(instrument.bands, instrument.bands[1:], strict=False):
        assert after.min == before.max + 1
    for total in range(instrument.max_total + 1):
        assert len([b for b in instrument.bands if b.min <= total <= b.max]) == 1


@given(complete_forms(), st.data())
def test_no_score_from_an_incomplete_form(
    case: tuple[measures.Instrument, dict[str, int]], data: st.DataObject
) -> None:
    instrument, answers = case
    required = [i.id for i in instrument.items if i.required]
    dropped = data.draw(st.sets(st.sampled_from(required), min_size=1))
    assert code_of(instrument, {k: v for k, v in answers.items() if k not in dropped}) == "answers_incomplete"


@given(complete_forms(), st.data())
def test_an_answer_outside_the_options_is_refused(
    case: tuple[measures.Instrument, dict[str, int]], data: st.DataObject
) -> None:
    instrument, answers = case
    item = data.draw(st.sampled_from(sorted(answers)))
    allowed = {o.value for o in instrument.options_of(next(i for i in instrument.items if i.id == item))}
    wrong = data.draw(st.integers(-1000, 1000).filter(lambda v: v not in allowed))
    assert code_of(instrument, answers | {item: wrong}) == "answer_out_of_range"


# --- definitions as data -----------------------------------------------------------------------


def definition(**changes: Any) -> dict[str, Any]:
    raw = json.loads(msgspec.json.encode(GAD7))
    raw.update(changes)
    return raw


def test_a_new_instrument_is_a_data_file() -> None:
    raw = definition(id="who5", title="WHO-5", safety=[{"item": "1", "above": 2}])
    loaded = measures.load(json.dumps(raw), "who5")
    assert loaded.id == "who5" and measures.score(loaded, form([3, 0, 0, 0, 0, 0, 0])).safety


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"bands": [{"min": 0, "max": 4, "label": "a"}, {"min": 6, "max": 21, "label": "b"}]}, "contiguous"),
        ({"bands": [{"min": 0, "max": 4, "label": "a"}, {"min": 5, "max": 20, "label": "b"}]}, "highest total"),
        ({"bands": [{"min": 1, "max": 21, "label": "a"}]}, "contiguous"),
        ({"safety": [{"item": "9", "above": 0}]}, "scored item"),
        ({"safety": [{"item": "1", "above": 3}]}, "below its highest option"),
        ({"reliable_change": 0}, "reliable_change"),
        ({"version": 0}, "version"),
        ({"id": "GAD 7"}, "its id"),
        ({"items": [{"id": "1", "text": "x", "required": False}, *definition()["items"][1:]]}, "is required"),
        ({"items": definition()["items"] + [definition()["items"][0]]}, "unique"),
        ({"options": [{"value": 0, "label": "only"}]}, "two or more options"),
    ],
)
def test_a_definition_breaking_a_rule_is_refused_at_load(changes: dict[str, Any], rule: str) -> None:
    raw = definition(**changes)
    with pytest.raises(InstrumentError, match=rule):
        measures.load(json.dumps(raw), raw["id"] if "id" in changes else "gad7")


def test_a_definition_with_a_misspelt_field_or_another_name_than_its_file_is_refused() -> None:
    with pytest.raises(InstrumentError):
        measures.load(json.dumps(definition(remision_below=5)), "gad7")
    with pytest.raises(InstrumentError, match="file name"):
        measures.load(json.dumps(definition()), "phq9")


# --- the trend ---------------------------------------------------------------------------------


def series_of(totals: list[int]) -> list[tuple[uuid.UUID, dt.datetime, int, str]]:
    start = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    return [(uuid.uuid4(), start + dt.timedelta(weeks=i), t, PHQ9.band_of(t)) for i, t in enumerate(totals)]


def test_the_trend_marks_reliable_change_response_and_remission_against_the_first_score() -> None:
    points = measures.trend(PHQ9, series_of([18, 14, 13, 9, 4, 22]))
    assert [p.change for p in points] == [0, -4, -5, -9, -14, 4]
    assert [p.reliable_change for p in points] == [None, None, "improvement", "improvement", "improvement", None]
    assert [p.response for p in points] == [False, False, False, True, True, False]  # 9 is half of 18
    assert [p.remission for p in points] == [False, False, False, False, True, False]
    worse = measures.trend(GAD7, series_of([3, 7]))
    assert worse[1].reliable_change == "deterioration" and not worse[1].remission  # GAD-7: no remission rule


def test_a_first_score_below_five_is_no_remission_and_zero_has_no_response() -> None:
    points = measures.trend(PHQ9, series_of([3, 0]))
    assert not points[0].remission and points[1].remission
    assert not measures.trend(PHQ9, series_of([0, 0]))[1].response


# --- what is due -------------------------------------------------------------------------------

START = dt.datetime(2026, 5, 4, 10, tzinfo=dt.UTC)


def facts(schedule: measures.Schedule, **values: Any) -> DueFacts:
    base: dict[str, Any] = {
        "instrument": "phq9",
        "schedule": schedule,
        "assigned_at": START - dt.timedelta(days=60),
        "done_here": False,
        "done_previous": False,
        "last_completed": None,
        "done_since_assigned": False,
    }
    return DueFacts(**(base | values))


@pytest.mark.parametrize("schedule", measures.SCHEDULES)
def test_nothing_is_due_twice_for_one_session_and_everything_is_due_the_first_time(
    schedule: measures.Schedule,
) -> None:
    assert measures.is_due(facts(schedule), START)
    assert not measures.is_due(facts(schedule, done_here=True), START)


def test_each_schedule_decides_by_its_own_rule() -> None:
    assert measures.is_due(facts("every_session", done_previous=True, last_completed=START), START)
    assert not measures.is_due(facts("every_other", done_previous=True), START)
    assert measures.is_due(facts("every_other", done_previous=False, last_completed=START), START)
    recent = START - measures.MONTHLY + dt.timedelta(minutes=1)
    assert not measures.is_due(facts("monthly", last_completed=recent), START)
    assert measures.is_due(facts("monthly", last_completed=START - measures.MONTHLY), START)
    assert not measures.is_due(facts("once", done_since_assigned=True), START)
    assert measures.is_due(facts("once", last_completed=START, done_since_assigned=False), START)


# --- the chart ---------------------------------------------------------------------------------


def test_the_chart_is_svg_with_a_title_a_description_in_words_and_its_marks() -> None:
    points = measures.trend(PHQ9, series_of([18, 9, 4]))
    svg = measure_chart.render(PHQ9, points, ZONE, id_prefix="phq9-chart")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg" and root.get("role") == "img"
    assert root.get("aria-labelledby") == "phq9-chart-title phq9-chart-desc"
    assert root.find(f"{ns}title").text == "PHQ-9 scores over time"  # type: ignore[union-attr]
    desc = root.find(f"{ns}desc").text or ""  # type: ignore[union-attr]
    assert "3 PHQ-9 scores" in desc and "2 Mar 2026: 18, Moderately severe" in desc
    assert "16 Mar 2026: 4, Minimal (reliable improvement, response, remission)" in desc
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "R Rem" in texts and "Severe (20–27)" in texts
    assert "style" not in svg and "<script" not in svg  # inlined under a strict CSP
    assert len(root.findall(f"{ns}polyline")) == 1


def test_an_empty_chart_says_so() -> None:
    svg = measure_chart.render(GAD7, [], ZONE)
    assert "No GAD-7 scores yet." in svg
    ET.fromstring(svg)


@settings(max_examples=30)
@given(st.lists(st.integers(0, 27), min_size=1, max_size=30))
def test_every_trend_draws_as_well_formed_svg_inside_its_box(totals: list[int]) -> None:
    root = ET.fromstring(measure_chart.render(PHQ9, measures.trend(PHQ9, series_of(totals)), ZONE))
    for circle in root.iter("{http://www.w3.org/2000/svg}circle"):
        assert 0 <= float(circle.get("cy", "-1")) <= measure_chart.HEIGHT
        assert 0 <= float(circle.get("cx", "-1")) <= measure_chart.WIDTH
