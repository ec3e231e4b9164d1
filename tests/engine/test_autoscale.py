"""``instances: auto``: the controller on its own, and pools that grow and shrink in real runs.

The runs use real threads and the bundled price server on a real socket (127.0.0.1, port 0)
whose latency and rate limit each test sets.
"""

from __future__ import annotations

import json
import re
import random
import threading
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine import StageStatus
from engine.autoscale import BACKOFF, LATENCY_SHRINK, PATIENCE_WINDOWS, TOLERANCE, ConcurrencyLimit, Window
from engine.stage import RETIRED, Stage

from .conftest import stage

HERE = "tests.engine.test_autoscale"


# -- the controller alone -------------------------------------------------------


def _window(limit: int, latency: float = 0.1, overload: int = 0, busy: float = 1.0, seconds: float = 1.0) -> Window:
    """One second of a pool of ``limit`` threads, each busy ``busy`` of the time, ``latency`` s per item."""
    items = round(limit * busy * seconds / latency)
    return Window(seconds=seconds, items=items, busy_seconds=items * latency, overload=overload)


def test_slow_start_doubles_while_throughput_scales_and_stops_at_the_maximum():
    limit = ConcurrencyLimit(start=4, minimum=1, maximum=50)
    sizes = [limit.update(_window(limit.limit)) for _ in range(6)]
    assert sizes == [8, 16, 32, 50, 50, 50]


def test_overload_backs_off_multiplicatively_then_grows_additively():
    limit = ConcurrencyLimit(start=40, minimum=2, maximum=100)
    assert limit.update(_window(40, overload=3)) == int(40 * BACKOFF) == 32  # 3 of 403: a gentle back-off
    sizes = [limit.update(_window(limit.limit)) for _ in range(1 + PATIENCE_WINDOWS + 3)]
    # An eighth more a window, a pause just below the size that was overloaded, then the try, and on.
    assert sizes == [36] + [36] * (PATIENCE_WINDOWS + 1) + [40, 45]


def test_latency_right_after_an_overload_back_off_is_not_held_against_the_pool_twice():
    limit = ConcurrencyLimit(start=40, minimum=2, maximum=100)
    limit.update(_window(40, busy=0.4))  # the baseline latency, 0.1 s (an idle pool does not grow)
    assert limit.update(_window(40, overload=2)) == 32
    # The refused requests waited for Retry-After: this window's latency is high, but that is the overload again.
    assert limit.update(_window(32, latency=1.0)) == 32
    # Still high a window later: that is latency (far over the tolerance: the most one window shrinks it).
    assert limit.update(_window(32, latency=1.0)) == round(32 * LATENCY_SHRINK)


def test_heavy_overload_halves_the_pool():
    limit = ConcurrencyLimit(start=40, minimum=2, maximum=100)
    assert limit.update(_window(40, overload=45)) == 20  # 45 of 445 answers said "slow down"
    assert limit.update(_window(20, overload=100)) == 10


def test_latency_over_the_tolerance_shrinks_in_proportion_but_never_below_the_minimum():
    limit = ConcurrencyLimit(start=64, minimum=20, maximum=100)
    limit.update(_window(64, latency=0.1, busy=0.4))  # an idle pool: the baseline, no growth
    assert limit.limit == 64
    assert limit.update(_window(64, latency=0.1 * TOLERANCE * 1.25)) == 51  # 64 / 1.25
    assert limit.update(_window(51, latency=1.0)) == round(51 * LATENCY_SHRINK)  # at most LATENCY_SHRINK
    assert limit.update(_window(38, latency=1.0)) == 28
    assert limit.update(_window(28, latency=1.0)) == 21
    assert limit.update(_window(21, latency=1.0)) == 20  # held at the minimum


