"""The dashboard in a real browser (headless Chromium): every page loads, the live view moves during a
real run, the prices table filters, the chart draws the scraped prices. Each page is screenshotted."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlparse

import crypto_server
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from service.live import LiveRun
from tests.cli.test_app import MAIN, _env
from tests.dashboard.conftest import DAYS, EXCHANGES, SYMBOLS, history_pipeline, run_pipeline, screenshot, wait_for

pytestmark = pytest.mark.timeout(120)


def _css(driver, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _live(driver, selector: str, attribute: str | None = None) -> str | None:
    """An element's text (or attribute) read in one step: the live view swaps its elements every second,
    so a found element can be gone by the time it is read."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return e === null ? null : arguments[1] ? e.getAttribute(arguments[1]) : e.textContent;",
        selector, attribute)


def _done(driver, stage: str) -> int | None:
    """The live view's done count of ``stage`` (None while the stage is not shown)."""
    text = _live(driver, f"tr[data-stage={stage}] td.done")
    return int(text.split("/")[0].replace(",", "")) if text else None


def _watch_done(driver, running: Callable[[], bool], name: str, timeout: float = 60) -> list[int]:
    """PriceWorker's done counts as the live view shows them while ``running()``, each new value once;
    the page is screenshotted as ``name`` when the second one shows."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while running() and time.monotonic() < deadline:
        done = _done(driver, "PriceWorker")
        if done is not None and (not seen or done != seen[-1]):
            seen.append(done)
            if len(seen) == 2:
                screenshot(driver, name)
        time.sleep(0.2)
    return seen


def _visible_rows(driver, table: str) -> list[list[str]]:
    return [[cell.text for cell in _css_in(row, "td")] for row in _css(driver, f"#{table} tbody tr") if row.is_displayed()]


def _css_in(element, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return element.find_elements(By.CSS_SELECTOR, selector)


def _title(point) -> tuple[str, float]:
    """A chart point's day and value, from its hover title ``"kraken 2020-04-10: 6,642.10"``."""
    _, day, value = point.find_element("css selector", "title").get_attribute("textContent").split()
    return day.rstrip(":"), float(value.replace(",", ""))


