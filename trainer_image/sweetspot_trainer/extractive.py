"""The extractive head: tag attribute spans token by token (BIO), map them back to the page text.

Training labels come from finding each gold value in the page (every occurrence of every acceptable value;
case-insensitively when the exact case does not occur): the tokens covering it get `B-<attribute>` then
`I-<attribute>`. Prediction takes, per attribute, the highest-scoring predicted span and returns the page text
under it via the tokenizer's character offsets, so a value comes back exactly as written (a lowercasing
tokenizer does not lowercase answers).

One head covers every attribute of every category, but a row only ever sees its category's: the labels of
other attributes are masked out of the softmax, in training and in prediction, so a running shoe is never
tagged with a guitar's pickup and hundreds of attributes across categories do not compete for each token.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from sweetspot_trainer.data import Row
from sweetspot_trainer.task import Predicted

IGNORE = -100


def whole_words(text: str, start: int, end: int) -> tuple[int, int]:
    """A predicted span widened where it cut a word: a span that starts inside a word (a tag on a subword such as
    `##vo` of "Kelvo") starts at the word; one that ends on punctuation inside a run ("$24." of "$24.50") ends at
    the run's end. A span that ends inside a word is kept: gold values do that ("Men" of "Mens", a tenth of
    AE-110k's), while one starting inside a word is rare (1%) and then mostly a stray digit match."""
    if start < len(text) and text[start].isalnum():
        while start > 0 and text[start - 1].isalnum():
            start -= 1
    if 0 < end < len(text) and not text[end - 1].isalnum() and not text[end - 1].isspace() and text[end].isalnum():
        while end < len(text) and text[end].isalnum():
            end += 1
    return start, end


def label_names(attributes: Sequence[str]) -> list[str]:
    return ["O"] + [f"{prefix}-{a}" for a in attributes for prefix in ("B", "I")]


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    offsets: list[tuple[int, int]]
    category: str = ""


def occurrences(text: str, value: str) -> list[int]:
    """Start offsets of `value` in `text`: exact matches, else case-insensitive ones (same-length folding)."""
    for haystack, needle in ((text, value), (text.lower(), value.lower())):
        if len(haystack) != len(text):
            break
        starts, start = [], haystack.find(needle)
        while start >= 0 and needle:
            starts.append(start)
            start = haystack.find(needle, start + len(needle))
        if starts:
            return starts
    return []


