"""Real LoRA training of the built-in models through the trainer entrypoint, as a pod runs it.

These train for real on the CPU (transformers + peft), so they are marked slow; together they take about
two minutes on two cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sweetspot.contract import PRODUCT_FILE, StageResult

from support.trainer_runs import image_command, run_stage, tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_tiny_early_then_final_resumes_and_learns(tmp_path: Path) -> None:
    early_run, early = run_stage(tiny_config(tmp_path, "early"), tmp_path)
    assert early_run.returncode == 0, early_run.stderr[-3000:]
    assert early is not None and early.status == "ok"
    assert [p.name.split("-", 1)[1] for p in sorted((tmp_path / "checkpoint").glob("*.pt"))] == ["step-00000040.pt"]
    assert re.search(r"step \d+/40 loss [0-9.]+ lr [0-9.e+-]+ [0-9.]+ rows/s eta \d+s", early_run.stdout)

    final_run, final = run_stage(tiny_config(tmp_path, "final"), tmp_path)
    assert final_run.returncode == 0, final_run.stderr[-3000:]
    assert final is not None and final.status == "ok"
    assert final.resumed and final.message.startswith("resumed from the early checkpoint at step 40")
    assert final.step == final.planned_steps == 100
    # The early stage echoes the fraction it was judged at (the operator reads it, never guesses it from the step).
    assert (early.early_fraction, final.early_fraction) == (0.4, None)

    assert early.last is not None and final.last is not None and final.null_baseline is not None
    assert final.last.accuracy > early.last.accuracy > final.null_baseline
    assert early.sample_hash == final.sample_hash and len(final.sample_hash) == 16
    assert final.samples == 400
    assert set(final.last.attribute_accuracy) == {"name", "brand", "price", "color", "rating"}
    assert final.last.attribute_f1["name"] > 0.5  # values extracted, not answered null
    assert final.last.f1 > early.last.f1 > 0.0  # the always-null baseline scores F1 0
    # The file result equals what the termination message carried.
    full = StageResult.model_validate_json((tmp_path / "out" / "result-final.json").read_text())
    assert full == final

    # The saved adapter is a PEFT adapter a user can load on the base model.
    from peft import PeftModel
    from transformers import AutoModelForTokenClassification

    from sweetspot_trainer.extractive import label_names
    from sweetspot_trainer.model import minilm_dir

    labels = label_names(list(final.last.attribute_accuracy))
    base = AutoModelForTokenClassification.from_pretrained(minilm_dir(), num_labels=len(labels))
    tuned = PeftModel.from_pretrained(base, str(tmp_path / "out" / "adapter"))
    assert any("lora_A" in name for name, _ in tuned.named_parameters())

    # And it describes itself: `predict` needs nothing but its folder to extract values from pages it never saw.
    product = json.loads((tmp_path / "out" / "adapter" / PRODUCT_FILE).read_text())
    assert product["labels"] == label_names(product["attributes"]) and sorted(product["labels"]) == sorted(labels)
    assert product["scores"]["f1"] == final.last.f1
    pages, answers = predict_new_pages(tmp_path, tmp_path / "out" / "adapter")
    names = sum(a["output"]["name"] == p["output"]["name"] for a, p in zip(answers, pages, strict=True))
    assert names >= 2, answers


def predict_new_pages(tmp_path: Path, adapter: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Three demo pages from a stream no stage trained or validated on, and what `predict` extracted from them."""
    from sweetspot_trainer.demo import ATTRIBUTES, product_pages

    pages = product_pages(3, stream=9)
    rows = tmp_path / "new-pages.jsonl"
    rows.write_text("".join(json.dumps({"input": p["input"]}) + "\n" for p in pages))
    done = subprocess.run(
        [*image_command(), "predict", str(adapter), str(rows)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["id"] for a in answers] == ["1", "2", "3"]
    assert all(set(a["output"]) == set(ATTRIBUTES) for a in answers)
    return pages, answers


def causal_config(tmp_path: Path, stage: str, epochs: int = 6) -> dict[str, Any]:
    return {
        "study": "test",
        "trial": 1,
        "stage": stage,
        "model": {"builtin": "tiny-causal", "maxSequenceLength": 256},
        "train": {"builtin": "product-pages", "rows": 400},
        "validation": {"builtin": "product-pages", "rows": 50},
        "seed": 7,
        "earlyFraction": 0.2,
        "checkpointDir": str(tmp_path / "checkpoint"),
        "outputDir": str(tmp_path / "out"),
        "hyperparameters": {"learningRate": 0.005, "batchSize": 16, "epochs": epochs},
    }


def test_generative_path_learns_valid_json(tmp_path: Path) -> None:
    done, result = run_stage(causal_config(tmp_path, "full"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert result is not None and len(result.evaluations) == 2
    early, final = result.evaluations
    assert final.loss < early.loss
    assert final.json_valid_rate is not None and final.json_valid_rate >= 0.9

    product = json.loads((tmp_path / "out" / "adapter" / PRODUCT_FILE).read_text())
    assert product["task"] == "generative" and product["labels"] is None and product["maxNewTokens"] > 8
    _, answers = predict_new_pages(tmp_path, tmp_path / "out" / "adapter")
    answered = [v for a in answers for v in a["output"].values() if v is not None]
    assert answered and all(isinstance(v, str) for v in answered), answers


def test_early_plus_final_trains_exactly_like_one_full_run(tmp_path: Path) -> None:
    full_dir, split_dir = tmp_path / "full", tmp_path / "split"
    full_dir.mkdir()
    split_dir.mkdir()
    _, full = run_stage(causal_config(full_dir, "full", epochs=2), full_dir)
    _, early = run_stage(causal_config(split_dir, "early", epochs=2), split_dir)
    _, final = run_stage(causal_config(split_dir, "final", epochs=2), split_dir)
    assert full is not None and early is not None and final is not None
    assert final.resumed
    assert early.evaluations[0].loss == pytest.approx(full.evaluations[0].loss, abs=1e-4)
    assert final.evaluations[0].loss == pytest.approx(full.evaluations[-1].loss, abs=1e-4)


def test_bad_data_in_a_training_run_exits_2_with_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"input": "Acme", "output": {"brand": "Acme"}}\n{"input": "x", "output": {"brand": 3}}\n')
    config = tiny_config(tmp_path, "early") | {"train": {"path": str(data)}, "validation": None, "samples": None}
    done, result = run_stage({k: v for k, v in config.items() if v is not None}, tmp_path)
    assert done.returncode == 2
    assert f"{data}:2: output.brand must be a string, a list of strings or null, got int 3" in done.stderr
    assert "Traceback" not in done.stderr
    assert result is not None and result.status == "bad_input"


def test_a_config_that_names_its_stage_but_does_not_validate_reports_bad_input(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, "early")
    config["hyperparameters"]["learningRate"] = "fast"
    bad = tmp_path / "trial.json"
    bad.write_text(json.dumps(config))
    log = tmp_path / "termination-log"
    env = {**os.environ, "SWEETSPOT_TERMINATION_LOG": str(log)}
    done = subprocess.run(
        [*image_command(), "--config", str(bad)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2
    result = StageResult.model_validate_json(log.read_text())
    assert (result.study, result.trial, result.stage, result.status) == ("test", 0, "early", "bad_input")
    assert "hyperparameters.learningRate" in result.message and "invalid trial config" in result.message


def test_a_config_that_is_not_valid_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "trial.json"
    bad.write_text(json.dumps({"study": "s", "trial": 0, "stage": "warmup"}))
    done = subprocess.run([*image_command(), "--config", str(bad)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "invalid trial config" in done.stderr and "stage" in done.stderr
