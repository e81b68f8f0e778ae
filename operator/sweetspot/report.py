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

from sweetspot.api import FineTuneStudy
from sweetspot.planner import TrialView, early_signal
from sweetspot.search import SearchStore, load_study
from sweetspot.stats import Summary, curve_data, summarize


def _state(trial: TrialView) -> str:
    if trial.infeasible:
        return "failed (out of memory)"
    if trial.state == "complete" and trial.final is None:
        return "early only"
    return trial.state


def _trial_row(trial: TrialView) -> dict[str, Any]:
    return {
        "trial": trial.number,
        "state": _state(trial),
        "params": dict(trial.params),
        "earlyAccuracy": trial.early.accuracy if trial.early else None,
        "earlyLoss": trial.early.loss if trial.early else None,
        "finalAccuracy": trial.final.accuracy if trial.final else None,
        "finalAttributeAccuracy": dict(trial.final.attribute_accuracy) if trial.final else None,
        "seconds": round(sum(o.seconds for o in (trial.early, trial.final) if o), 1),
        "reason": trial.reason or None,
    }


def build(url: str, namespace: str, name: str) -> dict[str, Any]:
    """The report of study `namespace/name` as plain data (what `--format json` prints)."""
    study, stored = load_study(url, f"{namespace}/{name}")
    resource = FineTuneStudy.model_validate({"apiVersion": "sweetspot.dev/v1alpha1", "kind": "FineTuneStudy", **stored})
    store = SearchStore(url, study, resource.spec)
    trials, sweep = store.snapshot()
    summary = summarize(resource.spec, trials, sweep)
    return _as_data(resource, store.phase(), trials, summary)


def _as_data(
    resource: FineTuneStudy, phase: dict[str, Any], trials: list[TrialView], summary: Summary
) -> dict[str, Any]:
    best = summary.best
    agreement = asdict(summary.agreement)
    curve, sweet_spot = curve_data(summary)
    return {
        "study": resource.key,
        "phase": phase.get("phase", "Pending"),
        "reason": phase.get("reason"),
        "message": phase.get("message"),
        "policy": resource.spec.search.early_evaluation.policy,
        "earlySignal": early_signal(resource.spec),
        "earlyFraction": resource.spec.search.early_evaluation.at_fraction,
        "trials": [_trial_row(t) for t in sorted(trials, key=lambda t: t.number)],
        "counts": summary.counts,
        "best": None
        if best is None or best.final is None
        else {
            "trial": best.number,
            "params": dict(best.params),
            "earlyAccuracy": best.early.accuracy if best.early else None,
            "finalAccuracy": best.final.accuracy,
            "attributeAccuracy": dict(best.final.attribute_accuracy),
        },
        "agreement": agreement,
        "computeSeconds": {"used": summary.compute_used, "saved": summary.compute_saved},
        "learningCurve": curve,
        "sweetSpot": sweet_spot,
        "fittedCurve": _fitted(summary),
    }


