"""`prune`: a trial's early score is reported to an Optuna pruner (`spec.search.pruner`); the survivors train to
the end at once, and the final score is what the sampler learns from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.policies.base import METRIC_WORDS, Direction, Policy
from sweetspot.core.records import Outcome, RecordEarly, TrialView


class Prune(Policy):
    name: ClassVar[str] = "prune"
    tells_early: ClassVar[bool] = False
    final_during_search: ClassVar[bool] = True

    def direction(self, spec: FineTuneStudySpec) -> Direction:
        return spec.objective.direction

    def objective_name(self, spec: FineTuneStudySpec) -> str:
        return f"final {METRIC_WORDS[spec.objective.metric]}"  # the early score is the pruner's intermediate value

    def record_early(self, spec: FineTuneStudySpec, trial: int, outcome: Outcome) -> RecordEarly:
        return RecordEarly(trial, outcome, outcome.metric(spec.objective.metric), report_to_pruner=True)

    def final_value(self, spec: FineTuneStudySpec, outcome: Outcome) -> float | None:
        return outcome.metric(spec.objective.metric)

    def promoted(self, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> list[TrialView]:
        return []  # survivors trained to the end during the search
