"""The dashboard over HTTP on a real socket: bad addresses, a database that is down, PostgreSQL, the server."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

import crypto_server
from dashboard import DashboardError, DashboardServer, create_app, start_dashboard
from dashboard import server as dashboard_server
from service.live import LiveRun
from store.schema import price_table
from store.target import PriceStore
from tests.cli.test_app import MAIN, _env
from tests.dashboard.conftest import history_pipeline, wait_for
from workers.db_errors import DatabaseUnavailable
from workers.postgres_worker import PostgresWorker
from workers.records import PriceRecord


@pytest.mark.parametrize("name", ["..%2F..%2Fetc", "%2E%2E", "nope", "20260101-120000.000000-missing",
                                  "20260101-120000.000000-missing/failed"])
def test_a_run_that_is_not_in_the_run_directory_is_404_with_one_line(history, serve, name):
    server = serve(run_dir=history.run_dir, store=history.store)
    answer = requests.get(server.url + "runs/" + name, timeout=10)
    assert answer.status_code == 404
    assert 'id="error"' in answer.text and "Traceback" not in answer.text


def test_a_directory_beside_the_runs_is_never_shown(history, serve, tmp_path):
    (history.run_dir / "20260101-120000.000000-x").symlink_to(tmp_path)  # a link out of the run directory
    try:
        server = serve(run_dir=history.run_dir, store=history.store)
        runs = requests.get(server.url + "runs", timeout=10).text
        assert "20260101-120000.000000-x" not in runs
    finally:
        (history.run_dir / "20260101-120000.000000-x").unlink()


def test_a_database_that_is_down_is_one_line_on_the_prices_page_and_is_asked_again(history, serve):
    calls = []

    def store() -> PriceStore:
        calls.append(1)
        if len(calls) == 1:
            raise DatabaseUnavailable("cannot connect to postgresql://u:***@db/x: connection refused")
        return history.store

    server = serve(run_dir=history.run_dir, store_call=store)
    down = requests.get(server.url + "prices", timeout=10)
    assert down.status_code == 503
    assert "DatabaseUnavailable: cannot connect to postgresql://u:***@db/x: connection refused" in down.text
    assert "Traceback" not in down.text
    assert requests.get(server.url + "runs", timeout=10).status_code == 200  # the rest of the dashboard works
    back = requests.get(server.url + "prices", timeout=10)
    assert back.status_code == 200 and 'id="prices"' in back.text


def test_without_a_database_the_prices_page_says_so(tmp_path, serve):
    server = serve(run_dir=tmp_path, store=None)
    answer = requests.get(server.url + "prices", timeout=10)
    assert answer.status_code == 503 and "no database" in answer.text


@pytest.fixture
def pg_store(database_url: str) -> Iterator[PriceStore]:
    """A price table of the test's own in PostgreSQL: ETH on kraken and bitstamp, 7 days each."""
    store = PriceStore(database_url, f"prices_{uuid.uuid4().hex[:12]}")
    day = dt.date(2024, 1, 1)
    records = [PriceRecord(symbol="ETH", exchange=exchange, price_date=day + dt.timedelta(days=i), open=100.0 + i,
                           high=110.0 + i, low=90.0 + i, close=105.0 + i, volume=5.0,
                           extracted_time=dt.datetime(2024, 2, 1, tzinfo=dt.timezone.utc))
               for exchange in ("kraken", "bitstamp") for i in range(7)]
    PostgresWorker(store.url, table=store.table, retry_seconds=5).process_batch(records)
    yield store
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            price_table(store.table).drop(conn, checkfirst=True)
    finally:
        engine.dispose()


def test_prices_and_the_chart_on_postgresql(pg_store, serve, tmp_path):
    server = serve(run_dir=tmp_path, store=pg_store)
    page = requests.get(server.url + "prices", params={"symbol": "ETH", "exchange": "kraken"}, timeout=10).text
    assert page.count('class="point" data-series="kraken"') == 7 and 'data-series="bitstamp"' not in page
    assert "rows: 14 · symbols: 1 · exchanges: 2 · 2024-01-01 to 2024-01-07" in " ".join(page.split())
    assert page.count("<td>2024-01-07</td>") == 2  # the newest row of each pair


