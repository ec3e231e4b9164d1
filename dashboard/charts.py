"""Line charts rendered on the server as inline SVG.

Why SVG from the server rather than a JavaScript chart library or matplotlib: the page needs
no script and no network (the dashboard works offline with nothing vendored), a chart of a
few hundred points is a few kilobytes of markup that the browser draws at once, it scales
with the window, each point carries a hover title, and it adds no dependency (matplotlib
would add tens of megabytes and about a second of import time to render the same lines).

A chart is drawn from plain numbers: the caller turns dates or seconds into x values and
gives a formatter for the axis labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

Point = tuple[float, float]

# Colour-blind-safe (Okabe-Ito) colours, one per series in order.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442", "#000000")

MAX_MARKERS = 400
"""A series with more points than this is drawn as a line without a marker per point."""

MAX_LINE_POINTS = 2000
"""A longer series is thinned to this many points, keeping each stretch's lowest and highest."""


@dataclass(frozen=True)
class Chart:
    """What to draw: named series of (x, y) points, ascending in x."""

    series: Mapping[str, Sequence[Point]]
    title: str
    y_label: str = ""
    x_format: Callable[[float], str] = field(default=lambda x: f"{x:g}")
    y_format: Callable[[float], str] = field(default=lambda y: _short_number(y))
    limits: Mapping[str, float] = field(default_factory=dict)  # dashed horizontal lines: label -> y
    width: int = 760
    height: int = 280


_LEFT, _RIGHT, _TOP, _BOTTOM = 76, 16, 28, 40  # margins around the plot area, in SVG units
_LEGEND_ROW = 18  # the legend's own row under the title, when there is more than one series


def render(chart: Chart) -> Markup:
    """The chart as an ``<svg>`` element, safe to put into a page as it is.

    Each series is a ``<polyline class="series">`` with ``data-series`` and ``data-points``
    (its number of points); each point is a ``<circle class="point">`` with a hover title,
    unless the series has more than :data:`MAX_MARKERS` points. A chart without any point
    says so instead of drawing axes.
    """
    series = {name: list(points) for name, points in chart.series.items() if points}
    parts = [
        f'<svg class="chart" viewBox="0 0 {chart.width} {chart.height}" role="img" '
        f'aria-label="{escape(chart.title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text class="title" x="{_LEFT}" y="18">{escape(chart.title)}</text>',
    ]
    if not series:
        parts.append(f'<text class="empty" x="{chart.width / 2}" y="{chart.height / 2}" '
                     f'text-anchor="middle">no data yet</text></svg>')
        return Markup("".join(parts))

    top = _TOP + (_LEGEND_ROW if len(series) > 1 else 0)
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points] + list(chart.limits.values())
    x_scale = _Scale(min(xs), max(xs), _LEFT, chart.width - _RIGHT)
    y_low = min(ys)
    if 0 <= y_low < max(ys) / 3:
        y_low = 0.0  # counts and rates read best from zero; prices keep their own range
    y_scale = _Scale(y_low, max(ys), chart.height - _BOTTOM, top, nice=True)

    parts += _axes(chart, x_scale, y_scale, top)
    for label, y in chart.limits.items():
        py = y_scale(y)
        parts.append(f'<line class="limit" x1="{_LEFT}" x2="{chart.width - _RIGHT}" y1="{py:.1f}" y2="{py:.1f}"/>'
                     f'<text class="limit-label" x="{chart.width - _RIGHT}" y="{py - 4:.1f}" '
                     f'text-anchor="end">{escape(label)}</text>')
    for index, (name, points) in enumerate(series.items()):
        parts.append(_series(chart, name, points, PALETTE[index % len(PALETTE)], x_scale, y_scale))
    if len(series) > 1:  # one series: the title names it
        parts.append(_legend(list(series)))
    parts.append("</svg>")
    return Markup("".join(parts))


