"""Whole local studies through the `sweetspot` command: the real planner, Optuna, and trainer subprocesses.

A study small enough for a test (three trials, a handful of steps each) on the built-in model and data; one
runs on SQLite to the end, one on PostgreSQL is interrupted with Ctrl-C mid-study and resumed.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from support.local_runs import finish, sweetspot
from support.studies import small_study

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]

MANIFEST = small_study("small", seed=3)
MANIFEST["spec"]["dataEfficiency"] = {"sampleSizes": [32, 64], "hold": "epochs"}


def write_manifest(tmp_path: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(MANIFEST))
    return path


def check_study(report: dict[str, Any]) -> None:
    assert report["phase"] == "Succeeded"
    assert [t["trial"] for t in report["trials"]] == [0, 1, 2]
    assert all(t["early"] is not None for t in report["trials"])
    assert sum(t["final"] is not None for t in report["trials"]) == 1
    for trial in report["trials"]:  # every evaluation with the field's scores and the always-null baseline
        for scores in filter(None, (trial["early"], trial["final"])):
            assert {"f1", "precision", "recall", "accuracy", "loss", "attributeF1"} <= set(scores)
            assert scores["nullBaseline"]["f1"] == 0.0 and 0 < scores["nullBaseline"]["accuracy"] < 1
    # A handful of steps teaches the tagger no value yet (F1 0: tests/integration/test_trainer_training.py shows it
    # learn); accuracy counts the nulls it gets right.
    best = report["best"]
    assert best is not None and best["finalAccuracy"] > 0
    assert best["finalF1"] == next(t["final"]["f1"] for t in report["trials"] if t["trial"] == best["trial"])
    assert report["counts"] == {"total": 3, "running": 0, "waiting": 0, "complete": 1, "pruned": 2, "failed": 0}
    assert [p["samples"] for p in report["learningCurve"]] == [32, 64]
    # Two sizes: no curve to fit; and when neither learned to extract a value, that is said first.
    nothing = all(p["f1"] == 0 for p in report["learningCurve"])
    expected = "nothing learned at any size" if nothing else "too few sizes to fit: add sizes"
    assert expected in report["sweetSpot"]["recommendation"]
    assert report["computeSeconds"]["used"] > 0 and report["computeSeconds"]["saved"] > 0
    assert set(report["agreement"]) == {"trials", "spearman", "kendall", "topK", "topKOverlap"}


def test_a_local_study_runs_to_the_end_and_reports(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    code, output = finish(sweetspot("run", str(manifest), cwd=tmp_path))
    assert code == 0, output[-4000:]
    assert "Succeeded" in output
    results = tmp_path / ".sweetspot" / "default-small" / "results"
    assert {p.name for p in results.glob("*.png")} == {
        "early_vs_final.png",
        "best_so_far.png",
        "best_per_attribute.png",
        "learning_curve.png",
    }
    assert (results / "best-adapter" / "adapter_config.json").exists()
    assert (results / "trials.csv").read_text().startswith("trial,state,")

    code, output = finish(
        sweetspot("report", "small", "--format", "json", "--plots", str(tmp_path / "plots"), cwd=tmp_path)
    )
    assert code == 0, output
    report = json.loads(output[output.index("{") :])
    check_study(report)
    assert len(list((tmp_path / "plots").glob("*.png"))) == 4


def test_an_interrupted_study_resumes_with_nothing_lost_or_repeated(tmp_path: Path, postgres_server_url: str) -> None:
    from support.postgres import fresh_database

    url = fresh_database(postgres_server_url, "interrupted")
    manifest = write_manifest(tmp_path)
    first = sweetspot("run", str(manifest), "--storage", url, cwd=tmp_path, fake=True)
    assert first.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 300
    for line in first.stdout:  # wait until the first trial is recorded and the second one runs
        seen.append(line)
        if "t1-early started" in line:
            break
        assert time.monotonic() < deadline, "".join(seen)
    # Ctrl-C lands mid-stage: once the second trial's trainer has started writing its progress.
    log = tmp_path / ".sweetspot" / "default-small" / "runs" / "t1-early" / "log.txt"
    while not (log.exists() and "[small t1 early]" in log.read_text()):
        assert time.monotonic() < deadline, "the second trial's trainer never started"
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    code, rest = finish(first, timeout=60)
    assert code == 130, "".join(seen) + rest
    assert "run the same command again to resume" in rest

    second = sweetspot("run", str(manifest), "--storage", url, cwd=tmp_path, fake=True)
    code, output = finish(second)
    assert code == 0, output[-4000:]

    study = optuna.load_study(study_name="default/small", storage=url)
    assert [t.number for t in study.trials] == [0, 1, 2]  # no trial lost, none asked twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    runs = sorted(p.name for p in (tmp_path / ".sweetspot" / "default-small" / "runs").iterdir())
    # Each stage ran once, except the one Ctrl-C cut short, which ran again as its next attempt.
    assert [r for r in runs if "-r" in r] == ["t1-early-r1"]
    assert (tmp_path / ".sweetspot/default-small/runs/t1-early/interrupted").exists()
    assert {"t0-early", "t1-early", "t2-early", "s32-full"} <= set(runs)
    assert len([r for r in runs if r.endswith("-final")]) == 1
    code, output = finish(sweetspot("report", "small", "--storage", url, "--format", "json", cwd=tmp_path))
    check_study(json.loads(output[output.index("{") :]))


def test_a_data_efficiency_sweep_alone_gives_the_curve_its_sweet_spot_and_attributes(tmp_path: Path) -> None:
    manifest = small_study("curve", parallelism=2, seed=11)
    manifest["spec"]["dataEfficiency"] = {
        "ladder": {"from": 16, "to": 128, "steps": 4},  # a curve of three parameters is fitted to four sizes or more
        "repeats": 2,
        "hyperparameters": "fixed",
        "params": {"learningRate": 0.005, "batchSize": 8, "maxSteps": 6},
        "hold": "steps",
        "tolerance": 0.05,
        "forecast": {"to": [256, 512]},
        "target": {"f1": 0.99},
        "costPerLabel": 0.5,
    }
    path = tmp_path / "curve.yaml"
    path.write_text(yaml.safe_dump(manifest))
    code, output = finish(sweetspot("run", str(path), cwd=tmp_path, fake=True))
    assert code == 0, output[-4000:]
    assert "Learning curve" in output and "recommendation:" in output
    runs = sorted(p.name for p in (tmp_path / ".sweetspot" / "default-curve" / "runs").iterdir())
    assert runs == sorted(f"s{n}-{r}full" for n in (16, 32, 64, 128) for r in ("", "rep1-"))
    assert not [r for r in runs if r.startswith("t")]  # no search ran
    results = tmp_path / ".sweetspot" / "default-curve" / "results"
    assert (results / "learning_curve.png").stat().st_size > 10_000
    report = json.loads((results / "report.json").read_text())
    curve = report["learningCurve"]
    assert [(p["samples"], p["repeats"]) for p in curve] == [(16, 2), (32, 2), (64, 2), (128, 2)]
    assert all(set(p["attributeF1"]) >= {"brand", "rating"} for p in curve)
    # The fake trainer's scores rise with the rows (examples/data-efficiency.yaml measures a real curve): the curve
    # is fitted, and only a saturated curve names a sweet spot.
    assert [p["f1"] for p in curve] == sorted(p["f1"] for p in curve) and curve[0]["f1"] > 0
    spot = report["sweetSpot"]
    assert spot["fit"] and 0 < spot["plateau"] <= 1
    assert ("samples" in spot) == spot["saturated"]
    assert spot["recommendation"].startswith("past ~" if spot["saturated"] else "not saturated")
    # Past the data: the forecast with its band (the table, the status's shape), priced, and the target answered.
    assert "Forecast (micro-F1, 80% band)" in output and "rows to reach F1 0.99:" in output
    assert "forecast: at 512 rows F1" in spot["recommendation"]
    ahead = report["forecast"]["points"]
    assert [p["samples"] for p in ahead] == [256, 512]
    assert all(p["low"] <= p["f1"] <= p["high"] for p in ahead)
    assert [p["cost"] for p in ahead] == [64.0, 192.0]
    assert set(report["forecast"]["target"]) >= {"reach", "abovePlateau"} and report["target"] == 0.99
    band = report["forecastCurve"]
    assert band[0]["samples"] == 16 and band[-1]["samples"] == 512


def test_a_study_with_a_small_budget_ends_budget_exhausted_with_its_best_trial(tmp_path: Path) -> None:
    # Stages of about 2 s (wall seconds: no GPU) under a budget of 12 s: a few of the 20 trials, the best trained on.
    manifest = small_study("capped", seed=5, maxTrials=20, budget={"gpuHours": 12 / 3600})
    manifest["spec"]["search"]["earlyEvaluation"]["promoteTopK"] = 2
    path = tmp_path / "capped.yaml"
    path.write_text(yaml.safe_dump(manifest))
    code, output = finish(sweetspot("run", str(path), cwd=tmp_path, fake=True))
    assert code == 0, output[-4000:]
    assert "Succeeded (BudgetExhausted): the budget pays for no further stage" in output, output[-4000:]
    assert "gpuHours used (" in output  # the progress line
    code, output = finish(sweetspot("report", "capped", "--format", "json", cwd=tmp_path))
    assert code == 0, output
    report = json.loads(output[output.index("{") :])
    assert report["phase"] == "Succeeded" and report["best"] is not None
    assert 2 <= len(report["trials"]) < 20
    # Spent: within the budget, give or take what the last stages cost above their estimate.
    assert 6 < report["computeSeconds"]["used"] <= 12 * 1.25