def test_a_step_that_does_not_raise_throughput_is_undone_and_retried_later():
    limit = ConcurrencyLimit(start=10, minimum=1, maximum=100)
    assert limit.update(_window(10)) == 20
    # At 20 threads the far end serves no more than at 10: latency doubles, just within the tolerance.
    flat = Window(seconds=1.0, items=100, busy_seconds=100 * 0.1 * TOLERANCE, overload=0)
    assert limit.update(flat) == 15  # halfway back: the best size is likely between 10 and 20
    waited = [limit.update(_window(15)) for _ in range(PATIENCE_WINDOWS)]
    assert waited == [15] * PATIENCE_WINDOWS
    assert limit.update(_window(15)) == 18  # after slow start: a quarter more
    flat = Window(seconds=1.0, items=150, busy_seconds=18 * 1.0, overload=0)  # no more done at 18 than at 15
    assert limit.update(flat) == 15  # all the way back
    waited = [limit.update(_window(15)) for _ in range(2 * PATIENCE_WINDOWS)]
    assert waited == [15] * 2 * PATIENCE_WINDOWS  # and it waits twice as long before the next try
    assert limit.update(_window(15)) == 18


def test_a_pool_with_idle_threads_does_not_grow():
    limit = ConcurrencyLimit(start=8, minimum=1, maximum=100)
    assert [limit.update(_window(8, busy=0.3)) for _ in range(5)] == [8] * 5


def test_an_empty_window_changes_nothing():
    limit = ConcurrencyLimit(start=8, minimum=1, maximum=100)
    assert limit.update(Window(seconds=1.0, items=0, busy_seconds=0.0, overload=5)) == 8
    with pytest.raises(ValueError):
        ConcurrencyLimit(start=8, minimum=9, maximum=100)


def _far_end(threads: int, capacity: float, rate_limit: float | None) -> Window:
    """A model server: 0.1 s per request, at most ``capacity`` requests/s (beyond it requests queue up),
    and, with ``rate_limit``, requests beyond that many per second are refused (overload)."""
    served = min(threads / 0.1, capacity)
    overload = 0
    if rate_limit is not None and served > rate_limit:
        overload, served = int(served - rate_limit), rate_limit
    return Window(seconds=1.0, items=int(served), busy_seconds=threads * 1.0, overload=overload)


def test_against_a_server_of_limited_capacity_it_settles_where_throughput_stops_rising():
    limit = ConcurrencyLimit(start=4, minimum=1, maximum=1000)
    sizes = [limit.update(_far_end(limit.limit, capacity=500, rate_limit=None)) for _ in range(60)]
    # 50 threads saturate it; the latency tolerance lets the pool go to about twice that, never far beyond.
    assert all(size <= 50 * TOLERANCE * 1.3 for size in sizes)
    late = sizes[-30:]
    assert all(size >= 50 for size in late)  # full throughput: at least the 50 threads it takes
    assert sum(size <= 50 * TOLERANCE for size in late) >= 0.8 * len(late)  # beyond, only brief probes


def test_against_a_rate_limit_most_windows_have_no_overload():
    limit = ConcurrencyLimit(start=16, minimum=1, maximum=1000)
    windows = []
    for _ in range(100):
        window = _far_end(limit.limit, capacity=10_000, rate_limit=100)
        windows.append(window)
        limit.update(window)
    late = windows[20:]
    refused = sum(w.overload for w in late) / sum(w.items + w.overload for w in late)
    assert refused < 0.02
    assert sum(w.items for w in late) / len(late) > 80  # and it still uses most of the allowance


# -- real runs -------------------------------------------------------------------


class Jittery:
    """Takes ``delay`` s per item and says "overloaded" at random (seeded), so its pool keeps
    changing size; fails every item divisible by ``fail_every``."""

    def __init__(self, key: str, delay: float = 0.005, overload: float = 0.1, fail_every: int = 0) -> None:
        self.key, self.delay, self.overload, self.fail_every = key, delay, overload, fail_every
        self.random = random.Random(zlib.crc32(threading.current_thread().name.encode()))
        self.counters: Counter[str] = Counter()
        _event(key, "init")

    def process(self, item: int) -> Any:
        time.sleep(self.delay)
        if self.random.random() < self.overload:
            self.counters["overload"] += 1
        if self.fail_every and item % self.fail_every == 0:
            raise ValueError(f"bad {item}")
        return [item]

    def close(self) -> None:
        _event(self.key, "close")


