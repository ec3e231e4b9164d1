"""Run a :class:`PipelineConfig`: build the queues and stages, start them, wait, report."""

from __future__ import annotations

import datetime as dt
import errno
import logging
import threading
import time
from pathlib import Path

from engine.config import PipelineConfig
from engine.dead_letter import DeadLetterError, DeadLetterFile
from engine.errors import RunStartError, StageSetupError
from engine.monitor import Monitor, StatusCallback, log_statuses
from engine.report import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STAGE_DIED,
    EXIT_UNRECORDED,
    RunReport,
    StageReport,
)
from engine.stage import DIED, Stage, StageQueue, poll_seconds
from engine.text import describe, one_line

log = logging.getLogger(__name__)

DEAD_LETTER_NAME = "failed_items.jsonl"


class PipelineExecutor:
    """Runs a pipeline once.

    ``run()`` blocks until every stage has ended and returns a :class:`RunReport`.
    ``interrupt()`` may be called from another thread or a signal handler: the
    first call stops the sources and lets queued items finish; the second
    also stops every stage but the sinks, which store what is already queued
    for them.

    Each run gets a directory of its own under ``run_dir`` (default ``runs/``),
    named by the time (to the microsecond) and the pipeline, made by ``run()``
    and never shared: ``run_path``. Items that fail go to the dead-letter file:
    ``dead_letter`` if given, else the pipeline's ``dead_letter``, else
    ``failed_items.jsonl`` in the run directory. It is checked before anything
    starts; if writing it fails mid-run, the run stops its sources and ends with
    ``EXIT_UNRECORDED``, counting the entries it could not write.
    """

    def __init__(
        self,
        config: PipelineConfig,
        *,
        run_dir: str | Path = "runs",
        dead_letter: str | Path | None = None,
        on_status: StatusCallback | None = None,
        strict: bool = False,
    ) -> None:
        config.check()
        self.config = config
        self.strict = strict
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
            self.run_path = _reserve_run_dir(self.run_dir, self.config.name)
            assert self.dead_letter_path is not None
            dead_letters = DeadLetterFile(self.dead_letter_path, on_broken=self._dead_letters_broken)
            try:
                dead_letters.open()
            except DeadLetterError:
                _remove_if_empty(self.run_path)
                raise
            wake, gate = threading.Event(), threading.Event()
            stages, queues = self._build(dead_letters, wake, gate)
            self._stages = stages
            self._start_threads(stages, gate, dead_letters)
            if self._interrupts:
                self._apply_interrupts()
            self._monitor = Monitor(stages, queues, wake, self.config.monitor_interval, self._on_status)
        started = time.monotonic()
        log.info("pipeline %s: starting %d stages", self.config.name, len(stages))
        try:
            gate.set()
            self._monitor.start()
            self._wait()
        finally:
            if not self._monitor.done.is_set():  # an unexpected error in this thread: wind down
                self._stop_all("the run was aborted")
                self._wait()
            for stage in stages:
                for slot in stage.slots:
                    if slot.thread is not None and slot.thread.ident is not None:
                        slot.thread.join()
            self._monitor.join()
            dead_letters.close()
        return self._report(time.monotonic() - started, dead_letters)

    def interrupt(self) -> int:
        """Stop the run: gently the first time, fast the second. Returns how many times it was called.

        An interrupt before the stages exist (while ``run()`` prepares them) takes
        effect as soon as they do.
        """
        self._interrupts += 1
        if self._interrupts == 1:
            log.warning("interrupted: stopping the sources; queued items will finish (interrupt again to stop fast)")
        else:
            log.warning("interrupted again: stopping every stage; sinks store what is already queued for them")
        self._apply_interrupts()
        return self._interrupts

    # -- private ---------------------------------------------------------------

    def _start_threads(self, stages: list[Stage], gate: threading.Event, dead_letters: DeadLetterFile) -> None:
        """Start every thread behind the gate; if the system refuses one, undo it all and raise."""
        for stage in stages:
            try:
                stage.start()
            except RuntimeError as exc:
                for other in stages:
                    other.cancel()
                gate.set()
                for other in stages:
                    for slot in other.slots:
                        if slot.thread is not None and slot.thread.ident is not None:
                            slot.thread.join()
                dead_letters.close()
                assert self.run_path is not None
                _remove_if_empty(self.run_path)
                raise RunStartError(
                    f"stage {stage.name} cannot start: the system refused thread {len(stage.slots)} of "
                    f"{stage.config.instances} ({describe(exc)}); lower its instances"
                ) from None

    def _dead_letters_broken(self, reason: str) -> None:
        # Called from whichever thread failed to write. Items that fail from now on cannot be
        # recorded, so take no new work; what is queued still finishes and may be stored.
        for stage in self._stages:
            if stage.config.is_source:
                stage.stop(f"not processed: {reason}")

    def _apply_interrupts(self) -> None:
        # Called by interrupt() and again by run() once the stages exist, so none is missed.
        for stage in self._stages:
            if stage.config.is_source or (self._interrupts >= 2 and not stage.config.is_sink):
                stage.stop("interrupted before it was processed")

    def _prepare_stages(self) -> None:
        for config in self.config.stages:
            prepare = getattr(config.worker_class, "prepare_stage", None)
            if prepare is None:
                continue
            try:
                prepare(dict(config.params))
            except (Exception, SystemExit) as exc:  # sys.exit() in a check must not end the caller
                text = one_line(str(exc)) or type(exc).__name__
                raise StageSetupError(f"stage {config.name} cannot start: {text}") from exc

    def _build(
        self, dead_letters: DeadLetterFile, wake: threading.Event, gate: threading.Event
    ) -> tuple[list[Stage], list[StageQueue]]:
        queues = {name: StageQueue(name, q.maxsize) for name, q in self.config.queues.items()}
        stages: list[Stage] = []
        all_queues = list(queues.values())
        poll = poll_seconds(sum(config.instances for config in self.config.stages))
        for config in self.config.stages:
            if config.input_queue is None:
                # A source's values go through a queue of its own, so its threads share them out.
                source = StageQueue(f"{config.name}.input_values", 0)
                for value in config.input_values:
                    source.queue.put_nowait(value)
                all_queues.append(source)
            else:
                source = queues[config.input_queue]
            outputs = [queues[name] for name in config.output_queues]
            stage = Stage(config, source, outputs, dead_letters, wake, gate, poll=poll)
            source.consumer = stage
            for output in outputs:
                output.producers.append(stage)
            stages.append(stage)
        return stages, all_queues

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
            )
            for s in self._stages
        ]
        dead = [s.dead_reason for s in self._stages if s.state == DIED and s.dead_reason]
        failed = sum(s.failed + s.lost for s in stages)
        assert self._monitor is not None
        if dead_letters.broken is not None:
            code, reason = EXIT_UNRECORDED, (
                f"{dead_letters.broken}; {dead_letters.unrecorded} item(s) that failed or were not processed "
                "are not in it"
            )
        elif self._interrupts:
            code, reason = EXIT_INTERRUPTED, f"interrupted; {failed} item(s) not processed or failed"
        elif dead:
            code, reason = EXIT_STAGE_DIED, "; ".join(dead)
        elif self._monitor.crash is not None:
            code, reason = EXIT_STAGE_DIED, f"the pipeline monitor failed: {describe(self._monitor.crash)}"
        elif self.strict and failed:
            code, reason = EXIT_STAGE_DIED, f"{failed} item(s) failed (strict mode)"
        else:
            code, reason = EXIT_OK, None
        return RunReport(
            stages=stages,
            exit_code=code,
            reason=reason,
            dead_letter_path=dead_letters.path,
            dead_letters=dead_letters.count,
            unrecorded=dead_letters.unrecorded,
            seconds=round(seconds, 3),
            interrupted=bool(self._interrupts),
        )


def _reserve_run_dir(root: Path, name: str) -> Path:
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


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # not empty: something in it is worth keeping
