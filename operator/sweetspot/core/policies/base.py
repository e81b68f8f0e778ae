"""What a policy owes the planner, the status, the metrics and the report (pure).

A policy is how a study judges its trials early (`spec.search.earlyEvaluation.policy`). Everything that differs
between policies is a hook here, and nothing outside `sweetspot.core.policies` asks which policy a study has.
A policy must set `name`, `tells_early` and `final_during_search` and implement the five abstract methods
(`direction` to `promoted`); the other hooks have defaults for a policy that trains finals during the search and
has no agreement guard and no prediction (`prune`):

- `name`: its value of `earlyEvaluation.policy` (the key in `POLICIES`);
- `direction`: what the Optuna study optimises (the value the sampler is told);
- `objective_name`: that value in words (Optuna's metric name, shown by its own tools);
- `record_early`: what an early result becomes, the value told to the sampler or reported to its pruner;
- `final_value`: what a final result tells the sampler (None when the trial's value is already its early one);
- `tells_early`: whether Optuna holds the early value as the trial's value (COMPLETE after its early stage);
- `final_during_search`: whether a trial that passed its early stage trains to the end at once, during the search;
- `promoted`: once every trial has been judged early, the trials that train to the end;
- `promotions`: how many trials train to the end once the search is done (progress, budget);
- `stopped_early`: trials judged early that will never train to the end (counted as pruned);
- `finals_left`: how many final stages are still to run (progress, ETA, budget);
- `judging`: where new trials are judged now, and each widening of the agreement guard that led there;
- `guardable`: whether the policy has the agreement guard at all (its judged fraction is part of its state, which
  the metrics show even while the guard is off);
- `min_agreement` / `guards`: the guard's bar, and whether the guard is on (the status's `earlyEvaluation`, the
  report's `minAgreement` and the guard's Events all ask this);
- `predicts`: whether final scores are predicted (`promote: predicted`: the status, metrics and report show the
  predictor).

Implementations are stateless singletons (`sweetspot.core.policies.registry.POLICIES`): every answer comes from
the spec and the trials passed in, so the operator, the local mode and the replay share them across threads and
studies.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Widening:
    """One step of the agreement guard: trials judged at `from_fraction` disagreed with their finals."""

    from_fraction: float
    to_fraction: float
    agreement: float
    trials: int

    def describe(self, minimum: float) -> str:
        return (
            f"early and final ranks disagree at {self.from_fraction:.0%} of steps (Spearman {self.agreement:.3f} < "
            f"{minimum:.2f} over {self.trials} finals): later trials are judged at {self.to_fraction:.0%}, and one "
            "more trial is promoted"
        )


@dataclass(frozen=True)
class Judging:
    """Where a study judges new trials early: the fraction, and how the agreement guard got there."""

    fraction: float
    widenings: tuple[Widening, ...] = ()
    agreement: float | None = None
    """Spearman over the finals judged at `fraction` (None below `guard.MIN_TRIALS`, or when tied)."""
    trials: int = 0
    """Finals judged at `fraction`."""

    @property
    def level(self) -> int:
        return len(self.widenings)


class Policy(ABC):
    """How a study judges its trials early (`spec.search.earlyEvaluation.policy`)."""

    name: ClassVar[str]
    tells_early: ClassVar[bool]
    """The early value is what Optuna holds as the trial's value (the trial is COMPLETE after its early stage); a
    trial still RUNNING in Optuna with an early record lost its tell in a crash, and its early stage counts as
    not recorded."""
    final_during_search: ClassVar[bool]
    """A trial that passed its early stage runs its final stage at once, during the search."""
    guardable: ClassVar[bool] = False
    """The policy has the agreement guard (`minAgreement`): the fraction it judges new trials at may widen, so that
    fraction is part of the study's state (the metrics show it, at `atFraction` while the guard is off)."""

    @abstractmethod
    def direction(self, spec: FineTuneStudySpec) -> Direction:
        """What the Optuna study optimises: the value the sampler is told."""

    @abstractmethod
    def objective_name(self, spec: FineTuneStudySpec) -> str:
        """The value the sampler is told, in words: the Optuna study's metric name, which Optuna's own tools
        (optuna-dashboard, `Study.trials_dataframe`) show for a trial's value."""

    @abstractmethod
    def record_early(
        self, spec: FineTuneStudySpec, trial: int, outcome: Outcome, others: Sequence[TrialView]
    ) -> RecordEarly:
        """What an early result becomes: the value told to the sampler, or reported to the pruner (`others`: the
        study's other trials, for a policy that judges it against them)."""

    @abstractmethod
    def final_value(
        self, spec: FineTuneStudySpec, outcome: Outcome, trial: TrialView | None = None
    ) -> float | list[float] | None:
        """The value a final result tells the sampler (one per objective with several; `trial`, the trial it
        finishes, before it was recorded); None when the trial's value is already its early one."""

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

    def min_agreement(self, spec: FineTuneStudySpec) -> float | None:
        """The agreement guard's bar (`minAgreement`); None while the guard is off."""
        return spec.search.early_evaluation.min_agreement if self.guardable else None

    def guards(self, spec: FineTuneStudySpec) -> bool:
        """Whether the agreement guard is on: the one answer the status, the report and the Events go by."""
        return self.min_agreement(spec) is not None

    def judging(self, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> Judging:
        """Where new trials are judged early after `trials`: `atFraction`, unless the guard widened it."""
        return Judging(spec.search.early_evaluation.at_fraction)

    def predicts(self, spec: FineTuneStudySpec) -> bool:
        """Whether final scores are predicted from early ones (the status, metrics and report show the predictor)."""
        return False
