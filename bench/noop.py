"""No-op pipelines: the engine moving items and nothing else (engine overhead and memory scenarios)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bench.common import run_interruptible
from engine import PipelineConfig, PipelineExecutor, QueueConfig, RunReport, StageConfig, StageStatus
from engine.config import DEFAULT_MAXSIZE


class Count:
    """Source worker: the item is a count n; yields n fresh small strings, lazily."""

    def process(self, count: int) -> Iterator[str]:
        for number in range(count):
            yield f"item-{number}"


class Noop:
    """Passes each item on unchanged."""

    def process(self, item: Any) -> list[Any]:
        return [item]


def noop_config(
    items: int, stages: int, threads: int, maxsize: int = DEFAULT_MAXSIZE, name: str = "bench_noop"
) -> PipelineConfig:
    """A source of ``items`` items, then ``stages`` no-op stages of ``threads`` threads each.

    Queues are bounded (``maxsize``); the last stage is the sink.
    """
    queues = {f"q{i}": QueueConfig(f"q{i}", maxsize) for i in range(1, stages + 1)}
    configs = [StageConfig(name="source", worker_class=Count, input_values=(items,), output_queues=("q1",))]
    for i in range(1, stages + 1):
        configs.append(
            StageConfig(
                name=f"noop{i}",
                worker_class=Noop,
                instances=threads,
                input_queue=f"q{i}",
                output_queues=(f"q{i + 1}",) if i < stages else (),
            )
        )
    return PipelineConfig(queues=queues, stages=tuple(configs), name=name)


def _no_status(statuses: list[StageStatus]) -> None:
    pass


def run_noop(config: PipelineConfig, dead_letter: Any) -> RunReport:
    """Run a no-op pipeline; raise if any item went missing, ``KeyboardInterrupt`` if interrupted."""
    report = run_interruptible(PipelineExecutor(config, dead_letter=dead_letter, on_status=_no_status))
    source, sink = report.stages[0], report.stages[-1]
    if not report.ok or sink.items_out != source.items_out:
        raise RuntimeError(
            f"no-op pipeline lost items: exit {report.exit_code} ({report.reason}), "
            f"source {source.items_out}, sink {sink.items_out}"
        )
    return report