class ExtractiveTask:
    """A `task.Task`: BIO tags per token, spans read back from the page."""

    bucket_by_length = False
    """Batches take rows in the epoch's seeded order."""
    costly_decoding = False
    """One forward pass tags every token: every evaluation decodes every row."""
    max_new_tokens: int | None = None
    """Nothing is generated."""
    examples: tuple[str, ...] = ()
    """No raw answers: the spans are the answer."""

    def __init__(
        self, tokenizer: Any, attributes: Sequence[str], asked: Mapping[str, Sequence[str]], max_length: int
    ) -> None:
        self.tokenizer = tokenizer
        self.attributes = list(attributes)
        self.max_length = max_length
        self.labels = label_names(attributes)
        index = {a: i for i, a in enumerate(self.attributes)}
        self.asked = {c: [index[a] for a in names if a in index] for c, names in asked.items()}
        # A category asked for everything needs no mask (one-category data: the plain softmax, as fast as ever).
        self.masks: dict[str, torch.Tensor | None] = {
            c: None if len(ids) == len(self.attributes) else self._mask(ids) for c, ids in self.asked.items()
        }
        self.unfound = 0
        """Gold values that did not occur in their page (they cannot be tagged)."""

    def _mask(self, attribute_ids: Sequence[int]) -> torch.Tensor:
        allowed = torch.zeros(len(self.labels), dtype=torch.bool)
        allowed[0] = True
        for i in attribute_ids:
            allowed[1 + 2 * i] = allowed[2 + 2 * i] = True
        return allowed

    def encode(self, row: Row) -> Encoded:
        text = row.input
        owner: list[tuple[int, int] | None] = [None] * len(text)  # char -> (attribute index, span start)
        for index in self.asked.get(row.category, range(len(self.attributes))):
            gold = row.output.get(self.attributes[index])
            values = (gold,) if isinstance(gold, str) else gold or ()
            found = False
            for value in values:
                for start in occurrences(text, value):
                    found = True
                    end = start + len(value)
                    if all(owner[c] is None for c in range(start, end)):
                        for c in range(start, end):
                            owner[c] = (index, start)
            self.unfound += bool(values) and not found
        enc = self.tokenizer(text, truncation=True, max_length=self.max_length, return_offsets_mapping=True)
        labels: list[int] = []
        for start, end in enc["offset_mapping"]:
            if start == end:
                labels.append(IGNORE)  # special tokens
                continue
            tag = owner[start]
            if tag is None:
                labels.append(0)
            else:
                index, span_start = tag
                labels.append(1 + 2 * index + (0 if start == span_start else 1))
        return Encoded(list(enc["input_ids"]), labels, [tuple(o) for o in enc["offset_mapping"]], row.category)

    def collate(self, batch: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        width = max(len(e.input_ids) for e in batch)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        for i, e in enumerate(batch):
            n = len(e.input_ids)
            ids[i, :n] = torch.tensor(e.input_ids)
            mask[i, :n] = 1
            labels[i, :n] = torch.tensor(e.labels)
        tensors = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        allowed = [self.masks.get(e.category) for e in batch]
        if any(m is not None for m in allowed):
            everything = torch.ones(len(self.labels), dtype=torch.bool)
            tensors["allowed_labels"] = torch.stack([everything if m is None else m for m in allowed])
        return tensors

    def fit_decoding(self, training: Sequence[Encoded]) -> None:
        """Nothing to fit: decoding reads the tag of each token."""

    def length(self, encoded: Encoded) -> int:
        return len(encoded.input_ids)

    def loss_tokens(self, encoded: Encoded) -> int:
        """The tokens `loss` averages over in a batch holding this row (the labelled ones)."""
        return sum(label != IGNORE for label in encoded.labels)

    def logits(self, model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Token logits with the labels of attributes outside each row's category masked out."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        if "allowed_labels" in batch:
            logits = logits.masked_fill(~batch["allowed_labels"][:, None, :], torch.finfo(logits.dtype).min)
        return logits

    def loss(self, model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if "allowed_labels" not in batch:  # the model's own loss: the bare transformers path
            return model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
            ).loss
        logits = self.logits(model, batch)
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=IGNORE)

    def decode(
        self, logits: np.ndarray, offsets: Sequence[tuple[int, int]], text: str, category: str = ""
    ) -> dict[str, str | None]:
        """The best predicted span per attribute of the row's category (None when no token is tagged with it)."""
        shifted = logits - logits.max(axis=-1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=-1, keepdims=True)
        predicted = probs.argmax(axis=-1)
        values: dict[str, str | None] = {}
        for index in self.asked.get(category, range(len(self.attributes))):
            attribute = self.attributes[index]
            begin, inside = 1 + 2 * index, 2 + 2 * index
            best: tuple[float, int, int] | None = None
            t = 0
            while t < len(offsets):
                starts = predicted[t] == begin or (
                    predicted[t] == inside and (t == 0 or predicted[t - 1] not in (begin, inside))
                )
                if not starts or offsets[t][0] == offsets[t][1]:
                    t += 1
                    continue
                first = t
                t += 1
                while t < len(offsets) and predicted[t] == inside and offsets[t][0] != offsets[t][1]:
                    t += 1
                confidence = float(probs[np.arange(first, t), predicted[first:t]].mean())
                if best is None or confidence > best[0]:
                    best = (confidence, offsets[first][0], offsets[t - 1][1])
            values[attribute] = text[slice(*whole_words(text, best[1], best[2]))] if best else None
        return values

    @torch.no_grad()
    def predict(
        self,
        model: Any,
        rows: Sequence[Row],
        encoded: Sequence[Encoded],
        device: torch.device,
        batch_size: int,
        decode: Sequence[int] | None = None,
    ) -> Predicted:
        """Predicted values for each row (`decode`: the indices of the rows to decode, all when None; the others'
        predictions are empty), the mean validation loss per labelled token, no JSON rate. The loss comes from the
        same forward passes, so the seconds spent scoring include it (a cross-entropy: little beside the model)."""
        model.eval()
        began = time.perf_counter()  # each batch's logits come to the host: the clock sees the device's work
        chosen = None if decode is None else set(decode)
        predictions: list[dict[str, str | None]] = [{} for _ in rows]
        loss_sum, tokens = 0.0, 0
        order = sorted(range(len(rows)), key=lambda i: len(encoded[i].input_ids))
        for chunk in range(0, len(order), batch_size):
            indices = order[chunk : chunk + batch_size]
            batch = self.collate([encoded[i] for i in indices])
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = self.logits(model, batch).float()
            loss_sum += float(
                F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE, reduction="sum")
            )
            tokens += int((batch["labels"] != IGNORE).sum())
            for row_logits, i in zip(logits.cpu().numpy(), indices, strict=True):
                if chosen is not None and i not in chosen:
                    continue
                n = len(encoded[i].input_ids)
                predictions[i] = self.decode(row_logits[:n], encoded[i].offsets, rows[i].input, rows[i].category)
        return Predicted(predictions, loss_sum / max(1, tokens), None, time.perf_counter() - began)
