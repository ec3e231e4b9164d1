"""Starting a run: its own directory inside run_dir, and bounded log lines whatever the items hold."""

from __future__ import annotations

import logging
import threading

import pytest

from engine import PipelineConfig, PipelineConfigError, PipelineExecutor, QueueConfig, StageConfig
from engine.executor import reserve_run_dir
from tests.engine import workers


def _config(name: str = "p", key: str = "k") -> PipelineConfig:
    return PipelineConfig(
        queues={"q": QueueConfig("q")},
        stages=(
            StageConfig("Src", workers.Range, input_values=([0, 3],), output_queues=("q",)),
            StageConfig("Sink", workers.Collect, input_queue="q", params={"key": key}),
        ),
        name=name,
    )


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path):
    count = 40
    executors = [PipelineExecutor(_config(), run_dir=tmp_path, on_status=lambda s: None) for _ in range(count)]
    barrier = threading.Barrier(count)
    reports = []

    def run(executor: PipelineExecutor) -> None:
        barrier.wait()
        reports.append(executor.run())

    threads = [threading.Thread(target=run, args=(e,)) for e in executors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(reports) == count and all(r.ok for r in reports)
    paths = {e.run_path for e in executors}
    assert len(paths) == count and all(p.parent == tmp_path and p.is_dir() for p in paths)


def test_a_run_directory_with_a_taken_name_gets_another(tmp_path, monkeypatch):
    first = reserve_run_dir(tmp_path, "p")
    # The same microsecond, as on a coarse clock: the atomic mkdir sees the name is taken.
    import engine.executor as executor_module

    class Frozen(executor_module.dt.datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001
            return executor_module.dt.datetime.strptime(first.name.split("-p")[0], "%Y%m%d-%H%M%S.%f")

    monkeypatch.setattr(executor_module.dt, "datetime", Frozen)
    second, third = reserve_run_dir(tmp_path, "p"), reserve_run_dir(tmp_path, "p")
    assert len({first, second, third}) == 3 and second.name == first.name + "-2"


@pytest.mark.parametrize("name", ["../../escape", "/etc/cron.d/x", "..", "a\\..\\b", "x" * 500, "\x00", ""])
def test_the_run_directory_stays_inside_run_dir_whatever_the_name(tmp_path, name):
    path = reserve_run_dir(tmp_path / "runs", name)
    assert path.parent == tmp_path / "runs" and path.resolve().parent == (tmp_path / "runs").resolve()
    assert len(path.name) < 100


@pytest.mark.parametrize("name", ["../../escape", "a/b", "ok\nnext line"])
def test_a_config_built_in_python_with_a_bad_name_is_refused(tmp_path, name):
    with pytest.raises(PipelineConfigError, match="name: the pipeline name"):
        PipelineExecutor(_config(name=name), run_dir=tmp_path)


def test_a_queue_no_stage_uses_is_refused_before_the_monitor_could_trip_on_it(tmp_path):
    config = _config()
    config = PipelineConfig(queues={**config.queues, "spare": QueueConfig("spare")}, stages=config.stages)
    with pytest.raises(PipelineConfigError, match="queue spare: queue 'spare' is declared but no stage uses it"):
        PipelineExecutor(config, run_dir=tmp_path)


def test_engine_log_lines_stay_short_whatever_the_item_and_error(tmp_path, caplog):
    huge = 5_000_000
    config = PipelineConfig(
        queues={"q": QueueConfig("q")},
        stages=(
            StageConfig("Src", workers.Huge, input_values=(huge, huge), output_queues=("q",)),
            StageConfig("Sink", workers.FailHuge, input_queue="q"),
            ),
    )
    caplog.set_level(logging.INFO, logger="engine")
    report = PipelineExecutor(config, run_dir=tmp_path, on_status=lambda s: None).run()
    assert report.stage("Sink").failed == 2
    engine_records = [r for r in caplog.records if r.name.startswith("engine")]
    assert engine_records and max(len(r.getMessage()) for r in engine_records) < 1500
    assert all("\n" not in r.getMessage() for r in engine_records)


class _ExitsInPrepare:
    @classmethod
    def prepare_stage(cls, params: dict) -> None:
        raise SystemExit("the service\nis not there")

    def process(self, item: object) -> None:  # pragma: no cover - never reached
        return None


def test_a_prepare_stage_that_calls_sys_exit_is_a_one_line_setup_error(tmp_path):
    from engine import StageSetupError

    config = PipelineConfig(queues={}, stages=(StageConfig("Check", _ExitsInPrepare, input_values=(1,)),))
    with pytest.raises(StageSetupError) as caught:
        PipelineExecutor(config, run_dir=tmp_path).run()
    assert str(caught.value) == "stage Check cannot start: the service is not there"
    assert list(tmp_path.iterdir()) == []


def test_a_worker_with_bad_counters_and_sys_exit_in_close_still_ends_its_thread_cleanly(tmp_path, caplog):
    seen: list[object] = []
    previous, threading.excepthook = threading.excepthook, seen.append
    try:
        config = PipelineConfig(
            queues={"q": QueueConfig("q")},
            stages=(
                StageConfig("Src", workers.Range, input_values=([0, 5],), output_queues=("q",)),
                StageConfig("Rude", workers.BadManners, instances=2, input_queue="q"),
            ),
        )
        report = PipelineExecutor(config, run_dir=tmp_path, on_status=lambda s: None).run()
    finally:
        threading.excepthook = previous
    assert not seen  # no thread died with a traceback
    assert report.stage("Rude").items_out == 5 and report.stage("Rude").state == "done"
    # Each close() failure is recorded: one per thread that took an item and so built a worker.
    assert report.stage("Rude").failed in (1, 2)
    assert any("counters cannot be summed" in r.getMessage() for r in caplog.records)
