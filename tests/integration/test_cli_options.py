"""The `sweetspot` command's options do what their help says: `run --max-trials/--parallelism/--seed` override the
manifest, `report --namespace` finds a study of another namespace, and `sweetspot dashboards DIR` writes the chart's
dashboards. Stages run `support.fake_trainer` (the same contract, no model): the options are the subject here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from support.by_path import ROOT
from support.node import TESTS
from support.studies import small_study

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(600)]


def sweetspot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SWEETSPOT_TRAINER_MODULE": "support.fake_trainer",
        "SWEETSPOT_FAKE_STAGE_SECONDS": "1",
        "PYTHONPATH": str(TESTS),
    }
    command = [sys.executable, "-m", "sweetspot.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)


def manifest(folder: Path, namespace: str | None = None) -> Path:
    study = small_study("options", namespace, seed=3, maxTrials=4, parallelism=1)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def trials(folder: Path, namespace: str = "default") -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{folder / '.sweetspot' / 'studies.db'}"
    return optuna.load_study(study_name=f"{namespace}/options", storage=storage).trials


def learning_rates(folder: Path) -> list[float]:
    return [t.params["learningRate"] for t in trials(folder)]


def test_run_options_override_the_manifest(tmp_path: Path) -> None:
    runs: dict[str, Path] = {}
    for name, options in {
        "manifest": [],
        "seed-a": ["--seed", "11", "--max-trials", "2", "--parallelism", "2"],
        "seed-b": ["--seed", "11", "--max-trials", "2", "--parallelism", "2"],
    }.items():
        folder = runs[name] = tmp_path / name
        folder.mkdir()
        done = sweetspot("run", str(manifest(folder)), *options, cwd=folder)
        assert done.returncode == 0, done.stdout + done.stderr
    assert len(trials(runs["manifest"])) == 4 and len(trials(runs["seed-a"])) == 2  # --max-trials over maxTrials: 4
    # --seed over seed: 3; the same seed asks the same configurations, another seed others.
    assert learning_rates(runs["seed-a"]) == learning_rates(runs["seed-b"])
    assert learning_rates(runs["seed-a"]) != learning_rates(runs["manifest"])[:2]
    # --parallelism 2 over parallelism: 1: the second trial started before the first one's early stage ended.
    first, second = sorted(trials(runs["seed-a"]), key=lambda t: t.number)
    early_end = first.datetime_complete
    assert second.datetime_start is not None and early_end is not None and second.datetime_start < early_end
    serial_first, serial_second, *_ = trials(runs["manifest"])
    assert serial_second.datetime_start >= serial_first.datetime_complete  # type: ignore[operator]


def test_report_finds_a_study_by_its_namespace(tmp_path: Path) -> None:
    done = sweetspot("run", str(manifest(tmp_path, namespace="team-b")), "--max-trials", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    found = sweetspot("report", "options", "--namespace", "team-b", "--format", "json", cwd=tmp_path)
    assert found.returncode == 0, found.stdout + found.stderr
    report: dict[str, Any] = json.loads(found.stdout)
    assert report["phase"] == "Succeeded" and len(report["trials"]) == 2
    missing = sweetspot("report", "options", cwd=tmp_path)  # the default namespace holds no such study
    assert missing.returncode != 0 and "default/options" in missing.stdout + missing.stderr
    assert "team-b/options" in missing.stdout + missing.stderr  # it names the studies that are there


def test_dashboards_writes_the_charts_dashboards(tmp_path: Path) -> None:
    done = sweetspot("dashboards", str(tmp_path / "boards"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    shipped = sorted((ROOT / "charts" / "sweetspot" / "dashboards").glob("*.json"))
    written = sorted((tmp_path / "boards").glob("*.json"))
    assert [p.name for p in written] == [p.name for p in shipped] and shipped
    for mine, theirs in zip(written, shipped, strict=True):
        assert json.loads(mine.read_text()) == json.loads(theirs.read_text()), mine.name
        assert json.loads(mine.read_text())["panels"], mine.name
