"""The study's product: a small local study's best adapter describes itself and `sweetspot predict` runs it on new
pages (the real trainer, the built-in MiniLM tagger, pages from a stream no trial trained or validated on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweetspot.contract import PRODUCT_FILE
from sweetspot_trainer.demo import ATTRIBUTES, product_pages

from support.studies import small_study

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]

NEW_PAGES_STREAM = 9
"""Neither the training stream (0) nor the validation stream (1)."""


def sweetspot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWEETSPOT_CACHE": str(cwd / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "sweetspot.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=800
    )


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("product")
    manifest = small_study("product", seed=3, maxTrials=2)
    (workdir / "study.yaml").write_text(yaml.safe_dump(manifest))
    done = sweetspot("run", "study.yaml", cwd=workdir)
    assert done.returncode == 0, done.stderr[-4000:]
    best = Path(".sweetspot", "default-product", "results", "best-adapter")
    report = json.loads((workdir / best.parent / "report.json").read_text())
    assert report["best"]["adapter"] == str(best)
    said = " ".join(done.stderr.split())
    assert "best adapter (trial " in said and f"sweetspot predict {best} pages.jsonl" in said, said[-2000:]
    return workdir / best


def test_the_best_adapter_says_what_it_is(adapter: Path) -> None:
    product = json.loads((adapter / PRODUCT_FILE).read_text())
    assert product["task"] == "extractive"
    assert product["model"]["builtin"] == "tiny" and "tokenFile" not in product["model"]
    assert sorted(product["attributes"]) == sorted(ATTRIBUTES)
    assert product["labels"] == ["O"] + [f"{p}-{a}" for a in product["attributes"] for p in ("B", "I")]
    assert list(product["categories"].values()) == [product["attributes"]]
    assert product["hyperparameters"]["batchSize"] == 16 and product["hyperparameters"]["epochs"] == 1
    assert product["data"]["trainingRows"] == 64
    scores = product["scores"]
    assert 0 <= scores["f1"] <= 1 and 0 < scores["accuracy"] <= 1
    assert set(scores["attributeF1"]) == set(ATTRIBUTES)

    card = (adapter / "README.md").read_text()
    assert "# Attribute extractor from study `product`" in card
    assert "sweetspot builtin `tiny`" in card and "| price |" in card and "sweetspot predict" in card
    assert "base_model: /" not in card  # peft's blank card named the base model by an absolute local path


def test_predict_extracts_the_attributes_of_three_new_pages(adapter: Path, tmp_path: Path) -> None:
    pages = product_pages(3, stream=NEW_PAGES_STREAM)
    rows = tmp_path / "pages.jsonl"
    rows.write_text("".join(json.dumps({"id": f"p{i}", "input": p["input"]}) + "\n" for i, p in enumerate(pages)))

    done = sweetspot("predict", str(adapter), str(rows), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["id"] for a in answers] == ["p0", "p1", "p2"]
    for answer, page in zip(answers, pages, strict=True):
        assert set(answer["output"]) == set(ATTRIBUTES)
        for value in answer["output"].values():  # a tagger copies spans: every value is text of its own page
            assert value is None or (isinstance(value, str) and value in str(page["input"]))

    done = sweetspot("predict", str(adapter), "--text", str(pages[0]["input"]), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == answers[0]["output"]


def test_predict_names_the_bad_row_and_the_missing_product_file(adapter: Path, tmp_path: Path) -> None:
    rows = tmp_path / "pages.jsonl"
    rows.write_text('{"input": "Acme kettle, red"}\n{"id": 2}\nnot json\n')
    done = sweetspot("predict", str(adapter), str(rows), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[:2] == [
        f"{rows}:2: 'input' must be a non-empty string",
        f"{rows}:3: not JSON: Expecting value: line 1 column 1 (char 0)",
    ]
    assert done.stdout == ""

    done = sweetspot("predict", str(tmp_path), "--text", "Acme kettle", cwd=tmp_path)
    assert done.returncode == 2
    assert f"{tmp_path / PRODUCT_FILE}: not found" in done.stderr
