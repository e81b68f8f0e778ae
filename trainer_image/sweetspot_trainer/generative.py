"""The generative head (causal LMs): page in, JSON answer out.

The prompt is the page followed by an instruction naming the row's applicable attributes (the keys of its gold
output, in its category's order: only what applies is asked); the answer is a JSON object with each of them
(null when the text does not state it) and an end-of-sequence token. Loss is on the answer tokens only.
Prediction decodes greedily and parses the JSON: an answer that is not a JSON object counts as wrong on
every attribute, and the share of valid answers is reported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from sweetspot_trainer.data import Row

IGNORE = -100
INSTRUCTION = "\n\nExtract {names} as JSON.\nJSON: "


def answer_text(row: Row, attributes: Sequence[str]) -> str:
    return json.dumps({a: row.first_value(a) for a in attributes}, ensure_ascii=False)


def parse_answer(text: str, attributes: Sequence[str]) -> dict[str, str | None] | None:
    """The attribute values in a generated answer, or None when it is not a JSON object."""
    try:
        parsed = json.loads(text.strip())
    except json.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    return {a: (None if parsed.get(a) is None else str(parsed[a])) for a in attributes}


@dataclass
class Encoded:
    prompt_ids: list[int]
    answer_ids: list[int]
    attributes: list[str]
    """What the prompt asks for (the answer's keys)."""

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.answer_ids


class GenerativeTask:
    name = "generative"

    def __init__(self, tokenizer: Any, asked: Mapping[str, Sequence[str]], max_length: int) -> None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.asked = {c: list(names) for c, names in asked.items()}
        self.max_length = max_length
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.max_new_tokens = 32

    def attributes(self, row: Row) -> list[str]:
        """The row's applicable attributes that its category is asked for, in the category's order."""
        return [a for a in self.asked.get(row.category, list(row.output)) if a in row.output]

    def encode(self, row: Row) -> Encoded:
        attributes = self.attributes(row)
        answer = self.tokenizer(answer_text(row, attributes), add_special_tokens=False)["input_ids"]
        answer = [*answer, self.tokenizer.eos_token_id]
        self.max_new_tokens = max(self.max_new_tokens, min(512, int(len(answer) * 1.5) + 8))
        instruction = self.tokenizer(INSTRUCTION.format(names=", ".join(attributes)), add_special_tokens=False)
        room = self.max_length - len(answer) - len(instruction["input_ids"]) - len(self.bos)
        if room < 8:
            raise ValueError(f"maxSequenceLength {self.max_length} leaves no room for the page and the answer")
        page = self.tokenizer(row.input, add_special_tokens=False)["input_ids"][:room]  # keep the page's head
        return Encoded(self.bos + page + instruction["input_ids"], answer, attributes)

    def loss(self, model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    def collate(self, batch: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        width = max(len(e.input_ids) for e in batch)
        ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        for i, e in enumerate(batch):
            n, p = len(e.input_ids), len(e.prompt_ids)
            ids[i, :n] = torch.tensor(e.input_ids)
            mask[i, :n] = 1
            labels[i, p:n] = torch.tensor(e.answer_ids)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    @torch.no_grad()
    def predict(
        self, model: Any, rows: Sequence[Row], encoded: Sequence[Encoded], device: torch.device, batch_size: int
    ) -> tuple[list[dict[str, str | None]], float, float | None]:
        """Parsed answers (empty when invalid), mean answer-token loss, and the valid-JSON rate."""
        model.eval()
        predictions: list[dict[str, str | None]] = [{} for _ in rows]
        loss_sum, tokens, valid = 0.0, 0, 0
        order = sorted(range(len(rows)), key=lambda i: len(encoded[i].prompt_ids))
        pad = self.tokenizer.pad_token_id
        for chunk in range(0, len(order), batch_size):
            indices = order[chunk : chunk + batch_size]
            batch = {k: v.to(device) for k, v in self.collate([encoded[i] for i in indices]).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            loss_sum += float(
                F.cross_entropy(
                    logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=IGNORE, reduction="sum"
                )
            )
            tokens += int((batch["labels"][:, 1:] != IGNORE).sum())
            # Generation pads on the left so every prompt ends where its answer starts.
            width = max(len(encoded[i].prompt_ids) for i in indices)
            prompt = torch.full((len(indices), width), pad, dtype=torch.long)
            attention = torch.zeros((len(indices), width), dtype=torch.long)
            for row, i in enumerate(indices):
                ids = encoded[i].prompt_ids
                prompt[row, width - len(ids) :] = torch.tensor(ids)
                attention[row, width - len(ids) :] = 1
            generated = model.generate(
                input_ids=prompt.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=self.tokenizer.eos_token_id,
            )
            for row, i in enumerate(indices):
                text = self.tokenizer.decode(generated[row, width:], skip_special_tokens=True)
                parsed = parse_answer(text, encoded[i].attributes)
                if parsed is not None:
                    valid += 1
                    predictions[i] = parsed
        return predictions, loss_sum / max(1, tokens), valid / max(1, len(rows))
