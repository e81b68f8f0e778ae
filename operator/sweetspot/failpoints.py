"""Failpoints: named places where the operator can be made to die on purpose, to prove that a crash there
loses and repeats nothing (the reliability tests restart it after each).

Off unless `SWEETSPOT_FAILPOINT` names one, as `<name>:<n>`: the process SIGKILLs itself (no cleanup, like
an OOM kill or a node failure) the n-th time it passes that point. The points:

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

ENV = "SWEETSPOT_FAILPOINT"
POINTS = ("ask", "tell", "create-job", "write-status", "warm-copy")

log = logging.getLogger(__name__)
_passes: dict[str, int] = {}
_lock = threading.Lock()


def _armed() -> tuple[str, int] | None:
    value = os.environ.get(ENV, "")
    if not value:
        return None
    name, _, count = value.partition(":")
    if name not in POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{ENV}={value!r}: expected <point>:<n>, a point one of {', '.join(POINTS)} and n >= 1")
    return name, int(count)


ARMED = _armed()


def failpoint(name: str) -> None:
    """Die here if this is the armed point's n-th pass (a no-op otherwise)."""
    if ARMED is None or ARMED[0] != name:
        return
    with _lock:
        _passes[name] = _passes.get(name, 0) + 1
        if _passes[name] == ARMED[1]:
            log.warning("failpoint %s:%d reached: killing the process", name, ARMED[1])
            os.kill(os.getpid(), signal.SIGKILL)
