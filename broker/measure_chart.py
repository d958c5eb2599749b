"""A trend of one instrument's scores as SVG, rendered on the server (no script, no inline style).

The chart has a `<title>` and a `<desc>` that say what it shows in words (each score, its band and
the marks), and the pages put a table of the same numbers beside it for screen readers, so the
picture is never the only way to read the trend. Bands are shaded behind the line; a reliable
change is a ring around the point (green for an improvement, red for a deterioration), a response
is marked "R" and remission "Rem" under the point. Colours are presentation attributes, so a page
with a strict Content-Security-Policy can inline the SVG.
"""

from __future__ import annotations

import datetime as dt
from xml.sax.saxutils import escape

from broker.measures import Instrument, TrendPoint

WIDTH = 640
HEIGHT = 320
LEFT, RIGHT, TOP, BOTTOM = 48, 150, 20, 56
BAND_FILLS = ("#eef7ee", "#fbf8e6", "#fdf0e0", "#fbe5dc", "#f8dada", "#f3d0d0")
LINE = "#1f4e79"
IMPROVED = "#1b7a33"
WORSENED = "#b3261e"


def _date(value: dt.datetime, zone: dt.tzinfo) -> str:
    local = value.astimezone(zone)
    return f"{local.day} {local:%b %Y}"


def describe(instrument: Instrument, points: list[TrendPoint], zone: dt.tzinfo) -> str:
    """The trend in words: what the chart's <desc> says and the alt text of any copy of it."""
    if not points:
        return f"No {instrument.title} scores yet."
    parts = [
        f"{len(points)} {instrument.title} score{'s' if len(points) != 1 else ''} "
        f"(0 to {instrument.max_total}, higher is more severe), oldest first:"
    ]
    for p in points:
        marks = []
        if p.reliable_change:
            marks.append(f"reliable {p.reliable_change}")
        if p.response:
            marks.append("response")
        if p.remission:
            marks.append("remission")
        extra = f" ({', '.join(marks)})" if marks else ""
        parts.append(f"{_date(p.completed_at, zone)}: {p.total}, {p.band}{extra};")
    return " ".join(parts).rstrip(";") + "."


def render(instrument: Instrument, points: list[TrendPoint], zone: dt.tzinfo, *, id_prefix: str = "chart") -> str:
    """The SVG document of an instrument's trend (oldest first), dates in `zone`."""
    top = instrument.max_total
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def y(value: float) -> float:
        return round(TOP + plot_h - plot_h * value / top, 1)

    def x(index: int) -> float:
        if len(points) <= 1:
            return LEFT + plot_w / 2
        return round(LEFT + plot_w * index / (len(points) - 1), 1)

    title_id, desc_id = f"{id_prefix}-title", f"{id_prefix}-desc"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-labelledby="{title_id} {desc_id}" font-family="system-ui, sans-serif" font-size="12">',
        f'<title id="{title_id}">{escape(instrument.title)} scores over time</title>',
        f'<desc id="{desc_id}">{escape(describe(instrument, points, zone))}</desc>',
    ]
    for i, band in enumerate(instrument.bands):
        upper, lower = y(band.max + 0.5 if band.max < top else top), y(band.min - 0.5 if band.min > 0 else 0)
        out.append(
            f'<rect x="{LEFT}" y="{upper}" width="{plot_w}" height="{round(lower - upper, 1)}" '
            f'fill="{BAND_FILLS[i % len(BAND_FILLS)]}"/>'
        )
        out.append(
            f'<text x="{LEFT + plot_w + 8}" y="{round((upper + lower) / 2 + 4, 1)}" fill="#333">'
            f"{escape(band.label)} ({band.min}–{band.max})</text>"
        )
    for tick in sorted({0, *(b.min for b in instrument.bands), top}):
        out.append(f'<text x="{LEFT - 6}" y="{y(tick) + 4}" text-anchor="end" fill="#333">{tick}</text>')
    out.append(
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#555"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#555"/>'
    )
    if len(points) > 1:
        path = " ".join(f"{x(i)},{y(p.total)}" for i, p in enumerate(points))
        out.append(f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="2"/>')
    for i, p in enumerate(points):
        cx, cy = x(i), y(p.total)
        if p.reliable_change:
            colour = IMPROVED if p.reliable_change == "improvement" else WORSENED
            out.append(f'<circle cx="{cx}" cy="{cy}" r="9" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<circle cx="{cx}" cy="{cy}" r="4" fill="{LINE}"/>')
        out.append(f'<text x="{cx}" y="{cy - 12}" text-anchor="middle" fill="#111">{p.total}</text>')
        marks = " ".join(m for m, on in (("R", p.response), ("Rem", p.remission)) if on)
        label = _date(p.completed_at, zone)
        out.append(f'<text x="{cx}" y="{TOP + plot_h + 16}" text-anchor="middle" fill="#333">{escape(label)}</text>')
        if marks:
            out.append(
                f'<text x="{cx}" y="{TOP + plot_h + 32}" text-anchor="middle" fill="{IMPROVED}" '
                f'font-weight="bold">{escape(marks)}</text>'
            )
    legend = "Ring: reliable change (green better, red worse). R: response. Rem: remission."
    out.append(f'<text x="{LEFT}" y="{HEIGHT - 6}" fill="#333">{escape(legend)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
