"""Real product titles (AE-110k, `examples/ae-110k/`): a whole local study on a 60-title slice with categories and
a schema, and the real-data benchmark's pipeline on its quick slice. The numbers on the full data are measured
by `python -m benchmarks realdata` (docs/performance.md); these tests prove the path works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.studies import small_study

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).parents[2]
AE_110K = ROOT / "examples" / "ae-110k"


def spread(path: Path, count: int) -> str:
    """`count` rows spread evenly over a file (the files are sorted by category)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return "\n".join(lines[:: len(lines) // count][:count]) + "\n"


def test_a_local_study_on_real_titles_reports_f1_per_attribute_and_category(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(spread(AE_110K / "train.jsonl", 60))
    (tmp_path / "test.jsonl").write_text(spread(AE_110K / "test.jsonl", 40))
    (tmp_path / "schema.json").write_text((AE_110K / "schema.json").read_text())
    manifest = small_study("titles", seed=3)
    manifest["spec"]["model"]["maxSequenceLength"] = 64
    manifest["spec"]["dataset"] = {
        "train": {"path": "train.jsonl"},
        "validation": {"path": "test.jsonl"},
        "schema": {"path": "schema.json"},
    }
    manifest["spec"]["search"].update(maxTrials=2, parallelism=2)
    manifest["spec"]["search"]["earlyEvaluation"].update(atFraction=0.5, promoteTopK=1)
    manifest["spec"]["search"]["space"] = {"learningRate": {"values": [0.002, 0.005]}, "epochs": {"values": [2]}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(manifest))
    run = subprocess.run(
        [sys.executable, "-m", "sweetspot.cli", "run", "study.yaml"],
        cwd=tmp_path,
        env={**os.environ, "SWEETSPOT_CACHE": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    work = tmp_path / ".sweetspot" / "default-titles"
    assert "10 categories, 50 attributes" in (work / "runs" / "t0-early" / "log.txt").read_text()
    report = json.loads((work / "results" / "report.json").read_text())
    assert report["phase"] == "Succeeded" and report["objective"] == "f1"
    schema = json.loads((AE_110K / "schema.json").read_text())
    known = {a for attributes in schema.values() for a in attributes}
    validation = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    for trial in report["trials"]:
        early = trial["early"]
        assert 0.0 <= early["f1"] <= 1.0 and 0.0 <= early["precision"] <= 1.0 and 0.0 <= early["recall"] <= 1.0
        # Only applicable pairs are scored: per-attribute F1 exists exactly for the attributes the rows annotate.
        assert set(early["attributeF1"]) == {a for row in validation for a in row["output"]} <= known
        assert set(early["categoryF1"]) == {row["category"] for row in validation}
        assert early["nullBaseline"]["f1"] == 0.0
        pairs = sum(len(row["output"]) for row in validation)
        nulls = sum(v is None for row in validation for v in row["output"].values())
        assert early["nullBaseline"]["accuracy"] == pytest.approx(nulls / pairs, abs=1e-4)
    best = report["best"]
    assert best is not None and set(best["attributeF1"]) == set(best["attributeSupport"])
    csv_rows = (work / "results" / "attributes.csv").read_text().splitlines()
    assert csv_rows[0] == "attribute,gold_values,f1,accuracy" and len(csv_rows) == 1 + len(best["attributeF1"])


def test_the_real_data_benchmark_runs_its_quick_slice(tmp_path: Path) -> None:
    out = tmp_path / "realdata.json"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "realdata", "--data", str(AE_110K), "--quick"),
            *("--workdir", str(tmp_path / "work"), "--json", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    results = json.loads(out.read_text())
    assert [p["samples"] for p in results["learningCurve"]] == [20, 40]
    assert all({"f1", "f1Spread"} <= set(p) and 0.0 <= p["f1"] <= 1.0 for p in results["learningCurve"])
    # The early score, the early loss, and from 3 checkpoints on (30%) the early loss extrapolated to the end.
    assert {(row["fraction"], row["signal"]) for row in results["agreement"]} == {
        (f, s) for f in (0.1, 0.2, 0.3) for s in ("f1", "loss")
    } | {(0.3, "loss-curve")}
    strategies = {row["strategy"]: row for row in results["strategies"]}
    assert {"tpe-full", "sh", "proxy@0.2", "proxy-f1@0.2"} <= set(strategies)
    assert all({"reached", "seeds", "medianCompute", "vsTpeFull"} <= set(row) for row in strategies.values())
    assert "Learning curve on the AE-110k test titles" in run.stdout
