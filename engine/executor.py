"""Run a :class:`PipelineConfig`: build the queues and stages, start them, wait, report."""

from __future__ import annotations

import datetime as dt
import errno
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.config import MaxFailures, PipelineConfig
from engine.dead_letter import DeadLetterError, DeadLetterFile
from engine.errors import RunStartError, StageSetupError
from engine.monitor import Monitor, StatusCallback, log_statuses
from engine.report import (
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STAGE_DIED,
    EXIT_UNRECORDED,
    RunReport,
    StageReport,
    describe_failures,
)
from engine.run_info import config_hash, project_version, utc_now
from engine.sizing import run_warning, source_warning
from engine.stage import DIED, DONE, INTERRUPTED, Stage, StageQueue, poll_seconds
from engine.text import describe, one_line

log = logging.getLogger(__name__)

DEAD_LETTER_NAME = "failed_items.jsonl"


class PipelineExecutor:
    """Runs a pipeline once.

    ``run()`` blocks until every stage has ended and returns a :class:`RunReport`.
    ``interrupt()`` may be called from another thread or a signal handler. The
    first call stops intake: no stage but the sinks starts a new item, items in
    flight finish, and the sinks (stages with an input queue and no output: the
    writers) go on storing what is queued for them, since those items have
    already been fetched. Every item not started is dead-lettered as
    ``interrupted``. The second call stops the sinks too, after the batch in
    hand; what is still queued for them is dead-lettered as ``interrupted``.

    ``replay`` maps stage names to items to feed into those stages (from a
    dead-letter file: see :mod:`engine.replay`). A source then gets only its
    replayed items, none of its ``input_values``; any other stage gets its
    replayed items in its input queue before the run starts, ahead of what its
    producers send.

    Each run gets a directory of its own under ``run_dir`` (default ``runs/``),
    named by the time (to the microsecond) and the pipeline, made by ``run()``
    and never shared: ``run_path``. Items that fail go to the dead-letter file:
    ``dead_letter`` if given, else the pipeline's ``dead_letter``, else
    ``failed_items.jsonl`` in the run directory. It is checked before anything
    starts; if writing it fails mid-run, the run stops its sources and ends with
    ``EXIT_UNRECORDED``, counting the entries it could not write.

    A run that ends by itself exits ``EXIT_OK`` only if its failures are within
    ``max_failures`` (given here as a :class:`MaxFailures`, ``5`` or ``"2.5%"``;
    else the pipeline's; else 0). Otherwise, or if nothing reached a sink while
    anything failed, it exits ``EXIT_FAILURES``. A failure is an item failed or
    lost in any stage; a percentage is of the items all stages took in plus those
    they lost (see :class:`MaxFailures`). Precedence: see ``_outcome``.
    """

    path: Path | None = None  # the file the pipeline was read from, if any (for the report)

    def __init__(
        self,
        config: PipelineConfig,
        *,
        run_dir: str | Path = "runs",
        dead_letter: str | Path | None = None,
        on_status: StatusCallback | None = None,
        max_failures: MaxFailures | int | str | None = None,
        replay: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        config.check()
        self._replay = {name: list(items) for name, items in (replay or {}).items()}
        unknown = sorted(set(self._replay) - {stage.name for stage in config.stages})
        if unknown:
            raise ValueError(f"cannot replay items into {', '.join(unknown)}: no such stage in {config.name}")
        self.config = config if replay is None else _replayed_sources(config, self._replay)
        if max_failures is not None and not isinstance(max_failures, MaxFailures):
            max_failures = MaxFailures.parse(max_failures)  # ValueError says what is accepted
        self.max_failures = config.max_failures if max_failures is None else max_failures
        self.run_dir = Path(run_dir)
        self.run_path: Path | None = None  # set by run()
        chosen = dead_letter or config.dead_letter
        self._chosen_dead_letter = Path(chosen) if chosen else None
        self._on_status = on_status or log_statuses
        self._interrupts = 0
        # Makes run() run once. interrupt() never takes it: a signal handler runs in the
        # thread that may be holding it.
        self._lock = threading.Lock()
        self._stages: list[Stage] = []
        self._monitor: Monitor | None = None
        self._started = False
        self._started_at = ""  # set by run()

    @property
    def dead_letter_path(self) -> Path | None:
        """Where failed items go (None until ``run()`` has made the run directory, if it is the default)."""
        if self._chosen_dead_letter is not None:
            return self._chosen_dead_letter
        return self.run_path / DEAD_LETTER_NAME if self.run_path else None

    # -- public ----------------------------------------------------------------

    def run(self) -> RunReport:
        """Run the pipeline to its end and report. A KeyboardInterrupt counts as ``interrupt()``.

        Raises :class:`RunStartError` before any item is processed if the run
        cannot start: a stage's ``prepare_stage`` refuses (:class:`StageSetupError`),
        the run directory or the dead-letter file cannot be made
        (:class:`DeadLetterError`), or the system refuses a thread. Nothing is
        left behind then.
        """
        with self._lock:
            if self._started:
                raise RuntimeError("a PipelineExecutor runs once; make a new one")
            self._started = True
            self._prepare_stages()
            dead_letters = self._open_run_dir()
            wake = threading.Event()
            stages, queues = self._build(dead_letters, wake)
            self._stages = stages
            # The monitor reports while the first threads start; it supervises once the run is open.
            self._monitor = Monitor(stages, queues, wake, self.config.monitor_interval, self._on_status)
            started, self._started_at = time.monotonic(), utc_now()
            self._start_threads(stages, dead_letters)
            log.info("pipeline %s: starting %d stages, up to %d threads", self.config.name, len(stages),
                     sum(stage.config.instances for stage in stages))
            for line in filter(None, (source_warning(stage.config) for stage in stages)):
                log.warning("%s", line)
            if self._interrupts:
                self._apply_interrupts()
        try:
            # No item is queued (so no worker built) before each stage's first thread has started, so a
            # refused thread cancels a run that did nothing. The other threads start on demand.
            self._open(stages)
            self._monitor.open()
            self._wait()
        finally:
            if not self._monitor.done.is_set():  # an unexpected error in this thread: wind down
                self._stop_all("the run was aborted")
                self._wait()
            _join(stages)
            self._monitor.join()
            dead_letters.close()
        self._warn_idle_threads()
        return self._report(time.monotonic() - started, dead_letters)

    def interrupt(self) -> int:
        """Stop the run: intake first, then the sinks too (see the class docstring). Returns the count so far.

        Logs one line saying what happens and what remains. An interrupt before
        the stages exist (while ``run()`` prepares them) takes effect as soon as
        they do.
        """
        self._interrupts += 1
        log.warning("%s", self._interrupt_line())
        self._apply_interrupts()
        return self._interrupts

    # -- private ---------------------------------------------------------------

    def _interrupt_line(self) -> str:
        # Reads queue lengths without their locks: this may run in a signal handler, in a
        # thread that could be holding one. A snapshot is all a person needs here.
        if not self._stages:
            return "interrupted while the run starts: no item will be started"
        sinks = [s for s in self._stages if _drains_on_interrupt(s)]
        others = [s for s in self._stages if not _drains_on_interrupt(s)]
        in_flight = sum(s.busy for s in self._stages)
        if self._interrupts == 1:
            not_started = sum(len(s.input.queue.queue) for s in others)
            kept = ", ".join(f"{len(s.input.queue.queue)} queued for {s.name}" for s in sinks)
            return (
                f"interrupted: no new items are started; {in_flight} in flight will finish"
                + (f", {kept} will be stored" if kept else "")
                + f", {not_started} not started are recorded as interrupted; interrupt again (Ctrl+C) to stop now"
            )
        if self._interrupts == 2:
            dropped = sum(len(s.input.queue.queue) for s in sinks)
            names = ", ".join(s.name for s in sinks) or "every stage"
            return (
                f"interrupted again: {names} will stop after the batch in hand; {dropped} item(s) queued for them "
                "are recorded as interrupted; interrupt a third time (Ctrl+C) to exit at once"
            )
        return "interrupted again: already stopping"

    def _open_run_dir(self) -> DeadLetterFile:
        """Reserve this run's directory and open its dead-letter file (:class:`DeadLetterError`
        if it cannot be written; no directory is left then). For this executor and those beside it."""
        self.run_path = reserve_run_dir(self.run_dir, self.config.name)
        assert self.dead_letter_path is not None
        dead_letters = DeadLetterFile(self.dead_letter_path, on_broken=self._dead_letters_broken)
        try:
            dead_letters.open()
        except DeadLetterError:
            remove_if_empty(self.run_path)
            raise
        return dead_letters

    def _start_threads(self, stages: list[Stage], dead_letters: DeadLetterFile) -> None:
        """Start the monitor, then each stage's first thread (the others start on demand); no item is queued yet.

        If the system refuses a thread (:class:`RunStartError`), or anything else cuts the start
        short (re-raised), every thread started ends without taking an item and nothing is left.
        """
        assert self._monitor is not None and self.run_path is not None
        stage: Stage | None = None
        try:
            self._monitor.start()
            for stage in stages:
                stage.start()
        except BaseException as exc:
            for other in stages:
                other.cancel()
            if self._monitor.ident is not None:
                self._monitor.abandon()
                self._monitor.join()
            _join(stages)
            dead_letters.close()
            remove_if_empty(self.run_path)
            if not isinstance(exc, RuntimeError):
                raise
            if stage is None:
                raise RunStartError(
                    f"the pipeline cannot start: the system refused its monitor thread ({describe(exc)})"
                ) from None
            raise RunStartError(
                f"stage {stage.name} cannot start: the system refused its first thread ({describe(exc)})"
            ) from None

    def _warn_idle_threads(self) -> None:
        # Only a run that went its course says how many threads its input kept busy; a source
        # was judged before it started.
        if self._interrupts:
            return
        for stage in self._stages:
            if stage.state == DONE and not stage.config.is_source:
                line = run_warning(stage.name, stage.config.instances, stage.peak_busy)
                if line:
                    log.warning("%s", line)

    def _dead_letters_broken(self, reason: str) -> None:
        # Called from whichever thread failed to write. Items that fail from now on cannot be
        # recorded, so take no new work; what is queued still finishes and may be stored.
        for stage in self._stages:
            if stage.config.is_source:
                stage.stop(f"not processed: {reason}")

    def _apply_interrupts(self) -> None:
        # Called by interrupt() and again by run() once the stages exist, so none is missed.
        for stage in self._stages:
            if self._interrupts >= 2 or not _drains_on_interrupt(stage):
                stage.stop("interrupted before it was processed", INTERRUPTED)

    def _prepare_stages(self) -> None:
        # The config was checked when this executor was made; a replay's sources may have no values.
        _prepare_stages(self.config)

    def _build(self, dead_letters: DeadLetterFile, wake: threading.Event) -> tuple[list[Stage], list[StageQueue]]:
        """The queues, empty, and the stages; :meth:`_open` queues the first items once the first threads have started."""
        queues = {name: StageQueue(name, q.maxsize) for name, q in self.config.queues.items()}
        stages: list[Stage] = []
        all_queues = list(queues.values())
        poll = poll_seconds(sum(config.max_threads for config in self.config.stages))
        for config in self.config.stages:
            if config.input_queue is None:
                # A source's values go through a queue of its own, so its threads share them out.
                source = StageQueue(f"{config.name}.input_values", 0)
                all_queues.append(source)
            else:
                source = queues[config.input_queue]
            outputs = [queues[name] for name in config.output_queues]
            stage = Stage(config, source, outputs, dead_letters, wake, poll=poll)
            source.consumer = stage
            for output in outputs:
                output.producers.append(stage)
            stages.append(stage)
        return stages, all_queues

    def _open(self, stages: list[Stage]) -> None:
        """Queue each source's input values, and each stage's replayed items, ahead of what producers send."""
        for stage in stages:
            first = stage.config.input_values if stage.config.is_source else self._replay.get(stage.name, ())
            stage.input.queue.preload(first)

    def _wait(self) -> None:
        assert self._monitor is not None
        while True:
            try:
                # A short wait keeps the main thread responsive to signals.
                if self._monitor.done.wait(0.2) or not self._monitor.is_alive():
                    return
            except KeyboardInterrupt:
                self.interrupt()

    def _stop_all(self, reason: str) -> None:
        for stage in self._stages:
            stage.stop(reason)

    def _report(self, seconds: float, dead_letters: DeadLetterFile) -> RunReport:
        stages = [
            StageReport(
                name=s.name,
                instances=s.config.instances,
                items_in=s.items_in,
                items_out=s.items_out,
                failed=s.failed,
                lost=s.lost,
                seconds=round((s.ended_at or time.monotonic()) - s.started_at, 3),
                restarts=s.restarts,
                state=s.state,
                counters=s.counters(),
                errors=s.errors(),
                queue_peak=self._monitor.queue_peak(s) if self._monitor else 0,
                is_source=s.config.is_source,
                is_sink=s.config.is_sink,
                pool_size=s.target,
                pool_peak=s.peak,
                min_instances=s.config.auto.min_instances if s.config.auto else None,
                max_instances=s.config.auto.max_instances if s.config.auto else None,
            )
            for s in self._stages
        ]
        failures = sum(s.failed + s.lost for s in stages)
        attempts = sum(s.items_in + s.lost for s in stages)
        delivered = sum(
            max(0, s.items_in - s.failed) for s, live in zip(stages, self._stages) if live.config.is_sink
        )
        errors = sum((Counter(s.errors) for s in stages), Counter())
        breakdown = describe_failures(errors, sum(s.lost for s in stages))
        code, reason = self._outcome(dead_letters, failures, attempts, delivered, breakdown)
        return RunReport(
            stages=stages,
            exit_code=code,
            reason=reason,
            dead_letter_path=dead_letters.path,
            dead_letters=dead_letters.count,
            unrecorded=dead_letters.unrecorded,
            seconds=round(seconds, 3),
            interrupted=bool(self._interrupts),
            failures=failures,
            attempts=attempts,
            delivered=delivered,
            max_failures=str(self.max_failures),
            errors=dict(errors),
            started_at=self._started_at,
            finished_at=utc_now(),
            pipeline={"name": self.config.name, "file": None if self.path is None else str(self.path)},
            config_sha256=config_hash(self.config),
            version=project_version(),
        )

    def _outcome(
        self, dead_letters: DeadLetterFile, failures: int, attempts: int, delivered: int, breakdown: str
    ) -> tuple[int, str | None]:
        """The exit code and its one-sentence reason (None when nothing failed at all).

        When several apply, the first wins: 130 > 3 > 1 > 4 > 0. An interrupt comes first because
        the operator chose to stop and must be able to tell that from a fault (the report still
        counts failures and unrecorded items). An incomplete dead-letter file comes next: the record
        of what to retry is missing, which outweighs any single stage's death. A dead stage (1)
        outweighs item failures (4), which it usually causes.
        """
        dead = [s.dead_reason for s in self._stages if s.state == DIED and s.dead_reason]
        assert self._monitor is not None
        if self._interrupts:
            not_started = dead_letters.kinds[INTERRUPTED]
            return EXIT_INTERRUPTED, (
                f"interrupted; {not_started} item(s) not started, {failures - not_started} failed or lost"
            )
        if dead_letters.broken is not None:
            return EXIT_UNRECORDED, (
                f"{dead_letters.broken}; {dead_letters.unrecorded} item(s) that failed or were not processed "
                "are not in it"
            )
        if dead:
            return EXIT_STAGE_DIED, "; ".join(dead)
        if self._monitor.crash is not None:
            return EXIT_STAGE_DIED, f"the pipeline monitor failed: {describe(self._monitor.crash)}"
        if not failures:
            return EXIT_OK, None
        counted = f"{failures:,} failure{'s' if failures != 1 else ''} ({breakdown})"
        summary = f"finished with {counted}"
        if not delivered:
            # Whatever the allowance: a run whose every item failed or vanished did nothing.
            return EXIT_FAILURES, f"{summary}; nothing reached a sink"
        if not self.max_failures.allows(failures, attempts):
            return EXIT_FAILURES, f"{summary}; max_failures is {self.max_failures} (of {attempts:,} item attempts)"
        return EXIT_OK, f"done with {counted}, within max_failures {self.max_failures}"


def _join(stages: list[Stage]) -> None:
    """Wait for every thread of ``stages``; each has ended or is ending (pill, stop or cancel), so it is quick."""
    for stage in stages:
        for thread in stage.threads():
            thread.join()


def _drains_on_interrupt(stage: Stage) -> bool:
    """A sink fed by other stages stores what they fetched, so the first interrupt lets it drain its queue."""
    return stage.config.is_sink and not stage.config.is_source


def _replayed_sources(config: PipelineConfig, replay: Mapping[str, list[Any]]) -> PipelineConfig:
    """``config`` with each source's ``input_values`` replaced by its replayed items (none if it has none)."""
    stages = tuple(
        replace(stage, input_values=tuple(replay.get(stage.name, ()))) if stage.is_source else stage
        for stage in config.stages
    )
    return replace(config, stages=stages)


def check_pipeline(config: PipelineConfig) -> None:
    """Everything a run checks before it starts, without starting it.

    Checks the config (:meth:`PipelineConfig.check`) and runs each stage's
    ``prepare_stage(params)`` in order, as ``run()`` does first: no thread, run
    directory or dead-letter file is made, and no item is processed. A worker's
    check may reach the services it needs (ask a server whether it answers,
    connect to a database). Raises :class:`PipelineConfigError` or, naming the
    stage, :class:`StageSetupError`.
    """
    config.check()
    _prepare_stages(config)


def _prepare_stages(config: PipelineConfig) -> None:
    """Run each stage's ``prepare_stage(params)``; :class:`StageSetupError` names the stage that refused."""
    for stage in config.stages:
        prepare = getattr(stage.worker_class, "prepare_stage", None)
        if prepare is None:
            continue
        try:
            prepare(dict(stage.params))
        except (Exception, SystemExit) as exc:  # sys.exit() in a check must not end the caller
            text = one_line(str(exc)) or type(exc).__name__
            raise StageSetupError(f"stage {stage.name} cannot start: {text}") from exc


def reserve_run_dir(root: Path, name: str) -> Path:
    """Make a new directory under ``root`` for this run, never one another run has (even at the same time)."""
    stem = f"{dt.datetime.now():%Y%m%d-%H%M%S.%f}-{_dir_safe(name)}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        home = root.resolve()
        for attempt in range(1, 1000):
            path = root / (stem if attempt == 1 else f"{stem}-{attempt}")
            if path.resolve().parent != home:  # cannot happen with a safe name; checked all the same
                raise RunStartError(f"the run directory {path} would not be inside {root}")
            try:
                path.mkdir()  # atomic: exactly one run gets each name, across processes too
                return path
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "every name for this run is taken")
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in a path given in Python
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise RunStartError(f"cannot make the run directory under {root}: {reason}") from None


def _dir_safe(name: str) -> str:
    """``name`` as one safe path component: letters, digits, ``-``, ``_`` and ``.`` only."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name[:64]).strip("._")
    return safe or "pipeline"


def remove_if_empty(path: Path) -> None:
    """Remove the directory ``path`` if nothing is in it (a run that left nothing leaves no directory)."""
    try:
        path.rmdir()
    except OSError:
        pass  # not empty: something in it is worth keeping
