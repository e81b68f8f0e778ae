"""The report as files in a study's results folder: CSV tables (`write_tables`) and PNG plots (`write_plots`).

matplotlib is imported inside the functions that draw: the CLI's other commands and the operator never load it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from sweetspot.core.curve import MIN_POINTS
from sweetspot.core.policies.guard import MIN_TRIALS
from sweetspot.report.data import score_of, weakest_first
from sweetspot.report.text import COST_COLUMNS, fmt


def trials_csv(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    names = sorted({k for row in report["trials"] for k in row["params"]})
    writer = csv.writer(buffer)
    keys = ("f1", "precision", "recall", "accuracy", "loss", "tokensPerSecond", "mfu")
    stages = [f"{stage}_{_snake(key)}" for stage in ("early", "final") for key in keys]
    # A multi-objective study: each trial's final value of every objective, and whether it is on the front.
    front = report.get("paretoFront")
    objectives: list[str] = front["objectives"] if front else []
    on_front = {t["trial"] for t in front["trials"]} if front else set()
    extra = [*(f"objective_{o}" for o in objectives), "pareto_optimal"] if front else []
    writer.writerow(["trial", "state", *names, *stages, "seconds", "source", *extra])
    for row in report["trials"]:
        scores = [score_of(row[stage], key) for stage in ("early", "final") for key in keys]
        params = (row["params"].get(n) for n in names)
        values = row.get("objectives") or {}
        marks = [*(values.get(o, "") for o in objectives), int(row["trial"] in on_front)] if front else []
        writer.writerow([row["trial"], row["state"], *params, *scores, row["seconds"], row.get("source") or "", *marks])
    return buffer.getvalue()


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


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
    rho = fmt(agreement["spearman"], 2) if agreement["trials"] >= MIN_TRIALS else f"n/a, {agreement['trials']} trials"
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


def pareto_front_figure(report: dict[str, Any]) -> Any:
    """`spec.objectives`: the quality objective against compute (or the first cost objective when compute is none)
    for every trial trained to the end; the front as a step line (the best quality each cost buys: with more than two
    objectives, the front's trials that lead in these two), the best and the knee annotated."""
    import matplotlib.pyplot as plt

    front = report["paretoFront"]
    metrics, directions = front["objectives"], front["directions"]
    quality = next(m for m in metrics if m not in COST_COLUMNS)
    cost = "computeSeconds" if "computeSeconds" in metrics else next(m for m in metrics if m in COST_COLUMNS)
    words, _, scale = COST_COLUMNS[cost]
    higher = directions[quality] == "maximize"
    rows = [r for r in report["trials"] if r.get("objectives")]
    point = {r["trial"]: (r["objectives"][cost] * scale, r["objectives"][quality]) for r in rows}
    on_front = {t["trial"] for t in front["trials"]}
    figure, axes = plt.subplots(figsize=(6, 4.5))
    off = [point[n] for n in point if n not in on_front]
    if off:
        axes.scatter(*zip(*off, strict=True), color="tab:gray", alpha=0.6, label="trained to the end")
    mine = sorted(point[n] for n in point if n in on_front)
    axes.scatter(*zip(*mine, strict=True), color="tab:blue", zorder=3, label="on the Pareto front")
    steps: list[tuple[float, float]] = []
    for x, y in mine:  # cheapest first: a step wherever more cost buys better quality
        if not steps or (y > steps[-1][1] if higher else y < steps[-1][1]):
            steps.append((x, y))
    widest = max(x for x, _ in point.values())
    if widest > steps[-1][0]:
        steps.append((widest, steps[-1][1]))  # the best quality holds at any higher cost
    axes.step(*zip(*steps, strict=True), where="post", color="tab:blue", linewidth=1, label="front")
    for number, xy in point.items():
        axes.annotate(str(number), xy, xytext=(3, 3), textcoords="offset points", fontsize=7)
    marks: dict[int, str] = {}
    for word, number in (("best", front["best"]), ("knee", front["knee"])):
        if number in point:
            marks[number] = f"{marks[number]} and {word}" if number in marks else word
    for (number, label), offset in zip(marks.items(), ((-70, -30), (-45, 25)), strict=False):
        axes.annotate(
            f"{label} (trial {number})",
            point[number],
            xytext=offset,
            textcoords="offset points",
            fontsize=8,
            color="tab:red",
            arrowprops={"arrowstyle": "->", "color": "tab:red"},
        )
    costs = [x for x, _ in point.values()]
    if min(costs) > 0 and max(costs) / min(costs) > 30:
        axes.set_xscale("log")
    axes.margins(0.12)
    axes.set(
        xlabel=f"{words} (lower is better)",
        ylabel=f"final {quality} ({'higher' if higher else 'lower'} is better)",
        title=f"Pareto front: {front['size']} of {len(point)} trials trained to the end",
    )
    axes.legend(fontsize=8, loc="best")
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
    """PNG plots: the early signal against the final score, best so far against compute, the Pareto front (with
    `spec.objectives`), the best trial per attribute, the learning curve."""
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

    if report.get("paretoFront"):  # a multi-objective study with a trial trained to the end
        save(pareto_front_figure(report), "pareto_front.png")

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
