"""The live table and the final summary, rendered as text."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from cli.display import render_statuses, render_summary
from engine import RunReport, StageReport, StageStatus


def _text(renderable) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(renderable)
    return console.export_text()


def _status(name: str, done: int, expected: int | None, **extra) -> StageStatus:
    fields = dict(name=name, alive=2, instances=4, queue_depth=7, items_in=done, items_out=done, failed=1, lost=0,
                  rate=12.5, expected=expected, state="running")
    fields.update(extra)
    return StageStatus(**fields)


def test_live_table_shows_every_stage_and_an_overall_bar_once_the_total_is_known():
    text = _text(render_statuses("wiki", [_status("WikiWorker", 1, 1, state="done"), _status("PriceWorker", 40, 100)]))
    assert "WikiWorker" in text and "PriceWorker" in text
    assert "2/4" in text and "12.5" in text
    assert "overall" in text and "40/100" in text


def test_items_in_the_hands_of_threads_are_not_counted_as_done():
    text = _text(render_statuses("wiki", [_status("PriceWorker", 40, 100, busy=15)]))
    assert "25/100" in text


def test_live_table_has_no_overall_bar_while_the_total_is_unknown():
    text = _text(render_statuses("wiki", [_status("WikiWorker", 1, 1), _status("PriceWorker", 40, None)]))
    assert "overall" not in text


def _report(exit_code: int, reason: str | None, dead_letters: int = 0) -> RunReport:
    stages = [
        StageReport("PriceWorker", 20, 100, 265, 2, 0, 1.5, 0, "done", {"no_data": 35}),
        StageReport("PostgresWorker", 2, 265, 0, 0, 0, 1.6, 1, "done", {"rows_written": 265}),
    ]
    return RunReport(stages, exit_code, reason, Path("runs/x/failed_items.jsonl"), dead_letters, 2.0)


def test_summary_lists_stages_rows_failures_and_how_to_look_at_the_data():
    text = _text(render_summary(_report(0, None, dead_letters=2), "wiki_crypto"))
    assert "PriceWorker" in text and "no_data 35" in text and "restarts 1" in text
    assert "rows written: 265 (look at them: python main.py --show-db)" in text
    assert "2 item(s) failed or were not processed: runs/x/failed_items.jsonl" in text
    assert "done (exit code 0)" in text


def test_summary_of_a_failed_run_gives_the_reason_and_code():
    text = _text(render_summary(_report(1, "stage PriceWorker died: boom"), "wiki_crypto"))
    assert "stage PriceWorker died: boom (exit code 1)" in text
    assert "done (exit code 0)" not in text
