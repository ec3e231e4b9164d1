"""A hostile user's review of the promises: cases the first round of hardening did not try."""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from engine.channel import Channel
from engine.dead_letter import DeadLetterError, DeadLetterFile, read_dead_letters
from engine.report import EXIT_OK
from engine.stage import _WAKEUPS_PER_SECOND
from tests.engine import workers
from workers.database import DatabaseUnavailable
from workers.postgres_worker import PostgresWorker
from tests.engine.conftest import stage
from yaml_reader import YamlPipelineExecutor

REPO = Path(__file__).resolve().parents[2]


def test_idle_threads_wake_within_a_budget_however_many_there_are(run_pipeline, monkeypatch):
    # 3,000 threads waiting for items: polling every 0.1 s each, they took the GIL 30,000 times a
    # second, and with 10,000 the monitor never got to send their pills (a run of 5 items ran for hours).
    calls = itertools.count()
    get_many = Channel.get_many

    def counted(self, *args, **kwargs):
        next(calls)
        return get_many(self, *args, **kwargs)

    monkeypatch.setattr(Channel, "get_many", counted)
    key, threads = uuid.uuid4().hex, 3000
    started = time.monotonic()
    report = run_pipeline({
        "queues": [{"name": "q"}],
        "workers": [
            stage("Src", "Slow", input_values=[1], output_queues="q", params={"delay": 2.0}),
            stage("Sink", "Collect", instances=threads, input_queue="q", params={"key": key}),
        ],
    })
    elapsed = time.monotonic() - started
    assert report.exit_code == EXIT_OK, report.reason
    assert workers.collected(key) == [1]
    # Each thread takes its pill (or the item) once; beyond that, idle wake-ups stay within the budget.
    budget = 2 * (threads + _WAKEUPS_PER_SECOND * elapsed)
    assert next(calls) < budget, f"{elapsed:.1f}s"
    assert elapsed < 60  # ends, not crawls: about 5 s (before, 90 s on a busy machine)


def test_waiting_takers_wake_at_once_when_woken():
    # A stop must not wait for a long poll to run out.
    channel = Channel(4)
    outcome: list[str] = []

    def take() -> None:
        try:
            channel.get_many(1, timeout=30)
        except queue.Empty:
            outcome.append("woken")

    thread = threading.Thread(target=take)
    thread.start()
    time.sleep(0.2)  # let it wait
    channel.wake_all()
    thread.join(10)
    assert outcome == ["woken"]


def test_a_dead_letter_path_naming_the_pipeline_file_is_refused(tmp_path):
    # Appending JSON lines to it would corrupt the very file the user runs.
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"dead_letter: {path}\n"
        "queues: [{name: q}]\n"
        "workers:\n"
        f"  - {{name: Src, location: {workers.__name__}, class: Range, input_values: [[0, 4]], output_queues: q}}\n"
        f"  - {{name: Sink, location: {workers.__name__}, class: FailSome, input_queue: q, params: {{every: 2}}}}\n"
    )
    before = path.read_bytes()
    executor = YamlPipelineExecutor(path, run_dir=tmp_path / "runs")
    with pytest.raises(DeadLetterError, match="already holds something other than dead letters"):
        executor.run()
    assert path.read_bytes() == before
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_dead_letter_file_of_an_earlier_run_is_appended_to(tmp_path):
    path = tmp_path / "failed.jsonl"
    for _ in range(2):
        dead_letters = DeadLetterFile(path)
        dead_letters.open()
        dead_letters.write("Sink", "failed", 1, "ValueError", "bad")
        dead_letters.close()
    assert [entry["item"] for entry in read_dead_letters(path)] == [1, 1]


@pytest.mark.parametrize("writes_after", [0, 1])
def test_a_dead_letter_file_deleted_during_the_run_counts_its_entries_as_unrecorded(tmp_path, writes_after):
    # Writes into an unlinked file succeed, but nobody can read them: the run must not say they are there.
    path = tmp_path / "d" / "failed.jsonl"
    dead_letters = DeadLetterFile(path)
    dead_letters.open()
    dead_letters.write("Sink", "failed", 1, "ValueError", "bad")
    shutil.rmtree(tmp_path / "d")
    for _ in range(writes_after):
        dead_letters.write("Sink", "failed", 2, "ValueError", "bad")
    dead_letters.close()
    assert dead_letters.broken is not None and "deleted during the run" in dead_letters.broken
    assert (dead_letters.count, dead_letters.unrecorded) == (0, 1 + writes_after)


@pytest.mark.parametrize("query", ["password=S3cretPW", "sslmode=require&sslpassword=S3cretPW", "PASSWORD=S3cretPW"])
def test_a_password_given_as_a_query_parameter_is_masked_in_error_lines(query):
    url = f"postgresql://u@127.0.0.1:1/db?{query}"
    with pytest.raises(DatabaseUnavailable) as caught:
        PostgresWorker.prepare_stage({"database_url": url})
    assert "S3cretPW" not in str(caught.value) and "***" in str(caught.value)


def test_sigterm_while_the_price_server_is_probed_is_an_interrupt(tmp_path):
    # Before the run installs its handlers, SIGTERM used to kill main.py silently (143).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        env = {
            **os.environ,
            "PRICE_SERVER_URL": f"http://127.0.0.1:{listener.getsockname()[1]}",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'prices.db'}",
        }
        process = subprocess.Popen(
            [sys.executable, "main.py", "--no-progress", "--run-dir", str(tmp_path / "runs"),
             "--pipeline", "pipelines/wiki_crypto_pipeline.yaml"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            listener.settimeout(20)
            connection, _ = listener.accept()  # the probe is waiting for an answer now
            with connection:
                process.send_signal(signal.SIGTERM)
                _, stderr = process.communicate(timeout=20)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["interrupted"]
