"""Which RAY_ADDRESS names another machine (decided without sending anything anywhere)."""

from __future__ import annotations

import socket

import psutil
import pytest

from ray_executor.runtime import address_is_remote


def _an_address_of_this_machine() -> str:
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family == socket.AF_INET and not entry.address.startswith("127."):
                return entry.address
    pytest.skip("this machine has no network address but the loopback")


@pytest.mark.parametrize("address", ["auto", "local", "127.0.0.1:6379", "localhost:6379", "[::1]:6379"])
def test_this_machine_is_not_remote(address):
    assert not address_is_remote(address)


def test_an_address_of_this_machines_own_is_not_remote():
    assert not address_is_remote(f"{_an_address_of_this_machine()}:6379")


@pytest.mark.parametrize("address", ["203.0.113.7:6379", "ray://203.0.113.7:10001", "head.example:6379"])
def test_another_machine_is_remote(address):
    assert address_is_remote(address)
