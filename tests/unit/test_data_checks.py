"""Checks where users look: `sweetspot check-data` (files and manifests), `sweetspot validate` on a study's local
data, and the alert texts that send users to them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "sweetspot" / "alerts" / "sweetspot.rules.yaml"

ROWS = [
    {"input": "Red Acme lure 7g", "output": {"Brand": "Acme", "Color": "Red", "Weight": "7 g"}, "category": "Lure"},
    {"input": "a blue lure", "output": {"Brand": None, "Color": ["Blue", "blue"]}, "category": "Lure"},
    {"input": "Acme rod, carbon", "output": {"Brand": "acme", "Material": "carbon"}, "category": "Rod"},
]


def sweetspot(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweetspot.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def write_rows(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def study(folder: Path, dataset: dict[str, Any], name: str = "study.yaml") -> Path:
    manifest = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    manifest["spec"]["dataset"] = dataset
    path = folder / name
    path.write_text(yaml.safe_dump(manifest))
    return path


def line_of(path: Path, text: str) -> int:
    """The 1-based line of a manifest that holds `text`."""
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


# --- check-data -------------------------------------------------------------------------------------------


def test_check_data_on_a_good_file_says_what_it_holds_and_how_many_gold_values_are_in_the_text(tmp_path: Path) -> None:
    rows = write_rows(tmp_path / "rows.jsonl", ROWS)

    done = sweetspot("check-data", str(rows))

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"{rows}: 3 rows ok, 2 categories, 5 category attributes (4 names)" in out
    # Acme, Red, Blue (an acceptable value) and carbon are in their text; "7 g" (text: 7g) and "acme" (text: Acme)
    # are not: verbatim means case-sensitive.
    assert "gold values in the text: 4 of 6 values occur verbatim" in out
    lure = out[out.index("Lure: 2 rows") : out.index("Rod: 1 rows")]
    assert re.search(r"Color\s+2\s+2\s+100\.0%\s+2\n", lure), lure
    assert re.search(r"Weight\s+1\s+1\s+50\.0%\s+0", lure), lure
    assert re.search(r"Brand\s+2\s+1\s+50\.0%\s+1", lure), lure


def test_check_data_on_a_bad_file_names_file_and_line_and_exits_2(tmp_path: Path) -> None:
    good = write_rows(tmp_path / "good.jsonl", ROWS)
    bad = write_rows(tmp_path / "bad.jsonl", [ROWS[0], "not json", {"input": "x", "output": {"Brand": 3}}])

    done = sweetspot("check-data", str(bad), str(good))

    assert done.returncode == 2
    assert done.stderr.splitlines()[:2] == [
        f"{bad}:2: not JSON (Expecting value at column 1)",
        f"{bad}:3: output.Brand must be a string, a list of strings or null, got int 3",
    ]
    assert f"{good}: 3 rows ok" in done.stdout and f"{bad}:" not in done.stdout

    skipped = sweetspot("check-data", "--bad-rows", "skip", str(bad))
    assert skipped.returncode == 0, skipped.stderr
    assert f"{bad}: 1 rows ok (2 bad rows dropped)" in skipped.stdout
    assert f"{bad}:2: not JSON (Expecting value at column 1) (dropped: --bad-rows skip)" in skipped.stderr


def test_check_data_holds_rows_to_a_schema(tmp_path: Path) -> None:
    rows = write_rows(tmp_path / "rows.jsonl", ROWS)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"Lure": ["Brand", "Color"], "Rod": ["Brand", "Material"]}))

    done = sweetspot("check-data", "--schema", str(schema), str(rows))

    assert done.returncode == 2
    assert f"{rows}:1: ['Weight'] not in the schema's attributes of 'Lure'" in done.stderr


def test_check_data_on_a_manifest_checks_its_local_files_against_its_schema_and_skips_the_cluster_ones(
    tmp_path: Path,
) -> None:
    write_rows(tmp_path / "data" / "train.jsonl", ROWS)
    manifest = study(
        tmp_path,
        {
            "train": {"path": "data/train.jsonl"},
            "validation": {"pvc": "datasets", "path": "val.jsonl"},
            "schema": {"categories": {"Lure": ["Brand", "Color", "Weight", "Size"], "Rod": ["Brand", "Material"]}},
        },
    )

    done = sweetspot("check-data", manifest.name, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "data/train.jsonl: 3 rows ok, 2 categories, 6 category attributes" in done.stdout  # the schema's
    assert re.search(r"Size\s+0\s+0\s+0\.0%\s+0  rare", done.stdout)
    line = line_of(manifest, "path: val.jsonl")
    assert (
        f"study.yaml:{line}: spec.dataset.validation.path: 'val.jsonl' not checked: it lives on PersistentVolumeClaim "
        "'datasets'" in done.stdout
    )


def test_check_data_on_a_manifest_with_a_missing_file_names_the_field(tmp_path: Path) -> None:
    manifest = study(tmp_path, {"train": {"path": "nowhere.jsonl"}})

    done = sweetspot("check-data", str(manifest))

    assert done.returncode == 2
    line = line_of(manifest, "path: nowhere.jsonl")
    assert done.stderr.startswith(
        f"{manifest}:{line}: spec.dataset.train.path: 'nowhere.jsonl' does not exist (looked for "
        f"{tmp_path / 'nowhere.jsonl'}: "
    )


def test_check_data_help_is_the_trainers() -> None:
    ours = sweetspot("check-data", "--help")
    trainers = subprocess.run(
        [sys.executable, "-m", "sweetspot_trainer", "check-data", "--help"], capture_output=True, text=True
    )
    assert ours.returncode == trainers.returncode == 0
    assert "in text" in ours.stdout and "STUDY.yaml" in ours.stdout
    flat = " ".join(trainers.stdout.split())
    description = flat[flat.index("Check dataset files") : flat.index("per attribute:")]
    assert description in " ".join(ours.stdout.split())


# --- validate ---------------------------------------------------------------------------------------------


def test_validate_names_the_field_and_path_of_missing_local_data(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.jsonl", ROWS)
    manifest = study(
        tmp_path,
        {"train": {"path": "train.jsonl"}, "validation": {"path": "val.jsonl"}, "schema": {"path": "schema.json"}},
    )

    done = sweetspot("validate", str(manifest))

    assert done.returncode == 1
    problems = [line for line in done.stderr.splitlines() if ": warning: " not in line]
    assert [p.split(" (looked for")[0] for p in problems] == [
        f"{manifest}:{line_of(manifest, 'path: val.jsonl')}: spec.dataset.validation.path: 'val.jsonl' does not exist",
        f"{manifest}:{line_of(manifest, 'path: schema.json')}: spec.dataset.schema.path: 'schema.json' does not exist",
    ]
    assert str(tmp_path / "val.jsonl") in problems[0]
    assert "is valid" not in done.stdout

    assert sweetspot("validate", "--no-data", str(manifest)).returncode == 0


def test_validate_prints_what_local_data_holds(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.jsonl", ROWS)
    manifest = study(tmp_path, {"train": {"path": "train.jsonl"}, "validation": {"pvc": "data", "path": "v.jsonl"}})

    done = sweetspot("validate", str(manifest))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{manifest}: FineTuneStudy default/quickstart is valid"
    line = line_of(manifest, "path: v.jsonl")
    assert lines[1].startswith(f"  {manifest}:{line}: spec.dataset.validation.path: 'v.jsonl' not checked: it lives on")
    assert any(line.startswith(f"  {tmp_path / 'train.jsonl'}: 3 rows ok, 2 categories") for line in lines), lines
    assert any(re.fullmatch(r"\s+Color\s+2\s+2\s+100\.0%\s+2", line) for line in lines), lines
    assert sweetspot("validate", "-q", str(manifest)).stdout == ""


@pytest.mark.parametrize("bad_rows", ["fail", "skip"])
def test_validate_fails_on_bad_rows_unless_the_study_skips_them(tmp_path: Path, bad_rows: str) -> None:
    write_rows(tmp_path / "train.jsonl", [*ROWS, "{broken"])
    manifest = study(tmp_path, {"train": {"path": "train.jsonl"}, "badRows": bad_rows})

    done = sweetspot("validate", str(manifest))

    field = f"{manifest}:{line_of(manifest, 'path: train.jsonl')}: spec.dataset.train.path"
    said = f"{field}: {tmp_path / 'train.jsonl'}:4: not JSON (Expecting property name"
    if bad_rows == "fail":
        assert done.returncode == 1
        assert said in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert f"  {said}" in done.stdout and "(dropped: --bad-rows skip)" in done.stdout
        assert "3 rows ok (1 bad rows dropped)" in done.stdout


def test_validate_of_builtin_and_cluster_data_checks_no_file() -> None:
    done = sweetspot("validate", "examples/quickstart.yaml", "examples/product-attributes.yaml")
    assert done.returncode == 0, done.stderr
    assert "rows ok" not in done.stdout
    assert done.stdout.count("not checked: it lives on PersistentVolumeClaim 'data'") == 2


# --- the alert texts --------------------------------------------------------------------------------------


def test_commands_the_alerts_name_exist() -> None:
    texts = [
        text
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        for text in rule["annotations"].values()
    ]
    commands = {m for text in texts for m in re.findall(r"`sweetspot ([a-z-]+)", text)}
    assert "check-data" in commands
    for command in commands:
        assert sweetspot(command, "--help").returncode == 0, command
    assert not any("sweetspot-trainer" in text for text in texts)
