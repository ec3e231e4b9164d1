"""crypto_server.start_server_process: the server in a real child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import crypto_server


@pytest.mark.timeout(60)
def test_the_child_serves_counts_and_stops(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the child finds the package from any working directory
    with crypto_server.start_server_process(seed=3, assets=5) as server:
        assert server.running and server.pid != os.getpid()
        symbols = requests.get(f"{server.url}/symbols", timeout=10).json()
        assert symbols == crypto_server.load_dataset(seed=3, assets=5).symbols
        stats = server.stats()
        assert stats["requests"] == 1 and stats["cpu_seconds"] > 0
        server.reset_stats()
        assert server.stats()["requests"] == 0
    assert not server.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/symbols", timeout=10)
    server.stop()  # idempotent
    with pytest.raises(crypto_server.ServerProcessError, match="has ended"):
        server.stats()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("options", [{"sleep": -1}, {"data_dir": "/nonexistent"}], ids=["bad option", "bad data"])
def test_a_child_that_cannot_start_raises_and_leaves_nothing_running(options, capfd):
    with pytest.raises(crypto_server.ServerProcessError, match=r"ended \(exit code 2\) before answering 'start'"):
        crypto_server.start_server_process(**options)
    assert "crypto_server" in capfd.readouterr().err  # the child said why


@pytest.mark.timeout(60)
def test_the_child_stops_when_its_stdin_closes_as_when_the_parent_dies():
    # Run the child directly, as its parent would: closing our end of the pipe is what a dying parent does.
    child = subprocess.Popen(
        [sys.executable, "-m", "crypto_server", "--child", "--port", "0", "--assets", "3"],
        cwd=Path(crypto_server.__file__).parents[1], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().startswith('{"url": "http://127.0.0.1:')
    child.stdin.close()
    assert child.wait(10) == 0
    child.stdout.close()
