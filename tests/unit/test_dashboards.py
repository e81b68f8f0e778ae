"""The Grafana dashboards: the checked-in JSON is what the generator writes, every panel is labelled, placed and
bound to the datasource variable, and every query asks for metrics Sweetspot (or the Python client) exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.records import Outcome, SweepView, TrialView
from sweetspot.observe import dashboards
from sweetspot.observe.metrics import Metrics, StudyState

from support.builders import outcome as outcome_of
from support.builders import study_spec

DIRECTORY = Path(__file__).parents[2] / "charts" / "sweetspot" / "dashboards"
PROMQL_WORDS = {
    "sum", "by", "rate", "time", "count", "vector", "or", "and", "on", "topk", "histogram_quantile", "le",
    "label_replace", "stage", "trial", "kind", "phase", "reason", "namespace", "study", "job", "state", "bound",
    "objective",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_the_checked_in_dashboard_is_the_generated_one(name: str) -> None:
    assert (DIRECTORY / name).read_text() == dashboards.render(name), "run `make dashboards`"


def multi_objective() -> FineTuneStudySpec:
    return study_spec(
        objectives=[{"metric": "f1", "direction": "maximize"}, {"metric": "computeSeconds", "direction": "minimize"}]
    )


def exported_names() -> set[str]:
    """Every series name the metrics of a study with trials, a sweep, a budget and the operator instruments
    expose."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = Metrics.create(registry)
    spec = FineTuneStudySpec.model_validate(
        {
            "model": {"builtin": "tiny"},
            "dataset": {"train": {"builtin": "product-pages"}},
            "search": {"budget": {"gpuHours": 1}},
            "dataEfficiency": {
                "sampleSizes": [50, 100, 200, 400],
                "tolerance": 0.05,
                "forecast": {"to": [800]},
                "target": {"f1": 0.72},
            },
        }
    )

    def result(score: float) -> Outcome:
        return outcome_of(
            f1=score, loss=1 - score, step=10, planned_steps=50, samples=100, attribute_f1={"brand": score}
        )

    trials = [TrialView(n, "complete", {}, result(0.2 + n / 10), result(0.5 + n / 10)) for n in range(3)]
    sweep = [SweepView(n, result(a)) for n, a in ((50, 0.4), (100, 0.6), (200, 0.7), (400, 0.71))]
    metrics.publish(StudyState.of("ns", "s", spec, trials, sweep, "Succeeded"))
    # A study that predicts final scores (promote: predicted): early curves, and enough finals to check intervals.
    predicting = spec.model_copy(
        update={"search": spec.search.model_validate({"earlyEvaluation": {"promote": "predicted", "curvePoints": 3}})}
    )

    def curved(loss: float) -> Outcome:
        curve = [
            {"fraction": t, "loss": loss + 0.1 / t, "f1": 0, "accuracy": 0, "tokenF1": 0} for t in (0.1, 0.15, 0.2)
        ]
        return outcome_of(accuracy=0.5, loss=loss + 0.5, step=10, planned_steps=50, samples=100, curve=curve)

    judged = [TrialView(n, "complete", {}, curved(n / 10), result(0.8 - n / 10 + n % 2 / 50)) for n in range(5)]
    metrics.publish(StudyState.of("ns", "p", predicting, judged, [], "Promoting"))
    # A multi-objective study (spec.objectives): objective values, the front and its knee.
    costly = [TrialView(n, "complete", {}, result(0.2), outcome_of(f1=0.5 + n / 10, seconds=4.0**n)) for n in range(3)]
    metrics.publish(StudyState.of("ns", "m", multi_objective(), costly, [], "Succeeded"))
    metrics.studies.storage_down("ns", "s")
    metrics.operator.reconcile_seconds.observe(0.1)
    text = generate_latest(registry).decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_panels_are_complete_and_query_exported_metrics(name: str) -> None:
    board: dict[str, Any] = json.loads(dashboards.render(name))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in variables
    exported = exported_names()
    ids, cells = set(), set()
    for panel in board["panels"]:
        assert panel["title"] and panel["id"] not in ids
        ids.add(panel["id"])
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        covered = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            used = set(re.findall(r"\$\{?(\w+)", expr)) - {"__rate_interval", "__interval"}
            assert used <= variables, (panel["title"], used)
            without_strings = re.sub(r'"[^"]*"|\[[^\]]*\]', "", expr)
            names = {w for w in re.findall(r"[a-z_][a-z0-9_]*", without_strings) if w not in PROMQL_WORDS}
            assert names <= exported, (panel["title"], names - exported)
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]


def test_the_pareto_dashboard_shows_the_front_its_knee_and_quality_against_a_chosen_cost() -> None:
    board: dict[str, Any] = json.loads(dashboards.render("sweetspot-pareto.json"))
    panels = {panel["title"]: panel for panel in board["panels"]}
    variables = {v["name"]: v for v in board["templating"]["list"]}
    # Only studies with a front are offered; the cost axis is chosen among the study's costs, the quality is its one.
    assert "sweetspot_study_pareto_front_trials" in variables["study"]["definition"]
    assert 'objective=~"computeSeconds|' in variables["cost"]["definition"]
    assert variables["quality"]["hide"] == 2
    # The table: the front's final objective values, one row per trial, one column per objective and one for the knee.
    table = panels["Pareto front"]
    assert table["type"] == "table"
    (target,) = table["targets"]
    assert target["format"] == "table" and target["instant"]
    assert 'stage="final"' in target["expr"] and "sweetspot_trial_pareto_optimal" in target["expr"]
    assert '"objective", "knee"' in target["expr"]
    grouping = table["transformations"][0]
    assert grouping["id"] == "groupingToMatrix"
    assert grouping["options"] == {"columnField": "objective", "rowField": "trial", "valueField": "Value"}
    knee_column = next(o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "knee")
    assert knee_column["properties"][0]["value"][0]["options"]["1"]["text"] == "knee"
    # The scatter: every finished trial's quality against the chosen cost, the front and the knee as their own series.
    chart = panels["Quality against cost"]
    assert chart["type"] == "xychart" and chart["options"]["dims"] == {"x": "cost"}
    exprs = [t["expr"] for t in chart["targets"]]
    assert 'objective="$cost"' in exprs[0] and all('objective="$quality"' in e for e in exprs[1:])
    assert "pareto_optimal" in exprs[2] and "pareto_knee" in exprs[3]
    assert chart["transformations"][0] == {"id": "joinByField", "options": {"byField": "trial", "mode": "outer"}}
    renamed = chart["transformations"][1]["options"]["renameByName"]
    assert set(renamed.values()) == {"cost", "trained to the end", "on the front", "knee"}
    assert {"Knee", "Trials on the front", "Knee's quality", "Knee's cost"} <= set(panels)
