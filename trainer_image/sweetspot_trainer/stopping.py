"""A stop request: SIGTERM (a pod being evicted, preempted or drained; local mode's Ctrl-C) or SIGINT.

The handler only notes the signal; the training loop looks after each optimizer step, writes a checkpoint and
raises `StageStopped`, which the entrypoint turns into `EXIT_INTERRUPTED`. So a stop costs the rest of the step in
progress and one checkpoint write, well inside the pod's grace period, and the rerun resumes at that step.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StageStopped(Exception):  # noqa: N818 - a stop is no error
    """The stage stopped on request after `step`, its checkpoint written (or none kept: no checkpoint folder)."""

    def __init__(self, step: int, signum: int, checkpointed: bool) -> None:
        name = signal.Signals(signum).name
        kept = "checkpoint written" if checkpointed else "no checkpoint written"
        super().__init__(f"stopped by {name} after step {step} ({kept})")
        self.step, self.signum, self.checkpointed = step, signum, checkpointed


class StopRequest:
    """Notes SIGTERM and SIGINT while installed (a context manager; only the main thread can install handlers)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum  # a second signal changes nothing: the stop is under way

    @property
    def requested(self) -> bool:
        return self.signum is not None
