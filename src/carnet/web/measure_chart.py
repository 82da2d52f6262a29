"""A measure's series as an inline SVG line chart, drawn on the server (no JavaScript).

The chart is an accessible image: ``role="img"`` with a ``<title>`` and a ``<desc>`` giving
the measure, its range and its latest value; the page shows the values in a table too, so
nothing is only in the picture. Colours are SVG presentation attributes, which the portals'
Content-Security-Policy (no inline style) allows.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from carnet.web.record_summary import Measure, Point
from carnet.web.units import number

__all__ = ["SHOWN", "measure_chart"]

#: How many of a measure's latest values the chart draws (and the page's table lists).
SHOWN = 10

WIDTH = 320
HEIGHT = 140
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 10, 12, 26


def _number(value: float, language: str) -> str:
    return number(value, language, places=1)


def _day(point: Point, language: str) -> str:
    return point.when.strftime("%d/%m/%Y" if language == "fr" else "%Y-%m-%d")


def _scale(points: Sequence[Point], others: Sequence[Point] = ()) -> tuple[float, float, float, float]:
    first, last = points[0].when.timestamp(), points[-1].when.timestamp()
    low = min(p.value for p in (*points, *others))
    high = max(p.value for p in (*points, *others))
    if high == low:
        low, high = low - 1, high + 1
    margin = (high - low) * 0.1
    return first, max(last - first, 1.0), low - margin, (high - low) + 2 * margin


def measure_chart(
    measure: Measure,
    language: str = "fr",
    *,
    last: int = SHOWN,
    also: Measure | None = None,
    title: str | None = None,
) -> Markup:
    """Draw the last ``last`` points of a measure's series as an SVG line chart (safe HTML).

    ``also`` draws a second series of the same unit on the same axes, dashed (the diastolic
    pressure beside the systolic one); the description then gives both latest values.
    """
    points = list(measure.series[-last:])
    others = list(also.series[-last:]) if also is not None else []
    name = title or measure.label
    label = f"{name} ({measure.unit})" if measure.unit else name
    if not points:
        return Markup("")
    latest = points[-1]
    shown = _number(latest.value, language)
    if others:
        shown += " / " + _number(others[-1].value, language)
    if language == "fr":
        description = (
            f"{len(points)} mesures du {_day(points[0], language)} au {_day(latest, language)} ; "
            f"dernière : {shown} {measure.unit}"
        )
    else:
        description = (
            f"{len(points)} measures from {_day(points[0], language)} to {_day(latest, language)}; "
            f"latest: {shown} {measure.unit}"
        )
    start, span, low, height = _scale(points, others)
    inner_w, inner_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(point: Point) -> float:
        if len(points) == 1:
            return _LEFT + inner_w / 2
        return _LEFT + (point.when.timestamp() - start) / span * inner_w

    def y(value: float) -> float:
        return _TOP + inner_h - (value - low) / height * inner_h

    coordinates = " ".join(f"{x(p):.1f},{y(p.value):.1f}" for p in points)
    top_value, bottom_value = low + height, low
    parts = [
        # No width/height: the stylesheet's ``.chart`` scales it to its container.
        f'<svg class="chart measure-chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title><desc>{escape(description)}</desc>",
        f'<rect x="{_LEFT}" y="{_TOP}" width="{inner_w}" height="{inner_h}" fill="#f7f9fc" stroke="#8a97a8"/>',
        f'<text x="{_LEFT - 4}" y="{_TOP + 4}" font-size="10" text-anchor="end" fill="#1b2a3a">'
        f"{escape(_number(top_value, language))}</text>",
        f'<text x="{_LEFT - 4}" y="{_TOP + inner_h}" font-size="10" text-anchor="end" fill="#1b2a3a">'
        f"{escape(_number(bottom_value, language))}</text>",
        f'<text x="{_LEFT}" y="{HEIGHT - 8}" font-size="10" fill="#1b2a3a">{escape(_day(points[0], language))}</text>',
        f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - 8}" font-size="10" text-anchor="end" fill="#1b2a3a">'
        f"{escape(_day(latest, language))}</text>",
    ]
    if len(points) > 1:
        parts.append(f'<polyline points="{coordinates}" fill="none" stroke="#0b5cad" stroke-width="2"/>')
    parts.extend(f'<circle cx="{x(p):.1f}" cy="{y(p.value):.1f}" r="2.5" fill="#0b5cad"/>' for p in points)
    if len(others) > 1:
        line = " ".join(f"{x(p):.1f},{y(p.value):.1f}" for p in others)
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="#7a4b00" stroke-width="2" stroke-dasharray="4 3"/>'
        )
    parts.extend(f'<circle cx="{x(p):.1f}" cy="{y(p.value):.1f}" r="2.5" fill="#7a4b00"/>' for p in others)
    parts.append("</svg>")
    # Every value interpolated above is a number formatted here or went through escape().
    return Markup("".join(parts))  # noqa: S704
