"""The study's product: a trained adapter that says what it is, and running it on new pages.

A final stage saves the adapter with peft; peft's files alone cannot be used, because the attribute list, the
label map (extractive) or the prompt's attributes (generative) lived only on the model in memory. `describe`
writes them beside the adapter as `sweetspot.json`, with a model card, and `predict` rebuilds the base model from
that file, loads the adapter onto it and extracts attributes from new rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sweetspot.contract import PRODUCT_FILE, Evaluation, ModelRef, TrialConfig
from sweetspot_trainer.data import IMPLICIT_CATEGORY, MAX_LINE_BYTES, DataError, Row
from sweetspot_trainer.task import Task

PRODUCT_VERSION = 1
PREDICT_BATCH_SIZE = 16


class ProductError(Exception):
    """The adapter folder cannot be used (no or a bad `sweetspot.json`): bad input."""


def base_model_name(model: Mapping[str, Any]) -> str:
    """The base model as a person would name it (never a token, never a path's host details beyond the path)."""
    if model.get("builtin"):
        return f"sweetspot builtin `{model['builtin']}`"
    if model.get("huggingFace"):
        revision = model.get("revision")
        return f"{model['huggingFace']}" + (f" (revision {revision})" if revision else "")
    return f"the saved model at {model.get('path')}"


def describe(
    adapter: Path,
    config: TrialConfig,
    task: str,
    attributes: Sequence[str],
    asked: Mapping[str, Sequence[str]],
    labels: Sequence[str] | None,
    max_new_tokens: int | None,
    final: Evaluation | None,
    training_rows: int,
) -> dict[str, Any]:
    """Write `sweetspot.json` and a model card (`README.md`, replacing peft's blank one) beside the adapter."""
    model = config.model.model_dump(mode="json", by_alias=True, exclude={"token_file"})
    data = config.train.model_dump(mode="json", by_alias=True, exclude_none=True)
    scores: dict[str, Any] = {}
    if final is not None:
        scores = {
            "f1": final.f1,
            "precision": final.precision,
            "recall": final.recall,
            "accuracy": final.accuracy,
            "validationRows": final.rows,
            "attributeF1": dict(final.attribute_f1),
            "attributeAccuracy": dict(final.attribute_accuracy),
        }
    product: dict[str, Any] = {
        "sweetspot": PRODUCT_VERSION,
        "study": config.study,
        "trial": config.trial,
        "task": task,
        "model": model,
        "attributes": list(attributes),
        "categories": {c: list(names) for c, names in asked.items()},
        "labels": list(labels) if labels is not None else None,
        "maxNewTokens": max_new_tokens,
        "hyperparameters": config.hyperparameters.model_dump(mode="json", by_alias=True),
        "data": {"train": data, "trainingRows": training_rows},
        "scores": scores,
    }
    (adapter / PRODUCT_FILE).write_text(json.dumps(product, indent=2) + "\n")
    (adapter / "README.md").write_text(model_card(product))
    return product


def model_card(product: Mapping[str, Any]) -> str:
    scores: Mapping[str, Any] = product["scores"]
    how = "token tagging: spans copied from the page"
    if product["task"] != "extractive":
        how = "a causal LM answering in JSON"
    lines = [
        "---",
        "library_name: peft",
        *([f"base_model: {product['model']['huggingFace']}"] if product["model"].get("huggingFace") else []),
        "tags: [sweetspot, lora, attribute-extraction]",
        "---",
        "",
        f"# Attribute extractor from study `{product['study']}` (trial {product['trial']})",
        "",
        f"A LoRA adapter on {base_model_name(product['model'])} that extracts product attributes from a page's "
        f"text ({how}).",
        "",
        "## What it extracts",
        "",
    ]
    for category, names in product["categories"].items():
        lines.append(f"- {category or 'every page'}: {', '.join(names)}")
    train = product["data"]["train"]
    source = train.get("path") or f"builtin `{train.get('builtin')}`"
    lines += ["", "## Data", "", f"Trained on {product['data']['trainingRows']} rows from {source}.", ""]
    lines += ["## Scores (validation set)", ""]
    if scores:
        lines += [
            f"F1 {scores['f1']:.4f} (precision {scores['precision']:.4f}, recall {scores['recall']:.4f}), "
            f"accuracy {scores['accuracy']:.4f} on {scores['validationRows']} rows. F1 counts a value right when it "
            "matches a gold value after normalisation; accuracy counts every attribute, a correct null included.",
            "",
            "| attribute | F1 | accuracy |",
            "|---|---|---|",
            *(
                f"| {a} | {f1:.4f} | {scores['attributeAccuracy'].get(a, 0.0):.4f} |"
                for a, f1 in scores["attributeF1"].items()
            ),
        ]
    else:
        lines.append("Not evaluated.")
    hp = ", ".join(f"{k}={v}" for k, v in product["hyperparameters"].items() if v is not None)
    lines += [
        "",
        "## Hyperparameters",
        "",
        hp,
        "",
        "## How to use it",
        "",
        "```",
        "sweetspot predict THIS_FOLDER pages.jsonl        # one JSON object per line: {id, input, category?}",
        "sweetspot predict THIS_FOLDER --text 'Acme kettle, 1.7 L, stainless steel'",
        "```",
        "",
        f"`{PRODUCT_FILE}` holds the base model, attributes, label map and scores as JSON.",
        "",
    ]
    return "\n".join(lines)


def read_product(adapter: Path) -> dict[str, Any]:
    path = adapter / PRODUCT_FILE
    try:
        product = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProductError(
            f"{path}: not found; is {adapter} a Sweetspot adapter folder (results/best-adapter, or OUTPUT/adapter)?"
        ) from None
    except (OSError, ValueError) as exc:
        raise ProductError(f"{path}: cannot read: {exc}") from None
    if not isinstance(product, dict) or product.get("sweetspot") != PRODUCT_VERSION:
        raise ProductError(f"{path}: not a Sweetspot product file of version {PRODUCT_VERSION}")
    return product


def read_rows(path: Path, categories: Mapping[str, Sequence[str]]) -> list[Row]:
    """New pages to run on: a JSONL file of `{"input": ..., "id"?: ..., "category"?: ...}` (extra keys ignored)."""
    rows: list[Row] = []
    problems: list[str] = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise DataError([f"{path}: cannot read: {exc.strerror}"]) from None
    for number, raw in enumerate(lines, start=1):
        where = f"{path}:{number}"
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            problems.append(f"{where}: line longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            record = json.loads(raw)
        except ValueError as exc:
            problems.append(f"{where}: not JSON: {exc}")
            continue
        row, problem = new_row(record, where, str(number), categories)
        if problem:
            problems.append(problem)
        elif row is not None:
            rows.append(row)
    if problems:
        raise DataError(problems)
    if not rows:
        raise DataError([f"{path}: no rows"])
    return rows


def new_row(record: Any, where: str, row_id: str, categories: Mapping[str, Sequence[str]]) -> tuple[Row | None, str]:
    if not isinstance(record, dict):
        return None, f"{where}: expected a JSON object, got {type(record).__name__}"
    text = record.get("input")
    if not isinstance(text, str) or not text.strip():
        return None, f"{where}: 'input' must be a non-empty string"
    category = record.get("category") or IMPLICIT_CATEGORY
    if category not in categories:
        if len(categories) != 1:
            known = ", ".join(sorted(categories))
            return None, f"{where}: category {category!r} is not one the adapter was trained on ({known})"
        category = next(iter(categories))
    ident = record.get("id", row_id)
    return Row(str(ident), text, dict.fromkeys(categories[category]), category, where), ""


@dataclass
class Predictor:
    """An adapter loaded for inference."""

    product: dict[str, Any]
    task: Task[Any]
    model: Any
    device: torch.device

    def predict(self, rows: Sequence[Row]) -> list[dict[str, str | None]]:
        encoded = [self.task.encode(row) for row in rows]
        predictions = self.task.predict(self.model, rows, encoded, self.device, PREDICT_BATCH_SIZE).predictions
        return [{a: p.get(a) for a in row.output} for p, row in zip(predictions, rows, strict=True)]


def load(adapter: Path) -> Predictor:
    """The base model named in `sweetspot.json` with the adapter loaded onto it."""
    from peft import PeftModel

    from sweetspot_trainer import model as modelmod

    product = read_product(adapter)
    ref = ModelRef.model_validate({**product["model"], "task": product["task"]})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with modelmod.quiet_transformers():
        loaded = modelmod.load(ref, product["labels"], device)
        model = PeftModel.from_pretrained(loaded.model, str(adapter)).to(device)
    model.eval()
    task: Task[Any]
    if product["task"] == "extractive":
        from sweetspot_trainer.extractive import ExtractiveTask

        task = ExtractiveTask(loaded.tokenizer, product["attributes"], product["categories"], ref.max_sequence_length)
    else:
        from sweetspot_trainer.generative import GenerativeTask

        generative = GenerativeTask(loaded.tokenizer, product["categories"], ref.max_sequence_length)
        generative.max_new_tokens = product["maxNewTokens"] or generative.max_new_tokens
        task = generative
    return Predictor(product, task, model, device)