_LOCK = threading.Lock()
_EVENTS: dict[str, Counter[str]] = {}


def _event(key: str, name: str) -> None:
    with _LOCK:
        _EVENTS.setdefault(key, Counter())[name] += 1


def _symbols(server: Any, count: int) -> list[str]:
    """``count`` symbols (repeating) that have a price on kraken on the last day: each is one stored price."""
    dataset = server.dataset
    priced = [s for s in dataset.symbols if dataset.price("kraken", s, dataset.days.last) is not None]
    return [priced[i % len(priced)].upper() for i in range(count)]


def _fetch_pipeline(url: str, symbols: list[str], key: str, **auto: Any) -> dict[str, Any]:
    """Symbols -> the real PriceWorker (instances: auto) -> a collecting sink."""
    return {
        "monitor_interval": 0.1,
        "queues": [{"name": "symbols", "maxsize": 5000}, {"name": "prices", "maxsize": 5000}],
        "workers": [
            stage("Source", "Echo", input_values=symbols, output_queues="symbols"),
            {"name": "PriceWorker", "location": "workers.price_worker", "class": "PriceWorker",
             "instances": "auto", **auto, "input_queue": "symbols", "output_queues": "prices",
             "params": {"base_url": url, "exchanges": ["kraken"], "date": "latest",
                        "http": {"retries": 8, "backoff": 0.05, "max_retry_after": 2}}},
            stage("Sink", "Collect", params={"key": key}, input_queue="prices"),
        ],
    }


def _pool(seen: list[list[StageStatus]], name: str) -> list[int]:
    return [s.pool_size for statuses in seen for s in statuses if s.name == name]


def test_auto_grows_the_pool_while_a_slow_server_gives_more_throughput(run_pipeline, start_price_server, key):
    from tests.engine.workers import collected

    server = start_price_server(sleep=0.05)
    symbols = _symbols(server, 800)
    seen: list[list[StageStatus]] = []
    report = run_pipeline(_fetch_pipeline(server.url, symbols, key, max_instances=128), on_status=seen.append)
    fetch = report.stage("PriceWorker")
    assert report.exit_code == 0 and len(collected(key)) == len(symbols) == fetch.items_out
    assert fetch.instances == 32 and fetch.pool_peak > 32 and (fetch.min_instances, fetch.max_instances) == (1, 128)
    assert max(_pool(seen, "PriceWorker")) == fetch.pool_peak and server.stats.peak_in_flight > 32


def test_auto_backs_off_when_the_server_answers_429(run_pipeline, start_price_server, key):
    from tests.engine.workers import collected

    server = start_price_server(sleep=0.05, rate_limit=60)  # room for about 3 threads
    symbols = _symbols(server, 180)
    seen: list[list[StageStatus]] = []
    report = run_pipeline(_fetch_pipeline(server.url, symbols, key, min_instances=2, max_instances=40),
                          on_status=seen.append)
    fetch = report.stage("PriceWorker")
    assert report.exit_code == 0 and len(collected(key)) == len(symbols)
    assert fetch.counters["overload"] == fetch.counters["http.status.429"] > 0
    sizes = _pool(seen, "PriceWorker")
    # From 32 down towards the 3 the limit allows (how far depends on how many windows a loaded
    # machine fits in), and it stays well below where it started.
    assert sizes[0] == 32 and min(sizes) <= 12 and fetch.pool_size == sizes[-1] <= 16


