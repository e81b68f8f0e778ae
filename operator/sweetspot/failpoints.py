"""Failpoints: named places where the operator can be made to die on purpose, to prove that a crash there
loses and repeats nothing (the reliability tests restart it after each).

Off unless `SWEETSPOT_FAILPOINT` names one, as `<name>:<n>`: the process SIGKILLs itself (no cleanup, like
an OOM kill or a node failure) the n-th time it passes that point. As `<name>:<n>:hold=<path>` the n-th pass waits
there instead until `<path>` exists, then goes on: a test holds a reconcile at that point while it acts. The points:

- `ask`: Optuna has just created a trial; nothing else knows of it yet (no Event, no Job).
- `tell`: Optuna has just been told a stage's result; Sweetspot's record of the outcome is not written yet.
- `create-job`: a stage's ConfigMap exists, its Job does not.
- `write-status`: a reconcile has applied its actions and is about to write the study's status.
- `warm-copy`: warm start has just copied a trial of an earlier study; its record and the rest are not written yet.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

ENV = "SWEETSPOT_FAILPOINT"
POINTS = ("ask", "tell", "create-job", "write-status", "warm-copy")

log = logging.getLogger(__name__)
_passes: dict[str, int] = {}
_lock = threading.Lock()


def _armed() -> tuple[str, int, Path | None] | None:
    value = os.environ.get(ENV, "")
    if not value:
        return None
    name, _, rest = value.partition(":")
    count, _, hold = rest.partition(":")
    if (
        name not in POINTS
        or not count.isdigit()
        or int(count) < 1
        or (hold and (not hold.startswith("hold=") or len(hold) == len("hold=")))
    ):
        raise ValueError(
            f"{ENV}={value!r}: expected <point>:<n> or <point>:<n>:hold=<path>, a point one of "
            f"{', '.join(POINTS)} and n >= 1"
        )
    return name, int(count), Path(hold.removeprefix("hold=")) if hold else None


ARMED = _armed()


def failpoint(name: str) -> None:
    """Die here (or hold until the release file exists) if this is the armed point's n-th pass; a no-op otherwise."""
    if ARMED is None or ARMED[0] != name:
        return
    point, count, release = ARMED
    with _lock:
        _passes[name] = _passes.get(name, 0) + 1
        reached = _passes[name] == count
    if not reached:
        return
    if release is None:
        log.warning("failpoint %s:%d reached: killing the process", point, count)
        os.kill(os.getpid(), signal.SIGKILL)
        return
    log.warning("failpoint %s:%d reached: holding until %s exists", point, count, release)
    while not release.exists():
        time.sleep(0.05)
    log.warning("failpoint %s:%d released", point, count)