def _fitted(summary: Summary) -> list[tuple[int, float]]:
    """The fitted learning curve at 50 sizes across the measured range (for the plot)."""
    fit = summary.verdict.fit if summary.verdict else None
    if fit is None or not summary.curve:
        return []
    low, high = summary.curve[0].samples, summary.curve[-1].samples
    sizes = sorted({round(low * (high / low) ** (i / 49)) for i in range(50)})
    return [(n, round(fit.predict(n), 4)) for n in sizes]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_text(report: dict[str, Any]) -> str:
    """The report as tables for a terminal."""
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, width=140, force_terminal=False, color_system=None)
    console.print(f"Study {report['study']}: {report['phase']} ({report.get('message') or report.get('reason') or ''})")
    if report["trials"]:  # a sweep with fixed hyperparameters has no search to show
        console.print(
            f"policy {report['policy']}, early signal {report['earlySignal']} at {report['earlyFraction']:.0%} of steps"
        )
        table = Table("trial", "state", "early acc", "early loss", "final acc", "seconds", "params")
        for row in report["trials"]:
            params = ", ".join(f"{k}={_fmt(v, 5) if isinstance(v, float) else v}" for k, v in row["params"].items())
            table.add_row(
                str(row["trial"]),
                row["state"],
                _fmt(row["earlyAccuracy"]),
                _fmt(row["earlyLoss"]),
                _fmt(row["finalAccuracy"]),
                _fmt(row["seconds"], 1),
                params,
            )
        console.print(table)
        counts = report["counts"]
        console.print("trials: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        best = report["best"]
        if best:
            console.print(
                f"best: trial {best['trial']} final accuracy {best['finalAccuracy']:.4f} params {best['params']}"
            )
            console.print("  per attribute: " + ", ".join(f"{k} {v:.3f}" for k, v in best["attributeAccuracy"].items()))
        agreement = report["agreement"]
        console.print(
            f"early vs final over {agreement['trials']} trials: Spearman {_fmt(agreement['spearman'], 3)}, "
            f"Kendall {_fmt(agreement['kendall'], 3)}, "
            f"top-{agreement['top_k']} overlap {_fmt(agreement['top_k_overlap'])}"
        )
    compute = report["computeSeconds"]
    console.print(f"compute seconds: used {compute['used']:.0f}, saved by judging early {compute['saved']:.0f}")
    if report["learningCurve"]:
        console.print(_curve_table(report["learningCurve"]))
        spot = report["sweetSpot"] or {}
        if spot.get("fit"):
            console.print(f"fitted: {spot['fit']}")
        if spot.get("samples"):
            console.print(f"sweet spot: {spot['samples']} samples (accuracy {spot['accuracy']:.4f})")
        if spot.get("recommendation"):
            console.print(f"recommendation: {spot['recommendation']}")
    return buffer.getvalue()


def _curve_table(points: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    attributes = sorted({a for p in points for a in p["attributeAccuracy"]})
    table = Table(
        "samples",
        "accuracy",
        "± spread",
        "repeats",
        "gain / +1,000",
        *attributes,
        "gains most after",
        title="Learning curve",
    )
    for p in points:
        table.add_row(
            str(p["samples"]),
            _fmt(p["accuracy"]),
            _fmt(p["spread"]),
            str(p["repeats"]),
            _fmt(p.get("gainPerThousand")),
            *(_fmt(p["attributeAccuracy"].get(a), 3) for a in attributes),
            p.get("leadingAttribute") or "-",
        )
    return table


def trials_csv(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    names = sorted({k for row in report["trials"] for k in row["params"]})
    writer = csv.writer(buffer)
    writer.writerow(["trial", "state", *names, "early_accuracy", "early_loss", "final_accuracy", "seconds"])
    for row in report["trials"]:
        writer.writerow(
            [
                row["trial"],
                row["state"],
                *(row["params"].get(n) for n in names),
                row["earlyAccuracy"],
                row["earlyLoss"],
                row["finalAccuracy"],
                row["seconds"],
            ]
        )
    return buffer.getvalue()


def write_plots(report: dict[str, Any], directory: Path) -> list[Path]:
    """PNG plots: early vs final accuracy, best so far over trials, best trial per attribute, learning curve."""
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

    rows = report["trials"]
    if rows:  # a sweep with fixed hyperparameters has no trials
        figure, axes = plt.subplots(figsize=(5, 4.5))
        both = [r for r in rows if r["earlyAccuracy"] is not None and r["finalAccuracy"] is not None]
        early_only = [r for r in rows if r["earlyAccuracy"] is not None and r["finalAccuracy"] is None]
        axes.scatter([r["earlyAccuracy"] for r in both], [r["finalAccuracy"] for r in both], label="trained to the end")
        for r in both:
            axes.annotate(str(r["trial"]), (r["earlyAccuracy"], r["finalAccuracy"]), fontsize=8)
        axes.scatter(
            [r["earlyAccuracy"] for r in early_only], [0.0] * len(early_only), marker="x", label="stopped early"
        )
        rho = report["agreement"]["spearman"]
        axes.set(
            xlabel=f"early accuracy ({report['earlyFraction']:.0%} of steps)",
            ylabel="final accuracy",
            title=f"Early vs final (Spearman {_fmt(rho, 2)})",
        )
        axes.legend(loc="lower right", fontsize=8)
        save(figure, "early_vs_final.png")

        figure, axes = plt.subplots(figsize=(6, 4))
        best, seconds, curve_x, curve_y = None, 0.0, [], []
        for r in rows:
            seconds += r["seconds"] or 0.0
            score = r["finalAccuracy"] if r["finalAccuracy"] is not None else r["earlyAccuracy"]
            if score is not None and (best is None or score > best):
                best = score
            if best is not None:
                curve_x.append(seconds)
                curve_y.append(best)
        axes.step(curve_x, curve_y, where="post")
        axes.set(xlabel="compute seconds spent", ylabel="best accuracy so far", title="Best so far against compute")
        save(figure, "best_so_far.png")

    if report["best"]:
        figure, axes = plt.subplots(figsize=(6, 4))
        per = report["best"]["attributeAccuracy"]
        axes.bar(list(per), list(per.values()))
        axes.set(ylim=(0, 1), ylabel="accuracy", title=f"Best trial {report['best']['trial']} per attribute")
        save(figure, "best_per_attribute.png")

    if report["learningCurve"]:
        figure, axes = plt.subplots(figsize=(6, 4))
        points = report["learningCurve"]
        axes.errorbar(
            [p["samples"] for p in points],
            [p["accuracy"] for p in points],
            yerr=[p["spread"] for p in points],
            marker="o",
            capsize=3,
            label="accuracy (mean ± sd over repeats)",
        )
        if report["fittedCurve"]:
            xs, ys = zip(*report["fittedCurve"], strict=True)
            axes.plot(xs, ys, color="black", linewidth=0.8, label="fitted")
        for attribute in points[-1]["attributeAccuracy"]:
            axes.plot(
                [p["samples"] for p in points],
                [p["attributeAccuracy"].get(attribute) for p in points],
                alpha=0.5,
                linestyle="--",
                label=attribute,
            )
        spot = report["sweetSpot"] or {}
        if spot.get("samples"):
            axes.axvline(spot["samples"], color="gray", linestyle=":", label=f"sweet spot ({spot['samples']})")
        if spot.get("plateau") is not None:
            axes.axhline(spot["plateau"], color="gray", linewidth=0.5, label="fitted plateau")
        title = "Learning curve" + ("" if spot.get("saturated", True) else " (not saturated)")
        axes.set(xscale="log", xlabel="training rows (log scale)", ylabel="accuracy", ylim=(0, 1), title=title)
        axes.set_xticks([p["samples"] for p in points], [str(p["samples"]) for p in points])
        axes.minorticks_off()
        axes.legend(fontsize=7)
        save(figure, "learning_curve.png")
    return written
