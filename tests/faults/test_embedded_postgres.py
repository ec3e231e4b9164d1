"""The embedded PostgreSQL's lifecycle across real processes: stale pid files, crashes, two users at once.

Each test drives real Python processes (the way ``main.py`` uses the server:
``cleanup_mode="stop"``, stopped at exit) against one data directory, and
checks the real postmaster with psutil.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from workers.database import EmbeddedPostgres

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]

# A user of the server, as main.py is one: start it, query it, say its URL, then end: at once
# ("exit"), when told on stdin ("wait"), or as the CLI's third Ctrl+C does, skipping atexit ("os._exit").
USER = """
import os, sys
from sqlalchemy import create_engine, text
from workers.database import EmbeddedPostgres
pgdata, then = sys.argv[1:3]
url = EmbeddedPostgres(pgdata).start()
engine = create_engine(url)
with engine.connect() as conn:
    assert conn.execute(text("SELECT 1")).scalar_one() == 1
engine.dispose()
print(url, flush=True)
if then == "wait":
    sys.stdin.readline()
elif then == "os._exit":
    os._exit(130)
"""

# A user that writes a row every few milliseconds until told to stop on stdin, then reports its
# counts and ends: with "stop" by calling stop(), with "exit" by just exiting.
WRITER = """
import sys, threading, time
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from workers.database import EmbeddedPostgres
pgdata, name, how = sys.argv[1:4]
server = EmbeddedPostgres(pgdata)
engine = create_engine(server.start(), poolclass=NullPool)
with engine.begin() as conn:
    conn.execute(text(f"CREATE TABLE writes_{name} (n int)"))  # one each: concurrent CREATEs collide
done, counts = threading.Event(), {"ok": 0, "errors": 0}
def write():
    while not done.is_set():
        try:
            with engine.begin() as conn:
                conn.execute(text(f"INSERT INTO writes_{name} VALUES (:n)"), {"n": counts["ok"]})
            counts["ok"] += 1
        except Exception as exc:
            counts["errors"] += 1
            print("error:", str(exc).splitlines()[0], file=sys.stderr, flush=True)
        time.sleep(0.01)
writer = threading.Thread(target=write)
writer.start()
print("ready", flush=True)
sys.stdin.readline()
done.set()
writer.join()
engine.dispose()
if how == "stop":
    server.stop()
print(counts["ok"], counts["errors"], flush=True)
"""


def _python(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=REPO_ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _run_user(pgdata: Path) -> str:
    """Run one user of the server to its end; return the URL it used."""
    user = _python(USER, str(pgdata), "exit")
    out, err = user.communicate(timeout=60)
    assert user.returncode == 0, err
    return out.strip()


def _servers(pgdata: Path) -> list[psutil.Process]:
    """PostgreSQL postmasters whose data directory is ``pgdata`` (found by their working directory)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if cmdline and Path(cmdline[0]).name == "postgres" and "-D" in cmdline:
                if Path(proc.cwd()).resolve() == pgdata.resolve():
                    found.append(proc)
        except psutil.Error:
            pass
    return found


def _ended(proc: psutil.Process) -> bool:
    """Whether ``proc`` has exited (a zombie not yet reaped by init counts)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _select_one(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def initialised() -> Iterator[Path]:
    """An initialised, stopped data directory (initdb once for the module; short path for the socket)."""
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    _run_user(root / "pgdata")
    yield root / "pgdata"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pgdata(initialised: Path) -> Iterator[Path]:
    """The module's data directory; whatever a test leaves running in it is ended afterwards."""
    yield initialised
    for proc in _servers(initialised):  # only after a failure: a passing test leaves nothing running
        proc.terminate()
        psutil.wait_procs([proc], timeout=30)


