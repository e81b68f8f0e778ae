"""The report as tables for a terminal (`render_text`: what `sweetspot report` and `sweetspot run` print)."""

from __future__ import annotations

import io
from typing import Any

from sweetspot.core.policies.guard import MIN_TRIALS
from sweetspot.report.data import score_of, weakest_first

ATTRIBUTE_ROWS = 15
"""Per-attribute rows a terminal table shows (the weakest and rarest); the CSV files hold them all."""
COST_COLUMNS: dict[str, tuple[str, str, float]] = {
    "computeSeconds": ("compute-seconds", "{:,.0f}", 1.0),
    "trainableParameters": ("trainable parameters", "{:,.0f}", 1.0),
    "peakMemoryBytes": ("peak memory MiB", "{:,.1f}", 2.0**-20),
    "latencyMsPerRow": ("ms per row", "{:,.2f}", 1.0),
}
"""A cost objective's column in the Pareto front table: header, format and scale (a quality metric: its name and four
decimals)."""


def _interval(predicted: dict[str, float] | None) -> str:
    if predicted is None:
        return "-"
    return f"{predicted['value']:.3f} [{predicted['low']:.3f}, {predicted['high']:.3f}]"


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_text(report: dict[str, Any]) -> str:
    """The report as tables for a terminal."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=140, force_terminal=False, color_system=None)
    console.print(f"Study {report['study']}: {report['phase']} ({report.get('message') or report.get('reason') or ''})")
    if report["trials"]:  # a sweep with fixed hyperparameters has no search to show
        _print_search(console, report)
    if "paretoFront" in report:  # a multi-objective study
        _print_front(console, report["paretoFront"])
    compute = report["computeSeconds"]
    console.print(
        f"compute seconds: used {compute['used']:.0f}, saved by judging early {compute['saved']:.0f}"
        + (f", lost to disruptions {compute['lost']:.0f}" if compute.get("lost") else "")
    )
    for line in _resumes(report):
        console.print(line)
    if report["learningCurve"]:
        _print_curve(console, report)
    return buffer.getvalue()


def _resumes(report: dict[str, Any]) -> list[str]:
    """A line per stage that ran again after a disruption, resuming from a checkpoint."""
    lines = []
    for trial in report["trials"]:
        for stage in ("early", "final"):
            scores = trial.get(stage) or {}
            if scores.get("resumedFromStep") is not None:
                lines.append(
                    f"trial {trial['trial']} {stage}: resumed from step {scores['resumedFromStep']} after a "
                    f"disruption ({scores['lostSeconds']:.0f} compute-seconds lost)"
                )
    return lines


def _print_search(console: Any, report: dict[str, Any]) -> None:
    """The search: policy, warm start, the trials table, counts, the best trial, and how early judged final."""
    signal = report["earlySignal"]
    console.print(
        f"policy {report['policy']}, early signal {signal} at {report['earlyFraction']:.0%} of steps; "
        "scores over applicable (row, attribute) pairs"
    )
    warm = report.get("warmStart")
    if warm:
        console.print(
            f"warm start from {', '.join(warm['studies']) or '-'}: {warm['reused']} trials reused, "
            f"{warm['enqueued']} configurations queued ({warm['message']})"
        )
    console.print(_trials_table(report))
    counts = report["counts"]
    console.print("trials: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    _print_best(console, report)
    _print_judging(console, report)


def _trials_table(report: dict[str, Any]) -> Any:
    """One row per trial: its early and final scores, where it came from, and its hyperparameters."""
    from rich.table import Table

    signal = report["earlySignal"]
    early_signal_column = f"early {signal}" if signal not in ("f1", "accuracy") else "early loss"
    early_key = signal if signal not in ("f1", "accuracy") else "loss"
    sources = any(row.get("source") for row in report["trials"])
    widened = bool(report["judging"]["widenings"])  # trials were judged at several fractions: say which
    columns = ["trial", "state", *(["judged at"] if widened else []), "early F1", early_signal_column]
    predicted = (report.get("prediction") or {}).get("trials")
    forecast = ["predicted final (80%)"] if predicted else []
    table = Table(
        *columns, "final F1", *forecast, "final acc", "seconds", "tokens/s", *(["from"] if sources else []), "params"
    )
    for row in report["trials"]:
        params = ", ".join(f"{k}={fmt(v, 5) if isinstance(v, float) else v}" for k, v in row["params"].items())
        judged_at = [f"{row['judgedAt']:.0%}" if row["judgedAt"] is not None else "-"] if widened else []
        where = [f"{row['source']} ({'reused' if row.get('reused') else 'retrained'})" if row.get("source") else ""]
        table.add_row(
            str(row["trial"]),
            row["state"],
            *judged_at,
            fmt(score_of(row["early"], "f1")),
            fmt(score_of(row["early"], early_key)),
            fmt(score_of(row["final"], "f1")),
            *([_interval(predicted.get(str(row["trial"])))] if predicted else []),
            fmt(score_of(row["final"], "accuracy")),
            fmt(row["seconds"], 1),
            _throughput(row),
            *(where if sources else []),
            params,
        )
    return table


def _throughput(row: dict[str, Any]) -> str:
    """The training tokens per second of the trial's last stage that reported it, with its MFU on CUDA."""
    for stage in ("final", "early"):
        scores = row[stage]
        if scores and scores.get("tokensPerSecond") is not None:
            mfu = f" ({scores['mfu']:.1%} MFU)" if scores.get("mfu") is not None else ""
            return f"{scores['tokensPerSecond']:,.0f}{mfu}"
    return "-"


