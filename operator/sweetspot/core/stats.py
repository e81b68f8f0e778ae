"""What a study has learned so far, derived from its trials (pure; scipy for the rank statistics).

One summary feeds the resource status, the metrics and `sweetspot report`, so they never disagree.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.budget import BudgetUse, eta_seconds, recorded, use
from sweetspot.core.curve import SizeResult, Verdict, judge
from sweetspot.core.forecast import Band, Outlook, RowsBand, TargetAnswer, describe, outlook
from sweetspot.core.objectives import COST_WORDS, final_values, front, is_multi, knee, names
from sweetspot.core.planner import best_trial
from sweetspot.core.policies.base import Judging, early_signal
from sweetspot.core.policies.guard import MIN_TRIALS
from sweetspot.core.policies.predict import Forecast, forecast
from sweetspot.core.policies.registry import policy_of
from sweetspot.core.records import Outcome, SweepView, TrialView, counted

TOP_K_OVERLAP = 5


@dataclass(frozen=True)
class Agreement:
    """How well early scores rank trials like final scores (over trials that have both)."""

    trials: int
    spearman: float | None
    kendall: float | None
    top_k: int
    top_k_overlap: int | None
    """How many of the top k by early score are also in the top k by final score; k is below the number of trials
    (at most `TOP_K_OVERLAP`), since the top k of k trials always overlap fully and would claim agreement for free."""


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    best: TrialView | None
    agreement: Agreement
    compute_used: float
    compute_saved: float
    """Compute not spent because trials were judged early: for each trial that stopped after its early stage,
    the rest of its planned steps at the rate its early stage ran."""
    compute_lost: float
    """Compute disruptions cost (see `Outcome.lost_seconds`)."""
    curve: list[SizeResult]
    """The data-efficiency sweep: one point per size, averaged over its repeats."""
    verdict: Verdict | None
    """The fitted curve and its sweet spot (None without a data-efficiency sweep)."""
    judging: Judging
    """The agreement guard: the fraction trials are judged at now, and the widenings that led there."""
    forecast: Forecast | None = None
    """With `promote: predicted`: every judged trial's predicted final score and the predictor's calibration."""
    budget: BudgetUse | None = None
    """How the compute budget stands (None without `spec.search.budget`)."""
    outlook: Outlook | None = None
    """The learning curve forecast past the measured sizes (None without `dataEfficiency.forecast` or `target`)."""
    front: tuple[TrialView, ...] = ()
    """With `spec.objectives`: the final Pareto front (`objectives.front`), by number."""
    knee: TrialView | None = None
    """The front's knee (`objectives.knee`)."""

    @property
    def sweet_spot(self) -> tuple[int, float] | None:
        spot = self.verdict.sweet_spot if self.verdict else None
        return (spot.samples, spot.score) if spot else None


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 4)


