"""`proxy`: every trial runs its early stage and the sampler learns from the early score; once `maxTrials` trials
have one, the best `promoteTopK` by that score train to the end (or, with `promote: predicted`, those whose predicted
final score may beat the best: `predict`), and the best final wins. The agreement guard (`guard`) widens the early
fraction for later trials, and promotes one more, when early and final ranks disagree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.objectives import early_values, is_multi
from sweetspot.core.policies.base import METRIC_WORDS, Direction, Judging, Policy, early_signal
from sweetspot.core.policies.guard import judged_fraction, judging, promotion_order
from sweetspot.core.policies.predict import predicted_promotions
from sweetspot.core.records import Outcome, RecordEarly, TrialView, counted


class Proxy(Policy):
    name: ClassVar[str] = "proxy"
    tells_early: ClassVar[bool] = True
    final_during_search: ClassVar[bool] = False
    guardable: ClassVar[bool] = True

    def direction(self, spec: FineTuneStudySpec) -> Direction:
        return "minimize" if early_signal(spec) == "loss" else "maximize"

    def objective_name(self, spec: FineTuneStudySpec) -> str:
        early = spec.search.early_evaluation
        name = f"early {METRIC_WORDS[early_signal(spec)]} at {early.at_fraction * 100:g}% of steps"
        widest = early.fractions()[-1]
        if self.guards(spec) and widest > early.at_fraction:
            name += f" (the guard may widen it up to {widest * 100:g}%)"
        return name

    def record_early(
        self, spec: FineTuneStudySpec, trial: int, outcome: Outcome, others: Sequence[TrialView]
    ) -> RecordEarly:
        signal = outcome.metric(early_signal(spec))
        if not is_multi(spec):
            return RecordEarly(trial, outcome, signal, report_to_pruner=False)
        # Several objectives: the early signal, and each cost as known or projected from the early stage.
        values = early_values(spec, outcome, signal, judged_fraction(spec, outcome))
        return RecordEarly(trial, outcome, values, report_to_pruner=False)

    def final_value(
        self, spec: FineTuneStudySpec, outcome: Outcome, trial: TrialView | None = None
    ) -> float | list[float] | None:
        return None  # the sampler learnt this trial from its early score

    def promotions(self, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> int:
        """`promoteTopK`, plus one for each step the agreement guard widened."""
        return spec.search.early_evaluation.promote_top_k + judging(spec, trials).level

    def promoted(self, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> list[TrialView]:
        if self.predicts(spec):
            return predicted_promotions(spec, trials, fallback=self.promotions(spec, trials))
        return promotion_order(spec, trials)[: self.promotions(spec, trials)]

    def stopped_early(self, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> set[int]:
        """Once every trial has its early score, those not promoted stopped for good."""
        asked = len(counted(trials))
        if asked < spec.search.max_trials or any(t.early is None and t.state != "failed" for t in trials):
            return set()
        kept = {t.number for t in self.promoted(spec, trials)} | {t.number for t in trials if t.final is not None}
        return {t.number for t in trials if t.early is not None and t.number not in kept}

    def finals_left(self, spec: FineTuneStudySpec, trials: Sequence[TrialView], earlies_left: int) -> int:
        if self.predicts(spec):
            return sum(1 for t in self.promoted(spec, trials) if t.final is None)
        finals = sum(1 for t in trials if t.final is not None)
        return max(0, self.promotions(spec, trials) - finals)

    def judging(self, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> Judging:
        return judging(spec, trials)

    def predicts(self, spec: FineTuneStudySpec) -> bool:
        return spec.search.early_evaluation.promote == "predicted"
