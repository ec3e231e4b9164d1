"""The price server of ``python main.py``: private to each run, gone with it, never a stranger's.

Real processes throughout: main.py in a subprocess with a SQLite database, its bundled
server in a grandchild process, and (where a test says so) a listener of our own at
``PRICE_SERVER_URL``. Every port is chosen by the OS.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

import crypto_server
from tests.cli.test_app import MAIN, _env, _free_port, _interrupt, _write

STARTED = re.compile(r"started the bundled price server for this run at (http://127\.0\.0\.1:\d+) \(process (\d+)")
EXCHANGE = "kraken"


def _free_url() -> str:
    return f"http://127.0.0.1:{_free_port()}"


def _gated_pipeline(tmp_path: Path) -> Path:
    """The shipped stages (wiki page -> prices -> database), held after the wiki page until $GATE_FILE exists."""
    return _write(tmp_path, {
        "name": "gated",
        "monitor_interval": 0.1,
        "queues": [{"name": "symbols"}, {"name": "released"}, {"name": "prices"}],
        "workers": [
            {"name": "WikiWorker", "location": "workers.wiki_worker", "class": "WikiWorker",
             "input_values": ["${PRICE_SERVER_URL}/wiki/List_of_cryptocurrencies"], "output_queues": "symbols"},
            {"name": "Gate", "location": "tests.cli.workers", "class": "WaitForFile",
             "params": {"path": "${GATE_FILE}"}, "input_queue": "symbols", "output_queues": "released"},
            {"name": "PriceWorker", "location": "workers.price_worker", "class": "PriceWorker", "instances": 4,
             "params": {"base_url": "${PRICE_SERVER_URL}", "exchanges": [EXCHANGE], "date": "latest"},
             "input_queue": "released", "output_queues": "prices"},
            {"name": "PostgresWorker", "location": "workers.postgres_worker", "class": "PostgresWorker",
             "batch_size": 500, "batch_timeout": 0.2, "input_queue": "prices"},
        ],
    })


class Run:
    """``python main.py`` on a pipeline, in its own directory, with its own SQLite file and gate."""

    def __init__(self, root: Path, name: str, pipeline: Path, server_url: str) -> None:
        self.dir = root / name
        self.dir.mkdir()
        self.gate = self.dir / "gate"
        self.database = f"sqlite:///{self.dir / 'prices.db'}"
        env = _env(PRICE_SERVER_URL=server_url, DATABASE_URL=self.database, GATE_FILE=str(self.gate))
        self.process = subprocess.Popen(
            [sys.executable, str(MAIN), "--pipeline", str(pipeline), "--no-progress", "--run-dir",
             str(self.dir / "runs")],
            cwd=self.dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.log: list[str] = []

    def read_until(self, pattern: str | re.Pattern[str]) -> re.Match[str]:
        """Read the log until a line matches ``pattern``; its match."""
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"main.py ended (exit {self.process.wait()}) before logging {pattern!r}:\n" + self.text)

    def started_server(self) -> tuple[str, int]:
        """The URL and process id of the private server this run logs it started."""
        found = self.read_until(STARTED)
        return found[1], int(found[2])

    def finish(self, timeout: float = 60) -> int:
        self.gate.touch()
        out, err = self.process.communicate(timeout=timeout)
        self.log.append(err)
        self.out = out
        return self.process.returncode

    @property
    def text(self) -> str:
        return "".join(self.log)

    def report(self) -> dict[str, Any]:
        (path,) = (self.dir / "runs").glob("*/report.json")
        return json.loads(path.read_text())

    def rows(self) -> int:
        engine = create_engine(self.database)
        try:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM prices")).scalar_one())
        finally:
            engine.dispose()


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Any]:
    started: list[Run] = []

    def start(name: str, server_url: str) -> Run:
        started.append(Run(tmp_path, name, _gated_pipeline(tmp_path), server_url))
        return started[-1]

    yield start
    for run in started:
        if run.process.poll() is None:
            run.process.kill()
            run.process.communicate()


def _gone(pid: int, url: str, within: float = 2.0) -> bool:
    """True once process ``pid`` has ended (a zombie counts as ended) and ``url`` refuses connections."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid) and not _listening(url):
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # an ended process its new parent has not reaped yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _expected_rows() -> int:
    """Rows the gated pipeline stores from the bundled server's default data: symbols with a price that day."""
    dataset = crypto_server.load_dataset()
    return sum(dataset.price(EXCHANGE, s, dataset.days.last) is not None for s in dataset.symbols)


