"""The report's data: a study's trials, best configuration, early-final agreement, compute and learning curve, as
one JSON-ready dict (`build`; what `sweetspot report --format json` prints and `report.json` holds).

Everything comes from the Optuna storage, so a report works from any machine that reaches it, for studies
run locally or by the operator. `text` renders the data for a terminal, `files` writes it as CSV tables and plots.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic.alias_generators import to_camel

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.objectives import final_values, goals, is_multi, names
from sweetspot.core.policies.base import early_signal
from sweetspot.core.policies.guard import judged_fraction
from sweetspot.core.policies.registry import policy_of
from sweetspot.core.records import Outcome, TrialView
from sweetspot.core.stats import Summary, best_data, curve_data, forecast_data, front_data, summarize
from sweetspot.storage.connect import open_storage
from sweetspot.storage.store import SearchStore
from sweetspot.storage.studies import load_study


def _state(trial: TrialView) -> str:
    if trial.infeasible:
        return "failed (out of memory)"
    if trial.state == "complete" and trial.final is None:
        return "early only"
    return trial.state


def _scores(outcome: Outcome | None) -> dict[str, Any] | None:
    """One evaluation as the report shows it: F1 first, then what explains it."""
    if outcome is None:
        return None
    return {
        "f1": outcome.f1,
        "precision": outcome.precision,
        "recall": outcome.recall,
        "macroF1": outcome.macro_f1,
        "accuracy": outcome.accuracy,
        "tokenF1": outcome.token_f1,
        "loss": outcome.loss,
        "validJsonRate": outcome.valid_json_rate,
        "rows": outcome.rows,
        "subsampled": outcome.subsampled,
        "nullBaseline": {"f1": 0.0, "accuracy": outcome.null_baseline},
        "attributeF1": dict(outcome.attribute_f1),
        "attributeSupport": dict(outcome.attribute_support),
        "attributeAccuracy": dict(outcome.attribute_accuracy),
        "categoryF1": dict(outcome.category_f1),
        "resumedFromStep": outcome.resumed_from_step,
        "lostSeconds": outcome.lost_seconds,
        "step": outcome.step,
        "plannedSteps": outcome.planned_steps,
        "samples": outcome.samples,
        "seconds": outcome.seconds,
        "tokensPerSecond": outcome.tokens_per_second,
        "mfu": outcome.mfu,
    }


def _trial_row(spec: FineTuneStudySpec, trial: TrialView) -> dict[str, Any]:
    return {
        "trial": trial.number,
        "state": _state(trial),
        "params": dict(trial.params),
        "judgedAt": judged_fraction(spec, trial.early) if trial.early is not None else None,
        "early": _scores(trial.early),
        "final": _scores(trial.final),
        **(_objectives(spec, trial) if is_multi(spec) else {}),
        "seconds": round(sum(o.seconds for o in (trial.early, trial.final) if o), 1),
        "reason": trial.reason or None,
        "source": trial.source or None,
        "reused": trial.reused,
    }


def _objectives(spec: FineTuneStudySpec, trial: TrialView) -> dict[str, Any]:
    """`spec.objectives`: the trial's final value of each objective (None before it was trained to the end)."""
    values = final_values(spec, trial)
    return {"objectives": None if values is None else dict(zip(names(spec), values, strict=True))}


def build(url: str, namespace: str, name: str) -> dict[str, Any]:
    """The report of study `namespace/name` as plain data (what `--format json` prints)."""
    study, stored = load_study(url, f"{namespace}/{name}")
    resource = FineTuneStudy.model_validate({"apiVersion": "sweetspot.dev/v1alpha1", "kind": "FineTuneStudy", **stored})
    store = SearchStore(url, study, resource.spec, open_storage(url))
    trials, sweep = store.snapshot()
    summary = summarize(resource.spec, trials, sweep)
    return _as_data(resource, store.phase(), trials, summary) | {"warmStart": store.warm_summary()}


def _as_data(
    resource: FineTuneStudy, phase: dict[str, Any], trials: list[TrialView], summary: Summary
) -> dict[str, Any]:
    curve, sweet_spot = curve_data(summary)
    best = best_data(summary)
    if best is not None and summary.best is not None:
        final = summary.best.final
        assert final is not None
        best |= {
            "attributeSupport": dict(final.attribute_support),
            "attributeAccuracy": dict(final.attribute_accuracy),
            "nullBaseline": {"f1": 0.0, "accuracy": final.null_baseline},
            "validJsonRate": final.valid_json_rate,
        }
    spec = resource.spec
    # Only a multi-objective study has a front: a single-objective report keeps its keys.
    front = {"paretoFront": _front(spec, summary)} if is_multi(spec) else {}
    return {
        "study": resource.key,
        "phase": phase.get("phase", "Pending"),
        "reason": phase.get("reason"),
        "message": phase.get("message"),
        "objective": resource.spec.objective.metric,
        "policy": resource.spec.search.early_evaluation.policy,
        "earlySignal": early_signal(resource.spec),
        "earlyFraction": resource.spec.search.early_evaluation.at_fraction,
        "judging": _judging(resource, summary),
        "prediction": _prediction(summary),
        "trials": [_trial_row(resource.spec, t) for t in sorted(trials, key=lambda t: t.number)],
        "counts": summary.counts,
        "best": best,
        **front,
        "agreement": _camel(asdict(summary.agreement)),
        "computeSeconds": {"used": summary.compute_used, "saved": summary.compute_saved, "lost": summary.compute_lost},
        "stages": _stages(resource.spec, trials),
        "learningCurve": curve,
        "sweetSpot": sweet_spot,
        "fittedCurve": _fitted(summary),
        "forecast": forecast_data(summary),
        "forecastCurve": _forecast_curve(summary),
        "target": resource.spec.data_efficiency.target.f1
        if resource.spec.data_efficiency is not None and resource.spec.data_efficiency.target is not None
        else None,
        "zeroShot": next((dict(t.early.zero_shot) for t in trials if t.early and t.early.zero_shot), None),
    }


