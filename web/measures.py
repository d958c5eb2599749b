"""The questionnaires section of a client's page, and the dashboard's banner of answers that need review.

Built on the server from `broker.measures` and `broker.safety_alerts`, the functions the JSON API
calls, so each read is audited as the therapist's. The trend chart is `broker.measure_chart`'s SVG,
inlined (it has no script and no style attribute, so the page's strict CSP holds), with a table of
the same numbers beside it. The section's script (client-measures.js) saves the assignments and marks
alerts reviewed through the API.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg
from markupsafe import Markup

from broker import measure_chart, measures, safety_alerts
from broker.measures import Instrument, Response, TrendPoint
from broker.principals import Principal

SCHEDULE_LABELS = {
    "every_session": "Before every session",
    "every_other": "Every other session",
    "monthly": "Once every 4 weeks",
    "once": "Once",
}
DIRECTION = {"improvement": "reliable improvement", "deterioration": "reliable deterioration"}


@dataclass(frozen=True, slots=True)
class ScoreRow:
    when: str
    total: int
    band: str
    change: str  # "", "-6", "+4"
    marks: str  # "reliable improvement, response"


@dataclass(frozen=True, slots=True)
class AnswerRow:
    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class AnswerSet:
    when: str
    total: int
    rows: list[AnswerRow]


@dataclass(frozen=True, slots=True)
class InstrumentView:
    id: str
    title: str
    name: str
    schedule: str | None  # assigned schedule, or None
    latest: ScoreRow | None
    chart: Markup | None
    scores: list[ScoreRow]
    answers: list[AnswerSet]  # latest first


@dataclass(frozen=True, slots=True)
class AlertView:
    id: str
    client_id: str
    client_name: str
    instrument: str
    when: str


@dataclass(frozen=True, slots=True)
class ClientMeasures:
    instruments: list[InstrumentView]
    alerts: list[AlertView]
    schedules: dict[str, str]


def _when(value: dt.datetime, tz: dt.tzinfo) -> str:
    local = value.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b %Y}"


def _marks(p: TrendPoint) -> str:
    found = [DIRECTION[p.reliable_change]] if p.reliable_change else []
    found += [m for m, on in (("response", p.response), ("remission", p.remission)) if on]
    return ", ".join(found)


def _score(p: TrendPoint, tz: dt.tzinfo) -> ScoreRow:
    change = "" if p.change == 0 and not p.reliable_change else f"{p.change:+d}"
    return ScoreRow(when=_when(p.completed_at, tz), total=p.total, band=p.band, change=change, marks=_marks(p))


def _answers(instrument: Instrument, response: Response, tz: dt.tzinfo) -> AnswerSet:
    rows = []
    for item in instrument.items:
        value = response.answers.get(item.id)
        labels = {o.value: o.label for o in instrument.options_of(item)}
        answer = "not answered" if value is None else f"{labels.get(value, value)} ({value})"
        rows.append(AnswerRow(question=item.text, answer=answer))
    return AnswerSet(when=_when(response.completed_at, tz), total=response.total, rows=rows)


def alert_view(a: safety_alerts.Alert, tz: dt.tzinfo) -> AlertView:
    title = measures.catalogue().get(a.instrument)
    return AlertView(
        id=str(a.id),
        client_id=str(a.client_id),
        client_name=a.client_name,
        instrument=title.title if title else a.instrument,
        when=_when(a.created_at, tz),
    )


async def client_measures(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, client_id: uuid.UUID, reader: Principal, tz: dt.tzinfo
) -> ClientMeasures:
    """Every shipped instrument with the client's schedule, latest score, chart, table and answers."""
    found = await measures.results(conn, therapist_id, client_id, reader)
    alerts = await safety_alerts.open_for_client(conn, therapist_id, client_id)
    assigned = {a.instrument: a.schedule for a in found.assignments}
    views = []
    for instrument in measures.catalogue().values():
        points = found.trends.get(instrument.id, [])
        responses = [r for r in found.responses if r.instrument == instrument.id]
        views.append(
            InstrumentView(
                id=instrument.id,
                title=instrument.title,
                name=instrument.name,
                schedule=assigned.get(instrument.id),
                latest=_score(points[-1], tz) if points else None,
                chart=Markup(measure_chart.render(instrument, points, tz, id_prefix=f"chart-{instrument.id}"))  # noqa: S704  # our own SVG, every text escaped
                if points
                else None,
                scores=[_score(p, tz) for p in points],
                answers=[_answers(instrument, r, tz) for r in reversed(responses)],
            )
        )
    return ClientMeasures(
        instruments=views, alerts=[alert_view(a, tz) for a in alerts], schedules=dict(SCHEDULE_LABELS)
    )


async def open_alerts(pool: asyncpg.Pool, therapist_id: uuid.UUID, reader: Principal, tz: dt.tzinfo) -> list[AlertView]:
    """The dashboard's banner: every alert still waiting for review (the read is audited per client)."""
    return [alert_view(a, tz) for a in await safety_alerts.list_for_reader(pool, therapist_id, reader)]
