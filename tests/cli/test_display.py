"""The live table and the final summary, rendered as text."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from cli.display import LiveView, render_summary
from engine import RunReport, StageReport, StageStatus

REPO = Path(__file__).resolve().parents[2]


def _text(renderable) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(renderable)
    return console.export_text()


def _status(name: str, done: int, expected: int | None, **extra) -> StageStatus:
    fields = dict(name=name, alive=2, instances=4, queue_depth=7, items_in=done, items_out=done, failed=1, lost=0,
                  rate=12.5, expected=expected, state="running")
    fields.update(extra)
    return StageStatus(**fields)


class _Clock:
    """A clock the test moves by hand, so rates and ETAs are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _view() -> tuple[LiveView, _Clock]:
    clock = _Clock()
    return LiveView(Console(width=160, color_system=None), "wiki", clock=clock), clock


def _cells(text: str, stage: str) -> dict[str, str]:
    """The row of ``stage`` in the rendered table, by column header."""
    header = next(line for line in text.splitlines() if "┃ stage" in line)
    row = next(line for line in text.splitlines() if line.startswith(f"│ {stage} "))
    names = [cell.strip() for cell in header.split("┃")[1:-1]]
    return dict(zip(names, (cell.strip() for cell in row.split("│")[1:-1])))


def _show(view: LiveView, clock: _Clock, at: float, *statuses: StageStatus) -> str:
    clock.now = 1000.0 + at
    return _text(view.render(list(statuses)))


def test_live_table_shows_every_stage_and_an_overall_bar_once_the_total_is_known():
    view, clock = _view()
    text = _show(view, clock, 1, _status("WikiWorker", 1, 1, state="done"), _status("PriceWorker", 40, 100))
    assert "WikiWorker" in text and "PriceWorker" in text
    assert _cells(text, "PriceWorker")["threads"] == "2/4"
    assert "overall" in text and "40/100 (40%)" in text


def test_items_in_the_hands_of_threads_are_not_counted_as_done_and_show_as_in_flight():
    view, clock = _view()
    cells = _cells(_show(view, clock, 1, _status("PriceWorker", 40, 100, busy=15)), "PriceWorker")
    assert cells["done"] == "25/100" and cells["%"] == "25%"
    assert cells["in flight"] == "15"


def test_live_table_has_no_overall_bar_or_percent_while_the_total_is_unknown():
    view, clock = _view()
    text = _show(view, clock, 1, _status("WikiWorker", 1, 1), _status("PriceWorker", 40, None))
    assert "overall" not in text
    assert _cells(text, "PriceWorker")["done"] == "40" and _cells(text, "PriceWorker")["%"] == ""


def test_elapsed_time_and_eta_from_the_smoothed_rate():
    view, clock = _view()
    for second in range(1, 6):  # 10 items a second, 50 of 100 done after 5 s
        text = _show(view, clock, second, _status("PriceWorker", 10 * second, 100))
    assert "elapsed 0:05" in text and "ETA 0:05" in text
    cells = _cells(text, "PriceWorker")
    assert cells["items/s"] == "10.0" and cells["ETA"] == "0:05" and cells["%"] == "50%"
    assert "elapsed 1:05" in _show(view, clock, 65, _status("PriceWorker", 50, 100))


def test_eta_is_unknown_while_a_stage_with_a_total_makes_no_progress_or_no_total_is_known():
    view, clock = _view()
    text = _show(view, clock, 2, _status("PriceWorker", 0, 100))
    assert "ETA –" in text and _cells(text, "PriceWorker")["ETA"] == "–"
    view, clock = _view()
    assert "ETA –" in _show(view, clock, 2, _status("PriceWorker", 20, None))


def test_queue_depth_against_maxsize_with_full_marked():
    view, clock = _view()
    text = _show(view, clock, 1,
                 _status("Full", 1, None, queue_depth=10, queue_maxsize=10),
                 _status("Room", 1, None, queue_depth=9, queue_maxsize=10),
                 _status("Unbounded", 1, None, queue_depth=12, queue_maxsize=0))
    assert _cells(text, "Full")["queue"] == "10/10 full"
    assert _cells(text, "Room")["queue"] == "9/10"
    assert _cells(text, "Unbounded")["queue"] == "12"


def test_the_rate_is_smoothed_not_the_jumpy_rate_of_one_tick():
    view, clock = _view()
    done, rates = 0, []
    for second in range(1, 31):  # bursts: 20 items one second, none the next (10/s on average)
        done += 20 if second % 2 else 0
        rates.append(float(_cells(_show(view, clock, second, _status("Work", done, None)), "Work")["items/s"]))
    assert all(7.5 <= rate <= 12.5 for rate in rates[10:]), rates
    for second in range(31, 51):  # then a steady 30/s: the rate follows within ~10 s
        done += 30
        rate = float(_cells(_show(view, clock, second, _status("Work", done, None)), "Work")["items/s"])
    assert rate > 28, rate


def test_retries_and_errors_show_their_change_over_the_last_ten_seconds():
    view, clock = _view()
    for second in range(1, 21):  # 10 retries a second up to 100 at second 10, then 125 by second 20
        retries = 10 * second if second <= 10 else 100 + 2 * (second - 10) + (5 if second == 20 else 0)
        text = _show(view, clock, second, _status("PriceWorker", second, None, failed=3 if second >= 15 else 0,
                                                  counters={"http.retries": retries}))
    cells = _cells(text, "PriceWorker")
    assert cells["retries"] == "125 (+25)"  # 100 at second 10
    assert cells["errors"] == "3 (+3)"
    quiet = _cells(_show(view, clock, 40, _status("PriceWorker", 20, None, failed=3, counters={"http.retries": 125})),
                   "PriceWorker")
    assert quiet["retries"] == "125" and quiet["errors"] == "3"


