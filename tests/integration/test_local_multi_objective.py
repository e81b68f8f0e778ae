"""A whole multi-objective study through `sweetspot run`: real trainer subprocesses report their costs, the Optuna
study holds every objective, the early front is promoted, and the report shows the final front, its best trial and
its knee."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from support.local_runs import finish, sweetspot
from support.studies import small_study

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]

OBJECTIVES = [
    {"metric": "f1", "direction": "maximize"},
    {"metric": "computeSeconds", "direction": "minimize"},
    {"metric": "trainableParameters", "direction": "minimize"},
]


def test_a_local_multi_objective_study_promotes_its_early_front_and_reports_the_final_one(tmp_path: Path) -> None:
    manifest = small_study(
        "mo",
        seed=5,
        maxTrials=4,
        earlyEvaluation={"atFraction": 0.25, "promoteTopK": 3, "signal": "loss"},
        space={
            "learningRate": {"min": 1e-3, "max": 1e-2, "log": True},
            "loraRank": {"values": [4, 16]},
            "batchSize": {"values": [16]},
            "epochs": {"values": [1, 2]},
        },
    )
    manifest["spec"]["objectives"] = OBJECTIVES
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(manifest))
    code, output = finish(sweetspot("run", str(path), cwd=tmp_path))
    assert code == 0, output[-4000:]
    assert "Pareto front" in output

    storage = f"sqlite:///{tmp_path / '.sweetspot' / 'studies.db'}"
    study = optuna.load_study(study_name="default/mo", storage=storage)
    assert len(study.directions) == 3
    told = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(told) == 4 and all(len(t.values) == 3 for t in told)
    # The early tell: loss, compute projected from 25% of the steps, and the adapter's size from the trainer.
    sizes: dict[int, set[float]] = {}
    for trial in told:
        sizes.setdefault(trial.params["loraRank"], set()).add(trial.values[2])
    assert set(sizes) == {4, 16} and all(len(s) == 1 for s in sizes.values())  # one adapter size per rank
    assert min(sizes[16]) > min(sizes[4]) > 0

    code, output = finish(sweetspot("report", "mo", "--format", "json", cwd=tmp_path))
    assert code == 0, output
    report = json.loads(output[output.index("{") :])
    finals = {t["trial"]: t for t in report["trials"] if t["final"] is not None}
    assert len(finals) == 3  # promoteTopK of the early front
    front = report["paretoFront"]
    assert front["objectives"] == ["f1", "computeSeconds", "trainableParameters"]
    assert front["trials"] and {t["trial"] for t in front["trials"]} <= set(finals)
    for entry in front["trials"]:
        values = entry["values"]
        assert values["trainableParameters"] > 0 and values["computeSeconds"] > 0
        assert values["f1"] == finals[entry["trial"]]["final"]["f1"]
    assert front["best"] == report["best"]["trial"]
    assert front["knee"] in {t["trial"] for t in front["trials"]}
    results = tmp_path / ".sweetspot" / "default-mo" / "results"
    assert any("pareto" in p.name for p in results.glob("*.png"))
