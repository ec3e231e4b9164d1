"""More serving processes for the gevent server, one per core, sharing the port with SO_REUSEPORT.

One process answers on one core, and Flask's work per request bounds it (about
5,000 requests per second here); a burst of thousands of connections then waits
on that core while the other idles. Siblings are forked once the port is bound,
each with a listening socket of its own on the same port (SO_REUSEPORT): the
kernel spreads new connections evenly between them. (One socket shared by all
would let the process that wakes first take every connection of a burst.)
Before the fork the request counters and the rate limiter move to shared memory,
so they stay server-wide.

A sibling serves until the pipe from the first process reaches end of file: when
that process stops it (:meth:`Siblings.stop`) and also when it dies, SIGKILL
included, because the kernel closes a dead process's descriptors. Where fork or
SO_REUSEPORT's load spreading does not exist (Windows, macOS), there is one process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from .app import CryptoServerApp

_log = logging.getLogger("crypto_server")

# How long stop() waits for siblings to finish their requests in flight (they get 1 s) and exit.
_STOP_TIMEOUT = 5.0


def can_fork() -> bool:
    """Whether more serving processes are possible here (Linux: fork, and SO_REUSEPORT spreads connections)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and hasattr(socket, "SO_REUSEPORT")


def default_processes() -> int:
    """One serving process per core, at most two (the load a mock must carry), one without fork."""
    return min(2, os.cpu_count() or 1) if can_fork() else 1


class Siblings:
    """The forked serving processes of this one. ``stop()`` ends them; ``cpu_seconds()`` is their CPU time."""

    def __init__(self, pids: list[int], pipe: int | None) -> None:
        self.pids = pids
        self._pipe = pipe  # write end: its end of file tells the siblings to stop

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the siblings have used so far (0 where they cannot be read)."""
        try:
            import psutil
        except ImportError:
            return 0.0
        total = 0.0
        for pid in self.pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:  # already gone
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        """Tell the siblings to stop, wait for them (killing any that hang). Idempotent; never raises."""
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        deadline = time.monotonic() + _STOP_TIMEOUT
        for pid in self.pids:
            while True:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    _log.warning("serving process %s did not stop; killing it", pid)
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.01)
        self.pids = []


def fork_siblings(app: CryptoServerApp, server: Any, bind: Callable[[], Any], count: int) -> Siblings:
    """Fork ``count`` more processes serving ``app``, each on a server made by ``bind()``.

    ``server`` is this process's (bound with SO_REUSEPORT, not yet serving); ``bind()``
    makes another on the same port. Call before this process starts any thread.
    In the forked processes this never returns.
    """
    if count <= 0 or not can_fork():
        return Siblings([], None)
    app._fault_layer.share()
    servers = [bind() for _ in range(count)]
    read_end, write_end = os.pipe()
    pids = []
    for index, own in enumerate(servers, start=1):
        pid = os.fork()
        if pid == 0:
            os.close(write_end)
            for other in (server, *servers):  # a socket nobody accepts on would swallow connections
                if other is not own:
                    other.server_close()
            _serve_until_told(app, own, read_end, index)
        pids.append(pid)
    os.close(read_end)
    for own in servers:
        own.server_close()
    return Siblings(pids, write_end)


def _serve_until_told(app: CryptoServerApp, server: Any, pipe: int, index: int) -> None:
    """A sibling's life: serve until ``pipe`` ends, then stop and exit without running the parent's exit code."""
    from .server import ServerHandle

    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the first process decides when to stop
        # Not the first process's stdin and stdout: those are its parent's protocol.
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        app._fault_layer.forked(index)
        handle = ServerHandle(app, server)
        while os.read(pipe, 1):
            pass
        handle.stop()
    except BaseException:  # never let a sibling run on into the first process's code
        _log.exception("serving process %s failed", os.getpid())
        code = 1
    finally:
        os._exit(code)