def agreement(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> Agreement:
    signal = early_signal(spec)
    both = [t for t in trials if t.early is not None and t.final is not None]
    k = min(TOP_K_OVERLAP, max(len(both) - 1, 0))
    if len(both) < MIN_TRIALS:  # over 2 trials a rank correlation is only ever -1 or 1: no evidence either way
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
    # Imported here: scipy.stats costs the operator's start-up and memory, and only studies with finals rank.
    from scipy import stats as scipy_stats

    spearman = scipy_stats.spearmanr(early, final).statistic
    kendall = scipy_stats.kendalltau(early, final).statistic
    return Agreement(len(both), _finite(spearman), _finite(kendall), k, len(by_early & by_final))


def learning_curve(sweep: Sequence[SweepView]) -> list[SizeResult]:
    """Measured sweep points per size: mean micro-F1, accuracy and per-attribute F1 over repeats, and the spread
    of F1. Attributes keep the trainer's order (most gold values first)."""
    by_size: dict[int, list[Outcome]] = {}
    for point in sweep:
        if point.outcome is not None:
            by_size.setdefault(point.samples, []).append(point.outcome)
    curve = []
    for samples, outcomes in sorted(by_size.items()):
        scores = [o.f1 for o in outcomes]
        names = list(dict.fromkeys(a for o in outcomes for a in o.attribute_f1))
        per_attribute = {
            a: round(statistics.fmean(o.attribute_f1[a] for o in outcomes if a in o.attribute_f1), 4) for a in names
        }
        spread = round(statistics.stdev(scores), 4) if len(scores) > 1 else 0.0
        accuracy = round(statistics.fmean(o.accuracy for o in outcomes), 4)
        curve.append(
            SizeResult(samples, round(statistics.fmean(scores), 4), spread, len(outcomes), per_attribute, accuracy)
        )
    return curve


def _state(trial: TrialView, stopped: bool, spec: FineTuneStudySpec) -> str:
    if trial.infeasible or trial.state == "failed":
        return "failed"
    if trial.state == "pruned" or stopped:
        return "pruned"
    if trial.final is not None:
        return "complete"
    if policy_of(spec).tells_early and trial.early is not None:
        return "waiting"  # judged early: promoted, or stopped once the search ends
    return "running"


def lost(trials: Sequence[TrialView], sweep: Sequence[SweepView]) -> float:
    """Compute the disruptions of the recorded stages cost (not those warm start copied: an earlier study's)."""
    outcomes = [o for t in trials for stage, o in (("early", t.early), ("final", t.final)) if stage not in t.copied]
    outcomes += [p.outcome for p in sweep]
    return math.fsum(o.lost_seconds for o in outcomes if o is not None)


def summarize(spec: FineTuneStudySpec, trials: Sequence[TrialView], sweep: Sequence[SweepView]) -> Summary:
    counts = {"total": len(trials), "running": 0, "waiting": 0, "complete": 0, "pruned": 0, "failed": 0}
    saved = 0.0
    policy = policy_of(spec)
    stopped_early = policy.stopped_early(spec, trials)
    for trial in trials:
        counts[_state(trial, trial.number in stopped_early, spec)] += 1
        if trial.early is not None and trial.final is None and trial.early.step:
            remaining = trial.early.planned_steps - trial.early.step
            saved += trial.early.compute_seconds * remaining / trial.early.step
    curve = learning_curve(sweep)
    verdict = judge(curve, spec.data_efficiency.tolerance) if spec.data_efficiency and curve else None
    on_front = front(spec, trials) if is_multi(spec) else []
    return Summary(
        outlook=_outlook(spec, curve),
        counts=counts,
        best=best_trial(spec, trials),
        agreement=agreement(spec, trials),
        compute_used=round(recorded(trials, sweep), 2),
        compute_saved=round(saved, 2),
        compute_lost=round(lost(trials, sweep), 2),
        curve=curve,
        verdict=verdict,
        judging=policy.judging(spec, trials),
        forecast=forecast(spec, trials) if policy.predicts(spec) else None,
        budget=use(spec, trials, sweep),
        front=tuple(on_front),
        knee=knee(spec, on_front),
    )


def _outlook(spec: FineTuneStudySpec, curve: Sequence[SizeResult]) -> Outlook | None:
    efficiency = spec.data_efficiency
    if efficiency is None or (efficiency.forecast is None and efficiency.target is None):
        return None
    to = efficiency.forecast.to if efficiency.forecast is not None else []
    target = efficiency.target.f1 if efficiency.target is not None else None
    return outlook(curve, to, target, efficiency.cost_per_label)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def progress(spec: FineTuneStudySpec, trials: Sequence[TrialView], sweep: Sequence[SweepView]) -> str:
    """One line for a terminal: where the search is, the best so far, and a rough time to go."""
    efficiency = spec.data_efficiency
    if efficiency is not None and efficiency.params is not None:
        return _sweep_progress(spec, sweep)
    search, signal = spec.search, early_signal(spec)
    judged = [t for t in trials if t.early is not None]
    finals = [t for t in trials if t.final is not None]
    own = len(counted(judged))
    parts = [f"{own}/{search.max_trials} trials judged early", f"{len(finals)} trained to the end"]
    if judged:
        pick = min if signal == "loss" else max
        leader = pick(judged, key=lambda t: t.early.metric(signal))  # type: ignore[union-attr]
        parts.append(f"best early {signal} {leader.early.metric(signal):.4f} (trial {leader.number})")  # type: ignore[union-attr]
    best = best_trial(spec, trials)
    if best is not None and best.final is not None:
        parts.append(
            f"best final {spec.objective.metric} {best.final.metric(spec.objective.metric):.4f} (trial {best.number})"
        )
    on_front = front(spec, trials) if is_multi(spec) else []
    if on_front:
        at_knee = knee(spec, on_front)
        listed = ", ".join(str(t.number) for t in on_front)
        parts.append(f"Pareto front: trials {listed}" + (f" (knee {at_knee.number})" if at_knee is not None else ""))
    budget = use(spec, trials, sweep)
    if budget is not None:
        parts.append(budget.describe())
    eta = budget.eta_seconds if budget is not None else eta_seconds(spec, trials, sweep)
    if eta is not None:
        parts.append(f"ETA ~{eta / 60:.1f} min")
    return ", ".join(parts)


def _sweep_progress(spec: FineTuneStudySpec, sweep: Sequence[SweepView]) -> str:
    """Progress of a sweep with fixed hyperparameters (no search): runs done, the curve so far, time to go."""
    efficiency = spec.data_efficiency
    assert efficiency is not None
    done = [p for p in sweep if p.outcome is not None]
    total = len(efficiency.sizes()) * efficiency.repeats
    parts = [f"{len(done)}/{total} learning-curve runs done"]
    curve = learning_curve(sweep)
    if curve:
        parts.append("F1 " + ", ".join(f"{p.samples}: {p.score:.3f}" for p in curve))
    if done:
        # Larger samples take longer: seconds = overhead + per-row cost, fitted to the runs so far.
        sizes = [float(p.samples) for p in done]
        seconds_taken = [p.outcome.seconds for p in done]  # type: ignore[union-attr]
        if len(set(sizes)) > 1:
            slope, intercept = statistics.linear_regression(sizes, seconds_taken)
        else:
            slope, intercept = statistics.fmean(seconds_taken) / sizes[0], 0.0
        measured = {(p.samples, p.repeat) for p in done}
        left = [n for n in efficiency.sizes() for r in range(efficiency.repeats) if (n, r) not in measured]
        seconds = sum(max(0.0, intercept + slope * n) for n in left) / spec.search.parallelism
        parts.append(f"ETA ~{seconds / 60:.1f} min")
    return ", ".join(parts)


def best_data(summary: Summary, max_attributes: int | None = None) -> dict[str, Any] | None:
    """The best trial as the status and the report show it: F1 first, accuracy beside it; at most `max_attributes`
    per-attribute scores (the most supported ones), the rest counted in `attributesLeftOut`."""
    best = summary.best
    if best is None or best.final is None:
        return None
    final, early = best.final, best.early
    attributes = list(final.attribute_f1.items())
    shown = attributes[:max_attributes]
    return {
        "trial": best.number,
        "params": dict(best.params),
        "earlyF1": early.f1 if early else None,
        "finalF1": final.f1,
        "finalPrecision": final.precision,
        "finalRecall": final.recall,
        "earlyAccuracy": early.accuracy if early else None,
        "finalAccuracy": final.accuracy,
        "attributeF1": dict(shown),
        "attributesLeftOut": len(attributes) - len(shown),
    }


def _value_words(metric: str, value: float) -> str:
    if metric == "computeSeconds":
        return f"{value:,.0f} compute-seconds"
    if metric in COST_WORDS:
        return f"{value:,.4g} {COST_WORDS[metric]}"
    return f"{metric} {value:.4f}"


def front_data(spec: FineTuneStudySpec, summary: Summary, limit: int | None = None) -> dict[str, Any] | None:
    """The Pareto front as the status and the report show it (None with one objective, or before a trial finished):
    its trials (the best on `objective` first, then by number; at most `limit`), the best, the knee and the
    recommendation."""
    if not is_multi(spec) or not summary.front:
        return None
    metrics = names(spec)
    values = {t.number: dict(zip(metrics, final_values(spec, t) or [], strict=True)) for t in summary.front}
    best = summary.best.number if summary.best is not None and summary.best.number in values else None
    at_knee = summary.knee.number if summary.knee is not None else None
    ordered = sorted(summary.front, key=lambda t: (t.number != best, t.number))
    words = {n: ", ".join(_value_words(m, v) for m, v in vals.items()) for n, vals in values.items()}
    message = f"{len(ordered)} trials on the front."
    if best is not None:
        message += f" Best {spec.objective.metric}: trial {best} ({words[best]})."
    if at_knee is not None:
        message += f" Knee: trial {at_knee} ({words[at_knee]})"
        if "computeSeconds" in metrics and best is not None and at_knee != best:
            ratio = values[best]["computeSeconds"] / max(values[at_knee]["computeSeconds"], 1e-9)
            message += f"; the best costs {ratio:.1f}x the compute of the knee"
        message += "."
    return {
        "objectives": metrics,
        "trials": [{"trial": t.number, "values": values[t.number]} for t in ordered[:limit]],
        "size": len(ordered),
        "best": best,
        "knee": at_knee,
        "message": message,
    }


def curve_data(
    summary: Summary, max_attributes: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The learning curve and its sweet spot as the status and the report show them (camelCase, no nulls); at most
    `max_attributes` per-attribute scores per point (the most supported ones)."""
    verdict = summary.verdict
    fit = verdict.fit if verdict else None
    points: list[dict[str, Any]] = []
    for point in summary.curve:
        attributes = list(point.attribute_scores.items())[:max_attributes]
        data: dict[str, Any] = {
            "samples": point.samples,
            "f1": point.score,
            "spread": point.spread,
            "repeats": point.repeats,
            "attributeF1": dict(attributes),
        }
        if point.accuracy is not None:
            data["accuracy"] = point.accuracy
        if fit is not None:
            data["gainPerThousand"] = round(max(-1.0, min(1.0, fit.gain_per_thousand(point.samples))), 4)
        if verdict is not None and point.samples in verdict.leading_attribute:
            data["leadingAttribute"] = verdict.leading_attribute[point.samples]
        points.append(data)
    if verdict is None:
        return points, None
    sweet: dict[str, Any] = {"saturated": verdict.saturated, "recommendation": verdict.recommendation}
    if verdict.sweet_spot is not None:
        sweet |= {"samples": verdict.sweet_spot.samples, "f1": verdict.sweet_spot.score}
    if fit is not None:
        sweet |= {"plateau": round(max(0.0, min(1.0, fit.plateau)), 4), "fit": fit.describe()}
    overall = summary.outlook.overall if summary.outlook is not None else None
    if overall is not None:
        words = describe(overall, cost_per_label=summary.outlook.cost_per_label)  # type: ignore[union-attr]
        sweet["recommendation"] = _clip(
            f"{verdict.recommendation}; forecast: {words}" if words else verdict.recommendation
        )
    return points, sweet


MESSAGE_LIMIT = 1024


def _clip(text: str) -> str:
    """A message within the status field's limit."""
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def _band_point(samples: int, band: Band, cost: float | None) -> dict[str, Any]:
    point: dict[str, Any] = {"samples": samples, "f1": round(band.middle, 4), "low": round(band.low, 4)}
    point["high"] = round(band.high, 4)
    if cost is not None:
        point["cost"] = round(cost, 2)
    return point


def _rows_data(answer: TargetAnswer, view: Outlook) -> dict[str, Any]:
    rows = answer.rows or RowsBand(None, None, None)
    return {
        "rows": rows.middle,
        "rowsLow": rows.low,
        "rowsHigh": rows.high,
        "reach": round(answer.reach, 4),
        "abovePlateau": answer.above_plateau,
        "cost": view.cost(rows.middle),
    }


def forecast_data(summary: Summary) -> dict[str, Any] | None:
    """The forecast as the status and the report show it (camelCase; nulls are dropped by the caller)."""
    view = summary.outlook
    if view is None:
        return None
    overall = view.overall
    if overall is None:
        return {"message": _clip(view.message)}
    data: dict[str, Any] = {
        "points": [_band_point(p.samples, p.f1, view.cost(p.samples)) for p in overall.sizes],
        "plateau": round(overall.plateau.middle, 4),
        "plateauLow": round(overall.plateau.low, 4),
        "plateauHigh": round(overall.plateau.high, 4),
        "forms": {form: round(weight, 4) for form, weight in overall.weights.items()},
        "noise": round(overall.noise, 4),
        "target": _rows_data(overall.target, view) if overall.target is not None else None,
        "attributes": [
            {
                "attribute": attribute,
                "points": [_band_point(p.samples, p.f1, None) for p in each.sizes],
                "target": _rows_data(each.target, view) if each.target is not None else None,
            }
            for attribute, each in view.attributes.items()
        ],
        "message": _clip(view.message),
    }
    return data
