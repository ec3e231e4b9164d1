"""Stop and resume: interrupt the history pipeline, replay its dead-letter file, get the same rows.

Also: replaying twice changes nothing, a replay feeds each item into the stage it was
bound for (a source gets only its replayed items), and a replay file that is not a
dead-letter file is refused in one line with exit code 2.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import load_pipeline
from engine.dead_letter import read_dead_letters
from engine.replay import ReplayError, read_replay
from engine.report import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OK
from tests.engine import workers as engine_workers
from tests.engine.conftest import stage
from tests.faults.conftest import REPO, query, wait_until
from tests.faults.main_process import main_process  # noqa: F401 - a fixture
from tests.fixtures.database import empty_prices
from yaml_reader import YamlPipelineExecutor

HISTORY = REPO / "pipelines" / "crypto_history_pipeline.yaml"
COLUMNS = "symbol, exchange, price_date, open, high, low, close, volume"  # all but id and extracted_time


def _history_copy(directory: Path) -> Path:
    """The shipped history pipeline, made small: 10 symbols x 3 exchanges x 10 days, 4 fetchers."""
    document = yaml.safe_load(HISTORY.read_text())
    stages = {worker["name"]: worker for worker in document["workers"]}
    stages["WikiWorker"]["params"]["limit"] = 10
    stages["TaskPlanner"]["params"]["end"] = "2020-04-10"
    stages["PriceWorker"]["instances"] = 4
    path = directory / "crypto_history.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _rows(database_url: str) -> list[tuple[Any, ...]]:
    return query(database_url, f"SELECT {COLUMNS} FROM prices ORDER BY symbol, exchange, price_date")


def _stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["name"] == name)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_interrupted_history_run_then_replayed_gives_the_rows_of_an_uninterrupted_run(
    tmp_path, fault_server, main_process, clean_prices  # noqa: F811 - main_process is the fixture
):
    pipeline = _history_copy(tmp_path)
    fast = fault_server()

    # An uninterrupted run: the rows to get.
    whole = main_process(["--pipeline", str(pipeline)], fast.url, clean_prices)
    assert whole.wait() == EXIT_OK, whole.output[-3000:]
    expected = _rows(clean_prices)
    assert len(expected) > 100
    empty_prices(clean_prices)

    # The same pipeline interrupted once, mid-fetch, when the only source has long finished.
    slow = fault_server(sleep=0.05)
    cut = main_process(["--pipeline", str(pipeline)], slow.url, clean_prices)
    assert wait_until(lambda: slow.stats.requests >= 40 or cut.process.poll() is not None, 30)
    assert cut.process.poll() is None, f"the run ended before the interrupt:\n{cut.wait()}{cut.output}"
    cut.interrupt(signal.SIGINT)
    interrupted_at = time.monotonic()
    assert cut.wait() == EXIT_INTERRUPTED, cut.output[-3000:]
    assert time.monotonic() - interrupted_at < 10, cut.output[-3000:]
    assert "Traceback" not in cut.output, cut.output[-3000:]
    assert "--replay" in cut.output  # the summary says how to go on
    dead_letters = cut.dead_letter_path()
    entries = read_dead_letters(dead_letters)
    assert entries and {(e["stage"], e["kind"]) for e in entries} == {("PriceWorker", "interrupted")}
    partial = _rows(clean_prices)
    assert 0 < len(partial) < len(expected) and set(partial) <= set(expected)

    # Replaying its dead-letter file (into a new run with its own directory) completes the table.
    replay = main_process(["--pipeline", str(pipeline), "--replay", str(dead_letters)], fast.url, clean_prices)
    assert replay.wait() == EXIT_OK, replay.output[-3000:]
    assert f"replaying {len(entries)} item(s) from {dead_letters}: {len(entries)} into PriceWorker" in replay.output
    report = replay.report()
    assert _stage(report, "WikiWorker")["items_in"] == 0  # a source gets no input_values of its own
    assert _stage(report, "PriceWorker")["items_in"] == len(entries)
    assert replay.dead_letter_path() != dead_letters
    assert _rows(clean_prices) == expected

    # Replaying it again changes nothing: upserts.
    again = main_process(["--pipeline", str(pipeline), "--replay", str(dead_letters)], fast.url, clean_prices)
    assert again.wait() == EXIT_OK, again.output[-3000:]
    assert _rows(clean_prices) == expected


def test_replay_feeds_each_stage_and_a_source_only_its_replayed_items(tmp_path):
    key = uuid.uuid4().hex
    document = {
        "queues": [{"name": "numbers", "maxsize": 4}, {"name": "passed", "maxsize": 4}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 1000]], output_queues="numbers"),
            stage("Work", "Echo", instances=2, input_queue="numbers", output_queues="passed"),
            stage("Sink", "Collect", input_queue="passed", params={"key": key}),
        ],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(document))
    # More items for Work than its queue holds: they are all queued before the run, ahead of the source's.
    replay = {"Source": [[2000, 2003]], "Work": list(range(100, 150)), "Sink": ["x", "y"]}
    executor = YamlPipelineExecutor(path, run_dir=tmp_path / "runs", on_status=lambda s: None, replay=replay)
    report = executor.run()
    assert report.exit_code == EXIT_OK, report.reason
    expected = [*range(100, 150), 2000, 2001, 2002, "x", "y"]
    assert sorted(map(str, engine_workers.collected(key))) == sorted(map(str, expected))
    assert report.stage("Source").items_in == 1

    with pytest.raises(ValueError, match="no such stage"):
        YamlPipelineExecutor(path, run_dir=tmp_path / "runs", replay={"Nope": [1]})


def _write_entries(path: Path, *lines: Any) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def _entry(stage: str, item: Any, kind: str = "failed") -> dict[str, Any]:
    return {"time": "2026-01-01T00:00:00+00:00", "stage": stage, "kind": kind, "item": item,
            "error_type": "X", "message": "m"}


@pytest.fixture(scope="module")
def history() -> Any:
    return load_pipeline(HISTORY, {"PRICE_SERVER_URL": "http://127.0.0.1:9"})


@pytest.mark.parametrize("lines, message", [
    (["not json"], "replay.jsonl:1: not a dead-letter entry (not JSON"),
    ([[1, 2]], "replay.jsonl:1: not a dead-letter entry (a JSON list, not an object)"),
    ([{"stage": "PriceWorker", "kind": "failed"}], "replay.jsonl:1: not a dead-letter entry (no item)"),
    ([_entry("PriceWorker", "btc"), _entry("PriceWorker", "btc", kind="odd")], "replay.jsonl:2: unknown kind 'odd'"),
    ([_entry("Fetcher", "btc")], "replay.jsonl:1: stage 'Fetcher' is not in pipeline crypto_history"),
    ([], "nothing to replay in"),
])
def test_a_malformed_replay_file_is_refused_in_one_line(tmp_path, history, lines, message):
    path = _write_entries(tmp_path / "replay.jsonl", *lines)
    with pytest.raises(ReplayError) as caught:
        read_replay(path, history)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_items_a_worker_cannot_take_again_are_skipped_and_counted(tmp_path, history):
    row = {"page": "http://127.0.0.1:9/wiki", "row": 7, "column": "Symbol", "cell": "<td>…</td>"}
    task = {"symbol": "btc", "exchange": "kraken", "date": "2020-04-02"}
    path = _write_entries(
        tmp_path / "replay.jsonl",
        _entry("WikiWorker", row), _entry("WikiWorker", "http://127.0.0.1:9/wiki", kind="lost"),
        _entry("PriceWorker", task, kind="interrupted"), _entry("PostgresWorker", None),
    )
    replay = read_replay(path, history)
    assert replay.items == {"WikiWorker": ["http://127.0.0.1:9/wiki"], "PriceWorker": [task]}
    assert replay.skipped == {
        ("WikiWorker", "a failed table row is read again only by replaying its page"): 1,
        ("PostgresWorker", "no item was recorded"): 1,
    }
    assert any("skipped 1 WikiWorker item(s)" in line for line in replay.describe())


@pytest.mark.parametrize("content", ["{not json\n", json.dumps(_entry("Fetcher", "btc")) + "\n"])
def test_main_py_refuses_a_bad_replay_file_with_one_line_and_exit_2(tmp_path, main_process, content):  # noqa: F811
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    run = main_process(["--pipeline", str(HISTORY), "--replay", str(path)], "http://127.0.0.1:9", "sqlite://")
    assert run.wait(30) == EXIT_CONFIG, run.output
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:1: "), run.output


def test_main_py_refuses_to_replay_the_file_the_run_would_append_to(tmp_path, main_process):  # noqa: F811
    path = _write_entries(tmp_path / "failed.jsonl", _entry("PriceWorker", "btc"))
    document = yaml.safe_load(HISTORY.read_text())
    document["dead_letter"] = str(path)
    pipeline = tmp_path / "history.yaml"
    pipeline.write_text(yaml.safe_dump(document, sort_keys=False))
    run = main_process(["--pipeline", str(pipeline), "--replay", str(path)], "http://127.0.0.1:9", "sqlite://")
    assert run.wait(30) == EXIT_CONFIG, run.output
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path} is the pipeline's dead_letter file"), run.output
    assert path.read_text().count("\n") == 1  # untouched


def test_a_price_record_dead_letter_comes_back_as_a_row_the_writer_stores(tmp_path, clean_prices):
    from engine.dead_letter import DeadLetterFile
    from workers.postgres_worker import PostgresWorker
    from workers.records import PriceRecord

    record = PriceRecord("BTC", "kraken", dt.date(2020, 4, 2), 1.0, 2.0, 0.5, 1.5, 10.0,
                         dt.datetime(2020, 4, 3, tzinfo=dt.timezone.utc))
    dead_letters = DeadLetterFile(tmp_path / "failed.jsonl")
    dead_letters.open()
    dead_letters.write("PostgresWorker", "interrupted", record, "NotProcessed", "interrupted")
    dead_letters.close()
    (item,) = read_dead_letters(tmp_path / "failed.jsonl")
    writer = PostgresWorker(database_url=clean_prices)
    try:
        writer.process_batch([item["item"]])
    finally:
        writer.close()
    assert query(clean_prices, f"SELECT {COLUMNS} FROM prices") == [
        ("BTC", "kraken", dt.date(2020, 4, 2), 1.0, 2.0, 0.5, 1.5, 10.0)
    ]