def _series(chart: Chart, name: str, points: list[Point], colour: str, x_scale: _Scale, y_scale: _Scale) -> str:
    drawn = _thin(points, MAX_LINE_POINTS)
    coords = " ".join(f"{x_scale(x):.1f},{y_scale(y):.1f}" for x, y in drawn)
    out = [f'<g class="series-group"><polyline class="series" data-series="{escape(name)}" '
           f'data-points="{len(points)}" points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>']
    if len(points) <= MAX_MARKERS:
        for x, y in points:
            title = f"{name} {chart.x_format(x)}: {chart.y_format(y)}"
            out.append(f'<circle class="point" data-series="{escape(name)}" cx="{x_scale(x):.1f}" '
                       f'cy="{y_scale(y):.1f}" r="3" fill="{colour}"><title>{escape(title)}</title></circle>')
    out.append("</g>")
    return "".join(out)


def _axes(chart: Chart, x_scale: _Scale, y_scale: _Scale, top: float) -> list[str]:
    bottom, right = chart.height - _BOTTOM, chart.width - _RIGHT
    out = [f'<line class="axis" x1="{_LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}"/>',
           f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{top}" y2="{bottom}"/>']
    for y in y_scale.ticks(5):
        py = y_scale(y)
        out.append(f'<line class="grid" x1="{_LEFT}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}"/>'
                   f'<text class="tick tick-y" x="{_LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">'
                   f'{escape(chart.y_format(y))}</text>')
    for x in x_scale.ticks(6):
        px = x_scale(x)
        # A label at either end is anchored inside the chart, so the edge never cuts it.
        anchor = "end" if px > right - 40 else "start" if px < _LEFT + 40 else "middle"
        out.append(f'<text class="tick tick-x" x="{px:.1f}" y="{bottom + 18}" text-anchor="{anchor}">'
                   f'{escape(chart.x_format(x))}</text>')
    if chart.y_label:
        out.append(f'<text class="axis-label" transform="translate(12 {(bottom + top) / 2}) rotate(-90)" '
                   f'text-anchor="middle">{escape(chart.y_label)}</text>')
    return out


def _legend(names: list[str]) -> str:
    out = ['<g class="legend">']
    x = _LEFT
    for index, name in enumerate(names):
        colour = PALETTE[index % len(PALETTE)]
        out.append(f'<rect x="{x}" y="{_TOP + 1}" width="10" height="10" fill="{colour}"/>'
                   f'<text class="legend-label" x="{x + 13}" y="{_TOP + 10}">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    out.append("</g>")
    return "".join(out)


class _Scale:
    """Maps data values in [low, high] to SVG coordinates in [start, end] (end may be below start)."""

    def __init__(self, low: float, high: float, start: float, end: float, nice: bool = False) -> None:
        if high <= low:  # one value: centre it in a range of its own size
            pad = abs(low) * 0.1 or 1.0
            low, high = low - pad, high + pad
        if nice:
            step = _nice_step((high - low) / 5)
            low, high = math.floor(low / step) * step, math.ceil(high / step) * step
        self.low, self.high, self.start, self.end = low, high, start, end

    def __call__(self, value: float) -> float:
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)

    def ticks(self, count: int) -> list[float]:
        step = _nice_step((self.high - self.low) / count)
        first = math.ceil(self.low / step) * step
        return [first + i * step for i in range(int((self.high - first) / step + 1e-9) + 1)]


def _nice_step(raw: float) -> float:
    """The step of 1, 2 or 5 times a power of ten nearest above ``raw``."""
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _thin(points: list[Point], most: int) -> list[Point]:
    """At most about ``most`` points: per stretch of the series its first, lowest and highest point, so
    a spike (a queue that filled for a moment) stays visible however long the series."""
    if len(points) <= most:
        return points
    size = math.ceil(len(points) * 3 / most)
    out: list[Point] = []
    for start in range(0, len(points), size):
        chunk = points[start:start + size]
        keep = {0, min(range(len(chunk)), key=lambda i: chunk[i][1]), max(range(len(chunk)), key=lambda i: chunk[i][1])}
        out.extend(chunk[i] for i in sorted(keep))
    return out


def _short_number(value: float) -> str:
    """``1.2k``, ``3.4M``, ``0.0012``: a tick label that fits the margin."""
    magnitude = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e4, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.4g}"
