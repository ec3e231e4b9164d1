"""``--metrics-port``: /metrics read during a real run of main.py, and the retries log line."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import crypto_server
from cli.retry_log import RetryLog
from engine import StageStatus
from tests.cli.test_app import MAIN, _env, _free_port, _write

SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")


def _pipeline(tmp_path: Path, url: str) -> Path:
    return _write(tmp_path, {
        "name": "metered",
        "monitor_interval": 0.1,
        "queues": [{"name": "symbols", "maxsize": 50}, {"name": "prices"}],
        "workers": [
            {"name": "WikiWorker", "location": "workers.wiki_worker", "class": "WikiWorker",
             "input_values": [f"{url}/wiki/List_of_cryptocurrencies"], "output_queues": "symbols"},
            # Enough retries that the server's 20% errors never fail an item (0.2 ** 11 per request).
            {"name": "PriceWorker", "location": "workers.price_worker", "class": "PriceWorker", "instances": 2,
             "params": {"base_url": url, "exchanges": ["kraken"], "date": "latest",
                        "http": {"backoff": 0.0, "retries": 10}},
             "input_queue": "symbols", "output_queues": "prices"},
            {"name": "Sink", "location": "tests.engine.workers", "class": "Slow", "params": {"delay": 0.0},
             "input_queue": "prices"},
        ],
    })


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def _value(samples, name: str, **labels: str) -> float:
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items()))


@pytest.mark.timeout(60)
def test_metrics_move_during_a_real_run_and_carry_the_histogram_and_labels(tmp_path):
    port = _free_port()
    with crypto_server.serve_in_background(port=0, sleep=0.03, error_rate=0.2, seed=2) as server:
        process = subprocess.Popen(
            [sys.executable, str(MAIN), "--pipeline", str(_pipeline(tmp_path, server.url)), "--no-progress",
             "--run-dir", str(tmp_path / "runs"), "--metrics-port", str(port)],
            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        scrapes = []
        try:
            while process.poll() is None and len(scrapes) < 200:
                try:
                    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                except requests.ConnectionError:
                    time.sleep(0.05)  # not listening yet, or the run just ended
                    continue
                samples = _samples(text)
                requests_so_far = _value(samples, "pipeline_http_requests_total", stage="PriceWorker")
                if requests_so_far and (not scrapes or requests_so_far != scrapes[-1][0]):
                    scrapes.append((requests_so_far, samples))
                time.sleep(0.2)
        finally:
            _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert len(scrapes) >= 2, f"the counters did not move between scrapes: {[s[0] for s in scrapes]}"
    first, last = scrapes[0][0], scrapes[-1][0]
    assert last > first > 0
    samples = scrapes[-1][1]
    names = {n for n, _, _ in samples}
    assert {"pipeline_items_total", "pipeline_queue_depth", "pipeline_threads_alive",
            "pipeline_http_requests_total", "pipeline_http_request_seconds_bucket"} <= names
    assert {l["outcome"] for n, l, _ in samples if n == "pipeline_items_total"} == {
        "in", "out", "failed", "lost", "no_data"}
    assert {l["stage"] for n, l, _ in samples if n == "pipeline_threads_alive"} == {"WikiWorker", "PriceWorker", "Sink"}
    assert "symbols" in {l["queue"] for n, l, _ in samples if n == "pipeline_queue_depth"}
    assert {l["code"] for n, l, _ in samples if n == "pipeline_http_requests_total"} >= {"200"}
    buckets = [(l["le"], v) for n, l, v in samples
               if n == "pipeline_http_request_seconds_bucket" and l["stage"] == "PriceWorker"]
    counts = [v for _, v in buckets]
    assert buckets[-1][0] == "+Inf" and counts == sorted(counts) and counts[-1] > 0  # cumulative
    assert counts[-1] == _value(samples, "pipeline_http_request_seconds_count", stage="PriceWorker")
    assert _value(samples, "pipeline_http_request_seconds_sum", stage="PriceWorker") >= 0.03 * counts[-1]


def test_a_metrics_port_in_use_exits_2_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pipeline = _write(tmp_path, {
            "name": "tiny", "queues": [],
            "workers": [{"name": "Sink", "location": "tests.engine.workers", "class": "Slow",
                         "params": {"delay": 0.0}, "input_values": [1]}],
        })
        done = subprocess.run(
            [sys.executable, str(MAIN), "--pipeline", str(pipeline), "--no-progress", "--run-dir",
             str(tmp_path / "runs"), "--metrics-port", str(port)],
            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=30,
        )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: cannot serve metrics on 127.0.0.1:{port}")
    assert "Traceback" not in done.stderr


def _status(retries: dict[str, float]) -> StageStatus:
    return StageStatus(name="PriceWorker", alive=1, instances=1, queue_depth=0, items_in=0, items_out=0, failed=0,
                       lost=0, rate=0.0, expected=None, state="running", counters=retries)


def test_retries_are_one_line_per_stage_at_most_every_10_seconds(caplog):
    now = [0.0]
    log = RetryLog(clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="retries"):
        for second in range(1, 26):
            now[0] = float(second)
            total = second * 5
            log([_status({"http.retries": total, "http.retries.5xx": total - second, "http.retries.429": second})])
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "PriceWorker: 5 retries in the last 1 s (5xx 4, 429 1)",  # the first retries at once
        "PriceWorker: 50 retries in the last 10 s (5xx 40, 429 10)",
        "PriceWorker: 50 retries in the last 10 s (5xx 40, 429 10)",
    ]
