"""The dashboard's Flask app: Now, Runs (with each run's timeline and failed items) and Prices.

Every page is rendered on the server, charts included (see :mod:`dashboard.charts`); the only
scripts are two small files of its own (the live refresh and the table filter), so the pages
work offline and load in one request each.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flask
from werkzeug.exceptions import HTTPException, NotFound

from dashboard import charts, views
from engine.text import describe
from service.history import is_run_name, list_runs, read_run
from service.timeline import read_timeline

if TYPE_CHECKING:
    from service.live import LiveRun
    from store.target import PriceStore

log = logging.getLogger(__name__)

PRICE_ROWS = 500
"""The prices table shows at most this many (symbol, exchange) pairs; the search narrows them."""

REFRESH_MS = 1000
"""How often the Now page asks for fresh figures."""


def create_app(*, run_dir: Path, store: Callable[[], PriceStore | None], live: LiveRun | None = None) -> flask.Flask:
    """The dashboard over the runs in ``run_dir``, the prices in ``store()`` and, if given, the service's ``live`` run.

    ``store`` is called for each request that shows prices: it may start or find the database
    then, and return None when there is none; a ``DatabaseUnavailable`` it (or a query) raises
    becomes a one-line message on the page. Nothing is written anywhere.
    """
    app = flask.Flask(__name__)
    run_dir = Path(run_dir)

    def snapshot() -> dict[str, Any] | None:
        return live.snapshot() if live is not None else None

    @app.get("/")
    def now_page() -> str:
        return _now_template("now.html")

    @app.get("/now/fragment")
    def now_fragment() -> str:
        return _now_template("now_fragment.html")

    def _now_template(template: str) -> str:
        state = views.now(snapshot(), run_dir)
        return flask.render_template(template, now=state, refresh_ms=REFRESH_MS, **_now_charts(state, run_dir))

    @app.get("/api/live")
    def live_json() -> flask.Response:
        return flask.jsonify(snapshot() or {"state": "idle"})

    @app.get("/runs")
    def runs_page() -> str:
        return flask.render_template("runs.html", runs=list_runs(run_dir), run_dir=run_dir)

    @app.get("/runs/<name>")
    def run_page(name: str) -> str:
        run = _run(run_dir, name)
        stages = views.timeline(read_timeline(run.path))
        return flask.render_template("run.html", run=run, stages=stages, verdict=views.bottleneck(stages),
                                     **_timeline_charts(stages))

    @app.get("/runs/<name>/failed")
    def failed_page(name: str) -> str:
        run = _run(run_dir, name)
        return flask.render_template("failed.html", run=run, failed=views.failed_items(run),
                                     item_text=views.item_text)

    @app.get("/prices")
    def prices_page() -> tuple[str, int]:
        search = flask.request.args.get("q", "").strip()
        symbol = flask.request.args.get("symbol", "").strip()
        chosen = [e for e in flask.request.args.getlist("exchange") if e]
        try:
            target = store()
            page = _prices(target, search, symbol, chosen) if target is not None else {"error": "no database"}
        except Exception as exc:  # DatabaseUnavailable (one line) or a query the database refused
            log.debug("prices page", exc_info=True)
            page = {"error": describe(exc)}
        page.setdefault("store", "")
        return flask.render_template("prices.html", search=search, **page), 503 if "error" in page else 200

    @app.errorhandler(Exception)
    def error_page(exc: Exception) -> tuple[str, int]:
        if isinstance(exc, HTTPException):
            return flask.render_template("error.html", message=exc.description), exc.code or 500
        log.warning("dashboard: %s on %s", describe(exc), flask.request.path)  # one line: no traceback
        log.debug("dashboard error", exc_info=True)
        return flask.render_template("error.html", message=describe(exc)), 500

    app.jinja_env.filters.update(duration=_duration, when=_when, number=_number, price=_price)
    return app


def _run(run_dir: Path, name: str) -> Any:
    """The run named ``name`` in ``run_dir``; 404 for anything else (another path, a name the executor never gives)."""
    path = run_dir / name
    if not is_run_name(name) or not path.is_dir():
        raise NotFound(f"no run {name} in {run_dir}")
    return read_run(path)


def _prices(target: PriceStore, search: str, symbol: str, chosen: list[str]) -> dict[str, Any]:
    from store.query import close_series, latest_prices, summary

    rows = latest_prices(target, search, PRICE_ROWS)
    symbol = symbol or (rows[0].symbol if rows else "")
    series = close_series(target, symbol) if symbol else {}
    shown = {e: points for e, points in series.items() if not chosen or e in chosen}
    chart = charts.render(charts.Chart(
        {e: [(float(day.toordinal()), close) for day, close in points] for e, points in shown.items()},
        title=f"{symbol} close price" + (f" on {', '.join(shown)}" if shown else ""),
        y_label="close",
        x_format=lambda x: dt.date.fromordinal(int(x)).isoformat(),
        y_format=_price,
    )) if symbol else None
    return {"store": str(target), "summary": summary(target), "rows": rows, "limit": PRICE_ROWS, "symbol": symbol,
            "exchanges": sorted(series), "chosen": set(chosen) or set(series), "chart": chart,
            "points": sum(len(p) for p in shown.values())}


def _timeline_charts(stages: list[views.StageTimeline]) -> dict[str, Any]:
    seconds = lambda x: _duration(x)  # noqa: E731 - the axis of a run: 0s, 30s, 1m 30s
    return {
        "throughput_chart": charts.render(charts.Chart(
            {s.name: s.throughput for s in stages}, title="throughput (items finished per second)",
            y_label="items/s", x_format=seconds)),
        "threads_chart": charts.render(charts.Chart(
            {s.name: s.threads for s in stages}, title="threads alive", y_label="threads", x_format=seconds,
            height=200)),
        "queue_charts": {s.name: charts.render(charts.Chart(
            {s.name: s.queue_depth}, title=f"{s.name}: input queue depth", y_label="items", x_format=seconds,
            limits={f"maxsize {s.queue_maxsize}": s.queue_maxsize} if s.queue_maxsize else {},
            width=380, height=200)) for s in stages if s.queue_maxsize or s.peak_depth},  # a source has no queue
    }


def _now_charts(state: views.Now, run_dir: Path) -> dict[str, Any]:
    """The throughput of the run in progress so far, or of the last run, from its timeline."""
    if not state.run:
        return {"throughput_chart": None}
    stages = views.timeline(read_timeline(run_dir / state.run))
    title = "throughput so far" if state.state == "running" else f"throughput of the last run, {state.run}"
    return {"throughput_chart": charts.render(charts.Chart(
        {s.name: s.throughput for s in stages}, title=f"{title} (items finished per second)",
        y_label="items/s", x_format=_duration, height=220)) if stages else None}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds % 1 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _when(value: dt.datetime | str | None) -> str:
    """A time as local ``YYYY-MM-DD HH:MM:SS`` (the machine's zone, as the run directories are named)."""
    if value is None:
        return "–"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _price(value: float | None) -> str:
    """Prices keep their significant digits: a token at 0.00001234 must not show as 0.00."""
    if value is None:
        return "–"
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.6g}"
