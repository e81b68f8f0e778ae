"""The `sweetspot` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from sweetspot import __version__

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweetspot.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"sweetspot {__version__}"


def test_help_lists_the_commands() -> None:
    done = run("--help")
    assert done.returncode == 0
    assert "validate" in done.stdout and "crd" in done.stdout


def test_validate_examples_exits_0() -> None:
    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml"))
    done = run("validate", *examples)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("is valid") == len(examples)


def test_validate_reports_every_bad_file_and_keeps_going(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: sweetspot.dev/v1alpha1\nkind: FineTuneStudy\nmetadata: {name: x}\n")
    done = run("validate", str(bad), "examples/quickstart.yaml")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == f"{bad}:1: spec: required field is missing"
    assert "quickstart is valid" in done.stdout
    assert "Traceback" not in done.stderr


def test_validate_warns_of_a_study_that_keeps_no_output_on_a_cluster(tmp_path: Path) -> None:
    manifest = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    bare, kept = tmp_path / "bare.yaml", tmp_path / "kept.yaml"
    bare.write_text(yaml.safe_dump(manifest))
    manifest["spec"]["trial"]["output"] = {"pvc": "studies", "path": "quickstart"}
    kept.write_text(yaml.safe_dump(manifest))

    done = run("validate", str(bare), str(kept))

    assert done.returncode == 0, done.stderr  # valid: `sweetspot run` keeps its output under the workdir
    warnings = done.stderr.splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{bare}: FineTuneStudy default/quickstart: warning: spec.trial.output: not set")
    assert "no adapter" in warnings[0] and "retrain from scratch" in warnings[0]
    assert done.stdout.count("is valid") == 2


def test_validate_reads_stdin() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sweetspot.cli", "validate", "-"],
        input=(ROOT / "examples" / "quickstart.yaml").read_text(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_crd_prints_the_committed_file() -> None:
    done = run("crd")
    assert done.returncode == 0
    assert done.stdout == (ROOT / "crds" / "finetunestudies.sweetspot.dev.yaml").read_text()


def test_no_command_is_a_usage_error() -> None:
    done = run()
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_report_in_a_folder_without_studies_says_where_it_looked_and_creates_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sweetspot.cli", "report", "quickstart", "--workdir", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert str(tmp_path / "nowhere" / "studies.db") in done.stderr
    assert "--workdir" in done.stderr and "--storage" in done.stderr
    assert not (tmp_path / "nowhere").exists()