def _front(spec: FineTuneStudySpec, summary: Summary) -> dict[str, Any] | None:
    """The whole Pareto front as the status shows it (`stats.front_data`, unbounded here), with each objective's
    direction (costs are minimised; the quality as `objective` says)."""
    data = front_data(spec, summary)
    if data is None:
        return None
    return data | {"directions": {goal.metric: goal.direction for goal in goals(spec)}}


def _stages(spec: FineTuneStudySpec, trials: list[TrialView]) -> list[dict[str, Any]]:
    """The search's finished stages in the order the planner runs them, each with its objective score and the compute
    spent by all stages up to it (for best-so-far against compute).

    Records hold no timestamps, so the order is the planner's: with finals run during the search, each trial's final
    right after its early stage; otherwise every early stage first, then the promoted finals. Stages copied by warm
    start were another study's compute and are left out, as `computeSeconds.used` leaves them out.
    """
    ordered = sorted(trials, key=lambda t: t.number)
    runs: list[tuple[TrialView, str, Outcome]] = []
    if policy_of(spec).final_during_search:
        runs = [(t, stage, o) for t in ordered for stage, o in (("early", t.early), ("final", t.final)) if o]
    else:
        runs = [(t, "early", t.early) for t in ordered if t.early] + [(t, "final", t.final) for t in ordered if t.final]
    stages, spent = [], 0.0
    for trial, stage, outcome in runs:
        if stage in trial.copied:
            continue
        spent += outcome.compute_seconds
        stages.append(
            {
                "trial": trial.number,
                "stage": stage,
                "score": outcome.metric(spec.objective.metric),
                "computeSeconds": round(spent, 2),
            }
        )
    return stages


def _judging(resource: FineTuneStudy, summary: Summary) -> dict[str, Any]:
    """The agreement guard: where trials are judged now, and each widening that led there."""
    spec = resource.spec
    judging = summary.judging
    return {
        "fraction": judging.fraction,
        "minAgreement": policy_of(spec).min_agreement(spec),
        "agreement": judging.agreement,
        "trials": judging.trials,
        "widenings": [
            {"from": w.from_fraction, "to": w.to_fraction, "agreement": w.agreement, "trials": w.trials}
            for w in judging.widenings
        ],
    }


def _prediction(summary: Summary) -> dict[str, Any] | None:
    """`promote: predicted`: each trial's predicted final score (value, low, high) and the calibration."""
    found = summary.forecast
    if found is None:
        return None
    return {
        "feature": found.model.feature if found.model else None,
        "coverage": found.calibration.coverage,
        "checked": found.calibration.checked,
        "pairs": found.calibration.pairs,
        "trials": {str(n): asdict(p) for n, p in sorted(found.predictions.items())},
    }


def _fitted(summary: Summary) -> list[tuple[int, float]]:
    """The fitted learning curve at 50 sizes across the measured range (for the plot)."""
    fit = summary.verdict.fit if summary.verdict else None
    if fit is None or not summary.curve:
        return []
    low, high = summary.curve[0].samples, summary.curve[-1].samples
    sizes = sorted({round(low * (high / low) ** (i / 49)) for i in range(50)})
    return [(n, round(fit.predict(n), 4)) for n in sizes]


def _forecast_curve(summary: Summary) -> list[dict[str, float]]:
    """The forecast's band from the smallest measured size past the largest forecast one (for the plot)."""
    overall = summary.outlook.overall if summary.outlook is not None else None
    if overall is None:
        return []
    return [
        {"samples": p.samples, "f1": round(p.f1.middle, 4), "low": round(p.f1.low, 4), "high": round(p.f1.high, 4)}
        for p in overall.curve
    ]


def _camel(record: dict[str, Any]) -> dict[str, Any]:
    """A record's keys as the report's JSON spells every key (camelCase, as the resource's status does)."""
    return {to_camel(key): value for key, value in record.items()}


def score_of(scores: dict[str, Any] | None, key: str) -> Any:
    return None if scores is None else scores.get(key)


def weakest_first(f1: dict[str, float], support: dict[str, int]) -> list[str]:
    """Attributes ordered for a reader: the weakest F1 first, the rarest first among equals; attributes with no gold
    value on these rows (nothing to extract, so an F1 of 0 says nothing) last."""
    return sorted(f1, key=lambda a: (support.get(a, 1) == 0, f1[a], support.get(a, 0), a))
