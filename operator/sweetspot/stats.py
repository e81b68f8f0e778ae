"""What a study has learned so far, derived from its trials (pure; scipy for the rank statistics).

One summary feeds the resource status, the metrics and `sweetspot report`, so they never disagree.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

from sweetspot.api import FineTuneStudySpec
from sweetspot.planner import SweepView, TrialView, best_trial, early_signal, promoted

TOP_K_OVERLAP = 5


@dataclass(frozen=True)
class Agreement:
    """How well early scores rank trials like final scores (over trials that have both)."""

    trials: int
    spearman: float | None
    kendall: float | None
    top_k: int
    top_k_overlap: int | None
    """How many of the top k by early score are also in the top k by final score."""


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    best: TrialView | None
    agreement: Agreement
    compute_used: float
    compute_saved: float
    """Compute not spent because trials were judged early: for each trial that stopped after its early stage,
    the rest of its planned steps at the rate its early stage ran."""
    curve: list[tuple[int, float, dict[str, float]]]
    sweet_spot: tuple[int, float] | None


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 4)


def agreement(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> Agreement:
    signal = early_signal(spec)
    both = [t for t in trials if t.early is not None and t.final is not None]
    k = min(TOP_K_OVERLAP, len(both))
    if len(both) < 2:
        return Agreement(len(both), None, None, k, None)
    # Rank so that higher is better on both sides (loss is lower-is-better).
    sign = -1.0 if signal == "loss" else 1.0
    early = [sign * t.early.metric(signal) for t in both]  # type: ignore[union-attr]
    final_sign = -1.0 if spec.objective.metric == "loss" else 1.0
    final = [final_sign * t.final.metric(spec.objective.metric) for t in both]  # type: ignore[union-attr]
    by_early = {t.number for _, t in sorted(zip(early, both, strict=True), key=lambda p: -p[0])[:k]}
    by_final = {t.number for _, t in sorted(zip(final, both, strict=True), key=lambda p: -p[0])[:k]}
    if len(set(early)) < 2 or len(set(final)) < 2:  # all tied: a rank correlation is undefined
        return Agreement(len(both), None, None, k, len(by_early & by_final))
    spearman = scipy_stats.spearmanr(early, final).statistic
    kendall = scipy_stats.kendalltau(early, final).statistic
    return Agreement(len(both), _finite(spearman), _finite(kendall), k, len(by_early & by_final))


def sweet_spot(curve: Sequence[tuple[int, float, dict[str, float]]], min_gain: float) -> tuple[int, float] | None:
    """The smallest size after which the next size gains less than `min_gain` (the largest when all pay)."""
    if not curve:
        return None
    for (samples, accuracy, _), (_, following, _) in itertools.pairwise(curve):
        if following - accuracy < min_gain:
            return samples, accuracy
    return curve[-1][0], curve[-1][1]


def _stopped_by_proxy(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> set[int]:
    """Under `proxy`, once every trial has its early score, those not promoted stopped for good."""
    if spec.search.early_evaluation.policy != "proxy" or len(trials) < spec.search.max_trials:
        return set()
    if any(t.early is None and t.state != "failed" for t in trials):
        return set()
    kept = {t.number for t in promoted(spec, trials)} | {t.number for t in trials if t.final is not None}
    return {t.number for t in trials if t.early is not None and t.number not in kept}


def _state(trial: TrialView, stopped: bool, spec: FineTuneStudySpec) -> str:
    if trial.infeasible or trial.state == "failed":
        return "failed"
    if trial.state == "pruned" or stopped:
        return "pruned"
    if trial.final is not None:
        return "complete"
    if spec.search.early_evaluation.policy == "proxy" and trial.early is not None:
        return "waiting"  # judged early: promoted, or stopped once the search ends
    return "running"


def summarize(spec: FineTuneStudySpec, trials: Sequence[TrialView], sweep: Sequence[SweepView]) -> Summary:
    counts = {"total": len(trials), "running": 0, "waiting": 0, "complete": 0, "pruned": 0, "failed": 0}
    used = saved = 0.0
    stopped_by_proxy = _stopped_by_proxy(spec, trials)
    for trial in trials:
        counts[_state(trial, trial.number in stopped_by_proxy, spec)] += 1
        used += sum(o.compute_seconds for o in (trial.early, trial.final) if o is not None)
        if trial.early is not None and trial.final is None and trial.early.step:
            remaining = trial.early.planned_steps - trial.early.step
            saved += trial.early.compute_seconds * remaining / trial.early.step
    for point in sweep:
        if point.outcome is not None:
            used += point.outcome.compute_seconds
    curve = [
        (p.samples, p.outcome.accuracy, dict(p.outcome.attribute_accuracy))
        for p in sorted(sweep, key=lambda p: p.samples)
        if p.outcome is not None
    ]
    min_gain = spec.data_efficiency.min_gain if spec.data_efficiency else 0.0
    return Summary(
        counts=counts,
        best=best_trial(spec, trials),
        agreement=agreement(spec, trials),
        compute_used=round(used, 2),
        compute_saved=round(saved, 2),
        curve=curve,
        sweet_spot=sweet_spot(curve, min_gain),
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def progress(spec: FineTuneStudySpec, trials: Sequence[TrialView], sweep: Sequence[SweepView]) -> str:
    """One line for a terminal: where the search is, the best so far, and a rough time to go."""
    search, signal = spec.search, early_signal(spec)
    judged = [t for t in trials if t.early is not None]
    finals = [t for t in trials if t.final is not None]
    failed = sum(1 for t in trials if t.state == "failed" or t.infeasible)
    early_seconds = _mean([t.early.seconds for t in judged])  # type: ignore[union-attr]
    fraction = search.early_evaluation.at_fraction
    final_seconds = _mean([t.final.seconds for t in finals]) or (  # type: ignore[union-attr]
        early_seconds * (1 - fraction) / fraction if early_seconds else None
    )
    remaining_early = max(0, search.max_trials - len(judged) - failed)
    proxy = search.early_evaluation.policy == "proxy"
    remaining_final = max(0, search.early_evaluation.promote_top_k - len(finals)) if proxy else remaining_early
    sizes = spec.data_efficiency.sample_sizes if spec.data_efficiency else []
    remaining_sweep = max(0, len(sizes) - sum(1 for p in sweep if p.outcome is not None) - (1 if sizes else 0))
    parts = [f"{len(judged)}/{search.max_trials} trials judged early", f"{len(finals)} trained to the end"]
    if judged:
        pick = min if signal == "loss" else max
        leader = pick(judged, key=lambda t: t.early.metric(signal))  # type: ignore[union-attr]
        parts.append(f"best early {signal} {leader.early.metric(signal):.4f} (trial {leader.number})")  # type: ignore[union-attr]
    best = best_trial(spec, trials)
    if best is not None and best.final is not None:
        parts.append(
            f"best final {spec.objective.metric} {best.final.metric(spec.objective.metric):.4f} (trial {best.number})"
        )
    if early_seconds and final_seconds:
        seconds = remaining_early * early_seconds + (remaining_final + remaining_sweep) * final_seconds
        parts.append(f"ETA ~{seconds / search.parallelism / 60:.1f} min")
    return ", ".join(parts)
