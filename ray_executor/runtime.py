"""Connecting to Ray: the cluster at ``RAY_ADDRESS``, or a local runtime started for one run."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import threading

import psutil

from engine.errors import RunStartError
from engine.text import describe

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CONNECT_SECONDS = 10.0  # the longest a run waits for RAY_ADDRESS to accept a connection


class RayUnavailable(RunStartError):
    """Ray is not installed, or the cluster cannot be reached; one line."""


# Ray replaces 127.0.0.1 with the machine's network address unless this is "0" when it is
# imported (then it stays on the loopback, as on macOS). Set for a runtime on this machine only.
_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray():  # type: ignore[no-untyped-def]
    """The ``ray`` module, or :class:`RayUnavailable` saying how to install it.

    Imported for the first time with no ``RAY_ADDRESS`` (or a loopback one), Ray is kept on
    127.0.0.1: a runtime that only this machine uses listens on no network address.
    """
    address = cluster_address()
    if address is None or _is_loopback(address):
        os.environ.setdefault(_LOOPBACK_ONLY, "0")
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            "executor: ray needs Ray, which is not installed: pip install -r requirements-ray.txt"
        ) from None
    return ray


def connect() -> bool:
    """Make sure this process is connected to Ray; True if this call started a runtime (shut it down after).

    A runtime already initialised in this process (by a test, say) is used as it is. Else
    ``RAY_ADDRESS`` names the cluster to join; without it a local runtime is started for the
    run, bound to 127.0.0.1 without a dashboard: nothing outside this machine needs to reach it.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no "usage stats" banner, nothing sent out
    address = cluster_address()
    # ray.init makes SIGTERM exit at once; the caller's handler (a clean interrupt) is put back.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, logging_level=logging.WARNING)
    except Exception as exc:  # ConnectionError, or whatever Ray raises for a bad address
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray runtime"
        raise RayUnavailable(f"cannot start on {where}: {describe(exc)}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return not address


def refuse_remote_address(local_only: list[str]) -> None:
    """:class:`RunStartError` if ``RAY_ADDRESS`` names another machine while the run needs this one
    (``local_only`` says why); decided from the address alone, before anything connects."""
    address = cluster_address()
    if local_only and address and address_is_remote(address):
        raise RunStartError(cluster_refusal(local_only, f"RAY_ADDRESS={address}"))


def cluster_refusal(reasons: list[str], where: str) -> str:
    """The one line that refuses a cluster of several machines."""
    return (f"cannot run on a Ray cluster of several machines ({where}): {'; '.join(reasons)}; "
            "set DATABASE_URL and PRICE_SERVER_URL to services every node can reach")


def _check_reachable(address: str) -> None:
    """:class:`RayUnavailable` unless ``host:port`` accepts a connection within ``CONNECT_SECONDS``.

    Ray itself would try for minutes, quietly, before giving up on an address nobody answers at.
    """
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local": Ray finds the runtime of this machine itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayUnavailable(f"cannot reach the Ray cluster at RAY_ADDRESS={address}: {reason}") from None


def cluster_address() -> str | None:
    """The cluster to join, from Ray's own ``RAY_ADDRESS`` variable (None: start a local runtime)."""
    return os.environ.get("RAY_ADDRESS", "").strip() or None


def address_is_remote(address: str) -> bool:
    """Whether ``address`` (``host:port``, ``ray://host:port`` or ``auto``) names another machine.

    ``auto`` and ``local`` join a runtime on this machine; a host name other than this
    machine's counts as remote (it is not looked up, so nothing is sent anywhere).
    """
    if address in ("auto", "local"):
        return False
    return not _is_this_machine(_host(address))


def remote_nodes() -> list[str]:
    """The addresses of the cluster's live nodes that are not this machine."""
    ray = import_ray()
    return sorted(
        {node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")}
        - {address for address in _local_addresses()}
    )


def _host(address: str) -> str:
    return address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")


def _is_loopback(address: str) -> bool:
    host = _host(address)
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_this_machine(host: str) -> bool:
    if host in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or str(ip) in _local_addresses()


def _local_addresses() -> set[str]:
    addresses = {LOOPBACK}
    for entries in psutil.net_if_addrs().values():
        addresses.update(entry.address.split("%")[0] for entry in entries if entry.family in (socket.AF_INET, socket.AF_INET6))
    return addresses
