"""Where trial stages run: the interface every runtime implements (local subprocesses, Kubernetes Jobs, Kubeflow
TrainJobs, and the HPO replay's table).

A runtime runs stages and reports what became of them; it decides nothing (the planner does) and records nothing
(the store does). What an implementation owes:
- `observe` lists every stage run of the study it knows of, as `RunView`s: running, or finished with the trainer's
  result (`sweetspot.contract.StageResult`) or the reason there is none. A finished run stays observable until the
  study is cleaned up: the planner records each result once, whenever it first sees it.
- `start` is idempotent: starting a run key that already exists changes nothing (a crash between starting a run
  and recording that it started repeats the start).
- `stop` is idempotent: a run already gone counts as stopped.
- `clean_up` removes everything the runtime made for a study (the study was deleted; its spec may be unreadable).
Thread rules: one plan-and-apply loop of a study runs at a time (the operator serialises a study's reconciles), so
a runtime needs no lock per study; a runtime may serve many studies from several threads at once.
`tests/integration/test_runtime_contract.py` holds every implementation (and every test fake) to this contract; the
cluster's runtimes are listed once, in `sweetspot.cluster.runtimes.RUNTIMES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from sweetspot.api.resource import FineTuneStudy
from sweetspot.core.records import RunKey, RunView, StartRun


class Runtime(ABC):
    @abstractmethod
    def observe(self, study: FineTuneStudy) -> list[RunView]:
        """Every stage run of `study` this runtime knows of."""

    @abstractmethod
    def start(self, study: FineTuneStudy, action: StartRun) -> str:
        """Start one stage run (nothing when it exists already); returns where it runs, in a few words."""

    @abstractmethod
    def stop(self, study: FineTuneStudy, key: RunKey) -> None:
        """Stop one stage run (nothing when it is gone)."""

    def clean_up(self, namespace: str, name: str) -> int:
        """Remove what this runtime made for the (deleted) study; returns how many runs it removed."""
        return 0