@pytest.mark.timeout(120)
def test_two_runs_at_once_each_get_their_own_server_and_neither_hurts_the_other(runs):
    configured = _free_url()
    a = runs("a", configured)
    url_a, pid_a = a.started_server()
    b = runs("b", configured)  # started while a's server is up
    url_b, pid_b = b.started_server()
    assert len({configured, url_a, url_b}) == 3, "each run has its own server, never on the configured port"
    assert pid_a != pid_b
    b.read_until("starting 4 stages")  # b is past its price server check, held at its gate

    assert a.finish() == 0, a.text
    assert _gone(pid_a, url_a), "a's server outlived a"
    assert _alive(pid_b) and _listening(url_b), "a's end stopped b's server"
    assert b.finish() == 0, b.text
    assert _gone(pid_b, url_b)

    expected = _expected_rows()
    for run in (a, b):
        report = run.report()
        assert report["dead_letters"] == 0, run.text
        assert run.rows() == expected > 0
        assert "Traceback" not in run.text


def _kill(run: Run) -> None:
    run.process.kill()
    run.process.wait()


def _ctrl_c_once(run: Run) -> None:
    run.read_until("starting 4 stages")
    run.process.send_signal(signal.SIGINT)
    run.read_until("interrupted: no new items are started")
    assert run.finish() == 130, run.text


def _ctrl_c_three_times(run: Run) -> None:
    run.read_until("starting 4 stages")
    _interrupt(run.process, 3)  # the third one is os._exit: no clean-up code of main.py runs
    run.process.wait(20)
    assert run.process.returncode == 130


def _sigterm(run: Run) -> None:
    run.read_until("starting 4 stages")
    run.process.send_signal(signal.SIGTERM)
    run.read_until("interrupted: no new items are started")
    assert run.finish() == 130, run.text


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "end", [_kill, _ctrl_c_once, _ctrl_c_three_times, _sigterm], ids=["SIGKILL", "Ctrl+C", "Ctrl+C x3", "SIGTERM"]
)
def test_the_server_ends_with_its_run_however_the_run_ends(runs, end):
    run = runs("run", _free_url())
    url, pid = run.started_server()
    assert _alive(pid) and _listening(url)
    end(run)
    assert _gone(pid, url), f"the price server process {pid} outlived main.py"


class _NotAPriceServer(http.server.BaseHTTPRequestHandler):
    status = 404

    def do_GET(self) -> None:
        body = b"<html><body>AirTunes</body></html>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HtmlOk(_NotAPriceServer):
    status = 200


def _serve_http(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _serve_garbage() -> Iterator[str]:
    """A TCP listener that is not HTTP: it greets every connection with a banner and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "serve", [lambda: _serve_http(_NotAPriceServer), lambda: _serve_http(_HtmlOk), _serve_garbage],
    ids=["HTTP 404 page", "HTTP 200 page", "not HTTP"],
)
def test_something_else_at_price_server_url_is_refused_in_one_line(tmp_path, serve):
    listener = serve()
    url = next(listener)
    try:
        result = subprocess.run(
            [sys.executable, str(MAIN), "--no-progress", "--run-dir", str(tmp_path / "runs")],  # the default pipeline
            cwd=tmp_path, env=_env(PRICE_SERVER_URL=url, DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}"),
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        listener.close()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: PRICE_SERVER_URL={url}: what listens there is not a price server")
    assert ".env.local or the environment" in lines[0]
    assert not list(tmp_path.glob("runs/*")), "the run did not start"


@pytest.mark.timeout(60)
def test_a_price_server_at_price_server_url_is_used_and_left_running(runs, start_price_server):
    server = start_price_server(port=0, seed=0)  # as started by the user: the default data
    server.stats.reset()
    run = runs("run", server.url)
    run.read_until(f"using the price server at PRICE_SERVER_URL={server.url}")
    assert run.finish() == 0, run.text
    assert not STARTED.search(run.text), "no private server when the configured one answers"
    assert run.report()["dead_letters"] == 0
    assert run.rows() == _expected_rows()
    # The check, the wiki page, the two /days and /exchanges checks, and one request per symbol.
    assert server.stats.requests >= 1 + len(server.dataset.symbols)
    assert server.running and requests.get(f"{server.url}/exchanges", timeout=5).ok


@pytest.mark.timeout(60)
def test_a_broken_pipeline_file_is_refused_before_any_server_starts(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(
        "name: broken\nqueues: [{name: q}]\nworkers:\n"
        "  - {name: W, location: workers.price_worker, class: PriceWorker, instnaces: 2,\n"
        "     input_values: [btc], params: {base_url: '${PRICE_SERVER_URL}'}}\n"
    )
    result = subprocess.run(
        [sys.executable, str(MAIN), "--no-progress", "--pipeline", str(path)],
        cwd=tmp_path, env=_env(PRICE_SERVER_URL=_free_url(), DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}"),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {path}:4: workers[0] (W).instnaces: unknown key; did you mean 'instances'?"
    ]
