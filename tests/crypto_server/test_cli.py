"""python -m crypto_server: flags, one-line errors with exit codes, and a real run."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from crypto_server.__main__ import main

from .conftest import CSV_DIR

REPO = Path(__file__).resolve().parents[2]
FLAGS = [
    "--host", "--port", "--data-dir", "--assets", "--first-day", "--last-day", "--seed",
    "--sleep", "--jitter", "--error-rate", "--rate-limit", "--verbose", "--server",
]  # fmt: skip


def test_help_explains_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["-h"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in FLAGS:
        assert re.search(rf"{flag}\b[^\n]*\n?\s+\S", out), f"{flag} is not explained"


@pytest.mark.parametrize(
    "argv",
    [
        ["--sleep", "-1"],
        ["--jitter", "soon"],
        ["--error-rate", "2"],
        ["--rate-limit", "-3"],
        ["--port", "70000"],
        ["--assets", "0"],
        ["--first-day", "2020-02-30"],
        ["--data-dir", str(CSV_DIR), "--assets", "5"],
        ["--bogus"],
    ],
)
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("crypto_server: ")
    return lines[0]


def test_bad_data_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path / "missing")]) == 2
    assert "missing: not a directory" in one_line_error(capsys)


def test_malformed_csv_exits_2_naming_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (CSV_DIR / "kraken_btc.csv").read_text().replace("7770.6", "7,770.6")
    (tmp_path / "kraken_btc.csv").write_text(text)
    assert main(["--data-dir", str(tmp_path)]) == 2
    assert f"{tmp_path / 'kraken_btc.csv'}:3: expected 8 fields, found 9" in one_line_error(capsys)


def test_port_in_use_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    assert one_line_error(capsys) == f"crypto_server: cannot listen on 127.0.0.1:{port}: address already in use"


def test_without_gevent_the_default_is_werkzeug_and_asking_for_gevent_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import crypto_server.__main__ as cli

    monkeypatch.setattr(cli, "gevent_available", lambda: False)
    assert main(["--server", "gevent", "--assets", "3"]) == 2
    assert one_line_error(capsys) == "crypto_server: --server gevent: gevent is not installed (pip install gevent)"
    with socket.socket() as taken:  # stops it right after the choice of server
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port), "--assets", "3"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "crypto_server: gevent is not installed: serving with werkzeug, a thread per connection"
    assert err[1].endswith("address already in use") and len(err) == 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("server", ["gevent", "werkzeug"])
def test_real_run_serves_until_interrupted(server: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "crypto_server", "--port", "0", "--assets", "12", "--seed", "3", "-v", "--server", server],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # the startup line
        match = re.search(r"at (http://127\.0\.0\.1:\d+) ", line)
        assert match, line
        response = requests.get(f"{match[1]}/symbols", timeout=10)
        assert response.status_code == 200 and len(response.json()) == 12
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert '"GET /symbols HTTP/1.1" 200' in err  # -v logs each request