def _closes(history, symbol: str) -> dict[str, dict[str, float]]:
    """What the pipeline stored for ``symbol``, read straight from the database: exchange -> day -> close."""
    engine = create_engine(history.store.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT exchange, price_date, close FROM prices WHERE symbol = :s"), {"s": symbol})
            out: dict[str, dict[str, float]] = {}
            for exchange, day, close in rows:
                out.setdefault(exchange, {})[str(day)] = close
            return out
    finally:
        engine.dispose()


def test_every_page_loads_and_the_runs_link_to_their_timeline_and_failed_items(history, serve, browser):
    server = serve(run_dir=history.run_dir, store=history.store)

    browser.get(server.url)
    assert _css(browser, "#live-state")[0].get_attribute("data-state") == "idle"
    assert "faulty" in _css(browser, "#last-run")[0].text  # the newest run
    assert len(_css(browser, "#now-throughput polyline.series")) == 4  # its throughput, a line per stage
    screenshot(browser, "now-idle")

    _css(browser, "#nav-runs")[0].click()
    rows = _css(browser, "#runs tbody tr")
    assert [r.get_attribute("data-run").split("-")[-1] for r in rows] == ["faulty", "history"]  # newest first
    faulty, clean = rows
    assert "done" in clean.text and "failures" in faulty.text
    assert not _css_in(clean, "a.failed-link")  # nothing failed: nothing to link
    assert _css_in(faulty, "a.failed-link")[0].text.startswith(f"{history.faulty.dead_letters} item")
    screenshot(browser, "runs")

    _css_in(faulty, "a.failed-link")[0].click()
    wait_for(lambda: _css(browser, "#failed tbody tr"), what="the failed items")
    entries = _visible_rows(browser, "failed")
    assert len(entries) == history.faulty.dead_letters
    assert {row[1] for row in entries} == {"PriceWorker"} and {row[2] for row in entries} == {"failed"}
    assert all(row[3] == "HTTPError" for row in entries)
    screenshot(browser, "failed-items")

    browser.back()
    _css(browser, "#runs tbody tr")[1].find_element("css selector", "a.timeline-link").click()
    wait_for(lambda: _css(browser, "#throughput svg"), what="the timeline")
    series = {line.get_attribute("data-series") for line in _css(browser, "#throughput polyline.series")}
    assert series == {"WikiWorker", "TaskPlanner", "PriceWorker", "PostgresWorker"}
    assert len(_css(browser, "#queues svg")) == 3  # a chart per input queue: the source has none
    assert len(_css(browser, "#queues line.limit")) == 3  # every queue is bounded: its maxsize is drawn
    assert _css(browser, "#verdict")[0].text
    screenshot(browser, "run-timeline")

    _css(browser, "#nav-prices")[0].click()
    wait_for(lambda: _css(browser, "#prices"), what="the prices table")
    screenshot(browser, "prices")


def test_the_live_view_follows_a_real_run_without_reloading(serve, browser, tmp_path):
    live = LiveRun("history")
    live.wait(None)
    server = serve(run_dir=tmp_path / "runs", store=None, live=live)
    browser.get(server.url)
    assert _css(browser, "#live-state")[0].get_attribute("data-state") == "waiting"
    browser.execute_script("window.notReloaded = true")

    with crypto_server.serve_in_background(port=0, seed=2020, sleep=0.05) as prices:
        pipeline = history_pipeline(tmp_path, prices.url, tmp_path / "prices.db", fetchers=2)
        run = threading.Thread(target=run_pipeline, args=(pipeline, tmp_path / "runs", live))
        run.start()
        try:
            seen = _watch_done(browser, run.is_alive, "now-running")
        finally:
            run.join(timeout=60)
    assert len(seen) >= 3, seen  # the figures moved at least twice while the run went on
    assert seen == sorted(seen), seen
    assert browser.execute_script("return window.notReloaded") is True  # updated in place, not reloaded
    wait_for(lambda: _live(browser, "#live-state", "data-state") == "waiting", what="the state after the run")
    wait_for(lambda: "done" in (_live(browser, "#last-run") or ""), what="the last run")


def test_the_prices_table_filters_as_you_type_and_on_search(history, serve, browser):
    server = serve(run_dir=history.run_dir, store=history.store)
    browser.get(server.url + "prices")
    all_rows = _visible_rows(browser, "prices")
    assert len(all_rows) == SYMBOLS * len(EXCHANGES)
    assert {row[2] for row in all_rows} == {"2020-04-20"}  # the newest day of each pair

    search = _css(browser, "#search")[0]
    search.send_keys("KRAK")
    kraken = wait_for(lambda: (rows := _visible_rows(browser, "prices")) and len(rows) == SYMBOLS and rows,
                      what="the typed filter")
    assert {row[1] for row in kraken} == {"kraken"}
    screenshot(browser, "prices-filtered")

    search.submit()  # the database is asked: the page comes back holding only the matches
    wait_for(lambda: "q=KRAK" in browser.current_url, what="the search")
    assert {row[1] for row in _visible_rows(browser, "prices")} == {"kraken"}
    assert len(_css(browser, "#prices tbody tr")) == SYMBOLS

    symbol = all_rows[0][0]
    browser.get(server.url + "prices?q=" + symbol.lower())
    assert {row[0] for row in _visible_rows(browser, "prices")} == {symbol}

    browser.get(server.url + "prices?q=no-such-thing")
    assert "No symbol or exchange contains" in _css(browser, "#no-prices")[0].text


def test_the_chart_draws_each_stored_close_of_a_scraped_symbol(history, serve, browser):
    server = serve(run_dir=history.run_dir, store=history.store)
    browser.get(server.url + "prices")
    symbol = _css(browser, "#prices tbody tr td a")[0].text
    stored = _closes(history, symbol)
    assert sorted(stored) == EXCHANGES and all(DAYS / 2 < len(days) <= DAYS for days in stored.values())

    _css(browser, "#prices tbody tr td a")[0].click()  # a symbol links to its chart
    wait_for(lambda: parse_qs(urlparse(browser.current_url).query).get("symbol") == [symbol], what="the chart link")
    for exchange in EXCHANGES:
        points = _css(browser, f'#price-chart circle.point[data-series="{exchange}"]')
        assert len(points) == len(stored[exchange])  # one point per stored day (the server has gaps)
        drawn = dict(_title(p) for p in points)  # each point's hover title: "kraken 2020-04-10: 6,642.10"
        assert sorted(drawn) == sorted(stored[exchange])
        assert all(drawn[day] == pytest.approx(close, rel=1e-5, abs=0.006) for day, close in stored[exchange].items())
        line = _css(browser, f'#price-chart polyline[data-series="{exchange}"]')[0]
        assert line.get_attribute("data-points") == str(len(stored[exchange]))
    # Higher closes are drawn higher (a smaller y): the points follow the stored prices.
    days = sorted(stored["kraken"])
    ys = {_title(p)[0]: float(p.get_attribute("cy")) for p in _css(browser, '#price-chart circle.point[data-series="kraken"]')}
    low, high = min(days, key=stored["kraken"].get), max(days, key=stored["kraken"].get)
    assert ys[high] < ys[low]
    screenshot(browser, "price-chart")

    _css(browser, 'input[name=exchange][value="bitstamp"]')[0].click()  # one exchange only
    _css(browser, "#chart-form button")[0].click()
    wait_for(lambda: "exchange=kraken" in browser.current_url, what="the exchange choice")
    assert {e.get_attribute("data-series") for e in _css(browser, "#price-chart polyline.series")} == {"kraken"}
    assert len(_css(browser, "#price-chart circle.point")) == len(stored["kraken"])


def test_the_services_dashboard_follows_its_scheduled_run(browser, tmp_path):
    """``python main.py serve``: the URL it prints shows the run in progress live, then the history."""
    with crypto_server.serve_in_background(port=0, seed=2020, sleep=0.05) as prices:
        pipeline = history_pipeline(tmp_path, prices.url, tmp_path / "prices.db", fetchers=2)
        service = subprocess.Popen(
            [sys.executable, str(MAIN), "serve", "--every", "1h", "--pipeline", str(pipeline), "--no-progress",
             "--run-dir", str(tmp_path / "runs"), "--dashboard-port", "0"],
            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(service.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        try:
            url = wait_for(lambda: next((line.split("dashboard at ")[1].strip() for line in lines
                                         if "dashboard at " in line), None), timeout=30, what="the dashboard's URL")
            browser.get(url)
            seen = _watch_done(browser, lambda: _live(browser, "#live-state", "data-state") != "waiting",
                               "now-service")
            assert len(seen) >= 2 and seen == sorted(seen), seen
            wait_for(lambda: _live(browser, "#live-state", "data-state") == "waiting",
                     timeout=30, what="the service waiting for its next run")
            assert "the next run of history starts at" in " ".join(_live(browser, "#live-state").split())
            _css(browser, "#nav-runs")[0].click()
            (run,) = _css(browser, "#runs tbody tr")
            assert "done" in run.text
        finally:
            service.send_signal(signal.SIGINT)
            service.wait(timeout=30)
            reader.join(timeout=5)
    assert service.returncode == 0, "".join(lines)
