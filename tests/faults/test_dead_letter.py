"""The dead-letter file is part of the promise: checked at start, and a failure mid-run is loud and counted."""

from __future__ import annotations

import threading

import pytest

from engine import PipelineConfig, PipelineExecutor, QueueConfig, RunStartError, StageConfig
from engine.dead_letter import DeadLetterError, read_dead_letters
from engine.report import EXIT_UNRECORDED
from tests.engine import workers


def _config(values: int = 60, every: int = 3, instances: int = 2) -> PipelineConfig:
    return PipelineConfig(
        queues={"q": QueueConfig("q", maxsize=5)},
        stages=(
            StageConfig("Src", workers.Range, input_values=tuple([n, n + 1] for n in range(1, values + 1)),
                        output_queues=("q",)),
            StageConfig("Sink", workers.FailSome, instances=instances, input_queue="q", params={"every": every}),
        ),
        name="dead",
        monitor_interval=0.05,
    )


@pytest.fixture
def thread_errors():
    """Exceptions that escaped any thread (there must be none)."""
    seen: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = seen.append
    yield seen
    threading.excepthook = previous


def test_a_full_disk_mid_run_stops_the_run_and_counts_every_item_not_recorded(tmp_path, thread_errors, caplog):
    executor = PipelineExecutor(_config(), run_dir=tmp_path, dead_letter="/dev/full", on_status=lambda s: None)
    report = executor.run()
    assert report.exit_code == EXIT_UNRECORDED == 3
    assert report.dead_letters == 0 and report.unrecorded > 0
    assert report.unrecorded == sum(s.failed + s.lost for s in report.stages)  # every one counted
    assert report.reason.startswith("cannot write the dead-letter file /dev/full: No space left on device; ")
    assert report.stage("Src").state == "stopped"  # no new work once failures cannot be recorded
    assert not thread_errors
    assert not [r for r in caplog.records if "died" in r.getMessage() or r.exc_info]
    broken = [r for r in caplog.records if "cannot write the dead-letter file" in r.getMessage()]
    assert len(broken) == 1  # said once, not once per item


def test_items_json_cannot_hold_are_still_recorded_and_no_thread_dies(tmp_path, thread_errors):
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    loop: list[object] = []
    loop.append(loop)
    config = PipelineConfig(
        queues={},
        stages=(StageConfig("Src", workers.Die, input_values=(loop, Unprintable(), "plain"), max_restarts=5),),
        name="odd",
    )
    report = PipelineExecutor(config, run_dir=tmp_path, on_status=lambda s: None).run()
    entries = read_dead_letters(report.dead_letter_path)
    assert report.dead_letters == len(entries) == 3 and report.unrecorded == 0
    assert {e["item"] for e in entries} == {"[[...]]", "<Unprintable that cannot be shown: RuntimeError>", "plain"}
    assert not thread_errors


@pytest.mark.parametrize(
    "where, fragment",
    [("{tmp}", "Is a directory"), ("{tmp}/file/dead.jsonl", "Not a directory"), ("/proc/dead.jsonl", "No such file"),
     # Python 3.11 says "embedded null byte", 3.13 "embedded null character in path".
     ("{tmp}/nul\0.jsonl", "embedded null")],
)
def test_an_unwritable_dead_letter_path_is_refused_before_anything_runs(tmp_path, where, fragment):
    (tmp_path / "file").write_text("x")
    path = where.format(tmp=tmp_path)
    key = f"k-{tmp_path.name}"
    config = PipelineConfig(
        queues={"q": QueueConfig("q")},
        stages=(
            StageConfig("Src", workers.Range, input_values=([0, 5],), output_queues=("q",)),
            StageConfig("Sink", workers.Collect, input_queue="q", params={"key": key}),
        ),
    )
    executor = PipelineExecutor(config, run_dir=tmp_path / "runs", dead_letter=path, on_status=lambda s: None)
    with pytest.raises(DeadLetterError) as caught:
        executor.run()
    assert isinstance(caught.value, RunStartError)
    assert str(caught.value) == f"cannot write the dead-letter file {path}: {fragment}" or fragment in str(caught.value)
    assert workers.collected(key) == []  # nothing ran
    assert list((tmp_path / "runs").iterdir()) == []  # and nothing was left behind


def test_an_existing_dead_letter_file_is_appended_to_and_a_clean_run_leaves_none(tmp_path):
    existing = tmp_path / "old.jsonl"
    existing.write_text('{"kept": true}\n')
    report = PipelineExecutor(_config(values=6), run_dir=tmp_path, dead_letter=existing, on_status=lambda s: None).run()
    lines = read_dead_letters(existing)
    assert lines[0] == {"kept": True} and len(lines) == 1 + report.dead_letters == 1 + 2
    clean = tmp_path / "a" / "b" / "clean.jsonl"
    report = PipelineExecutor(_config(values=6, every=1000), run_dir=tmp_path, dead_letter=clean,
                              on_status=lambda s: None).run()
    assert report.ok and not (tmp_path / "a").exists()
