"""The report's plots, read back from their matplotlib figures: every point inside the axis limits, trials stopped
early drawn at their early score, best so far against compute with early and final apart, and no fitted curve or
plateau from too few sizes."""

from __future__ import annotations

from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.curve import TOO_FEW
from sweetspot.core.records import Outcome, SweepView, TrialView
from sweetspot.core.stats import summarize
from sweetspot.report.data import _as_data
from sweetspot.report.files import best_so_far_figure, early_vs_final_figure, learning_curve_figure
from sweetspot.report.text import render_text

from support.builders import outcome as outcome_of

matplotlib.use("Agg")  # no display: what write_plots uses too


def spec(sizes: list[int]) -> FineTuneStudySpec:
    return FineTuneStudySpec.model_validate(
        {
            "model": {"builtin": "tiny"},
            "dataset": {"train": {"builtin": "product-pages"}},
            "search": {
                "maxTrials": 5,
                "earlyEvaluation": {"atFraction": 0.25, "promoteTopK": 3, "signal": "loss"},
            },
            "dataEfficiency": {"sampleSizes": sizes, "tolerance": 0.02},
        }
    )


def outcome(f1: float, loss: float, seconds: float, step: int = 25) -> Outcome:
    return outcome_of(f1=f1, loss=loss, seconds=seconds, step=step)


# Three promoted trials with early losses 0.40-0.60; two stopped with far worse early losses (1.5, 2.5), outside
# the promoted trials' range: the old plot drew them off its x-limits.
TRIALS = [
    TrialView(0, "complete", {}, outcome(0.20, 0.60, 10.0), outcome(0.55, 0.30, 30.0, step=100)),
    TrialView(1, "complete", {}, outcome(0.25, 2.50, 11.0)),
    TrialView(2, "complete", {}, outcome(0.30, 0.40, 12.0), outcome(0.70, 0.20, 31.0, step=100)),
    TrialView(3, "complete", {}, outcome(0.15, 1.50, 9.0)),
    TrialView(4, "complete", {}, outcome(0.22, 0.50, 10.0), outcome(0.60, 0.25, 29.0, step=100)),
]


def report(sizes: list[int], scores: list[float]) -> dict[str, Any]:
    study = spec(sizes)
    resource = FineTuneStudy.model_validate(
        {"apiVersion": "sweetspot.dev/v1alpha1", "kind": "FineTuneStudy", "metadata": {"name": "s"}, "spec": study}
    )
    sweep = [
        SweepView(n, outcome_of(f1=a, seconds=5.0, step=100, samples=n, attribute_f1={"brand": a}))
        for n, a in zip(sizes, scores, strict=True)
    ]
    return _as_data(resource, {"phase": "Succeeded"}, TRIALS, summarize(study, TRIALS, sweep))


def points(axes: Axes) -> list[tuple[float, float]]:
    """Every scattered or plotted point of the axes, in data coordinates."""
    scattered = [c for c in axes.collections if isinstance(c, PathCollection)]  # not error bars or bands
    found = [tuple(map(float, xy)) for c in scattered for xy in c.get_offsets()]
    # Lines in data coordinates only: an axhline spans the axes whatever the limits.
    data = [line for line in axes.get_lines() if line.get_transform() == axes.transData]
    found += [(float(x), float(y)) for line in data for x, y in line.get_xydata()]
    return found  # type: ignore[return-value]


def inside(axes: Axes, xy: tuple[float, float]) -> bool:
    (x0, x1), (y0, y1) = sorted(axes.get_xlim()), sorted(axes.get_ylim())
    return x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1


def test_early_vs_final_draws_stopped_trials_at_their_early_score_inside_its_limits(figures: list[Any]) -> None:
    data = report([50, 100, 150, 300], [0.2, 0.3, 0.38, 0.4])
    figure = early_vs_final_figure(data)
    figures.append(figure)
    (axes,) = figure.axes
    assert points(axes) and all(inside(axes, xy) for xy in points(axes)), (axes.get_xlim(), axes.get_ylim())
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    stopped = axes.collections[legend.index("stopped early (early score only)")]
    # Both stopped trials, at their early loss, below every final.
    xs = sorted(float(x) for x, _ in stopped.get_offsets())
    assert xs == [1.5, 2.5]
    strip = {float(y) for _, y in stopped.get_offsets()}
    assert len(strip) == 1 and strip.pop() < 0.55
    assert "no final" in [label.get_text() for label in axes.get_yticklabels()]
    assert data["agreement"]["trials"] == 3 and "Spearman 1.00" in axes.get_title()