def test_auto_shrinks_when_latency_grows(run_pipeline, start_price_server, key, caplog):
    caplog.set_level("INFO", logger="engine.autoscale")
    server = start_price_server(sleep=0.02)
    symbols = _symbols(server, 1000)
    sizes: list[int] = []  # the pool size at each status, from the slow-down on

    def watch(statuses: list[StageStatus]) -> None:
        size = next(s.pool_size for s in statuses if s.name == "PriceWorker")
        if sizes or size > 32:  # it has grown: the baseline latency is known
            sizes.append(size)
        if len(sizes) == 1:
            server.set_faults(sleep=0.3)  # fifteen times slower, no error: only the latency says so
        elif sizes and size < sizes[0] and server.faults.sleep:
            server.set_faults(sleep=0.0)  # seen: let the rest go fast

    report = run_pipeline(_fetch_pipeline(server.url, symbols, key, max_instances=128), on_status=watch)
    assert report.exit_code == 0 and sizes
    assert min(sizes) < sizes[0]
    said = [r.getMessage() for r in caplog.records if r.name == "engine.autoscale"]
    shrank = re.compile(rf"PriceWorker: \d+ -> \d+ threads \(latency \S+ over {TOLERANCE:g}x")
    assert any(shrank.match(line) for line in said), said


def _jittery_pipeline(items: int, key: str, **work: Any) -> dict[str, Any]:
    """Numbers 0..items-1 -> Jittery (instances: auto, with ``work``'s settings) -> a collecting sink."""
    return {
        "monitor_interval": 0.05,
        "queues": [{"name": "numbers", "maxsize": 200}, {"name": "done", "maxsize": 50}],
        "workers": [
            stage("Source", "Range", input_values=[[0, items]], output_queues="numbers"),
            {"name": "Work", "location": HERE, "class": "Jittery", "instances": "auto", **work,
             "input_queue": "numbers", "output_queues": "done"},
            stage("Sink", "Collect", params={"key": key}, input_queue="done"),
        ],
    }


