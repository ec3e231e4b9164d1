"""Pipeline configuration: dataclasses, and their validation from a YAML file.

A pipeline is a set of named bounded queues and a list of stages. A stage is
``instances`` threads, each with its own worker object, that take items from
``input_queue`` (or, for a source stage, from its ``input_values``) and put
every output on each of ``output_queues``.

:func:`load_pipeline` turns a YAML file into a :class:`PipelineConfig`; every
problem becomes a :class:`PipelineConfigError` naming the file, the line and
the field. A :class:`PipelineConfig` can also be built directly in Python.

Limits (checked by :meth:`PipelineConfig.check`, so a config built in Python
meets them too): at most ``MAX_INSTANCES`` threads per stage and
``MAX_THREADS`` in all, at most ``MAX_STAGES`` stages, names of at most
``MAX_NAME`` characters without control characters, and a pipeline ``name``
that is safe in a directory name (no ``/``, ``\\`` or ``..``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn

from engine.errors import PipelineConfigError
from engine.text import describe, one_line, short_repr
from engine.yaml_source import MarkedDict, MarkedList, load_yaml

DEFAULT_MAXSIZE = 1000

# Every thread reserves a stack (8 MB of address space on Linux) and two memory maps;
# Linux allows 65,530 maps per process (vm.max_map_count), so about 30,000 threads is a
# hard ceiling, and far fewer fit where ulimit -u is lower. The limits leave room below it
# for the libraries' own maps and threads, and turn a typo such as 1000000 into one line
# instead of a process that runs out of threads or memory half-way through starting.
MAX_INSTANCES = 10_000  # threads in one stage
MAX_THREADS = 20_000  # threads in all stages together
MAX_STAGES = 200  # a pipeline is a handful of stages; this bounds the graph checks
MAX_NAME = 100  # characters in a pipeline, stage or queue name

# ``instances: auto``: the pool size moves between min_instances and max_instances (see engine.autoscale).
AUTO = "auto"
AUTO_MIN_INSTANCES = 1  # default min_instances
AUTO_MAX_INSTANCES = 1000  # default max_instances
AUTO_START_INSTANCES = 32  # an auto pool starts here (raised to min_instances, lowered to max_instances)

# ``executor:``: what runs the stages. "threads" is engine.PipelineExecutor in this process;
# "ray" is ray_executor.RayPipelineExecutor on a Ray cluster (the same config, another engine).
EXECUTORS = ("threads", "ray")


@dataclass(frozen=True)
class MaxFailures:
    """How many failures a run may have and still succeed (exit 0): ``max_failures`` in the file.

    A failure is an item a stage failed (its worker raised on it, or its thread died holding it)
    or lost (never processed: its stage died or was stopped). An item a worker answered with
    nothing (PriceWorker's ``no_data``) is not a failure. Every stage counts its own, so an item
    that fails in one stage is one failure.

    Either ``count`` (a whole number of failures) or ``percent`` (0 to 100) of the item
    attempts: the items all stages took in plus those they lost, so an item that passes through
    three stages is three attempts. ``MaxFailures.parse`` reads ``5``, ``"5"`` or ``"2.5%"``.
    """

    count: int | None = 0
    percent: Fraction | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise ValueError("give either a count or a percent")
        whole = isinstance(self.count, int) and not isinstance(self.count, bool)
        if self.count is not None and not (whole and self.count >= 0):
            raise ValueError(f"the count must be a whole number >= 0, not {self.count!r}")
        if self.percent is not None and not 0 <= self.percent <= 100:
            raise ValueError(f"the percentage must be from 0 to 100, not {self.percent}")

    @classmethod
    def parse(cls, value: Any) -> "MaxFailures":
        """``5``, ``"5"`` or ``"2.5%"`` (as written in the file or given as ``--max-failures``).

        Raises ``ValueError`` with a message fit to show (what is accepted, and what was given).
        """
        text = value.strip() if isinstance(value, str) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return cls(count=value)
        if text is not None and re.fullmatch(r"[0-9]{1,18}", text):
            return cls(count=int(text))
        if text is not None and re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,6})?\s*%", text):
            percent = Fraction(text.rstrip("%").strip())
            if percent <= 100:
                return cls(count=None, percent=percent)
        raise ValueError(
            f"must be a whole number of failures >= 0 or a percentage from 0% to 100% "
            f"(such as 5 or \"2.5%\"), not {short_repr(value)}"
        )

    def allows(self, failures: int, attempts: int) -> bool:
        """Whether ``failures`` out of ``attempts`` item attempts are within the allowance."""
        if self.count is not None:
            return failures <= self.count
        assert self.percent is not None
        return failures * 100 <= self.percent * attempts  # exact: no rounding at the boundary

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        assert self.percent is not None
        return f"{float(self.percent):g}%"


@dataclass(frozen=True)
class QueueConfig:
    """A bounded queue between stages; a full queue makes its producers wait (backpressure)."""

    name: str
    maxsize: int = DEFAULT_MAXSIZE
    description: str = ""


@dataclass(frozen=True)
class AutoInstances:
    """``instances: auto``: the engine sizes the pool itself, from ``min_instances`` to ``max_instances`` threads."""

    min_instances: int = AUTO_MIN_INSTANCES
    max_instances: int = AUTO_MAX_INSTANCES

    @property
    def start(self) -> int:
        """The pool size a run starts with."""
        return max(self.min_instances, min(self.max_instances, AUTO_START_INSTANCES))


@dataclass(frozen=True)
class StageConfig:
    """A pool of worker threads, one ``worker_class(**params)`` object per thread."""

    name: str
    worker_class: type
    instances: int = 1
    input_queue: str | None = None
    input_values: tuple[Any, ...] = ()
    output_queues: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    batch_timeout: float = 1.0
    max_restarts: int = 3
    description: str = ""
    # Set for ``instances: auto``; ``instances`` is then the size the pool starts with (``auto.start``).
    auto: AutoInstances | None = None

    @property
    def max_threads(self) -> int:
        """The most threads this stage can have at once: ``instances``, or ``max_instances`` when auto."""
        return self.instances if self.auto is None else self.auto.max_instances

    @property
    def is_source(self) -> bool:
        return self.input_queue is None

    @property
    def is_sink(self) -> bool:
        return not self.output_queues


@dataclass(frozen=True)
class PipelineConfig:
    """Queues and stages; :meth:`check` raises :class:`PipelineConfigError` if they cannot run."""

    queues: Mapping[str, QueueConfig]
    stages: tuple[StageConfig, ...]
    name: str = "pipeline"
    monitor_interval: float = 1.0
    dead_letter: Path | None = None
    max_failures: MaxFailures = MaxFailures()
    executor: str = "threads"  # one of EXECUTORS; ``python main.py --executor`` wins over it

    def stage(self, name: str) -> StageConfig:
        return next(s for s in self.stages if s.name == name)

    def producers(self, queue: str) -> list[StageConfig]:
        return [s for s in self.stages if queue in s.output_queues]

    def consumers(self, queue: str) -> list[StageConfig]:
        return [s for s in self.stages if s.input_queue == queue]

    def check(self) -> None:
        """Check names, limits and the graph: every queue declared, produced and consumed once, no cycles."""
        problem = _pipeline_name_problem(self.name)
        if problem:
            raise PipelineConfigError(f"the pipeline name {problem}", where="name")
        if not isinstance(self.max_failures, MaxFailures):
            raise PipelineConfigError(
                f"must be a MaxFailures, such as MaxFailures.parse('2.5%'), not {short_repr(self.max_failures)}",
                where="max_failures",
            )
        if self.executor not in EXECUTORS:
            raise PipelineConfigError(
                f"must be one of {', '.join(EXECUTORS)}, not {short_repr(self.executor)}", where="executor"
            )
        if not self.stages:
            raise PipelineConfigError("the pipeline has no stages", where="workers")
        if len(self.stages) > MAX_STAGES:
            raise PipelineConfigError(f"{len(self.stages)} stages; at most {MAX_STAGES} are allowed", where="workers")
        names = [s.name for s in self.stages]
        for name in set(names):
            if names.count(name) > 1:
                raise PipelineConfigError(f"two stages are named '{name}'", where=f"stage {name}")
        for stage in self.stages:
            _check_stage(stage, self.queues)
        threads = sum(s.max_threads for s in self.stages)
        if threads > MAX_THREADS:
            auto = " (max_instances for instances: auto)" if any(s.auto for s in self.stages) else ""
            raise PipelineConfigError(
                f"the stages have {threads:,} threads in all{auto}; at most {MAX_THREADS:,} are allowed",
                where="workers",
            )
        for queue in self.queues:
            problem = _name_problem(queue)
            if problem:
                raise PipelineConfigError(f"the queue name {problem}", where=f"queue {queue}")
            producers, consumers = self.producers(queue), self.consumers(queue)
            if not producers and not consumers:
                # The monitor would have no stage to send its pills to or to account its items to.
                raise PipelineConfigError(
                    f"queue '{queue}' is declared but no stage uses it; remove it, or name it in a stage's "
                    "input_queue and another's output_queues",
                    where=f"queue {queue}",
                )
            if len(consumers) > 1:
                listed = " and ".join(s.name for s in consumers)
                raise PipelineConfigError(
                    f"stages {listed} both take from queue '{queue}', which would split its items "
                    "between them; give each its own queue and list both in the producer's output_queues",
                    where=f"stage {consumers[1].name}.input_queue",
                )
            if consumers and not producers:
                raise PipelineConfigError(
                    f"queue '{queue}' has a consumer but no stage writes to it",
                    where=f"stage {consumers[0].name}.input_queue",
                )
            if producers and not consumers:
                raise PipelineConfigError(
                    f"queue '{queue}' is written to but no stage takes from it",
                    where=f"stage {producers[0].name}.output_queues",
                )
        _check_acyclic(self)


def _check_stage(stage: StageConfig, queues: Mapping[str, QueueConfig]) -> None:
    where = f"stage {stage.name}"
    problem = _name_problem(stage.name)
    if problem:
        raise PipelineConfigError(f"the stage name {problem}", where=where)
    if not isinstance(stage.instances, int) or not 1 <= stage.instances <= MAX_INSTANCES:
        raise PipelineConfigError(
            f"must be from 1 to {MAX_INSTANCES:,} (threads in this stage), not {stage.instances!r}",
            where=f"{where}.instances",
        )
    if stage.auto is not None:
        _check_auto(stage, where)
    if stage.input_queue is not None and stage.input_queue not in queues:
        raise PipelineConfigError(_unknown_queue(stage.input_queue, queues), where=f"{where}.input_queue")
    for queue in stage.output_queues:
        if queue not in queues:
            raise PipelineConfigError(_unknown_queue(queue, queues), where=f"{where}.output_queues")
    if stage.is_source and not stage.input_values:
        raise PipelineConfigError(
            "a stage without input_queue is a source and needs input_values", where=f"{where}.input_values"
        )
    if not stage.is_source and stage.input_values:
        raise PipelineConfigError(
            "a stage takes either input_queue or input_values, not both", where=f"{where}.input_values"
        )
    cls = stage.worker_class
    if stage.batch_size is not None and not callable(getattr(cls, "process_batch", None)):
        raise PipelineConfigError(
            f"batch_size is set but {cls.__name__} has no process_batch(items) method", where=f"{where}.batch_size"
        )
    if stage.batch_size is None and not callable(getattr(cls, "process", None)):
        hint = "; it has process_batch(items): set batch_size" if callable(getattr(cls, "process_batch", None)) else ""
        raise PipelineConfigError(f"{cls.__name__} has no process(item) method{hint}", where=f"{where}.class")
    try:
        inspect.signature(cls).bind(**stage.params)
    except TypeError as exc:
        raise PipelineConfigError(f"{cls.__name__}: {exc}", where=f"{where}.params") from None
    except ValueError:
        pass  # some classes (builtins, C types) have no introspectable signature


def _check_auto(stage: StageConfig, where: str) -> None:
    """The bounds of ``instances: auto``, and that the stage can be resized at all."""
    auto = stage.auto
    if not isinstance(auto, AutoInstances):
        raise PipelineConfigError(f"must be an AutoInstances or None, not {short_repr(auto)}", where=f"{where}.auto")
    for key in ("min_instances", "max_instances"):
        value = getattr(auto, key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INSTANCES:
            raise PipelineConfigError(
                f"must be from 1 to {MAX_INSTANCES:,} (threads in this stage), not {value!r}", where=f"{where}.{key}"
            )
    if auto.min_instances > auto.max_instances:
        raise PipelineConfigError(
            f"must be at least min_instances ({auto.min_instances:,}), not {auto.max_instances:,}",
            where=f"{where}.max_instances",
        )
    if stage.is_source:
        # A source's values are all known at the start, and its pills go in at once: nothing to adapt to.
        raise PipelineConfigError(
            "instances: auto needs an input_queue; a source stage (input_values) takes a number",
            where=f"{where}.instances",
        )
    if stage.instances != auto.start:
        raise PipelineConfigError(
            f"must be {auto.start} (where the auto pool starts) when auto is set, not {stage.instances!r}",
            where=f"{where}.instances",
        )


def _name_problem(name: str) -> str | None:
    """What is wrong with a stage or queue name (shown in logs, one line each), or None."""
    if len(name) > MAX_NAME:
        return f"is {len(name):,} characters long; at most {MAX_NAME} are allowed"
    for char in name:
        category = unicodedata.category(char)
        if category[0] == "C" or category in ("Zl", "Zp"):
            return f"holds the control character U+{ord(char):04X}"
    return None


def _pipeline_name_problem(name: str) -> str | None:
    """What is wrong with a pipeline name, which becomes part of the run directory's name, or None."""
    if not name.strip():
        return "is empty"
    if "/" in name or "\\" in name or ".." in name:
        return f"'{name[:MAX_NAME]}' holds a path separator or '..'; it names the run directory"
    return _name_problem(name)


def _unknown_queue(name: str, queues: Mapping[str, QueueConfig]) -> str:
    return f"queue '{name}' is not declared under queues{_suggest(name, queues)}"


def _check_acyclic(config: PipelineConfig) -> None:
    # Pills flow downstream only when every producer is done, so a cycle would never end.
    downstream = {
        s.name: [c.name for q in s.output_queues for c in config.consumers(q)] for s in config.stages
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting:
            loop = visiting[visiting.index(name):] + [name]
            raise PipelineConfigError(
                f"stages form a cycle ({' -> '.join(loop)}); a pipeline must flow one way", where=f"stage {name}"
            )
        if name in done:
            return
        visiting.append(name)
        for child in downstream[name]:
            visit(child)
        visiting.pop()
        done.add(name)

    for stage in config.stages:
        visit(stage.name)


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# ---------------------------------------------------------------------------
# From YAML


_PIPELINE_KEYS = (
    "name", "description", "queues", "workers", "monitor_interval", "dead_letter", "max_failures", "executor",
)  # fmt: skip
_QUEUE_KEYS = ("name", "description", "maxsize")
_STAGE_KEYS = (
    "name", "description", "location", "class", "instances", "input_queue", "input_values",
    "output_queues", "params", "batch_size", "batch_timeout", "max_restarts", "min_instances", "max_instances",
)  # fmt: skip


def load_pipeline(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    importer: Callable[[str], Any] = importlib.import_module,
) -> PipelineConfig:
    """Read, validate and resolve a pipeline file (imports each stage's worker module).

    ``env`` supplies ``${VAR}`` values (default ``os.environ``). Raises
    :class:`PipelineConfigError` with file, line and field on any problem.
    """
    source = str(path)
    document = load_yaml(path, env)
    if not isinstance(document, MarkedDict):
        kind = "empty" if document is None else "a list" if isinstance(document, list) else "a single value"
        raise PipelineConfigError(
            f"the top level must be a mapping with 'queues' and 'workers', not {kind}", source, 1
        )
    reader = _Reader(source, document, "")
    reader.no_unknown_keys(_PIPELINE_KEYS)

    queues: dict[str, QueueConfig] = {}
    queue_readers: dict[str, _Reader] = {}
    for item in reader.sections("queues", required=False):
        item.no_unknown_keys(_QUEUE_KEYS)
        name = item.name()
        if name in queues:
            item.fail("name", f"queue '{name}' is declared twice")
        queue_readers[name] = item
        queues[name] = QueueConfig(
            name=name,
            maxsize=item.positive_int("maxsize", DEFAULT_MAXSIZE),
            description=item.text("description", ""),
        )

    stages: list[StageConfig] = []
    stage_readers: dict[str, _Reader] = {}
    for item in reader.sections("workers", required=True):
        item.no_unknown_keys(_STAGE_KEYS)
        name = item.name()
        if name in stage_readers:
            item.fail("name", f"two stages are named '{name}'")
        stage_readers[name] = item
        auto = item.auto_instances()
        stages.append(
            StageConfig(
                name=name,
                worker_class=item.worker_class(importer),
                instances=item.instances() if auto is None else auto.start,
                auto=auto,
                input_queue=item.optional_text("input_queue"),
                input_values=tuple(item.value_list("input_values")),
                output_queues=tuple(item.name_list("output_queues")),
                params=item.mapping("params"),
                batch_size=item.optional_positive_int("batch_size"),
                batch_timeout=item.positive_number("batch_timeout", 1.0),
                max_restarts=item.non_negative_int("max_restarts", 3),
                description=item.text("description", ""),
            )
        )

    dead_letter = reader.optional_text("dead_letter")
    stem = Path(source).stem  # the default name; a file name that would not do as one gives "pipeline"
    config = PipelineConfig(
        queues=queues,
        stages=tuple(stages),
        name=reader.optional_text("name") or (stem if _pipeline_name_problem(stem) is None else "pipeline"),
        monitor_interval=reader.positive_number("monitor_interval", 1.0),
        dead_letter=Path(dead_letter) if dead_letter else None,
        max_failures=reader.max_failures("max_failures"),
        executor=reader.optional_text("executor") or "threads",
    )
    try:
        config.check()
    except PipelineConfigError as exc:
        readers = {"stage": stage_readers, "queue": queue_readers}
        raise exc.located(source, _line_for(exc.where, readers, document)) from None
    return config


def _line_for(where: str | None, readers: Mapping[str, Mapping[str, "_Reader"]], document: MarkedDict) -> int | None:
    """The line of ``stage NAME.key``, ``queue NAME`` or a top-level key (as written by ``PipelineConfig.check``)."""
    kind, _, rest = (where or "").partition(" ")
    if kind not in readers:
        return document.line_of(where if where in document else "workers")
    name, _, key = rest.partition(".")
    reader = readers[kind].get(name)
    if reader is None:
        return None
    return reader.data.line_of(key) if key else reader.data.line


class _Reader:
    """Typed access to one YAML mapping, raising errors that name file, line and field."""

    def __init__(self, source: str, data: MarkedDict, where: str) -> None:
        self.source = source
        self.data = data
        self.where = where

    def fail(self, key: str | None, message: str) -> NoReturn:
        line = self.data.line_of(key) if key is not None else self.data.line
        where = ".".join(p for p in (self.where, key) if p) or None
        raise PipelineConfigError(message, self.source, line, where)

    def no_unknown_keys(self, allowed: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in allowed:
                self.fail(str(key), f"unknown key{_suggest(key, allowed)}")

    def sections(self, key: str, *, required: bool) -> list["_Reader"]:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(None, f"'{key}' is missing")
            return []
        if not isinstance(value, MarkedList):
            self.fail(key, "must be a list of mappings (each entry starts with '- name: ...')")
        readers = []
        for index, entry in enumerate(value):
            if not isinstance(entry, MarkedDict):
                raise PipelineConfigError(
                    "each entry must be a mapping with at least 'name'", self.source, value.line_of(index),
                    f"{key}[{index}]",
                )
            label = f"{key}[{index}]"
            if isinstance(entry.get("name"), str):
                label = f"{key}[{index}] ({entry['name']})"
            readers.append(_Reader(self.source, entry, label))
        return readers

    def name(self) -> str:
        value = self.data.get("name")
        if not isinstance(value, str) or not value.strip():
            self.fail("name" if "name" in self.data else None, "needs a 'name' (a non-empty string)")
        return value.strip()

    def text(self, key: str, default: str) -> str:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(key, "must be a string")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            self.fail(key, "must be a non-empty string")
        return value.strip() if value is not None else None

    def _number(self, key: str, default: Any, *, integer: bool, test: Callable[[Any], bool], what: str) -> Any:
        """The number at ``key`` (``default`` if absent), or a located one-line error.

        A literal must be a YAML int (or, unless ``integer``, a float). A string made by
        ``${VAR}`` expansion counts when its whole text is one (``7``, ``0.5``, ``1e3``),
        read by the same rules and checked against the same limits.
        """
        value = self.data.get(key)
        if value is None:
            return default
        template = self.data.expanded_from(key)
        if template is not None and isinstance(value, str):
            number = _parse_number(value, integer)
            if number is None or not test(number):
                self.fail(key, f"must be {what}, not {short_repr(value)} (from {one_line(template, 100)})")
            return number
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not test(value):
            self.fail(key, f"must be {what}, not {short_repr(value)}")
        return value

    def positive_int(self, key: str, default: int) -> int:
        return self._number(key, default, integer=True, test=lambda v: v > 0, what="a positive integer")

    def optional_positive_int(self, key: str) -> int | None:
        return self._number(key, None, integer=True, test=lambda v: v > 0, what="a positive integer")

    def non_negative_int(self, key: str, default: int) -> int:
        return self._number(key, default, integer=True, test=lambda v: v >= 0, what="a whole number >= 0")

    def positive_number(self, key: str, default: float) -> float:
        return float(
            self._number(key, default, integer=False, test=lambda v: 0 < v < math.inf, what="a positive number")
        )

    def instances(self) -> int:
        """A fixed ``instances`` (1 if absent); ``auto`` is read by :meth:`auto_instances`."""
        return self._number("instances", 1, integer=True, test=lambda v: v > 0, what=f"a positive integer or {AUTO}")

    def auto_instances(self) -> AutoInstances | None:
        """``instances: auto`` with its bounds, or None for a fixed number (then the bounds must be absent)."""
        value = self.data.get("instances")
        if not (isinstance(value, str) and value == AUTO):
            self.instances()  # a bad instances is the first thing to say
            for key in ("min_instances", "max_instances"):
                if key in self.data:
                    self.fail(key, f"is only read with instances: auto (instances is {short_repr(value)})")
            return None
        limit = lambda v: 0 < v <= MAX_INSTANCES  # noqa: E731
        what = f"a whole number from 1 to {MAX_INSTANCES:,}"
        low = self._number("min_instances", AUTO_MIN_INSTANCES, integer=True, test=limit, what=what)
        high = self._number("max_instances", max(low, AUTO_MAX_INSTANCES), integer=True, test=limit, what=what)
        if low > high:
            self.fail("max_instances", f"must be at least min_instances ({low:,}), not {high:,}")
        return AutoInstances(low, high)

    def max_failures(self, key: str) -> MaxFailures:
        value = self.data.get(key)
        if value is None:
            return MaxFailures()
        try:
            return MaxFailures.parse(value)
        except ValueError as exc:
            self.fail(key, str(exc))

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            self.fail(key, "must be a mapping of keyword arguments for the worker class")
        return _plain(value)

    def value_list(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        return _plain(value) if isinstance(value, list) else [_plain(value)]

    def name_list(self, key: str) -> list[str]:
        names = self.value_list(key)
        for name in names:
            if not isinstance(name, str) or not name.strip():
                self.fail(key, "must be a queue name or a list of queue names")
        if len(set(names)) != len(names):
            self.fail(key, "lists a queue twice")
        return [n.strip() for n in names]

    def worker_class(self, importer: Callable[[str], Any]) -> type:
        location = self.data.get("location")
        class_name = self.data.get("class")
        if not isinstance(location, str) or not location.strip():
            self.fail("location" if "location" in self.data else None,
                      "needs 'location', the module of the worker class (e.g. workers.price_worker)")
        if not isinstance(class_name, str) or not class_name.strip():
            self.fail("class" if "class" in self.data else None, "needs 'class', the worker class name")
        try:
            module = importer(location.strip())
        except ImportError as exc:
            self.fail("location", f"cannot import module '{location}': {exc}")
        except SystemExit as exc:  # sys.exit() in a module must not end the run before it starts
            self.fail("location", f"importing module '{location}' failed: it called sys.exit({exc.code!r})")
        except Exception as exc:  # a worker module that raises on import is a configuration problem too
            self.fail("location", f"importing module '{location}' failed: {describe(exc)}")
        try:
            cls = getattr(module, class_name.strip(), None)
        except Exception as exc:  # a module __getattr__ may raise anything
            self.fail("class", f"module '{location}' cannot give class '{class_name}': {describe(exc)}")
        if not inspect.isclass(cls):
            public = [n for n, v in vars(module).items() if inspect.isclass(v) and not n.startswith("_")]
            self.fail("class", f"module '{location}' has no class '{class_name}'{_suggest(class_name, public)}")
        return cls


# The whole text of a ${VAR} value read as a number: ASCII digits only, no spaces, no
# underscores, no inf/nan, no hex; an integer has no point or exponent.
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _parse_number(text: str, integer: bool) -> int | float | None:
    """``text`` as an int (``integer``) or a float, or None if it is not entirely one."""
    if not (_INTEGER_TEXT if integer else _NUMBER_TEXT).fullmatch(text):
        return None
    try:
        return int(text) if integer else float(text)
    except ValueError:  # Python refuses to read integers of more than 4,300 digits
        return None


def _plain(value: Any) -> Any:
    """Marked YAML containers back to plain dicts and lists, for worker constructors."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
