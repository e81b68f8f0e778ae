"""The compute budget (`spec.search.budget`): what a stage is expected to cost, what a study has spent, and what
the planner may still start (pure).

Compute is `Outcome.compute_seconds`: GPU-seconds on GPUs, wall seconds on CPUs; `gpuHours` is hours of it. A
stage's cost is estimated from the finished stages of its kind (the mean: what adds up to a total): early stages
from early ones; final stages from final ones, or `(1 - f) / f` of an early one before any final finished (a final
resumes at the early fraction `f`); a learning-curve run from the runs measured, or an early plus a final (it
trains from the start). Spent is what finished stages recorded plus, for each running stage, the estimate of its
kind. Failed and disrupted attempts record no cost and are not counted.

Before any stage has finished there is no estimate: one stage may run alone, and its cost prices the rest.

Under `proxy` (finals after the search) the search keeps back what training the best `promoteTopK` to the end
will cost (and a final for each trial still to be judged that could join them), and stops asking trials when the
rest pays for no further early stage; what the finals leave over (they may cost less than estimated) resumes it.
Under `prune` (finals during the search) a trial is asked only when its early and its final both fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.policies.registry import policy_of
from sweetspot.core.records import Observed, RunKey, SweepView, TrialView, counted

SECONDS_PER_HOUR = 3600.0


def hours(seconds: float) -> str:
    """Compute seconds as GPU-hours in words: three significant digits (a laptop's budget is a few minutes)."""
    return f"{seconds / SECONDS_PER_HOUR:.3g}"


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def recorded(trials: Sequence[TrialView], sweep: Sequence[SweepView]) -> float:
    """Compute the finished stages recorded (early and final stages, learning-curve runs)."""
    # The stages warm start copied were trained by an earlier study: not this one's compute.
    used = sum(
        o.compute_seconds for t in trials for stage, o in (("early", t.early), ("final", t.final))
        if o is not None and stage not in t.copied
    )  # fmt: skip
    return used + sum(p.outcome.compute_seconds for p in sweep if p.outcome is not None)


@dataclass(frozen=True)
class Costs:
    """The expected compute of one stage of each kind (None: nothing to estimate it from yet)."""

    early: float | None
    final: float | None
    sweep: float | None

    def of(self, key: RunKey) -> float | None:
        if key.kind == "sweep":
            return self.sweep
        return self.early if key.stage == "early" else self.final


def costs(spec: FineTuneStudySpec, trials: Sequence[TrialView], sweep: Sequence[SweepView]) -> Costs:
    fraction = spec.search.early_evaluation.at_fraction
    early = _mean([t.early.compute_seconds for t in trials if t.early is not None])
    final = _mean([t.final.compute_seconds for t in trials if t.final is not None])
    if final is None and early is not None:
        final = early * (1 - fraction) / fraction
    runs = _mean([p.outcome.compute_seconds for p in sweep if p.outcome is not None])
    if runs is None and early is not None and final is not None:
        runs = early + final
    return Costs(early, final, runs if runs is not None else final)


def _is_live(trial: TrialView) -> bool:
    return trial.state == "running" and not trial.infeasible


class Ledger:
    """What the planner may still start under the budget, kept through one plan: each stage it starts is charged
    at its estimate. Without a budget everything is affordable."""

    def __init__(self, spec: FineTuneStudySpec, observed: Observed) -> None:
        budget = spec.search.budget
        self.limit = budget.gpu_hours * SECONDS_PER_HOUR if budget is not None else None
        unpriced = Costs(None, None, None)
        self.costs = costs(spec, observed.trials, observed.sweep) if budget is not None else unpriced
        self.trials = list(observed.trials)
        self.started = {r.key for r in observed.runs if r.phase == "running"}
        self.committed = sum(self.costs.of(k) or 0.0 for k in self.started)
        if budget is not None:  # a study without a budget plans as it did: nothing to add up
            self.committed += recorded(observed.trials, observed.sweep)
        self.spec = spec
        self.policy = policy_of(spec)
        self.promote = not self.policy.final_during_search

    def _started(self, number: int, stage: str) -> bool:
        return any(k.kind == "trial" and k.number == number and k.stage == stage for k in self.started)

    def priced(self, key: RunKey) -> bool:
        return self.limit is None or self.costs.of(key) is not None

    def affords(self, key: RunKey) -> bool:
        """Whether `key` may start now: it and what must be kept back fit in what is left (unpriced: only while no
        other stage runs)."""
        if self.limit is None:
            return True
        cost = self.costs.of(key)
        if cost is None:
            return not self.started
        kept = self._promotions(0) if self.promote and key.kind == "trial" and key.stage == "early" else 0.0
        return self.committed + cost + kept <= self.limit + 1e-9

    def refuses(self, key: RunKey) -> bool:
        """The budget, as estimated, cannot pay for `key` (not merely unpriced)."""
        return self.priced(key) and not self.affords(key)

    def charge(self, key: RunKey) -> None:
        self.committed += self.costs.of(key) or 0.0
        self.started.add(key)

    def _promotions(self, asked: int) -> float:
        """Under `proxy`: the finals still to pay for: the promoted trials not trained yet, and as many again as
        trials still to be judged (those not judged yet, and `asked` more) could displace, at most as many as are
        promoted (`promoteTopK`, one more per widening of the agreement guard, or more by prediction)."""
        owed = sum(1 for t in self._promoted if t.final is None and not self._started(t.number, "final"))
        unjudged = sum(1 for t in self.trials if _is_live(t) and t.early is None)
        most = max(len(self._promoted), self.policy.promotions(self.spec, self.trials))
        return min(most, owed + unjudged + asked) * (self.costs.final or 0.0)

    @cached_property
    def _promoted(self) -> list[TrialView]:
        # The trials do not change within a plan: ranked (and, under `predicted`, predicted) once, when first asked.
        return self.policy.promoted(self.spec, self.trials)

    def _owed(self) -> float:
        """Stages the asked trials still owe that have not started."""
        early, final = self.costs.early or 0.0, self.costs.final or 0.0
        owed = 0.0
        for trial in filter(_is_live, self.trials):
            if trial.early is None and not self._started(trial.number, "early"):
                owed += early
            if not self.promote and trial.final is None and not self._started(trial.number, "final"):
                owed += final
        return owed

    def new_trials(self, wanted: int) -> int:
        """How many of `wanted` new trials the budget can pay for (with what the asked ones owe and, under `proxy`,
        the promotions kept back); one while nothing is priced and nothing runs."""
        if self.limit is None or wanted <= 0:
            return max(0, wanted)
        early, final = self.costs.early, self.costs.final
        if early is None or final is None:
            return 1 if not self.started and not any(map(_is_live, self.trials)) else 0
        each = early if self.promote else early + final
        for n in range(wanted, 0, -1):
            kept = self._promotions(n) if self.promote else 0.0
            if self.committed + self._owed() + n * each + kept <= self.limit + 1e-9:
                return n
        return 0

    def closed(self) -> bool:
        """The search asks no more trials: the budget pays for none (under `proxy`, also while the promoted trials
        train: a search resumed by what the finals leave over waits for them)."""
        if self.limit is None or self.costs.early is None:
            return False
        promoting = self.promote and any(k.kind == "trial" and k.stage == "final" for k in self.started)
        return promoting or self.new_trials(1) == 0


@dataclass(frozen=True)
class BudgetUse:
    """How a study's budget stands (for the status, the metrics and the progress line)."""

    limit: float
    """The budget, in compute seconds."""
    used: float
    """Recorded by finished stages."""
    eta_seconds: float | None
    """Wall seconds to the study's expected end: the stages left, cut to what the budget still pays for, at the
    mean wall time of finished stages of each kind, `parallelism` at a time; None before a stage finished."""

    @property
    def remaining(self) -> float:
        return max(0.0, self.limit - self.used)

    @property
    def ratio(self) -> float:
        return self.used / self.limit

    def describe(self) -> str:
        return (
            f"budget {hours(self.used)}/{hours(self.limit)} gpuHours used ({self.ratio:.0%}), "
            f"{hours(self.remaining)} left"
        )


def use(spec: FineTuneStudySpec, trials: Sequence[TrialView], sweep: Sequence[SweepView]) -> BudgetUse | None:
    """How the budget stands; None without one."""
    budget = spec.search.budget
    if budget is None:
        return None
    limit = budget.gpu_hours * SECONDS_PER_HOUR
    used = recorded(trials, sweep)
    return BudgetUse(limit, used, eta_seconds(spec, trials, sweep, max(0.0, limit - used)))


def eta_seconds(
    spec: FineTuneStudySpec, trials: Sequence[TrialView], sweep: Sequence[SweepView], remaining: float | None = None
) -> float | None:
    """Wall seconds to the study's expected end: the early, final and learning-curve stages left at the mean wall
    time of finished stages of their kind, `parallelism` at a time, cut to what `remaining` compute pays for; None
    before an early stage finished."""
    search = spec.search
    fraction = search.early_evaluation.at_fraction
    judged = [t.early for t in trials if t.early is not None]
    finals = [t.final for t in trials if t.final is not None]
    early = _mean([o.seconds for o in judged])
    if not early:
        return None
    final = _mean([o.seconds for o in finals]) or early * (1 - fraction) / fraction
    failed = sum(1 for t in trials if t.state == "failed" or t.infeasible)
    own = sum(1 for t in counted(trials) if t.early is not None)
    earlies = max(0, search.max_trials - own - failed)
    finals_left = policy_of(spec).finals_left(spec, trials, earlies)
    efficiency = spec.data_efficiency
    runs = len(efficiency.sizes()) * efficiency.repeats if efficiency else 0
    runs_left = max(0, runs - sum(1 for p in sweep if p.outcome is not None) - (1 if runs else 0))
    wall = earlies * early + (finals_left + runs_left) * final
    rate = costs(spec, trials, sweep)
    compute = earlies * (rate.early or 0.0) + (finals_left + runs_left) * (rate.final or 0.0)
    if remaining is not None and compute > remaining:
        wall *= remaining / compute  # the budget ends the study first
    return wall / search.parallelism
