"""``python main.py --check``, numbers from ``${VAR}``, and the run directory named after every run.

Real subprocesses of main.py; the price server is one of the test's own, which counts what it is asked.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.cli.test_app import MAIN, REPO, W, _env, _free_port, _interrupt, _slow_pipeline, _start, _wait_until_running

EXCHANGES = ["bitstamp", "kraken", "coinbase-pro"]


class _CountingServer:
    """A price server answering ``GET /exchanges`` (or 503 to everything when ``down``), recording each path."""

    def __init__(self, down: bool = False) -> None:
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                owner.paths.append(self.path)
                ok = self.path == "/exchanges" and not down
                body = json.dumps(EXCHANGES if ok else {"error": "unavailable"}).encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def counting_server() -> Iterator[_CountingServer]:
    server = _CountingServer()
    yield server
    server.close()


def _wiki_pipeline(tmp_path: Path, **replace: str) -> Path:
    """The shipped wiki pipeline, its price stage scaled by ``${PRICE_THREADS:-20}``, with ``replace`` applied."""
    text = (REPO / "pipelines" / "wiki_crypto_pipeline.yaml").read_text()
    text = text.replace("    instances: 20\n", "    instances: ${PRICE_THREADS:-20}\n")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "wiki.yaml"
    path.write_text(text)
    return path


def _main(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MAIN), *args], cwd=tmp_path, env=_env(**env), capture_output=True, text=True, timeout=60
    )


def _one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``error:`` line of a run that could not start (exit 2); nothing on stdout, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    return errors[0]


def _rows(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(database) as conn:
        tables = {name for (name,) in conn.execute("select name from sqlite_master where type = 'table'")}
        return conn.execute("select count(*) from prices").fetchone()[0] if "prices" in tables else 0


def test_check_passes_a_good_pipeline_without_running_it(tmp_path, counting_server):
    database = tmp_path / "prices.db"
    result = _main(tmp_path, "--check", "--pipeline", str(_wiki_pipeline(tmp_path)),
                   PRICE_SERVER_URL=counting_server.url, DATABASE_URL=f"sqlite:///{database}", PRICE_THREADS="7")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{tmp_path / 'wiki.yaml'}: OK (3 stages, 10 threads)"]
    # Asked only whether the server answers (the CLI's probe, then the price stage's check).
    assert counting_server.paths and set(counting_server.paths) == {"/exchanges"}
    assert not (tmp_path / "runs").exists() and "run directory" not in result.stderr
    assert _rows(database) == 0


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({"    instances: 2\n": "    instances: two\n"}, "workers[2] (PostgresWorker).instances: must be a positive integer or auto, not 'two'"),
        ({"      date: latest\n": "      date: someday\n"}, "error: stage PriceWorker cannot start: "),
        ({"      exchanges: [bitstamp, kraken, coinbase-pro]\n": "      exchanges: [bitstamp, mtgox]\n"},
         "error: stage PriceWorker cannot start: unknown exchange(s) mtgox"),
    ],
    ids=["bad file", "bad worker param", "unknown exchange"],
)
def test_check_refuses_what_a_run_would_refuse_in_one_line(tmp_path, counting_server, replace, message):
    database = tmp_path / "prices.db"
    result = _main(tmp_path, "--check", "--pipeline", str(_wiki_pipeline(tmp_path, **replace)),
                   PRICE_SERVER_URL=counting_server.url, DATABASE_URL=f"sqlite:///{database}")
    assert message in _one_error(result)
    assert not any(path.startswith("/price/") for path in counting_server.paths)
    assert not (tmp_path / "runs").exists() and _rows(database) == 0


def test_check_fails_when_the_price_server_is_down(tmp_path):
    server = _CountingServer(down=True)
    try:
        # The server's URL written in the file (no PRICE_SERVER_URL): the price stage's own check finds it down.
        pipeline = _wiki_pipeline(tmp_path, **{
            "${PRICE_SERVER_URL:-http://127.0.0.1:5000}": server.url,
            "      date: latest\n": "      date: latest\n      http: {retries: 1}\n",
        })
        result = _main(tmp_path, "--check", "--pipeline", str(pipeline), DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}")
    finally:
        server.close()
    assert "stage PriceWorker cannot start: the price server at" in _one_error(result)
    assert server.paths and set(server.paths) == {"/exchanges"}


def test_check_fails_when_the_database_is_unreachable(tmp_path, counting_server):
    url = f"postgresql://nobody:secret@127.0.0.1:{_free_port()}/crypto"
    result = _main(tmp_path, "--check", "--pipeline", str(_wiki_pipeline(tmp_path)),
                   PRICE_SERVER_URL=counting_server.url, DATABASE_URL=url)
    line = _one_error(result)
    assert "stage PostgresWorker cannot start: cannot reach postgresql" in line and "nobody:***@127.0.0.1" in line
    assert "secret" not in result.stderr
    assert not any(path.startswith("/price/") for path in counting_server.paths)


def test_check_starts_the_private_price_server_a_run_would_start(tmp_path):
    # Nothing listens at PRICE_SERVER_URL: a run would start the bundled server, so the check does too.
    result = _main(tmp_path, "--check", "--pipeline", str(_wiki_pipeline(tmp_path)),
                   PRICE_SERVER_URL=f"http://127.0.0.1:{_free_port()}", DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("OK (3 stages, 23 threads)\n")
    assert "started the bundled price server for this run" in result.stderr


def _numbers_pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.yaml"
    path.write_text(yaml.safe_dump({
        "name": "numbers",
        "monitor_interval": "${INTERVAL:-0.05}",
        "queues": [{"name": "numbers", "maxsize": "${MAXSIZE:-10}"}],
        "workers": [
            {"name": "Source", "location": W, "class": "Range", "input_values": [[0, 30]], "output_queues": "numbers"},
            {"name": "Work", "location": W, "class": "Slow", "instances": "${THREADS}", "params": {"delay": 0.001},
             "input_queue": "numbers"},
        ],
    }))
    return path


def test_a_variable_scales_a_stage(tmp_path):
    result = _main(tmp_path, "--pipeline", str(_numbers_pipeline(tmp_path)), "--no-progress",
                   "--run-dir", str(tmp_path / "runs"), THREADS="7", MAXSIZE="3", INTERVAL="0.1")
    assert result.returncode == 0, result.stderr
    (report,) = (tmp_path / "runs").glob("*/report.json")
    work = next(s for s in json.loads(report.read_text())["stages"] if s["name"] == "Work")
    assert work["instances"] == 7 and work["items_in"] == 30


@pytest.mark.parametrize(
    "value", ["abc", "-1", "1e3", "7; rm -rf /", "", "9" * 5000],
    ids=["word", "negative", "exponent", "command", "empty", "huge"],
)
def test_a_bad_number_from_a_variable_exits_2_in_one_line(tmp_path, value):
    result = _main(tmp_path, "--pipeline", str(_numbers_pipeline(tmp_path)), "--run-dir", str(tmp_path / "runs"),
                   THREADS=value)
    line = _one_error(result)
    assert f"workers[1] (Work).instances: must be a positive integer or auto, not '{value[:50]}" in line
    assert "(from ${THREADS})" in line and len(line) < 700
    assert not (tmp_path / "runs").exists()


def _run_directory(stderr: str, cwd: Path) -> Path:
    """The one run directory the CLI named (relative to ``cwd``, where it ran), which exists."""
    lines = [line for line in stderr.splitlines() if line.startswith("run directory: ")]
    assert len(lines) == 1, stderr
    path = cwd / lines[0].removeprefix("run directory: ")
    assert path.is_dir()
    return path


def test_the_run_directory_is_named_after_a_run_that_succeeds_or_whose_stage_dies(tmp_path):
    result = _main(tmp_path, "--pipeline", str(_numbers_pipeline(tmp_path)), "--no-progress", "--run-dir", "runs",
                   THREADS="2")
    assert result.returncode == 0, result.stderr
    assert (_run_directory(result.stderr, tmp_path) / "report.json").is_file()

    pipeline = _numbers_pipeline(tmp_path)
    document = yaml.safe_load(pipeline.read_text())
    document["workers"][1].update({"class": "Die", "params": {}})
    pipeline.write_text(yaml.safe_dump(document))
    result = _main(tmp_path, "--pipeline", str(pipeline), "--no-progress", "--run-dir", "runs", THREADS="2")
    assert result.returncode == 1, result.stderr
    path = _run_directory(result.stderr, tmp_path)
    assert json.loads((path / "report.json").read_text())["exit_code"] == 1
    assert len(list((tmp_path / "runs").iterdir())) == 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("times", [1, 3])
def test_the_run_directory_is_named_after_an_interrupted_run(tmp_path, times):
    process = _start(tmp_path, _slow_pipeline(tmp_path))
    seen = _wait_until_running(process)
    seen += _interrupt(process, times)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    (made,) = (tmp_path / "runs").iterdir()
    assert _run_directory("".join(seen) + err, tmp_path) == made


def test_no_run_directory_is_named_when_the_run_could_not_start(tmp_path):
    result = _main(tmp_path, "--pipeline", str(_numbers_pipeline(tmp_path)), "--run-dir", "runs", THREADS="0")
    _one_error(result)
    assert "run directory" not in result.stderr and not (tmp_path / "runs").exists()
