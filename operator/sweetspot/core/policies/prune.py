"""`prune`: a trial's early score is reported to an Optuna pruner (`spec.search.pruner`); the survivors train to
the end at once, and the final score is what the sampler learns from.

With several objectives (`spec.objectives`) Optuna's pruners cannot judge (they rank one value), so the policy does:
a trial stops when enough trials judged before it dominate its early values (its early signal, validation loss
unless `signal` says otherwise, and its costs, compute projected to the end): `DOMINATED_BY` for the pruner named,
once `STARTUP` trials were judged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core import pareto
from sweetspot.core.objectives import early_values, finished_values, is_multi, minimised
from sweetspot.core.policies.base import METRIC_WORDS, Direction, Policy, early_signal
from sweetspot.core.policies.guard import judged_fraction
from sweetspot.core.records import Outcome, RecordEarly, TrialView

DOMINATED_BY: dict[str, int] = {"successiveHalving": 1, "median": 2, "percentile": 2}
"""How many earlier trials must dominate a trial's early values to stop it, per `earlyEvaluation.pruner`: one for
successive halving (as eager as its top third), two for the median and percentile rules (a trial beaten by one
lucky trial trains on)."""
STARTUP = 2
"""Trials judged before any is stopped (the median pruner's start-up)."""


class Prune(Policy):
    name: ClassVar[str] = "prune"
    tells_early: ClassVar[bool] = False
    final_during_search: ClassVar[bool] = True

    def direction(self, spec: FineTuneStudySpec) -> Direction:
        return spec.objective.direction

    def objective_name(self, spec: FineTuneStudySpec) -> str:
        return f"final {METRIC_WORDS[spec.objective.metric]}"  # the early score is the pruner's intermediate value

    def record_early(
        self, spec: FineTuneStudySpec, trial: int, outcome: Outcome, others: Sequence[TrialView]
    ) -> RecordEarly:
        value = outcome.metric(spec.objective.metric)
        if not is_multi(spec):
            return RecordEarly(trial, outcome, value, report_to_pruner=True)
        # Judged here, not by a pruner that compares with final values: on the early signal (validation loss unless
        # chosen), which separates trials early where F1 and accuracy still tie near the label prior.
        signal = early_signal(spec)

        def early_point(early: Outcome) -> list[float]:
            values = early_values(spec, early, early.metric(signal), judged_fraction(spec, early))
            return minimised(spec, values, quality_lower_is_better=signal == "loss")

        mine = early_point(outcome)
        judged = [
            early_point(t.early)
            for t in others
            if t.number != trial and t.early is not None and not t.infeasible and t.state != "failed"
        ]
        beaten = sum(pareto.dominates(other, mine) for other in judged)
        pruned = len(judged) >= STARTUP and beaten >= DOMINATED_BY[spec.search.early_evaluation.pruner]
        return RecordEarly(trial, outcome, value, report_to_pruner=False, pruned=pruned)

    def final_value(
        self, spec: FineTuneStudySpec, outcome: Outcome, trial: TrialView | None = None
    ) -> float | list[float] | None:
        if not is_multi(spec):
            return outcome.metric(spec.objective.metric)
        return finished_values(spec, trial.early if trial is not None else None, outcome)

    def promoted(self, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> list[TrialView]:
        return []  # survivors trained to the end during the search
