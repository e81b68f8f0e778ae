"""A study's objectives as numbers (pure): the quality metric and the costs of `spec.objectives`, a trial's value of
each, early (judged) and final, and the Pareto front over them.

One objective (`spec.objectives` unset) is the single-objective study every policy handles as before; these
functions still answer for it (a front of the best trial), so the status and report need no second path.

Costs per trial:
- `computeSeconds`: what its stages spent (early and final: the final continues the early checkpoint). Judged
  early, the early stage's compute over the fraction of the steps it trained: what training to the end would cost.
- `trainableParameters`, `peakMemoryBytes`: as its stage reported them (known from the early stage on).
- `latencyMsPerRow`: the inference milliseconds per row of the evaluation (early: the early one).
A cost a stage did not report (a record from before it was) counts as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from sweetspot.api.search import Goal
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core import pareto
from sweetspot.core.records import Outcome, TrialView

COST_WORDS: dict[str, str] = {
    "computeSeconds": "compute-seconds",
    "trainableParameters": "trainable parameters",
    "peakMemoryBytes": "peak memory bytes",
    "latencyMsPerRow": "ms per row",
}


def goals(spec: FineTuneStudySpec) -> list[Goal]:
    """The study's objectives in the spec's order: `objectives`, or `objective` alone."""
    if spec.objectives is not None:
        return list(spec.objectives)
    return [Goal(metric=spec.objective.metric, direction=spec.objective.direction)]


def is_multi(spec: FineTuneStudySpec) -> bool:
    """Whether the study has several objectives (`spec.objectives`)."""
    return spec.objectives is not None


def names(spec: FineTuneStudySpec) -> list[str]:
    """The objectives' metric names, in order (the keys of a front entry's values, the metrics' label)."""
    return [g.metric for g in goals(spec)]


def _cost(metric: str, outcome: Outcome) -> float:
    if metric == "trainableParameters":
        return float(outcome.trainable_parameters)
    if metric == "peakMemoryBytes":
        return float(outcome.peak_memory_bytes)
    if metric == "latencyMsPerRow":
        return outcome.ms_per_row or 0.0
    raise ValueError(f"not a per-stage cost: {metric}")


def projected_compute(outcome: Outcome, fraction: float) -> float:
    """What training to the end would cost, from an early stage that trained `fraction` of the steps."""
    return outcome.compute_seconds / fraction if fraction > 0 else outcome.compute_seconds


def early_values(spec: FineTuneStudySpec, outcome: Outcome, quality: float, fraction: float) -> list[float]:
    """A trial's objectives as judged early: `quality` (its early signal) in the quality slot, the costs known or
    projected from its early stage, judged at `fraction`."""
    out = []
    for goal in goals(spec):
        if not goal.is_cost:
            out.append(quality)
        elif goal.metric == "computeSeconds":
            out.append(projected_compute(outcome, fraction))
        else:
            out.append(_cost(goal.metric, outcome))
    return out


def final_values(spec: FineTuneStudySpec, trial: TrialView) -> list[float] | None:
    """A trial's objectives once trained to the end (None before it was)."""
    return None if trial.final is None else finished_values(spec, trial.early, trial.final)


def finished_values(spec: FineTuneStudySpec, early: Outcome | None, final: Outcome) -> list[float]:
    """The objectives of a trial trained to the end by `final` (after `early`, when it had an early stage)."""
    out = []
    for goal in goals(spec):
        if not goal.is_cost:
            out.append(final.metric(goal.metric))
        elif goal.metric == "computeSeconds":
            out.append((early.compute_seconds if early is not None else 0.0) + final.compute_seconds)
        else:
            out.append(_cost(goal.metric, final))
    return out


def minimised(
    spec: FineTuneStudySpec, values: Sequence[float], quality_lower_is_better: bool | None = None
) -> list[float]:
    """`values` turned so that lower is better in each (what `pareto` takes). The quality slot follows the goal's
    direction, or `quality_lower_is_better` when the value there is another metric (an early signal)."""
    out = []
    for goal, value in zip(goals(spec), values, strict=True):
        lower = goal.direction == "minimize"
        if not goal.is_cost and quality_lower_is_better is not None:
            lower = quality_lower_is_better
        out.append(value if lower else -value)
    return out


def front(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> list[TrialView]:
    """The final Pareto front: the feasible trials trained to the end that no other such trial dominates, by
    number."""
    finished = [t for t in trials if t.final is not None and not t.infeasible and t.state != "failed"]
    points = [minimised(spec, final_values(spec, t) or []) for t in finished]
    first = pareto.fronts(points)[0] if points else []
    return sorted((finished[i] for i in first), key=lambda t: t.number)


def knee(spec: FineTuneStudySpec, on_front: Sequence[TrialView]) -> TrialView | None:
    """The knee (`pareto.knee`) of a front (`front`): the trial that buys the most quality per cost; None without a
    front, or with one objective (the best trial is all there is)."""
    if not is_multi(spec) or not on_front:
        return None
    quality = next(i for i, goal in enumerate(goals(spec)) if not goal.is_cost)
    index = pareto.knee([minimised(spec, final_values(spec, t) or []) for t in on_front], prefer=quality)
    return None if index is None else on_front[index]