def test_prices_show_again_at_once_after_the_database_restarted(embedded_postgres, database_url, pg_store, serve,
                                                                 tmp_path):
    if database_url != embedded_postgres.url:
        pytest.skip("TEST_DATABASE_URL is set: the database cannot be restarted from here")
    server = serve(run_dir=tmp_path, store=pg_store)
    assert requests.get(server.url + "prices", timeout=10).status_code == 200  # its connections are pooled now
    embedded_postgres.stop()  # while nobody looks
    embedded_postgres.start()
    again = requests.get(server.url + "prices", timeout=10)
    assert again.status_code == 200, again.text  # the first view after the restart, not a dead pooled connection


def test_a_damaged_timeline_still_gives_a_page(tmp_path, serve):
    run = tmp_path / "20260101-120000.000000-demo"
    run.mkdir()
    (run / "timeline.jsonl").write_text("\n".join([
        json.dumps({"t": 0, "stages": {"A": {"done": "many", "queue_depth": None, "queue_maxsize": 1e400}}}),
        json.dumps({"t": 1, "stages": {"A": {"done": 5, "queue_depth": 2, "queue_maxsize": 4}, "B": [1]}}),
        "not json", json.dumps([1, 2]),
    ]))
    server = serve(run_dir=tmp_path, store=None)
    answer = requests.get(server.url + "runs/" + run.name, timeout=10)
    assert answer.status_code == 200 and 'data-series="A"' in answer.text


def test_the_live_json_and_the_fragment_follow_the_service(tmp_path, serve):
    live = LiveRun("demo")
    server = serve(run_dir=tmp_path, store=None, live=live)
    assert requests.get(server.url + "api/live", timeout=10).json()["state"] == "stopped"
    live.wait(dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    assert requests.get(server.url + "api/live", timeout=10).json()["next_run"] == "2030-01-02T03:04:05+00:00"
    assert 'data-state="waiting"' in requests.get(server.url + "now/fragment", timeout=10).text
    alone = serve(run_dir=tmp_path, store=None)
    assert requests.get(alone.url + "api/live", timeout=10).json() == {"state": "idle"}


def test_the_dashboard_alone_shows_a_run_that_another_process_makes(tmp_path, serve):
    """No service here: ``python main.py`` in another terminal is seen through the timeline it writes."""
    server = serve(run_dir=tmp_path / "runs", store=None)
    with crypto_server.serve_in_background(port=0, seed=2020, sleep=0.05) as prices:
        pipeline = history_pipeline(tmp_path, prices.url, tmp_path / "prices.db", fetchers=2)
        run = subprocess.Popen([sys.executable, str(MAIN), "--pipeline", str(pipeline), "--no-progress",
                                "--run-dir", str(tmp_path / "runs")], cwd=tmp_path, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            fragment = wait_for(lambda: (text := requests.get(server.url + "now/fragment", timeout=10).text)
                                and 'data-stage="PriceWorker"' in text and text, timeout=30, what="the run")
            assert 'data-state="running"' in fragment and "read from its timeline" in fragment
        finally:
            _, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    after = requests.get(server.url + "now/fragment", timeout=10).text
    assert 'data-state="idle"' in after and 'id="last-run"' in after


def test_a_port_in_use_is_one_line_and_stop_frees_the_port():
    app = create_app(run_dir=".", store=lambda: None)
    with DashboardServer(app, "127.0.0.1", 0) as first:
        with pytest.raises(DashboardError, match=rf"^the dashboard cannot listen on 127.0.0.1:{first.port}: "
                                                 "the port is in use$"):
            DashboardServer(app, "127.0.0.1", first.port)
        assert requests.get(first.url + "runs", timeout=10).status_code == 200
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", first.port))  # free again at once


def test_the_default_port_falls_back_to_a_free_one_when_taken(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(dashboard_server, "DEFAULT_PORT", taken.getsockname()[1])
        server = start_dashboard(create_app(run_dir=".", store=lambda: None), "127.0.0.1", None)
        try:
            assert server.port not in (0, taken.getsockname()[1])
            assert requests.get(server.url, timeout=10).status_code == 200
        finally:
            server.stop()
        with pytest.raises(DashboardError):  # asked for explicitly: no fallback
            start_dashboard(create_app(run_dir=".", store=lambda: None), "127.0.0.1", taken.getsockname()[1])


def test_stop_returns_promptly_with_a_browser_connection_still_open(tmp_path):
    server = DashboardServer(create_app(run_dir=tmp_path, store=lambda: None))
    server.start()
    idle = socket.create_connection(("127.0.0.1", server.port))  # a keep-alive connection saying nothing
    try:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
    finally:
        idle.close()
