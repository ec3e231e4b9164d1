"""``--metrics-port``: the run's live status at ``/metrics``, in the Prometheus text format.

A custom collector reads the latest list of :class:`engine.StageStatus` the
monitor reported, in a registry of its own: nothing global, so two runs in one
process never mix. Figures move at the pace of ``monitor_interval``. A service
(``--every``) also records each run's outcome (:meth:`MetricsServer.record_run`):
the last run's gauges and a count of runs by outcome, served between runs too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from engine import StageStatus
from workers.http_stats import LATENCY_BOUNDS

_LATENCY_LABELS = [f"{b:g}" for b in LATENCY_BOUNDS]


class MetricsError(Exception):
    """The metrics server cannot start (the port is taken, say); the message is one line."""


@dataclass(frozen=True)
class _Runs:
    """What the service has run so far: replaced whole at each run's end, so a scrape sees one state or the other."""

    counts: dict[str, int] = field(default_factory=dict)  # runs by outcome
    outcome: str = ""  # the last run's; "" before the first has ended
    exit_code: int = 0
    seconds: float = 0.0
    ended: float = 0.0  # Unix time
    next_run: float | None = None  # Unix time of the next start, while the service waits


class _StatusCollector:
    """Builds every metric from the latest statuses, at each scrape."""

    def __init__(self) -> None:
        self.statuses: Sequence[StageStatus] = ()  # replaced whole by update(): a reader sees one list or the other
        self.runs = _Runs()  # replaced whole, the same way

    def collect(self) -> Iterator[Metric]:
        statuses = self.statuses
        items = CounterMetricFamily("pipeline_items", "Items per stage and outcome", labels=["stage", "outcome"])
        depth = GaugeMetricFamily("pipeline_queue_depth", "Items waiting in a queue", labels=["queue"])
        maxsize = GaugeMetricFamily("pipeline_queue_maxsize", "A queue's maxsize (0: unbounded)", labels=["queue"])
        peak = GaugeMetricFamily("pipeline_queue_peak", "The deepest a queue has been", labels=["queue"])
        alive = GaugeMetricFamily("pipeline_threads_alive", "Worker threads running", labels=["stage"])
        target = GaugeMetricFamily(
            "pipeline_stage_threads_target", "Threads a stage aims at (moves with instances: auto)", labels=["stage"]
        )
        requests = CounterMetricFamily(
            "pipeline_http_requests", "HTTP attempts answered, by status code", labels=["stage", "code"]
        )
        retries = CounterMetricFamily("pipeline_http_retries", "HTTP retries by reason", labels=["stage", "reason"])
        waited = CounterMetricFamily(
            "pipeline_http_retry_after_seconds", "Seconds slept on Retry-After", labels=["stage"]
        )
        received = CounterMetricFamily("pipeline_http_received_bytes", "Response body bytes", labels=["stage"])
        latency = HistogramMetricFamily(
            "pipeline_http_request_seconds", "One HTTP request, retries and waits included", labels=["stage"]
        )
        for s in statuses:
            c = s.counters
            for outcome, value in (("in", s.items_in), ("out", s.items_out), ("failed", s.failed),
                                   ("lost", s.lost), ("no_data", c.get("no_data", 0))):
                items.add_metric([s.name, outcome], value)
            depth.add_metric([s.queue_name], s.queue_depth)
            maxsize.add_metric([s.queue_name], s.queue_maxsize)
            peak.add_metric([s.queue_name], s.queue_peak)
            alive.add_metric([s.name], s.alive)
            target.add_metric([s.name], s.pool_size)
            if "http.requests" not in c:
                continue  # a stage that makes no HTTP requests
            for key, value in c.items():
                if key.startswith("http.status."):
                    requests.add_metric([s.name, key[len("http.status."):]], value)
                elif key.startswith("http.retries."):
                    retries.add_metric([s.name, key[len("http.retries."):]], value)
            waited.add_metric([s.name], c.get("http.retry_after_seconds", 0.0))
            received.add_metric([s.name], c.get("http.bytes", 0))
            latency.add_metric([s.name], _cumulative(c), sum_value=c.get("http.latency.sum", 0.0))
        yield from (items, depth, maxsize, peak, alive, target, requests, retries, waited, received, latency)
        yield from _run_metrics(self.runs)


def _run_metrics(runs: _Runs) -> Iterator[Metric]:
    """The service's runs: how many by outcome, and the last one's outcome, exit code, duration and end."""
    if not runs.counts:
        return
    total = CounterMetricFamily("pipeline_runs", "Runs the service has made, by outcome", labels=["outcome"])
    for outcome, count in sorted(runs.counts.items()):
        total.add_metric([outcome], count)
    last = GaugeMetricFamily("pipeline_last_run_outcome", "1 for the last run's outcome, 0 for the others seen",
                             labels=["outcome"])
    for outcome in sorted(runs.counts):
        last.add_metric([outcome], 1 if outcome == runs.outcome else 0)
    yield total
    yield last
    yield GaugeMetricFamily("pipeline_last_run_exit_code", "The last run's exit code", value=runs.exit_code)
    yield GaugeMetricFamily("pipeline_last_run_duration_seconds", "How long the last run took", value=runs.seconds)
    yield GaugeMetricFamily("pipeline_last_run_end_time_seconds", "When the last run ended (Unix time)",
                            value=runs.ended)
    if runs.next_run is not None:
        yield GaugeMetricFamily("pipeline_next_run_time_seconds", "When the next run starts (Unix time)",
                                value=runs.next_run)


def _cumulative(counters: dict[str, float]) -> list[tuple[str, float]]:
    """Prometheus buckets (cumulative) from the workers' per-bucket counts."""
    buckets, seen = [], 0.0
    for label in [*_LATENCY_LABELS, "+Inf"]:
        seen += counters.get(f"http.latency.le.{label}", 0)
        buckets.append((label, seen))
    return buckets


class MetricsServer:
    """Serves ``/metrics`` on ``host:port`` from :meth:`start` to :meth:`stop`; :meth:`update` is a status callback."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._collector = _StatusCollector()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._collector)  # type: ignore[arg-type]
        self._server: Any = None

    def start(self) -> None:
        """Listen, or raise :class:`MetricsError` saying why not."""
        try:
            self._server, _ = start_http_server(self.port, addr=self.host, registry=self._registry)
        except (OSError, OverflowError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise MetricsError(f"cannot serve metrics on {self.host}:{self.port}: {reason}") from None
        self.port = self._server.server_port  # the one the system chose, if port was 0

    def __enter__(self) -> "MetricsServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def update(self, statuses: list[StageStatus]) -> None:
        self._collector.statuses = statuses

    def record_run(self, outcome: str, exit_code: int, seconds: float, ended: float) -> None:
        """A run has ended (``ended``: Unix time): count it and make it the last run. One thread calls this."""
        runs = self._collector.runs
        counts = {**runs.counts, outcome: runs.counts.get(outcome, 0) + 1}
        self._collector.runs = _Runs(counts, outcome, exit_code, seconds, ended, None)

    def next_run(self, at: float | None) -> None:
        """When the next run starts (Unix time), or None. One thread calls this."""
        runs = self._collector.runs
        self._collector.runs = _Runs(runs.counts, runs.outcome, runs.exit_code, runs.seconds, runs.ended, at)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