def test_stages_without_http_counters_leave_retries_blank():
    view, clock = _view()
    cells = _cells(_show(view, clock, 1, _status("Work", 5, None, failed=0)), "Work")
    assert cells["retries"] == "" and cells["errors"] == ""


def test_after_an_interrupt_the_view_says_it_is_stopping_and_what_remains():
    view, clock = _view()
    statuses = [_status("WikiWorker", 1, 1, state="stopped", queue_depth=0),
                _status("PriceWorker", 40, 100, busy=3, queue_depth=5), _status("Store", 30, None, busy=2)]
    assert "stopping" not in _show(view, clock, 1, *statuses)
    view.interrupted(1)
    text = _show(view, clock, 2, *statuses)
    assert "stopping: 5 in flight, 12 queued" in text and "ETA" not in text.splitlines()[0]
    view.interrupted(2)
    assert "stopping fast: 5 in flight, 12 queued" in _show(view, clock, 3, *statuses)
    # A stopped stage's threads still finish what they hold; its queue is no longer work to do.
    statuses[1] = _status("PriceWorker", 40, 100, busy=3, queue_depth=5, state="stopped")
    assert "stopping fast: 5 in flight, 7 queued" in _show(view, clock, 4, *statuses)


def _report(exit_code: int, reason: str | None, dead_letters: int = 0, http: bool = False) -> RunReport:
    price_counters = {"no_data": 35}
    if http:  # as workers.http counts them: latency buckets are not cumulative, bounds in seconds
        price_counters.update({"http.requests": 412, "http.retries": 125, "http.retries.5xx": 110,
                               "http.retries.429": 15, "http.status.200": 287, "http.status.503": 110,
                               "http.status.429": 15, "http.latency.le.0.004": 250, "http.latency.le.0.256": 150,
                               "http.latency.le.2.048": 12, "http.latency.sum": 30.0})
    peak = 250 if http else 0
    stages = [
        StageReport("PriceWorker", 20, 100, 265, 2, 0, 1.5, 0, "done", price_counters, queue_peak=peak),
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


def test_summary_shows_requests_retries_status_codes_and_latency_per_stage():
    text = _text(render_summary(_report(0, None, http=True), "wiki_crypto"))
    cells = _cells(text[text.index("requests and queues"):], "PriceWorker")
    assert cells["requests"] == "412"
    assert cells["retries"] == "125 (429 15, 5xx 110)"
    assert cells["status codes"] == "200: 287, 429: 15, 503: 110"
    assert (cells["p50"], cells["p95"], cells["p99"]) == ("≤4.0 ms", "≤256 ms", "≤2,048 ms")
    assert cells["peak queue"] == "250"
    assert "http.requests" not in text  # not repeated among the other counters


def test_summary_shows_only_the_figures_the_report_holds():
    assert "requests and queues" not in _text(render_summary(_report(0, None), "wiki_crypto"))


def _screen_text(raw: bytes) -> str:
    """What a terminal showed, as plain text: escape sequences dropped."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r", "", raw.decode("utf-8", "replace"))


def _read_until(master: int, raw: bytearray, done: Callable[[str], bool], timeout: float) -> bool:
    """Read the terminal into ``raw`` until ``done(text so far)`` or the child closes it or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(_screen_text(bytes(raw))):
            return True
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child has ended and closed the terminal
                return done(_screen_text(bytes(raw)))
            if not chunk:
                return done(_screen_text(bytes(raw)))
            raw.extend(chunk)
    return False


@pytest.mark.slow
def test_main_in_a_terminal_shows_the_live_table_and_the_stopping_state(tmp_path, start_price_server):
    server = start_price_server(sleep=0.2)  # 300 requests over 20 threads: about 3 s of work
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_LOCATION", "POSTGRES_HOST", "COLUMNS", "LINES")}
    env.update(PRICE_SERVER_URL=server.url, DATABASE_URL=f"sqlite:///{tmp_path / 'prices.db'}", TERM="xterm")
    process = subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), "--pipeline", str(REPO / "pipelines/wiki_crypto_pipeline.yaml"),
         "--run-dir", str(tmp_path / "runs")],
        cwd=tmp_path, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
    )
    os.close(slave)
    raw = bytearray()
    try:
        live = _read_until(master, raw, lambda text: "PriceWorker" in text and "/100" in text, 60)
        frame = _screen_text(bytes(raw))
        assert live, frame
        for column in ("threads", "in flight", "queue", "done", "%", "items/s", "ETA", "retries", "errors"):
            assert f" {column} " in frame, (column, frame)
        assert "elapsed 0:0" in frame and "/1000" in frame  # SymbolQueue's maxsize
        process.send_signal(signal.SIGINT)
        assert _read_until(master, raw, lambda text: "stopping: " in text, 30), _screen_text(bytes(raw))
        _read_until(master, raw, lambda text: "exit code" in text, 60)
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    assert re.search(r"stopping: \d+ in flight, \d+ queued", _screen_text(bytes(raw)))
