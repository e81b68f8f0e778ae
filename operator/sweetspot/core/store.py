"""Where a study's trials are recorded: the interface the plan-and-apply loop depends on (`sweetspot.core.loop`).

The real store keeps trials in an Optuna study (`sweetspot.storage.store.SearchStore`, PostgreSQL or SQLite); a
test may pass any object with these three methods. What an implementation owes:
- `snapshot` returns the study's trials and learning-curve points as the planner reads them: the trials in
  trial-number order, the points by size, then repeat.
- `apply` records one planner action (`sweetspot.core.records.Action`) and returns the numbers of the trials it
  asked for (empty for a record). Applying a record twice changes nothing the second time: a crash between applying
  an action and seeing it applied repeats it. Starting and stopping runs is the runtime's (`sweetspot.core.runtime`):
  a store refuses those actions (`TypeError`) rather than ignore them.
- `set_phase` records the study's phase and the spec it ran with; True when the phase changed.
"""

from __future__ import annotations

from typing import Protocol

from sweetspot.api.resource import FineTuneStudy
from sweetspot.core.records import Action, Decision, SweepView, TrialView


class Store(Protocol):
    def snapshot(self) -> tuple[list[TrialView], list[SweepView]]:
        """Trials and learning-curve points as the planner reads them."""
        ...

    def apply(self, action: Action) -> list[int]:
        """Record one planner action; the numbers of the trials asked (empty otherwise)."""
        ...

    def set_phase(self, decision: Decision, resource: FineTuneStudy) -> bool:
        """Record the study's phase; True when it changed."""
        ...
