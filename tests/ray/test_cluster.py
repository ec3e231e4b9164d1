"""Several nodes: a node removed mid-run takes its actors with it, and the invariant still holds."""

from __future__ import annotations

import pytest

from tests.ray.conftest import LOOPBACK, requires_ray, run_with_fault

pytestmark = [pytest.mark.slow, requires_ray]


def test_a_node_removed_mid_run_loses_nothing_and_stores_no_row_twice(
    ray_cluster, run_on_ray, fault_server, dataset, clean_prices
):
    node = ray_cluster.add_node(num_cpus=2, node_ip_address=LOOPBACK)  # 4 CPUs: the fetchers spread over both
    removed = []

    def remove() -> None:  # as a machine that is switched off: no clean-up on it
        ray_cluster.remove_node(node, allow_graceful=False)
        removed.append(node)

    try:
        report, _ = run_with_fault(run_on_ray, fault_server, dataset, clean_prices, remove)
    finally:
        if not removed:
            ray_cluster.remove_node(node)
    assert report.stage("PriceWorker").restarts >= 1  # its actors on the lost node came back on the head
