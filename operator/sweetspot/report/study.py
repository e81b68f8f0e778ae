"""`sweetspot report`: a study's trials, best configuration, early-final agreement, compute, and plots.

Everything comes from the Optuna storage, so a report works from any machine that reaches it, for studies
run locally or by the operator.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_camel

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.curve import MIN_POINTS
from sweetspot.core.policies.base import early_signal
from sweetspot.core.policies.guard import MIN_TRIALS, judged_fraction
from sweetspot.core.policies.registry import policy_of
from sweetspot.core.records import Outcome, TrialView
from sweetspot.core.stats import Summary, best_data, curve_data, forecast_data, summarize
from sweetspot.storage.connect import open_storage
from sweetspot.storage.store import SearchStore
from sweetspot.storage.studies import load_study

ATTRIBUTE_ROWS = 15
"""Per-attribute rows a terminal table shows (the weakest and rarest); the CSV files hold them all."""


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
        "step": outcome.step,
        "plannedSteps": outcome.planned_steps,
        "samples": outcome.samples,
        "seconds": outcome.seconds,
    }


def _trial_row(spec: FineTuneStudySpec, trial: TrialView) -> dict[str, Any]:
    return {
        "trial": trial.number,
        "state": _state(trial),
        "params": dict(trial.params),
        "judgedAt": judged_fraction(spec, trial.early) if trial.early is not None else None,
        "early": _scores(trial.early),
        "final": _scores(trial.final),
        "seconds": round(sum(o.seconds for o in (trial.early, trial.final) if o), 1),
        "reason": trial.reason or None,
        "source": trial.source or None,
        "reused": trial.reused,
    }


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
        "agreement": _camel(asdict(summary.agreement)),
        "computeSeconds": {"used": summary.compute_used, "saved": summary.compute_saved},
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
    early = resource.spec.search.early_evaluation
    judging = summary.judging
    return {
        "fraction": judging.fraction,
        "minAgreement": early.min_agreement if early.policy == "proxy" else None,
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


def _interval(predicted: dict[str, float] | None) -> str:
    if predicted is None:
        return "-"
    return f"{predicted['value']:.3f} [{predicted['low']:.3f}, {predicted['high']:.3f}]"


def _camel(record: dict[str, Any]) -> dict[str, Any]:
    """A record's keys as the report's JSON spells every key (camelCase, as the resource's status does)."""
    return {to_camel(key): value for key, value in record.items()}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _get(scores: dict[str, Any] | None, key: str) -> Any:
    return None if scores is None else scores.get(key)


def weakest_first(f1: dict[str, float], support: dict[str, int]) -> list[str]:
    """Attributes ordered for a reader: the weakest F1 first, the rarest first among equals; attributes with no gold
    value on these rows (nothing to extract, so an F1 of 0 says nothing) last."""
    return sorted(f1, key=lambda a: (support.get(a, 1) == 0, f1[a], support.get(a, 0), a))


def render_text(report: dict[str, Any]) -> str:
    """The report as tables for a terminal."""
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, width=140, force_terminal=False, color_system=None)
    console.print(f"Study {report['study']}: {report['phase']} ({report.get('message') or report.get('reason') or ''})")
    if report["trials"]:  # a sweep with fixed hyperparameters has no search to show
        signal = report["earlySignal"]
        console.print(
            f"policy {report['policy']}, early signal {signal} at {report['earlyFraction']:.0%} of steps; "
            "scores over applicable (row, attribute) pairs"
        )
        early_signal_column = f"early {signal}" if signal not in ("f1", "accuracy") else "early loss"
        early_key = signal if signal not in ("f1", "accuracy") else "loss"
        warm = report.get("warmStart")
        if warm:
            console.print(
                f"warm start from {', '.join(warm['studies']) or '-'}: {warm['reused']} trials reused, "
                f"{warm['enqueued']} configurations queued ({warm['message']})"
            )
        sources = any(row.get("source") for row in report["trials"])
        widened = bool(report["judging"]["widenings"])  # trials were judged at several fractions: say which
        columns = ["trial", "state", *(["judged at"] if widened else []), "early F1", early_signal_column]
        predicted = (report.get("prediction") or {}).get("trials")
        forecast = ["predicted final (80%)"] if predicted else []
        table = Table(*columns, "final F1", *forecast, "final acc", "seconds", *(["from"] if sources else []), "params")
        for row in report["trials"]:
            params = ", ".join(f"{k}={_fmt(v, 5) if isinstance(v, float) else v}" for k, v in row["params"].items())
            judged_at = [f"{row['judgedAt']:.0%}" if row["judgedAt"] is not None else "-"] if widened else []
            where = [f"{row['source']} ({'reused' if row.get('reused') else 'retrained'})" if row.get("source") else ""]
            table.add_row(
                str(row["trial"]),
                row["state"],
                *judged_at,
                _fmt(_get(row["early"], "f1")),
                _fmt(_get(row["early"], early_key)),
                _fmt(_get(row["final"], "f1")),
                *([_interval(predicted.get(str(row["trial"])))] if predicted else []),
                _fmt(_get(row["final"], "accuracy")),
                _fmt(row["seconds"], 1),
                *(where if sources else []),
                params,
            )
        console.print(table)
        counts = report["counts"]
        console.print("trials: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        zero = report.get("zeroShot")
        if zero:
            json_rate = f", valid JSON {zero['validJsonRate']:.0%}" if "validJsonRate" in zero else ""
            console.print(
                f"zero-shot (the model before training): F1 {zero['f1']:.4f} (precision {zero['precision']:.4f}, "
                f"recall {zero['recall']:.4f}), accuracy {zero['accuracy']:.4f}{json_rate}"
            )
        best = report["best"]
        if best:
            baseline = best["nullBaseline"]["accuracy"]
            console.print(
                f"best: trial {best['trial']} final F1 {best['finalF1']:.4f} (precision {best['finalPrecision']:.4f}, "
                f"recall {best['finalRecall']:.4f}), accuracy {best['finalAccuracy']:.4f}"
                + (f", valid JSON {best['validJsonRate']:.0%}" if best.get("validJsonRate") is not None else "")
                + f"; always-null baseline F1 0.0000, accuracy {_fmt(baseline)}"
            )
            console.print(f"  params {best['params']}")
            if best.get("adapter"):
                console.print(f"  adapter {best['adapter']} (sweetspot predict ADAPTER pages.jsonl)", soft_wrap=True)
            console.print(_attribute_table(best))
        agreement = report["agreement"]
        if agreement["trials"] < MIN_TRIALS:
            console.print(f"early vs final: n/a ({agreement['trials']} trials; ranks agree or not from {MIN_TRIALS})")
        else:
            console.print(
                f"early vs final over {agreement['trials']} trials: Spearman {_fmt(agreement['spearman'], 3)}, "
                f"Kendall {_fmt(agreement['kendall'], 3)}, "
                f"top-{agreement['topK']} overlap {_fmt(agreement['topKOverlap'])}"
            )
        prediction = report.get("prediction")
        if prediction:
            if prediction["feature"] is None:
                console.print(f"final-score prediction: not calibrated yet ({prediction['pairs']} finals of 3)")
            else:
                coverage = prediction["coverage"]
                source = "early curve" if prediction["feature"] == "curve" else "early score"
                checked = (
                    f"{coverage:.0%} of {prediction['checked']} finals inside their 80% interval (each predicted "
                    "without its own final)"
                    if coverage is not None
                    else "its intervals checked from 4 finals"
                )
                console.print(f"final-score prediction from the {source}: {checked}")
        for step in report["judging"]["widenings"]:
            console.print(
                f"agreement guard: Spearman {_fmt(step['agreement'], 3)} over {step['trials']} finals judged at "
                f"{step['from']:.0%} (below {report['judging']['minAgreement']}): later trials judged at "
                f"{step['to']:.0%}, one more promoted"
            )
    compute = report["computeSeconds"]
    console.print(f"compute seconds: used {compute['used']:.0f}, saved by judging early {compute['saved']:.0f}")
    if report["learningCurve"]:
        console.print(_curve_table(report["learningCurve"]))
        spot = report["sweetSpot"] or {}
        if spot.get("fit"):
            console.print(f"fitted: {spot['fit']}")
        if spot.get("samples"):
            console.print(f"sweet spot: {spot['samples']} samples (F1 {spot['f1']:.4f})")
        if report.get("forecast"):
            for line in _forecast_lines(report["forecast"], report.get("target")):
                console.print(line)
        if spot.get("recommendation"):
            console.print(f"recommendation: {spot['recommendation']}")
    return buffer.getvalue()


def _rows(answer: dict[str, Any]) -> str:
    if answer.get("abovePlateau"):
        return "above the plateau's band"
    high = f"{answer['rowsHigh']:,}" if answer.get("rowsHigh") else "not reached"
    middle = (
        f"{answer['rows']:,}" if answer.get("rows") else f"not reached ({answer['reach']:.0%} of forecasts reach it)"
    )
    cost = f", labelling cost {answer['cost']:,.0f}" if answer.get("cost") is not None else ""
    return f"{middle} (80% band {answer['rowsLow']:,} to {high}){cost}"


def _forecast_lines(forecast: dict[str, Any], target: float | None) -> list[Any]:
    """The forecast table (sizes as columns, the headline F1 and the late-gain attributes as rows) and the target."""
    from rich.table import Table

    if not forecast.get("points") and not forecast.get("target"):
        return [f"forecast: {forecast.get('message', '')}"]
    lines: list[Any] = []
    points = forecast.get("points", [])
    if points:
        table = Table("samples", *(f"{p['samples']:,}" for p in points), title="Forecast (micro-F1, 80% band)")
        table.add_row("F1", *(f"{p['f1']:.3f} [{p['low']:.3f}, {p['high']:.3f}]" for p in points))
        if any(p.get("cost") is not None for p in points):
            table.add_row("labelling cost", *(_fmt(p.get("cost"), 0) for p in points))
        for each in forecast.get("attributes", []):
            table.add_row(
                each["attribute"], *(f"{p['f1']:.3f} [{p['low']:.3f}, {p['high']:.3f}]" for p in each["points"])
            )
        lines.append(table)
    lines.append(
        f"plateau {forecast['plateau']:.3f} (80% band {forecast['plateauLow']:.3f}-{forecast['plateauHigh']:.3f}); "
        "forms " + ", ".join(f"{form} {weight:.2f}" for form, weight in forecast["forms"].items())
    )
    if target is not None and forecast.get("target"):
        lines.append(f"rows to reach F1 {target:.2f}: {_rows(forecast['target'])}")
        for each in forecast.get("attributes", []):
            if each.get("target"):
                lines.append(f"rows for {each['attribute']} to reach F1 {target:.2f}: {_rows(each['target'])}")
    return lines


def _attribute_table(best: dict[str, Any]) -> Any:
    from rich.table import Table

    f1, support, accuracy = best["attributeF1"], best["attributeSupport"], best["attributeAccuracy"]
    names = weakest_first(f1, support)
    shown = names[:ATTRIBUTE_ROWS]
    title = f"Best trial per attribute, weakest first ({len(shown)} of {len(names)}; all in attributes.csv)"
    table = Table("attribute", "gold values", "F1", "accuracy", title=title if len(names) > len(shown) else None)
    for name in shown:
        table.add_row(name, str(support.get(name, "-")), _fmt(f1[name], 3), _fmt(accuracy.get(name), 3))
    return table


def _curve_table(points: list[dict[str, Any]]) -> Any:
    """Sizes as columns and attributes as rows (dozens of attributes stay readable); the weakest at the largest
    size first, at most `ATTRIBUTE_ROWS` of them."""
    from rich.table import Table

    table = Table("samples", *(str(p["samples"]) for p in points), title="Learning curve (micro-F1)")
    table.add_row("F1", *(_fmt(p["f1"], 3) for p in points))
    table.add_row("± spread", *(_fmt(p["spread"], 3) for p in points))
    table.add_row("accuracy", *(_fmt(p.get("accuracy"), 3) for p in points))
    table.add_row("repeats", *(str(p["repeats"]) for p in points))
    if any(p.get("gainPerThousand") is not None for p in points):  # only a fitted curve has gains
        table.add_row("gain / +1,000", *(_fmt(p.get("gainPerThousand"), 3) for p in points))
    table.add_row("gains most after", *(p.get("leadingAttribute") or "-" for p in points))
    last = points[-1]["attributeF1"]
    names = sorted({a for p in points for a in p["attributeF1"]}, key=lambda a: (last.get(a, 0.0), a))
    for name in names[:ATTRIBUTE_ROWS]:
        table.add_row(name, *(_fmt(p["attributeF1"].get(name), 3) for p in points))
    if len(names) > ATTRIBUTE_ROWS:
        table.add_row(f"({len(names) - ATTRIBUTE_ROWS} more)", *("" for _ in points))
    return table


def trials_csv(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    names = sorted({k for row in report["trials"] for k in row["params"]})
    writer = csv.writer(buffer)
    stages = [
        f"{stage}_{key}" for stage in ("early", "final") for key in ("f1", "precision", "recall", "accuracy", "loss")
    ]
    writer.writerow(["trial", "state", *names, *stages, "seconds", "source"])
    for row in report["trials"]:
        scores = [
            _get(row[stage], key)
            for stage in ("early", "final")
            for key in ("f1", "precision", "recall", "accuracy", "loss")
        ]
        params = (row["params"].get(n) for n in names)
        writer.writerow([row["trial"], row["state"], *params, *scores, row["seconds"], row.get("source") or ""])
    return buffer.getvalue()


def attributes_csv(report: dict[str, Any]) -> str:
    """Every attribute of the best trial: gold values, F1 and accuracy, weakest first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["attribute", "gold_values", "f1", "accuracy"])
    best = report["best"]
    if best:
        for name in weakest_first(best["attributeF1"], best["attributeSupport"]):
            writer.writerow(
                [
                    name,
                    best["attributeSupport"].get(name),
                    best["attributeF1"][name],
                    best["attributeAccuracy"].get(name),
                ]
            )
    return buffer.getvalue()


def learning_curve_csv(report: dict[str, Any]) -> str:
    """The whole learning curve: one row per size, every attribute's F1 as a column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    points = report["learningCurve"]
    names = sorted({a for p in points for a in p["attributeF1"]})
    writer.writerow(["samples", "f1", "spread", "accuracy", "repeats", "gain_per_thousand", *names])
    for p in points:
        writer.writerow(
            [p["samples"], p["f1"], p["spread"], p.get("accuracy"), p["repeats"], p.get("gainPerThousand")]
            + [p["attributeF1"].get(n) for n in names]
        )
    return buffer.getvalue()


def write_tables(report: dict[str, Any], directory: Path) -> list[Path]:
    """The report's full tables as CSV: trials, the best trial per attribute, the learning curve."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("trials.csv", trials_csv(report)),
        ("attributes.csv", attributes_csv(report)),
        ("learning_curve.csv", learning_curve_csv(report)),
    ):
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def _padded(values: list[float], fraction: float = 0.08, least: float = 0.02) -> tuple[float, float]:
    """Axis limits that hold every value with a margin (a single value or a tie gets `least` either side)."""
    low, high = min(values), max(values)
    pad = max((high - low) * fraction, least)
    return low - pad, high + pad


def early_vs_final_figure(report: dict[str, Any]) -> Any:
    """The early signal against the final score; trials stopped early (no final score) in a strip below the finals
    at their early score, so every trial the study judged is on the plot and inside its limits."""
    import matplotlib.pyplot as plt

    rows, objective, signal = report["trials"], report.get("objective", "f1"), report["earlySignal"]
    figure, axes = plt.subplots(figsize=(5, 4.5))
    both = [r for r in rows if r["early"] is not None and r["final"] is not None]
    early_only = [r for r in rows if r["early"] is not None and r["final"] is None]
    xs = [r["early"][signal] for r in both + early_only]
    finals = [r["final"][objective] for r in both]
    # The strip lies a quarter of the finals' span below the lowest final, in data coordinates: a tick on the x axis
    # (axes coordinates) is left out of autoscaling and fell outside the limits. With no final it is the only row.
    top, bottom = (max(finals), min(finals)) if finals else (0.0, 0.0)
    strip = bottom - max((top - bottom) * 0.25, 0.05) if finals else 0.0
    if both:
        axes.scatter([r["early"][signal] for r in both], finals, label="trained to the end")
    for r in both:
        axes.annotate(str(r["trial"]), (r["early"][signal], r["final"][objective]), fontsize=8)
    if early_only:
        axes.scatter(
            [r["early"][signal] for r in early_only],
            [strip] * len(early_only),
            marker="x",
            color="tab:gray",
            label="stopped early (early score only)",
        )
        for r in early_only:
            axes.annotate(str(r["trial"]), (r["early"][signal], strip), fontsize=8, color="tab:gray")
        if finals:
            axes.axhline((strip + bottom) / 2, color="tab:gray", linewidth=0.5, linestyle=":")
    if xs:
        axes.set_xlim(*_padded(xs))
        axes.set_ylim(*_padded([*finals, strip]))
    if early_only:  # the strip's tick says what it is; the finals keep their own ticks above the divider
        divider, ceiling = (strip + bottom) / 2, axes.get_ylim()[1]
        ticks = [t for t in axes.get_yticks() if divider < t <= ceiling] if finals else []
        axes.set_yticks([strip, *ticks], ["no final", *(f"{t:.2f}" for t in ticks)])
        axes.set_ylim(*_padded([*finals, strip]))
    agreement = report["agreement"]
    rho = _fmt(agreement["spearman"], 2) if agreement["trials"] >= MIN_TRIALS else f"n/a, {agreement['trials']} trials"
    judged = sorted({r["judgedAt"] for r in rows if r["judgedAt"] is not None}) or [report["earlyFraction"]]
    axes.set(
        xlabel=f"early {signal} ({' / '.join(f'{f:.0%}' for f in judged)} of steps; what the study judged on)",
        ylabel=f"final {objective}",
        title=f"Early vs final (Spearman {rho})",
    )
    axes.legend(loc="best", fontsize=8)
    return figure


def best_so_far_figure(report: dict[str, Any]) -> Any:
    """The best score so far against the compute all stages spent so far, early and final scores apart: an early
    score is measured a fraction of the way in, so it is no final score and gets its own line."""
    import matplotlib.pyplot as plt

    objective = report.get("objective", "f1")
    better = min if objective == "loss" else max
    figure, axes = plt.subplots(figsize=(6, 4))
    stages = report.get("stages") or []
    spent = [s["computeSeconds"] for s in stages]
    for stage, style, marker in (("early", "--", "o"), ("final", "-", "s")):
        mine = [s for s in stages if s["stage"] == stage]
        if not mine:
            continue
        best: float | None = None
        line_x, line_y = [], []
        for s in stages:  # the line steps at every stage: compute goes on while the other kind runs
            if s["stage"] == stage:
                best = s["score"] if best is None else better(best, s["score"])
            if best is not None:
                line_x.append(s["computeSeconds"])
                line_y.append(best)
        label = f"best {'early' if stage == 'early' else 'final'} {objective} so far"
        (line,) = axes.step(line_x, line_y, where="post", linestyle=style, label=label)
        axes.scatter(
            [s["computeSeconds"] for s in mine],
            [s["score"] for s in mine],
            marker=marker,
            facecolors="none" if stage == "early" else line.get_color(),
            edgecolors=line.get_color(),
            label=f"{stage} stage",
        )
    if stages:
        scores = [s["score"] for s in stages]
        axes.set_xlim(0, max(spent) * 1.05 or 1.0)
        axes.set_ylim(*_padded(scores))
        axes.legend(fontsize=8)
    axes.set(
        xlabel="compute seconds spent by all stages so far",
        ylabel=objective,
        title=f"Best {objective} so far against compute",
    )
    return figure


def learning_curve_figure(report: dict[str, Any]) -> Any:
    """The measured learning curve, its fit and plateau (only when fitted), the forecast band and the target."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    points = report["learningCurve"]
    axes.errorbar(
        [p["samples"] for p in points],
        [p["f1"] for p in points],
        yerr=[p["spread"] for p in points],
        marker="o",
        capsize=3,
        label="micro-F1 (mean ± sd over repeats)",
    )
    if report["fittedCurve"]:
        xs, ys = zip(*report["fittedCurve"], strict=True)
        axes.plot(xs, ys, color="black", linewidth=0.8, label="fitted")
    last = points[-1]["attributeF1"]
    for attribute in sorted(last, key=lambda a: (last[a], a))[:6]:  # the weakest: where gains are left
        axes.plot(
            [p["samples"] for p in points],
            [p["attributeF1"].get(attribute) for p in points],
            alpha=0.5,
            linestyle="--",
            label=attribute,
        )
    band = report.get("forecastCurve") or []
    if band:
        sizes = [p["samples"] for p in band]
        axes.fill_between(sizes, [p["low"] for p in band], [p["high"] for p in band], alpha=0.2, label="80% band")
        axes.plot(sizes, [p["f1"] for p in band], color="tab:blue", linestyle="--", linewidth=0.8, label="forecast")
    ahead = (report.get("forecast") or {}).get("points") or []
    if ahead:
        axes.errorbar(
            [p["samples"] for p in ahead],
            [p["f1"] for p in ahead],
            yerr=[[p["f1"] - p["low"] for p in ahead], [p["high"] - p["f1"] for p in ahead]],
            fmt="s",
            color="tab:blue",
            mfc="white",
            capsize=3,
            label="forecast at forecast.to",
        )
    if report.get("target") is not None:
        axes.axhline(report["target"], color="tab:red", linewidth=0.8, label=f"target F1 {report['target']:.2f}")
    spot = report["sweetSpot"] or {}
    if spot.get("samples"):
        axes.axvline(spot["samples"], color="gray", linestyle=":", label=f"sweet spot ({spot['samples']})")
    if spot.get("plateau") is not None:
        axes.axhline(spot["plateau"], color="gray", linewidth=0.5, label="fitted plateau")
    if not spot.get("fit"):
        title = "Learning curve (not fitted: too few sizes)" if len(points) < MIN_POINTS else "Learning curve"
    else:
        title = "Learning curve" + ("" if spot.get("saturated") else " (not saturated)")
    # A margin past F1 0 and 1: a point at 0 (nothing learned yet) or a plateau at 1 stays visible off the frame.
    axes.set(xscale="log", xlabel="training rows (log scale)", ylabel="micro-F1", ylim=(-0.03, 1.05), title=title)
    ticks = [p["samples"] for p in points] + [p["samples"] for p in ahead]
    axes.set_xticks(ticks, [str(n) for n in ticks])
    axes.minorticks_off()
    axes.legend(fontsize=7)
    return figure


def write_plots(report: dict[str, Any], directory: Path) -> list[Path]:
    """PNG plots: the early signal against the final score, best so far against compute, the best trial per
    attribute, the learning curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(figure: Any, name: str) -> None:
        path = directory / name
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)

    if report["trials"]:  # a sweep with fixed hyperparameters has no trials
        save(early_vs_final_figure(report), "early_vs_final.png")
        save(best_so_far_figure(report), "best_so_far.png")

    if report["best"]:
        best_trial = report["best"]
        names = weakest_first(best_trial["attributeF1"], best_trial["attributeSupport"])[:30]
        figure, axes = plt.subplots(figsize=(6, max(3.0, 0.25 * len(names) + 1)))
        axes.barh(names, [best_trial["attributeF1"][n] for n in names])
        axes.invert_yaxis()
        axes.set(xlim=(0, 1), xlabel="F1", title=f"Best trial {best_trial['trial']} per attribute (weakest first)")
        save(figure, "best_per_attribute.png")

    if report["learningCurve"]:
        save(learning_curve_figure(report), "learning_curve.png")
    return written
