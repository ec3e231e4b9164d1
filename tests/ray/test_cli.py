"""``python main.py --executor ray``: the shipped pipelines give what threads give; Ctrl+C, exit codes, refusals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from engine.report import EXIT_CONFIG, EXIT_INTERRUPTED
from tests.faults.conftest import REPO, plan, wait_until, write_pipeline
from tests.faults.main_process import main_process  # noqa: F401 - a fixture
from tests.faults.test_interrupts import _check, _document, _stage, EXCHANGES, END, START, SYMBOLS
from tests.ray.conftest import requires_ray
from tests.test_pipelines import counters, run_main, stored

pytestmark = [pytest.mark.slow, requires_ray]


@pytest.fixture
def on_session_cluster(ray_cluster, monkeypatch):
    """main.py in a child process joins the session's runtime (RAY_ADDRESS) instead of starting its own."""
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)


def test_the_default_pipeline_gives_on_ray_what_it_gives_on_threads(
    tmp_path, on_session_cluster, price_server, clean_prices
):
    path = str(REPO / "pipelines/wiki_crypto_pipeline.yaml")
    threads, on_threads = run_main(tmp_path, price_server.url, clean_prices, "--pipeline", path)
    rows = sorted(stored(clean_prices))
    assert threads.returncode == 0, threads.stderr
    with_ray, on_ray = run_main(tmp_path, price_server.url, clean_prices, "--pipeline", path, "--executor", "ray")
    assert with_ray.returncode == 0, with_ray.stderr
    assert "Traceback" not in with_ray.stderr
    assert sorted(stored(clean_prices)) == rows  # upserted again: the same rows, no more
    assert (on_threads["executor"], on_ray["executor"]) == ("threads", "ray")
    assert set(on_ray) == set(on_threads) and on_ray["items"] == on_threads["items"]
    assert counters(on_ray, "PriceWorker")["no_data"] == counters(on_threads, "PriceWorker")["no_data"] > 0
    for mine, theirs in zip(on_ray["stages"], on_threads["stages"]):
        assert set(mine) == set(theirs)
        same = ("name", "items_in", "items_out", "failed", "lost", "state", "no_data")
        assert {k: mine[k] for k in same} == {k: theirs[k] for k in same}


def test_the_history_pipeline_on_ray_stores_every_price_once(tmp_path, on_session_cluster, price_server, clean_prices):
    path = REPO / "pipelines/crypto_history_pipeline.yaml"
    result, report = run_main(tmp_path, price_server.url, clean_prices, "--pipeline", str(path), "--executor", "ray")
    assert result.returncode == 0, result.stderr
    assert report["executor"] == "ray" and report["outcome"] == "done"
    tasks = 40 * 3 * 30  # as the threaded run: limit 40 symbols x 3 exchanges x April 2020
    rows = stored(clean_prices)
    assert len(rows) + counters(report, "PriceWorker").get("no_data", 0) == tasks
    assert len({(s, e, d) for s, e, d, _ in rows}) == len(rows)
    for symbol, exchange, day, close in rows[:: max(1, len(rows) // 50)]:
        assert price_server.dataset.price(exchange, symbol, day)["close"] == close


@pytest.mark.timeout(120)
def test_ctrl_c_on_ray_stores_what_was_fetched_and_exits_130(
    tmp_path, on_session_cluster, fault_server, main_process, clean_prices, dataset
):
    server = fault_server(sleep=0.05)
    tasks = plan(SYMBOLS, EXCHANGES, START, END)
    pipeline = write_pipeline(tmp_path, _document(server.url, clean_prices))
    run = main_process(["--pipeline", str(pipeline), "--executor", "ray"], server.url, clean_prices)
    assert wait_until(lambda: server.stats.requests >= 40 or run.process.poll() is not None, 60)
    assert run.process.poll() is None, f"main.py ended before the interrupt:\n{run.wait()}{run.output}"
    run.interrupt(signal.SIGINT)
    interrupted_at = time.monotonic()
    code = run.wait()
    assert code == EXIT_INTERRUPTED, run.output[-3000:]
    assert time.monotonic() - interrupted_at < 20
    assert "Traceback" not in run.output, run.output[-3000:]
    report, done = _check(run, tasks, dataset, clean_prices)
    assert report["executor"] == "ray" and report["interrupted"] is True
    fetcher, writer = _stage(report, "PriceWorker"), _stage(report, "Writer")
    assert fetcher["state"] == "stopped" and fetcher["lost"] > 0
    assert any(e["kind"] == "interrupted" for e in done.entries)
    assert writer["state"] == "done" and len(done.stored) == fetcher["items_out"] == writer["items_in"] > 0


def _refused(tmp_path, env: dict[str, str]) -> list[str]:
    """main.py --executor ray that must refuse to start: its stderr lines, after checking exit 2 in seconds."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--no-progress", "--log-level", "WARNING", "--executor", "ray",
         "--run-dir", str(tmp_path / "runs")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert time.monotonic() - started < 60  # Ray alone would retry an address for minutes
    assert not (tmp_path / "runs").exists()
    return result.stderr.strip().splitlines()


def test_the_embedded_database_on_a_remote_cluster_is_refused_in_one_line(tmp_path, price_server):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "POSTGRES_HOST", "PIPELINE_LOCATION")}
    env.update(RAY_ADDRESS="203.0.113.7:6379", PRICE_SERVER_URL=price_server.url)  # TEST-NET-3: never reached
    assert _refused(tmp_path, env) == [
        "error: cannot run on a Ray cluster of several machines (RAY_ADDRESS=203.0.113.7:6379): the pipeline asks "
        "for the embedded PostgreSQL, which only this machine can reach; set DATABASE_URL and PRICE_SERVER_URL "
        "to services every node can reach"
    ]


def test_a_ray_address_nobody_answers_at_is_one_line_and_exit_2_in_seconds(tmp_path, price_server):
    with socket.socket() as probe:  # a port nothing listens on once this is closed
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    env = dict(os.environ, RAY_ADDRESS=address, PRICE_SERVER_URL=price_server.url,
               DATABASE_URL=f"sqlite:///{tmp_path / 'prices.db'}")
    assert _refused(tmp_path, env) == [f"error: cannot reach the Ray cluster at RAY_ADDRESS={address}: Connection refused"]
