"""`sweetspot report` for a multi-objective study (`spec.objectives`): the whole Pareto front in the JSON, each trial's
objectives, the front table with the best and the knee marked and the recommendation in the text, and the front
plotted; a single-objective report stays as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from matplotlib.collections import PathCollection

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.search import COST_METRICS
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.records import TrialView
from sweetspot.core.stats import summarize
from sweetspot.report.data import _as_data
from sweetspot.report.files import pareto_front_figure, write_plots
from sweetspot.report.text import COST_COLUMNS, render_text

from support.builders import outcome, study_spec

matplotlib.use("Agg")  # no display: what write_plots uses too

F1 = {"metric": "f1", "direction": "maximize"}
COMPUTE = {"metric": "computeSeconds", "direction": "minimize"}
PARAMETERS = {"metric": "trainableParameters", "direction": "minimize"}
PNG = b"\x89PNG\r\n\x1a\n"


def finished(number: int, f1: float, seconds: float, parameters: int = 1000) -> TrialView:
    """Judged at 20% of its steps (its early stage cost a fifth of the final's seconds), then trained to the end."""
    early = outcome(f1=f1 / 2, seconds=seconds / 5, step=20, judged_at=0.2, trainable_parameters=parameters)
    final = outcome(f1=f1, seconds=seconds, step=100, trainable_parameters=parameters)
    return TrialView(number, "complete", {"lora_r": parameters // 100}, early=early, final=final)


# (F1, final seconds): 2 is dominated by 1; 4 was judged early only. Front 0, 1, 3; knee 1; best 3.
TRIALS = [
    finished(0, 0.60, 10, 400),
    finished(1, 0.82, 80, 1600),
    finished(2, 0.80, 120, 2000),
    finished(3, 0.84, 400, 6400),
    TrialView(4, "complete", {}, early=outcome(f1=0.2, seconds=2.0, judged_at=0.2)),
]


def report(objectives: list[dict[str, str]] | None, trials: list[TrialView]) -> dict[str, Any]:
    top = {"objectives": objectives} if objectives else {}
    spec: FineTuneStudySpec = study_spec({"maxTrials": 5, "earlyEvaluation": {"promoteTopK": 4}}, **top)
    resource = FineTuneStudy.model_validate(
        {"apiVersion": "sweetspot.dev/v1alpha1", "kind": "FineTuneStudy", "metadata": {"name": "mo"}, "spec": spec}
    )
    return _as_data(resource, {"phase": "Succeeded"}, trials, summarize(spec, trials, []))


def test_the_json_holds_the_whole_front_and_each_trials_objectives() -> None:
    data = report([F1, COMPUTE], TRIALS)
    front = data["paretoFront"]
    assert [t["trial"] for t in front["trials"]] == [3, 0, 1]  # the best first, as the status orders them
    assert (front["best"], front["knee"], front["size"]) == (3, 1, 3)
    assert front["objectives"] == ["f1", "computeSeconds"]
    assert front["directions"] == {"f1": "maximize", "computeSeconds": "minimize"}
    assert "Knee: trial 1" in front["message"] and "5.0x the compute of the knee" in front["message"]
    rows = {row["trial"]: row for row in data["trials"]}
    assert rows[1]["objectives"] == {"f1": 0.82, "computeSeconds": pytest.approx(96.0)}  # 16 s early + 80 s final
    assert rows[4]["objectives"] is None  # judged early only
    json.dumps(data)  # what --format json prints


def test_the_json_front_is_not_bounded_like_the_status() -> None:
    # 70 trials, each cheaper and worse than the next: all on the front (the status keeps 64).
    trials = [finished(n, 0.1 + n / 100, 10 + n) for n in range(70)]
    front = report([F1, COMPUTE], trials)["paretoFront"]
    assert front["size"] == 70 and len(front["trials"]) == 70


def test_the_text_shows_the_front_with_the_best_and_the_knee_and_the_recommendation() -> None:
    text = render_text(report([F1, PARAMETERS, COMPUTE], TRIALS))
    assert "Pareto front: 3 trials no other beats in every objective" in text
    header = next(line for line in text.splitlines() if "trainable parameters" in line)
    assert header.index("f1 ↑") < header.index("trainable parameters ↓") < header.index("compute-seconds ↓")
    section = text[text.index("Pareto front:") : text.index("recommendation (Pareto front)")]
    rows = [line for line in section.splitlines() if line.startswith("│")]
    table = {line.split("│")[1].strip(): line for line in rows}
    assert [line.split("│")[1].strip() for line in rows] == ["3", "1", "0"]  # the best quality first; 2 is dominated
    assert "best" in table["3"] and "0.8400" in table["3"] and "6,400" in table["3"] and "480" in table["3"]
    assert "knee" in table["1"] and "best" not in table["1"] and "96" in table["1"]
    assert "recommendation (Pareto front): 3 trials on the front. Best f1: trial 3" in text


def test_the_text_says_so_while_no_trial_was_trained_to_the_end() -> None:
    data = report([F1, COMPUTE], TRIALS[4:])
    assert data["paretoFront"] is None
    assert "Pareto front: none yet (no trial trained to the end)" in render_text(data)


def test_the_plot_draws_every_finished_trial_the_front_as_steps_and_marks_the_best_and_the_knee(
    figures: list[Any],
) -> None:
    figure = pareto_front_figure(report([F1, COMPUTE], TRIALS))
    figures.append(figure)
    (axes,) = figure.axes
    scattered = {
        c.get_label(): sorted(map(tuple, c.get_offsets().tolist()))
        for c in axes.collections
        if isinstance(c, PathCollection)
    }
    assert scattered["trained to the end"] == [(144.0, 0.8)]  # 2: 24 s early + 120 s final
    assert scattered["on the Pareto front"] == [(12.0, 0.6), (96.0, 0.82), (480.0, 0.84)]
    (step,) = [line for line in axes.get_lines() if line.get_label() == "front"]
    assert step.get_drawstyle() == "steps-post"
    assert list(step.get_xdata()) == [12.0, 96.0, 480.0] and list(step.get_ydata()) == [0.6, 0.82, 0.84]
    notes = {text.get_text() for text in axes.texts}
    assert {"best (trial 3)", "knee (trial 1)", "0", "1", "2", "3"} <= notes and "4" not in notes
    assert axes.get_xlabel().startswith("compute-seconds") and axes.get_ylabel().startswith("final f1")


def test_without_compute_the_plot_uses_the_first_cost_and_one_trial_can_be_best_and_knee(figures: list[Any]) -> None:
    # Trial 0 beats 1 in F1 and parameters: a front of one, the best and the knee at once.
    data = report([F1, PARAMETERS], [finished(0, 0.6, 10, 400), finished(1, 0.5, 20, 800)])
    assert (data["paretoFront"]["best"], data["paretoFront"]["knee"]) == (0, 0)
    figure = pareto_front_figure(data)
    figures.append(figure)
    (axes,) = figure.axes
    assert axes.get_xlabel().startswith("trainable parameters")
    notes = {text.get_text() for text in axes.texts}
    assert "best and knee (trial 0)" in notes and not {"best (trial 0)", "knee (trial 0)"} & notes
    (step,) = [line for line in axes.get_lines() if line.get_label() == "front"]
    assert list(step.get_xdata()) == [400.0, 800.0] and list(step.get_ydata()) == [0.6, 0.6]  # held to the widest


def test_write_plots_writes_the_front_as_a_png_only_for_a_multi_objective_study(tmp_path: Path) -> None:
    written = write_plots(report([F1, COMPUTE], TRIALS), tmp_path / "multi")
    path = tmp_path / "multi" / "pareto_front.png"
    assert path in written and path.read_bytes().startswith(PNG) and path.stat().st_size > 10_000
    assert not (tmp_path / "none" / "pareto_front.png").exists()
    write_plots(report([F1, COMPUTE], TRIALS[4:]), tmp_path / "none")  # no final yet: no front to draw
    assert not (tmp_path / "none" / "pareto_front.png").exists()
    single = write_plots(report(None, TRIALS), tmp_path / "single")
    assert "pareto_front.png" not in {p.name for p in single}


def test_a_single_objective_report_is_unchanged() -> None:
    data = report(None, TRIALS)
    assert "paretoFront" not in data and all("objectives" not in row for row in data["trials"])
    assert "Pareto front" not in render_text(data)


def test_every_cost_objective_has_a_column() -> None:
    assert set(COST_COLUMNS) == set(COST_METRICS)


def test_trials_csv_gains_each_objective_and_the_front_only_for_a_multi_objective_study() -> None:
    import csv
    import io

    from sweetspot.report.files import trials_csv

    rows = list(csv.DictReader(io.StringIO(trials_csv(report([F1, COMPUTE], TRIALS)))))
    assert [r["pareto_optimal"] for r in rows] == ["1", "1", "0", "1", "0"]
    assert (rows[1]["objective_f1"], float(rows[1]["objective_computeSeconds"])) == ("0.82", 96.0)
    assert rows[4]["objective_f1"] == ""  # judged early only
    single = next(csv.reader(io.StringIO(trials_csv(report(None, TRIALS)))))
    assert not any(column.startswith(("objective_", "pareto")) for column in single)
