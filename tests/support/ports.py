"""Ports for the servers the tests start (PostgreSQL, Prometheus, the operator's metrics, torchrun's master).

A port found free by binding and closing a probe socket can be taken before the server binds it. Two things make
that rare here, and one makes it harmless where it still happens:

- `free_port` picks below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), which is where the port
  of every outgoing connection and every `bind(0)` comes from: on a busy machine those are the ports taken
  meanwhile. It never hands out a port twice in one process, so two servers of one session never collide.
- `start_on_free_port` starts a server and, when the server says its port was taken (`PortTakenError`, or an
  `OSError` with EADDRINUSE), starts it again on another port.

A port that a separate process binds by itself (torchrun's master port, the operator's metrics port) cannot be
retried from here: those only take `free_port`.
"""

from __future__ import annotations

import errno
import random
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

LOWEST = 20000
"""Below this, ports are left to services that expect fixed numbers."""

_given: set[int] = set()
_lock = threading.Lock()


class PortTakenError(Exception):
    """Raised by a `start` function when its server could not bind the port it was given."""


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port on 127.0.0.1 that nothing is bound to now, outside the ephemeral range where the machine can, and
    never handed out before in this process."""
    top = _ephemeral_start()
    with _lock:
        if top - LOWEST >= 1000:
            for _ in range(200):
                port = random.randrange(LOWEST, top)
                if port not in _given and _bindable(port):
                    _given.add(port)
                    return port
        while True:  # no room below the ephemeral range (or all of it taken): the kernel's choice
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
            if port not in _given:
                _given.add(port)
                return port


def start_on_free_port(start: Callable[[int], T], attempts: int = 5) -> T:
    """`start(port)` on a free port; again on another one, up to `attempts` times in all, while it fails because
    its port was taken (it raises `PortTakenError`, or an `OSError` with EADDRINUSE). Any other failure is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return start(free_port())
        except PortTakenError:
            if attempt == attempts:
                raise
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == attempts:
                raise
    raise AssertionError("unreachable")  # the loop returns or raises
