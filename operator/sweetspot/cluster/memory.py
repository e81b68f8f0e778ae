"""What the operator process remembers per study, in one place that is created with the study's first reconcile
and dropped with the study; and the rule that one reconcile of a study runs at a time.

Not kopf's per-resource `memo`: a study is reconciled from its timer, its spec changes and its runs' watch (whose
memo is the Job's or TrainJob's), so the memory is keyed by the study here. Never read back from the resource: a
forged status cannot make a study look ended, and a restarted operator, remembering nothing, starts from the
storage and the cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sweetspot.core.records import RunView
from sweetspot.storage.store import SearchStore


@dataclass(frozen=True)
class Written:
    """What this process last wrote into a study's status, and whether the storage said the study had ended at
    that generation."""

    generation: int | None
    status: dict[str, Any]
    ended: bool


@dataclass
class StudyMemory:
    uid: str
    store: SearchStore | None = None
    """The study's Optuna store, kept while the spec it was opened with is the study's."""
    finished_runs: dict[str, RunView] = field(default_factory=dict)
    """Run object uid → what the finished run showed: a finished Job never changes, so its pods are read once, not
    on every pass (a study with 40 finished stages would otherwise cost 40 pod listings per pass). Replaced whole on
    every observation (runs gone from the cluster are forgotten), so readers on other threads see one version."""
    written: Written | None = None
    warned: bool = False
    """What is valid but loses work (`api.cluster_warnings`) was posted: once per study and operator process."""


class Memories:
    """Every study's memory, by `namespace/name`; a study re-created under its name (a new uid) starts afresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._studies: dict[str, StudyMemory] = {}

    def of(self, key: str, uid: str) -> StudyMemory:
        with self._lock:
            memory = self._studies.get(key)
            if memory is None or memory.uid != uid:
                memory = self._studies[key] = StudyMemory(uid)
            return memory

    def peek(self, key: str) -> StudyMemory | None:
        with self._lock:
            return self._studies.get(key)

    def drop(self, key: str) -> StudyMemory | None:
        with self._lock:
            return self._studies.pop(key, None)


class Serializer:
    """One reconcile per study at a time. A request while one runs marks the study dirty instead of waiting or
    running in parallel (two passes could both ask Optuna for the same free slot); the running one then passes
    once more, so no request is lost and a burst of Job events costs at most two passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        """Notified whenever a pass ends (`wait_idle`)."""
        self._running: set[str] = set()
        self._dirty: set[str] = set()
        self._finished: dict[str, float] = {}

    def idle_for(self, key: str) -> float:
        """Seconds since the last reconcile of `key` ended (infinite when none has, or one runs now)."""
        with self._lock:
            if key in self._running or key not in self._finished:
                return float("inf") if key not in self._running else 0.0
            return time.monotonic() - self._finished[key]

    def forget(self, key: str) -> None:
        with self._lock:
            self._finished.pop(key, None)

    def run(self, key: str, reconcile: Callable[[], None]) -> bool:
        """Run `reconcile` (again while requests arrived during it); False when another thread already runs it."""
        with self._lock:
            if key in self._running:
                self._dirty.add(key)
                return False
            self._running.add(key)
        try:
            while True:
                reconcile()
                with self._lock:
                    if key not in self._dirty:
                        return True
                    self._dirty.discard(key)
        finally:
            with self._lock:
                self._running.discard(key)
                self._dirty.discard(key)
                self._finished[key] = time.monotonic()
                self._idle.notify_all()

    def wait_idle(self, key: str, timeout: float) -> bool:
        """Wait until no pass of `key` runs (False if one still does after `timeout` seconds). A deleted study's
        clean-up waits here: a pass that began before the deletion could otherwise start a stage after the sweep,
        and every pass that begins later reads the study afresh, sees it being deleted and starts nothing."""
        with self._idle:
            return self._idle.wait_for(lambda: key not in self._running, timeout)