def test_stale_pid_file_naming_a_live_process_never_gets_it_signalled(pgdata: Path) -> None:
    # After a crash and a reboot, postmaster.pid (and the socket lock) name a pid now used by
    # an unrelated process. It must not be signalled, and the server must still start.
    user = _python(USER, str(pgdata), "wait")
    url = user.stdout.readline().strip()
    pid_lines = (pgdata / "postmaster.pid").read_text().splitlines()
    socket_lock = (pgdata / ".s.PGSQL.5432.lock").read_text().splitlines()
    user.communicate("\n", timeout=60)
    assert user.returncode == 0 and not _servers(pgdata)

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (pgdata / "postmaster.pid").write_text("\n".join([str(bystander.pid), *pid_lines[1:]]) + "\n")
        (pgdata / ".s.PGSQL.5432.lock").write_text("\n".join([str(bystander.pid), *socket_lock[1:]]) + "\n")
        user = _python(USER, str(pgdata), "exit")
        out, err = user.communicate(timeout=60)
        time.sleep(0.2)  # a signal, had one been sent, has been delivered by now
        assert bystander.poll() is None, f"the unrelated process was signalled (exit {bystander.returncode})"
        assert user.returncode == 0, err  # the server started (and answered) all the same
        assert out.strip() == url
        assert not _servers(pgdata)  # and stopped when that run ended
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("crash", ["SIGKILL", "os._exit"])
def test_after_a_crash_the_next_run_stops_the_server_when_it_ends(pgdata: Path, crash: str) -> None:
    first = _python(USER, str(pgdata), "wait" if crash == "SIGKILL" else crash)
    url = first.stdout.readline().strip()
    if crash == "SIGKILL":
        first.send_signal(signal.SIGKILL)
    assert first.wait(30) != 0
    assert url.startswith("postgresql+psycopg2://"), first.stderr.read()
    [postmaster] = _servers(pgdata)  # left running by the crashed run
    assert _select_one(url) == 1

    assert _run_user(pgdata) == url  # the next run uses the running server...
    assert _ended(postmaster), "the server outlived the last run that used it"  # ...and stops it
    assert not _servers(pgdata)


def test_a_run_killed_while_pg_ctl_starts_the_server_leaves_it_to_the_next_run_to_stop(pgdata: Path) -> None:
    # The postmaster outlives a run SIGKILLed during `pg_ctl -w start`, before that run could
    # record it as its own; the next run used to take it for one started by hand and leave it up.
    first = _python(USER, str(pgdata), "exit")
    deadline = time.monotonic() + 30
    while not _pg_ctl_starting(pgdata):
        assert time.monotonic() < deadline and first.poll() is None, "pg_ctl start was never seen"
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    deadline = time.monotonic() + 30
    while not (servers := _servers(pgdata)):
        assert time.monotonic() < deadline, "the postmaster did not come up"
        time.sleep(0.05)
    [postmaster] = servers

    _run_user(pgdata)  # uses the running server, and stops it: these runs started it
    assert _ended(postmaster), "the server outlived the last run that used it"
    assert not _servers(pgdata)


def _pg_ctl_starting(pgdata: Path) -> bool:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(Path(part).name == "pg_ctl" for part in cmdline[:3]) and "start" in cmdline and str(pgdata) in cmdline:
            return True
    return False


def test_two_runs_share_one_data_directory_and_the_last_one_stops_it() -> None:
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    pgdata = root / "pgdata"
    # Both start at once on an empty directory: one initialises and starts it, the other shares it.
    first = _python(WRITER, str(pgdata), "first", "stop")
    second = _python(WRITER, str(pgdata), "second", "exit")
    try:
        assert first.stdout.readline().strip() == "ready", first.stderr.read()
        assert second.stdout.readline().strip() == "ready", second.stderr.read()
        [postmaster] = _servers(pgdata)

        # The first run ends (stop()) while the second is still writing.
        out, err = first.communicate("stop\n", timeout=60)
        assert first.returncode == 0, err
        first_ok, first_errors = map(int, out.split())
        assert first_ok > 0 and first_errors == 0
        assert not _ended(postmaster), "the server stopped under a run still using it"
        time.sleep(0.5)  # the second run keeps writing on its own

        out, err = second.communicate("stop\n", timeout=60)
        assert second.returncode == 0, err
        second_ok, second_errors = map(int, out.split())
        assert second_errors == 0, err
        assert second_ok > first_ok  # it wrote before, during and after the first run's end
        assert _ended(postmaster), "the server outlived the last run that used it"

        # Every write of both runs is there.
        server = EmbeddedPostgres(pgdata, cleanup_mode=None)
        engine = create_engine(server.start(), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                rows = {who: conn.execute(text(f"SELECT count(*) FROM writes_{who}")).scalar_one()
                        for who in ("first", "second")}
        finally:
            engine.dispose()
            server.stop()
        assert rows == {"first": first_ok, "second": second_ok}
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for proc in _servers(pgdata):
            proc.terminate()
            psutil.wait_procs([proc], timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def test_a_server_started_by_hand_is_used_and_left_running(pgdata: Path) -> None:
    from workers.postmaster import bin_dir

    # As root the server runs as the data directory's owner (PostgreSQL refuses root).
    owner = {"user": pgdata.stat().st_uid} if os.geteuid() == 0 else {}
    pg_ctl = [str(bin_dir() / "pg_ctl"), "-D", str(pgdata), "-w"]
    subprocess.run([*pg_ctl, "-l", str(pgdata / "by-hand.log"), "-o", f"-h '' -k {pgdata}", "start"],
                   check=True, capture_output=True, timeout=60, **owner)
    try:
        [postmaster] = _servers(pgdata)
        _run_user(pgdata)
        assert not _ended(postmaster), "a server its users did not start was stopped"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True, timeout=60, **owner)
