"""Several serving processes on one port (crypto_server.siblings): counters and the rate limit stay
server-wide, and no process outlives the first one. Real child processes, real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

import crypto_server
from crypto_server.siblings import can_fork

pytestmark = [
    pytest.mark.skipif(not can_fork(), reason="more serving processes need fork and SO_REUSEPORT (Linux)"),
    pytest.mark.timeout(60),
]

TIMEOUT = 10
REQUEST = b"GET /price/kraken/btc/2020-01-02 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def _status(port: int) -> int:
    """One request on a connection of its own (so SO_REUSEPORT spreads them), its status."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(REQUEST)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer[9:12])


def test_two_processes_count_and_limit_as_one_server() -> None:
    with crypto_server.start_server_process(processes=2, rate_limit=30, assets=3) as server:
        siblings = psutil.Process(server.pid).children()
        assert len(siblings) == 1, "one forked serving process beside the first"
        port = int(urlsplit(server.url).port or 0)
        before = [p.cpu_times() for p in siblings]
        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(_status, [port] * 120))
        # Counted in one process each, the first would see about half; limited in one process
        # each, about 60 would pass.
        assert statuses.count(200) == 30 and statuses.count(429) == 90
        stats = server.stats()
        assert (stats["requests"], stats["rate_limited"], stats["in_flight"]) == (120, 90, 0)
        after = [p.cpu_times() for p in siblings]
        assert after[0].user + after[0].system > before[0].user + before[0].system, "the sibling served some"


def test_stop_ends_every_process_and_frees_the_port() -> None:
    server = crypto_server.start_server_process(processes=2, assets=3)
    sibling = psutil.Process(server.pid).children()[0]
    port = int(urlsplit(server.url).port or 0)
    assert _status(port) == 200
    server.stop()
    try:
        assert not sibling.is_running() or sibling.status() == psutil.STATUS_ZOMBIE
    finally:
        if sibling.is_running():  # the test failed: leave no orphan behind
            sibling.kill()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


def test_a_killed_first_process_leaves_no_sibling_behind() -> None:
    server = crypto_server.start_server_process(processes=2, assets=3)
    sibling = psutil.Process(server.pid).children()[0]
    try:
        os.kill(server.pid, signal.SIGKILL)
        sibling.wait(TIMEOUT)  # psutil.TimeoutExpired if it stayed
    finally:
        server.stop()
        if sibling.is_running():  # the test failed: leave no orphan behind
            sibling.kill()


def test_more_processes_need_the_gevent_server() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crypto_server", "--server", "werkzeug", "--processes", "2"],
        cwd=Path(crypto_server.__file__).parents[1], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith("--processes must be 1, or more with the gevent server on Linux")