def _print_best(console: Any, report: dict[str, Any]) -> None:
    """The model before training, then the best trial: its scores, hyperparameters, adapter and attributes."""
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
            + f"; always-null baseline F1 0.0000, accuracy {fmt(baseline)}"
        )
        console.print(f"  params {best['params']}")
        if best.get("adapter"):
            console.print(f"  adapter {best['adapter']} (sweetspot predict ADAPTER pages.jsonl)", soft_wrap=True)
        console.print(_attribute_table(best))


def _print_judging(console: Any, report: dict[str, Any]) -> None:
    """How well early judged final: rank agreement, the final-score prediction, the guard's widenings."""
    agreement = report["agreement"]
    if agreement["trials"] < MIN_TRIALS:
        console.print(f"early vs final: n/a ({agreement['trials']} trials; ranks agree or not from {MIN_TRIALS})")
    else:
        console.print(
            f"early vs final over {agreement['trials']} trials: Spearman {fmt(agreement['spearman'], 3)}, "
            f"Kendall {fmt(agreement['kendall'], 3)}, "
            f"top-{agreement['topK']} overlap {fmt(agreement['topKOverlap'])}"
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
            f"agreement guard: Spearman {fmt(step['agreement'], 3)} over {step['trials']} finals judged at "
            f"{step['from']:.0%} (below {report['judging']['minAgreement']}): later trials judged at "
            f"{step['to']:.0%}, one more promoted"
        )


def _objective_value(metric: str, value: float) -> str:
    """An objective's value as the front table shows it."""
    if metric not in COST_COLUMNS:
        return f"{value:.4f}"
    _, form, scale = COST_COLUMNS[metric]
    return form.format(value * scale)


def _print_front(console: Any, front: dict[str, Any] | None) -> None:
    """`spec.objectives`: the Pareto front, one row per trial (the best quality first) with the best and the knee
    marked, then the recommendation."""
    from rich.table import Table

    if front is None:
        console.print("Pareto front: none yet (no trial trained to the end)")
        return
    metrics, directions = front["objectives"], front["directions"]
    quality = next(m for m in metrics if m not in COST_COLUMNS)
    headers = [
        f"{COST_COLUMNS[m][0] if m in COST_COLUMNS else m} {'↑' if directions[m] == 'maximize' else '↓'}"
        for m in metrics
    ]
    sign = 1.0 if directions[quality] == "maximize" else -1.0
    rows = sorted(front["trials"], key=lambda t: (-sign * t["values"][quality], t["trial"]))
    console.print(
        f"Pareto front: {front['size']} trials no other beats in every objective (↑ higher is better, ↓ lower)"
    )
    table = Table("trial", *headers, "")
    for row in rows:
        marks = [word for word, trial in (("best", front["best"]), ("knee", front["knee"])) if trial == row["trial"]]
        table.add_row(str(row["trial"]), *(_objective_value(m, row["values"][m]) for m in metrics), ", ".join(marks))
    console.print(table)
    console.print(f"recommendation (Pareto front): {front['message']}")


def _print_curve(console: Any, report: dict[str, Any]) -> None:
    """The learning curve, its fit and sweet spot, the forecast and the recommendation."""
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
            table.add_row("labelling cost", *(fmt(p.get("cost"), 0) for p in points))
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
        table.add_row(name, str(support.get(name, "-")), fmt(f1[name], 3), fmt(accuracy.get(name), 3))
    return table


def _curve_table(points: list[dict[str, Any]]) -> Any:
    """Sizes as columns and attributes as rows (dozens of attributes stay readable); the weakest at the largest
    size first, at most `ATTRIBUTE_ROWS` of them."""
    from rich.table import Table

    table = Table("samples", *(str(p["samples"]) for p in points), title="Learning curve (micro-F1)")
    table.add_row("F1", *(fmt(p["f1"], 3) for p in points))
    table.add_row("± spread", *(fmt(p["spread"], 3) for p in points))
    table.add_row("accuracy", *(fmt(p.get("accuracy"), 3) for p in points))
    table.add_row("repeats", *(str(p["repeats"]) for p in points))
    if any(p.get("gainPerThousand") is not None for p in points):  # only a fitted curve has gains
        table.add_row("gain / +1,000", *(fmt(p.get("gainPerThousand"), 3) for p in points))
    table.add_row("gains most after", *(p.get("leadingAttribute") or "-" for p in points))
    last = points[-1]["attributeF1"]
    names = sorted({a for p in points for a in p["attributeF1"]}, key=lambda a: (last.get(a, 0.0), a))
    for name in names[:ATTRIBUTE_ROWS]:
        table.add_row(name, *(fmt(p["attributeF1"].get(name), 3) for p in points))
    if len(names) > ATTRIBUTE_ROWS:
        table.add_row(f"({len(names) - ATTRIBUTE_ROWS} more)", *("" for _ in points))
    return table
