"""``--metrics-port``: the run's live status at ``/metrics``, in the Prometheus text format.

A custom collector reads the latest list of :class:`engine.StageStatus` the
monitor reported, in a registry of its own: nothing global, so two runs in one
process never mix. Figures move at the pace of ``monitor_interval``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from engine import StageStatus
from workers.http_stats import LATENCY_BOUNDS

_LATENCY_LABELS = [f"{b:g}" for b in LATENCY_BOUNDS]


class MetricsError(Exception):
    """The metrics server cannot start (the port is taken, say); the message is one line."""


class _StatusCollector:
    """Builds every metric from the latest statuses, at each scrape."""

    def __init__(self) -> None:
        self.statuses: Sequence[StageStatus] = ()  # replaced whole by update(): a reader sees one list or the other

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

    def __enter__(self) -> "MetricsServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def update(self, statuses: list[StageStatus]) -> None:
        self._collector.statuses = statuses

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
