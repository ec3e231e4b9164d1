"""The SVG charts: every point drawn where its value says, names escaped, long series thinned, edge cases."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dashboard.charts import MAX_LINE_POINTS, MAX_MARKERS, Chart, render

SVG = "{http://www.w3.org/2000/svg}"


def _parse(chart: Chart) -> ET.Element:
    return ET.fromstring(str(render(chart)))  # well-formed XML, or this raises


def _points(line: ET.Element) -> list[tuple[float, float]]:
    return [tuple(map(float, pair.split(","))) for pair in line.get("points").split()]  # type: ignore[misc]


def test_each_point_is_drawn_in_order_higher_values_higher_and_inside_the_plot():
    series = {"kraken": [(1.0, 10.0), (2.0, 30.0), (3.0, 20.0)], "bitstamp": [(1.0, 12.0), (3.0, 25.0)]}
    svg = _parse(Chart(series, title="BTC"))
    lines = {line.get("data-series"): line for line in svg.iter(f"{SVG}polyline")}
    assert set(lines) == {"kraken", "bitstamp"}
    assert lines["kraken"].get("data-points") == "3"
    kraken = _points(lines["kraken"])
    assert kraken[0][0] < kraken[1][0] < kraken[2][0]  # x ascends
    assert kraken[1][1] < kraken[2][1] < kraken[0][1]  # 30 drawn above 20 above 10 (SVG y grows downwards)
    width, height = map(float, svg.get("viewBox").split()[2:])
    assert all(0 < x < width and 0 < y < height for line in lines.values() for x, y in _points(line))
    circles = [c for c in svg.iter(f"{SVG}circle") if c.get("class") == "point"]
    assert len(circles) == 5
    assert [c.find(f"{SVG}title").text for c in circles if c.get("data-series") == "kraken"] == \
        ["kraken 1: 10", "kraken 2: 30", "kraken 3: 20"]


def test_names_and_labels_are_escaped():
    svg = str(render(Chart({'<script>alert(1)</script>"': [(0.0, 1.0), (1.0, 2.0)]}, title="<b>t</b> & co",
                           limits={"<i>": 2.0})))
    assert "<script>" not in svg and "<b>" not in svg and "<i>" not in svg
    assert "&lt;script&gt;" in svg and "&amp; co" in svg
    ET.fromstring(svg)


def test_a_chart_without_points_says_so_and_one_value_does_not_divide_by_zero():
    empty = str(render(Chart({"a": [], "b": []}, title="nothing")))
    assert "no data yet" in empty and "polyline" not in empty
    one = _parse(Chart({"a": [(5.0, 7.0)]}, title="one"))
    (x, y), = _points(next(one.iter(f"{SVG}polyline")))
    assert x == x and y == y  # finite numbers, not NaN


def test_a_limit_is_a_dashed_line_inside_the_range_even_above_every_value():
    svg = _parse(Chart({"queue": [(0.0, 1.0), (1.0, 3.0)]}, title="q", limits={"maxsize 50": 50.0}))
    limit = next(line for line in svg.iter(f"{SVG}line") if line.get("class") == "limit")
    top = min(y for _, y in _points(next(svg.iter(f"{SVG}polyline"))))
    assert float(limit.get("y1")) < top  # 50 is drawn above the highest value, not cut off


def test_a_long_series_is_thinned_but_keeps_its_spikes_and_drops_markers():
    series = [(float(i), 0.0) for i in range(20_000)]
    series[12_345] = (12_345.0, 99.0)  # a queue that filled for a moment
    svg = _parse(Chart({"depth": series}, title="long"))
    line = next(svg.iter(f"{SVG}polyline"))
    drawn = _points(line)
    assert line.get("data-points") == "20000"
    assert len(drawn) <= MAX_LINE_POINTS * 1.1
    assert len({y for _, y in drawn}) == 2  # the baseline and the spike: thinning kept it
    assert not [c for c in svg.iter(f"{SVG}circle")]  # too many points for a marker each
    few = _parse(Chart({"s": [(float(i), 1.0 + i) for i in range(MAX_MARKERS)]}, title="few"))
    assert len(list(few.iter(f"{SVG}circle"))) == MAX_MARKERS


def test_axis_ticks_are_round_numbers_within_the_range():
    svg = _parse(Chart({"s": [(0.0, 3.0), (10.0, 97.0)]}, title="t"))
    ticks = [float(t.text) for t in svg.iter(f"{SVG}text") if t.get("class") == "tick tick-y"]
    assert ticks == [0, 20, 40, 60, 80, 100]  # from zero (a count), past the highest value
