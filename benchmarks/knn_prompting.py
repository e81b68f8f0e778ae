"""The prompting baseline of the attribute-extraction literature: no training, k demonstrations per title.

Each test title is asked with the trainer's prompt (system prompt, the attributes its category asks, the title),
preceded by its `k` nearest training titles and their gold answers as earlier user and assistant turns, the
nearest last. Nearness is the cosine of MiniLM-L6 sentence embeddings (all-MiniLM-L6-v2, mean-pooled: the
built-in tagger's encoder, shipped with the install). The answers are decoded and scored exactly as the
fine-tuned model's are (`decoding.JsonDecoder`, `evaluate.score`), so the two columns of the LLM table differ only in
how the model learnt the task: from demonstrations in its prompt, or from LoRA training on the same titles.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from sweetspot_trainer.data import Row, Schema
from sweetspot_trainer.decoding import JsonDecoder, TokenText
from sweetspot_trainer.evaluate import score
from sweetspot_trainer.generative import SYSTEM, USER, GenerativeTask, answer_text, parse_answer
from sweetspot_trainer.model import minilm_dir, smollm2_dir

K = 3
"""Demonstrations per title: each adds about 80 prompt tokens, which a CPU pays for on every title."""
MAX_LENGTH = 192


@dataclass(frozen=True)
class Prompted:
    f1: float
    precision: float
    recall: float
    valid_json: float
    seconds: float
    prompt_tokens: float
    """Mean prompt length, demonstrations included."""


@torch.no_grad()
def embed(titles: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Unit-length sentence embeddings (mean over the tokens, as all-MiniLM-L6-v2 is trained)."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModel.from_pretrained(minilm_dir()).eval()
    out = []
    for start in range(0, len(titles), batch_size):
        batch = tokenizer(list(titles[start : start + batch_size]), padding=True, truncation=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        out.append(F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out)


def nearest(pool: Sequence[Row], rows: Sequence[Row], k: int) -> list[list[int]]:
    """For each row, the indices of its `k` most similar pool rows, the most similar last."""
    similarity = embed([r.input for r in rows]) @ embed([r.input for r in pool]).T
    top = similarity.topk(min(k, len(pool)), dim=1).indices
    return [list(reversed(row)) for row in top.tolist()]


def prompt_ids(task: GenerativeTask, row: Row, demonstrations: Sequence[Row]) -> list[int]:
    messages = [{"role": "system", "content": SYSTEM}]
    for demo in demonstrations:
        names = task.attributes(demo)
        messages.append({"role": "user", "content": USER.format(names=", ".join(names), page=demo.input)})
        messages.append({"role": "assistant", "content": answer_text(demo, names)})
    names = task.attributes(row)
    messages.append({"role": "user", "content": USER.format(names=", ".join(names), page=row.input)})
    text = task.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids: list[int] = task.tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def run(pool: Sequence[Row], rows: Sequence[Row], schema: Schema, k: int = K, batch_size: int = 32) -> Prompted:
    """SmolLM2-135M-Instruct, untrained, on `rows` with demonstrations from `pool`."""
    began = time.perf_counter()
    folder = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    task = GenerativeTask(tokenizer, schema, MAX_LENGTH)
    task.fit_decoding([task.encode(row) for row in pool])
    picks = nearest(pool, rows, k)
    prompts = [prompt_ids(task, row, [pool[j] for j in pick]) for row, pick in zip(rows, picks, strict=True)]
    order = sorted(range(len(rows)), key=lambda i: len(prompts[i]))
    decoder = JsonDecoder(model, torch.device("cpu"), TokenText(tokenizer.decode), task.eos, tokenizer.pad_token_id)
    budgets = [task.token_budget(task.encode(rows[i])) for i in order]
    answers = decoder.decode([prompts[i] for i in order], budgets, batch_size)
    predictions: list[dict[str, str | None]] = [{} for _ in rows]
    valid = 0
    for i, tokens in zip(order, answers, strict=True):
        parsed = parse_answer(tokenizer.decode(tokens, skip_special_tokens=True), task.attributes(rows[i]))
        if parsed is not None:
            valid += 1
            predictions[i] = parsed
    scores = score(predictions, [r.output for r in rows], [r.category for r in rows])
    return Prompted(
        scores.f1,
        scores.precision,
        scores.recall,
        valid / len(rows),
        time.perf_counter() - began,
        sum(len(p) for p in prompts) / len(prompts),
    )
