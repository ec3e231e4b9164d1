"""Several nodes: a node removed mid-run takes its actors with it, and the invariant still holds."""

from __future__ import annotations

import pytest

from engine.report import EXIT_OK
from tests.faults.conftest import Watcher, check_accounting, count_rows, plan, price_pipeline
from tests.ray.conftest import LOOPBACK

pytestmark = pytest.mark.slow


def test_a_node_removed_mid_run_loses_nothing_and_stores_no_row_twice(
    ray_cluster, run_on_ray, fault_server, dataset, clean_prices
):
    node = ray_cluster.add_node(num_cpus=2, node_ip_address=LOOPBACK)  # 4 CPUs: the fetchers spread over both
    server = fault_server(sleep=0.01)
    symbols = sorted(dataset.symbols)[:10]
    tasks = plan(symbols, ["bitstamp", "kraken", "coinbase-pro"], "2020-04-01", "2020-04-10")
    document = price_pipeline(server_url=server.url, database_url=clean_prices, symbols=symbols,
                              start="2020-04-01", end="2020-04-10", fetchers=8)
    removed = []

    def remove() -> None:  # as a machine that is switched off: no clean-up on it
        ray_cluster.remove_node(node, allow_graceful=False)
        removed.append(node)

    watcher = Watcher(lambda: count_rows(clean_prices) >= 40, remove)
    watcher.start()
    try:
        report = run_on_ray(document)
    finally:
        watcher.finish()
        if not removed:
            ray_cluster.remove_node(node)
    assert removed, "the node was not removed: the run ended first"
    assert report.exit_code == EXIT_OK, report.reason
    assert report.stage("PriceWorker").restarts >= 1  # its actors on the lost node came back on the head
    accounting = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    assert not accounting.entries
    assert len(accounting.stored) + accounting.no_data == len(tasks)