def test_every_item_is_accounted_for_while_the_pool_keeps_changing_size(run_pipeline, key, tmp_path):
    from tests.engine.workers import collected

    items = 2000
    document = _jittery_pipeline(items, key, min_instances=2, max_instances=40, params={"key": key, "fail_every": 97})
    sizes: list[int] = []
    report = run_pipeline(document, on_status=lambda s: sizes.append(s[1].pool_size),
                          dead_letter=tmp_path / "dead.jsonl", max_failures="100%")
    work = report.stage("Work")
    failed = [json.loads(line)["item"] for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    got = collected(key)
    assert sorted(got + failed) == list(range(items)) and len(got) == len(set(got))
    assert work.failed == len(failed) == len(range(0, items, 97)) and work.lost == 0 and report.exit_code == 0
    assert len(set(sizes)) >= 3  # it really moved, up and down
    assert _EVENTS[key]["init"] == _EVENTS[key]["close"] > work.pool_size


def test_an_interrupt_while_the_pool_changes_size_stops_the_run_and_loses_nothing(make_executor, key, tmp_path):
    from tests.engine.workers import collected

    document = _jittery_pipeline(20_000, key, max_instances=40, params={"key": key, "delay": 0.01})
    sizes: list[int] = []
    executors: list[Any] = []

    def watch(statuses: list[StageStatus]) -> None:
        sizes.append(statuses[1].pool_size)
        if len(set(sizes)) == 3 and len(executors) == 1:  # it has moved up and down: Ctrl+C, from another thread
            executors.append(threading.Thread(target=executors[0].interrupt))
            executors[-1].start()

    executors.append(make_executor(document, dead_letter=tmp_path / "dead.jsonl", on_status=watch))
    started = time.monotonic()
    report = executors[0].run()
    assert report.exit_code == 130 and time.monotonic() - started < 30
    entries = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    source = report.stage("Source")
    # The source emitted its one range item's numbers as far as it got; each is stored or recorded.
    work = report.stage("Work")
    assert source.items_out == work.items_in + work.lost
    assert len(collected(key)) + len([e for e in entries if e["stage"] != "Source"]) == source.items_out
    assert _EVENTS[key]["init"] == _EVENTS[key]["close"]


def test_report_json_has_the_pool_of_an_auto_stage(run_pipeline, key):
    document = _jittery_pipeline(50, key, min_instances=3, max_instances=9, params={"key": key, "overload": 0.0})
    data = run_pipeline(document).to_dict()
    source, work, _ = data["stages"]
    assert (source["pool_size"], source["pool_peak"], source["min_instances"], source["max_instances"]) == (1, 1, None, None)
    assert work["instances"] == 9 and work["min_instances"] == 3 and work["max_instances"] == 9
    assert 3 <= work["pool_size"] <= work["pool_peak"] <= 9


def test_a_retiring_thread_ends_as_retired_and_is_not_restarted(make_executor, key):
    shrunk: list[Stage] = []
    document = _jittery_pipeline(250, key, min_instances=4, max_instances=4, params={"key": key, "overload": 0.0})
    executors: list[Any] = []

    def shrink(statuses: list[StageStatus]) -> None:
        work: Stage = executors[0]._stages[1]
        if not shrunk and work.items_in > 20:
            work.resize(1)  # as the autoscaler does, from the monitor thread
            shrunk.append(work)

    executors.append(make_executor(document, on_status=shrink))
    report = executors[0].run()
    work = shrunk[0]
    assert report.exit_code == 0 and report.stage("Work").items_in == 250 and work.restarts == 0
    assert sorted(s.outcome for s in work.slots) == ["done"] + [RETIRED] * 3
    assert _EVENTS[key]["init"] == _EVENTS[key]["close"] == 4


# -- what a person and a scraper see ---------------------------------------------


def _auto_status(**extra: Any) -> StageStatus:
    fields = dict(name="PriceWorker", alive=13, instances=16, queue_depth=5, items_in=40, items_out=40, failed=0,
                  lost=0, rate=50.0, expected=None, state="running", pool_size=12, min_instances=1, max_instances=200)
    fields.update(extra)
    return StageStatus(**fields)


def test_the_live_view_log_line_and_summary_show_an_auto_pool(caplog):
    from rich.console import Console

    from cli.display import LiveView, render_summary
    from engine import RunReport, StageReport
    from engine.monitor import log_statuses

    fixed = _auto_status(name="Store", alive=2, instances=2, pool_size=2, min_instances=None, max_instances=None)
    console = Console(record=True, width=160, color_system=None)
    console.print(LiveView(Console(), "run").render([_auto_status(), fixed]))
    table = console.export_text()
    assert "13/12 auto 1-200" in table and " 2/2 " in table  # alive / the size it aims at now, and the bounds
    caplog.set_level("INFO", logger="engine")
    log_statuses([_auto_status(), fixed])
    assert caplog.records[0].getMessage().endswith("13/12 auto 1-200 threads")
    assert caplog.records[1].getMessage().endswith("2/2 threads")
    report = RunReport(stages=[StageReport("PriceWorker", 16, 40, 40, 0, 0, 1.0, 0, "done", pool_size=12,
                                           pool_peak=64, min_instances=1, max_instances=200)],
                       exit_code=0, reason=None, dead_letter_path=Path("x"), dead_letters=0, seconds=1.0)
    console.print(render_summary(report, "run"))
    assert "threads auto 1-200: 16 -> 12 (peak 64)" in console.export_text()


def test_metrics_export_the_threads_target_of_every_stage():
    from cli.metrics import _StatusCollector

    collector = _StatusCollector()
    collector.statuses = [_auto_status(), _auto_status(name="Store", pool_size=2, min_instances=None)]
    target = next(m for m in collector.collect() if m.name == "pipeline_stage_threads_target")
    assert {s.labels["stage"]: s.value for s in target.samples} == {"PriceWorker": 12, "Store": 2}
