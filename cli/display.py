"""What a person sees: a live table of the stages while the pipeline runs, and the final summary."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from engine import RunReport, StageStatus
from engine.report import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, describe_failures

_STATE_STYLE = {"running": "cyan", "done": "green", "stopped": "yellow", "died": "bold red"}


class LiveView:
    """A rich Live table of stage statuses, redrawn each time the monitor reports.

    ``update`` is called from the monitor thread only; rich's Live redraws safely from there.
    """

    def __init__(self, console: Console, title: str) -> None:
        self._title = title
        self._live = Live(Text(f"{title}: starting..."), console=console, transient=True, auto_refresh=False)

    def __enter__(self) -> "LiveView":
        self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._live.__exit__(kind, error, tb)

    def update(self, statuses: list[StageStatus]) -> None:
        self._live.update(render_statuses(self._title, statuses), refresh=True)


def render_statuses(title: str, statuses: Sequence[StageStatus]) -> Group:
    """The live table: one row per stage, and an overall bar once the total is known."""
    table = Table(title=title, title_justify="left", expand=False)
    for column in ("stage", "threads", "queue", "done", "failed", "lost", "items/s", "progress"):
        table.add_column(column, justify="left" if column in ("stage", "progress") else "right")
    for s in statuses:
        table.add_row(
            Text(s.name, style=_STATE_STYLE.get(s.state, "")),
            f"{s.alive}/{s.instances}",
            str(s.queue_depth),
            str(s.done),
            str(s.failed) if s.failed else "",
            str(s.lost) if s.lost else "",
            f"{s.rate:,.1f}",
            _bar(s.done, s.expected),
        )
    last = statuses[-1] if statuses else None
    if last is None or last.expected is None:
        return Group(table)
    overall = Table.grid(padding=(0, 1))
    overall.add_row("overall", ProgressBar(total=max(last.expected, 1), completed=last.done, width=40),
                    f"{last.done}/{last.expected}")
    return Group(table, overall)


def _bar(done: int, expected: int | None) -> ProgressBar | str:
    if expected is None:
        return ""
    return ProgressBar(total=max(expected, 1), completed=min(done, expected), width=20)


def render_summary(report: RunReport, pipeline: str) -> Group:
    """The end-of-run summary: per-stage counts and failures by error type, rows written, where
    failures went, and the outcome: green when done, yellow when interrupted or finished with
    failures beyond ``max_failures``, red when a stage died or failures could not be recorded."""
    table = Table(title=f"{pipeline}: finished in {report.seconds:.1f}s", title_justify="left")
    for column in ("stage", "state", "in", "out", "failed", "lost", "seconds", "errors", "other"):
        table.add_column(column, justify="left" if column in ("stage", "state", "errors", "other") else "right")
    for s in report.stages:
        other = ", ".join(f"{name} {count}" for name, count in sorted(s.counters.items()))
        if s.restarts:
            other = ", ".join(filter(None, [other, f"restarts {s.restarts}"]))
        table.add_row(
            s.name, Text(s.state, style=_STATE_STYLE.get(s.state, "")), str(s.items_in), str(s.items_out),
            str(s.failed), str(s.lost), f"{s.seconds:.1f}", describe_failures(s.errors, 0), other,
        )
    lines: list[Text | Table] = [table]
    rows = sum(s.counters.get("rows_written", 0) for s in report.stages)
    if rows:
        lines.append(Text(f"rows written: {rows} (look at them: python main.py --show-db)"))
    if report.dead_letters:
        lines.append(Text(f"{report.dead_letters} item(s) failed or were not processed: {report.dead_letter_path}",
                          style="yellow"))
    if report.exit_code == EXIT_OK:
        lines.append(Text(f"{report.reason or 'done'} (exit code 0)", style="green"))
    else:
        style = "yellow" if report.exit_code in (EXIT_INTERRUPTED, EXIT_FAILURES) else "bold red"
        lines.append(Text(f"{report.reason} (exit code {report.exit_code})", style=style))
    return Group(*lines)