def test_early_vs_final_with_no_final_yet_still_holds_every_trial(figures: list[Any]) -> None:
    data = report([50, 100, 150, 300], [0.2, 0.3, 0.38, 0.4])
    data["trials"] = [row | {"final": None} for row in data["trials"]]
    figure = early_vs_final_figure(data)
    figures.append(figure)
    (axes,) = figure.axes
    drawn = points(axes)
    assert sorted(x for x, _ in drawn) == [0.4, 0.5, 0.6, 1.5, 2.5] and all(inside(axes, xy) for xy in drawn)


def test_best_so_far_runs_against_compute_with_early_and_final_apart(figures: list[Any]) -> None:
    data = report([50, 100, 150, 300], [0.2, 0.3, 0.38, 0.4])
    # Proxy judging: every early stage first (10+11+12+9+10 = 52 s), then the three promoted finals.
    assert [(s["trial"], s["stage"]) for s in data["stages"]] == [
        (0, "early"), (1, "early"), (2, "early"), (3, "early"), (4, "early"), (0, "final"), (2, "final"), (4, "final"),
    ]  # fmt: skip
    assert [s["computeSeconds"] for s in data["stages"]][4:] == [52.0, 82.0, 113.0, 142.0]
    figure = best_so_far_figure(data)
    figures.append(figure)
    (axes,) = figure.axes
    lines = {line.get_label(): line for line in axes.get_lines()}
    early, final = lines["best early f1 so far"], lines["best final f1 so far"]
    assert early.get_linestyle() != final.get_linestyle()
    # The final line starts at the first final (82 s of compute) and holds only final scores: 0.55, then 0.70.
    assert list(final.get_xdata()) == [82.0, 113.0, 142.0] and list(final.get_ydata()) == [0.55, 0.70, 0.70]
    # The early line never rises above the best early F1 (0.30): an early score is not a final one.
    assert max(early.get_ydata()) == 0.30 and early.get_xdata()[-1] == 142.0
    assert axes.get_xlabel().startswith("compute seconds")
    assert all(inside(axes, xy) for xy in points(axes))


def test_too_few_sizes_fit_nothing_and_advise_nothing(figures: list[Any]) -> None:
    """The quickstart's old curve: three sizes under a three-parameter curve printed a plateau of 1.000, a gain of
    1.000 per 1,000 rows and "label more data"."""
    data = report([50, 150, 300], [0.22, 0.41, 0.52])
    spot = data["sweetSpot"]
    assert data["fittedCurve"] == [] and "plateau" not in spot and "fit" not in spot and "samples" not in spot
    assert spot["recommendation"].startswith(TOO_FEW)
    assert all("gainPerThousand" not in p for p in data["learningCurve"])
    text = render_text(data)
    assert "too few sizes to fit: add sizes" in text
    assert "label more data" not in text and "gain / +1,000" not in text and "fitted" not in text
    figure = learning_curve_figure(data)
    figures.append(figure)
    (axes,) = figure.axes
    labels = [line.get_label() for line in axes.get_lines()]
    assert "fitted" not in labels and "fitted plateau" not in labels
    assert "too few sizes" in axes.get_title()
    low, high = axes.get_ylim()
    assert low < 0 and high > 1  # a size that learned nothing (F1 0) or a plateau at 1 is not drawn on the frame


def test_four_sizes_are_fitted_and_the_plateau_lies_inside_the_frame(figures: list[Any]) -> None:
    data = report([50, 100, 150, 300], [0.22, 0.33, 0.41, 0.52])
    assert data["fittedCurve"] and data["sweetSpot"].get("fit")
    figure = learning_curve_figure(data)
    figures.append(figure)
    (axes,) = figure.axes
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert "fitted" in lines
    top = axes.get_ylim()[1]
    plateau = lines.get("fitted plateau")
    assert plateau is None or plateau.get_ydata()[0] < top
    assert all(inside(axes, xy) for xy in points(axes))
