"""What a policy owes the planner (pure).

A policy decides three things and nothing else differs between policies:
- what the sampler learns from: `direction`, `record_early` (the value an early result tells the sampler, or
  reports to its pruner), `final_value`, and `objective_name` (that value in words);
- what a stage's result means for the trial: `final_during_search` (a trial that passed its early stage trains
  to the end at once) and `tells_early` (the early value is the trial's value: Optuna holds it COMPLETE after its
  early stage);
- what runs once every trial has been judged early: `promoted`.

Implementations are stateless singletons (`sweetspot.policies.POLICIES`): every answer comes from the spec and the
trials passed in, so the operator, the local mode and the replay share them across threads and studies.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.records import Outcome, RecordEarly, TrialView

Direction = Literal["maximize", "minimize"]
METRIC_WORDS: dict[str, str] = {"f1": "F1", "accuracy": "accuracy", "tokenF1": "token F1", "loss": "validation loss"}
"""A metric's API name (`Objective.metric`, `EarlyEvaluation.signal`) in words."""


def early_signal(spec: FineTuneStudySpec) -> str:
    """The metric early results are judged by: chosen, or validation loss (`auto`; see `EarlyEvaluation.signal`)."""
    early = spec.search.early_evaluation
    return "loss" if early.signal == "auto" else early.signal


def rank_early(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> list[TrialView]:
    """Feasible trials with early scores, best first by the early signal (ties: lower number first)."""
    signal = early_signal(spec)
    sign = 1.0 if signal == "loss" else -1.0
    scored = [t for t in trials if t.early is not None and not t.infeasible and t.state != "failed"]
    return sorted(scored, key=lambda t: (sign * t.early.metric(signal), t.number))  # type: ignore[union-attr]


class Policy(ABC):
    """How a study judges its trials early (`spec.search.earlyEvaluation.policy`)."""

    name: ClassVar[str]
    tells_early: ClassVar[bool]
    """The early value is what Optuna holds as the trial's value (the trial is COMPLETE after its early stage); a
    trial still RUNNING in Optuna with an early record lost its tell in a crash, and its early stage counts as
    not recorded."""
    final_during_search: ClassVar[bool]
    """A trial that passed its early stage runs its final stage at once, during the search."""

    @abstractmethod
    def direction(self, spec: FineTuneStudySpec) -> Direction:
        """What the Optuna study optimises: the value the sampler is told."""

    @abstractmethod
    def objective_name(self, spec: FineTuneStudySpec) -> str:
        """The value the sampler is told, in words: the Optuna study's metric name, which Optuna's own tools
        (optuna-dashboard, `Study.trials_dataframe`) show for a trial's value."""

    @abstractmethod
    def record_early(self, spec: FineTuneStudySpec, trial: int, outcome: Outcome) -> RecordEarly:
        """What an early result becomes: the value told to the sampler, or reported to the pruner."""

    @abstractmethod
    def final_value(self, spec: FineTuneStudySpec, outcome: Outcome) -> float | None:
        """The value a final result tells the sampler; None when the trial's value is already its early one."""

    @abstractmethod
    def promoted(self, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> list[TrialView]:
        """Once every trial has been judged early, the trials that train to the end (none when they already did)."""

    def promotions(self, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> int:
        """How many trials train to the end once the search is done (none when finals run during it)."""
        return 0

    def stopped_early(self, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> set[int]:
        """Trials judged early that will never train to the end (a pruned trial is counted by its state)."""
        return set()

    def finals_left(self, spec: FineTuneStudySpec, trials: Sequence[TrialView], earlies_left: int) -> int:
        """How many final stages are still to run, for progress and ETA."""
        return earlies_left
