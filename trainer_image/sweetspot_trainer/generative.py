"""The generative head (causal LMs): page in, JSON answer out.

The prompt names the row's applicable attributes (the keys of its gold output, in its category's order: only what
applies is asked) and carries the page; the answer is one JSON object with exactly those keys (null when the text
does not state a value) and the end-of-turn token. A model with a chat template (SmolLM2 and other instruct
models) gets the prompt as a system and a user turn and answers as the assistant; a model without one (the random
`tiny-causal`) gets the page followed by a plain instruction. Loss is on the answer tokens only.

Training batches are padded rows of similar length, or with `packed` (`spec.model.packing`) one padding-free
sequence: the rows end to end, positions restarting at each row, no attention mask. Transformers reads the restarts
as packed sequences and keeps attention inside each row (flash attention's variable-length kernel, or a
block-diagonal mask), so the loss is the padded batch's.

Prediction decodes greedily (`decoding.JsonDecoder`: rows batched by prompt length, the shared prompt prefix run
once, each row stopped when its JSON object closes or cannot start, and bounded by what its attributes can need) and
accepts a JSON object and nothing else: any other answer counts as wrong on every attribute it was asked, and the
share of valid answers is reported beside F1.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from sweetspot_trainer.data import Row
from sweetspot_trainer.decoding import JsonDecoder, TokenText
from sweetspot_trainer.task import Predicted

IGNORE = -100
INSTRUCTION = "\n\nExtract {names} as JSON.\nJSON: "
"""The plain prompt's instruction, after the page (models without a chat template)."""
SYSTEM = "Answer with one JSON object: each attribute's value as written in the text, or null when it is not there."
"""Short on purpose: every prompt token is paid for in every training step (and replaces a chat template's default
system prompt)."""
USER = "Attributes: {names}\nText: {page}"
PAGE = "\x00page\x00"
"""Where the page goes in the rendered chat template (split out so that a long page can be truncated in tokens)."""
MAX_NEW_TOKENS = 512
EXAMPLES = 2
ANSWER_HEADROOM = 1.25
"""Decoding may run this much longer than the longest training answer (values vary in length)."""


def answer_text(row: Row, attributes: Sequence[str]) -> str:
    return json.dumps({a: row.first_value(a) for a in attributes}, ensure_ascii=False)


def parse_answer(text: str, attributes: Sequence[str]) -> dict[str, str | None] | None:
    """The attribute values in a generated answer, or None when it is not a JSON object (and nothing else)."""
    try:
        parsed = json.loads(text.strip())
    except json.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    return {a: (None if parsed.get(a) is None else str(parsed[a])) for a in attributes}


def answer_loss(model: Any, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of the answer tokens, and how many there are.

    The vocabulary projection runs on the answer positions only: a causal LM's own loss projects every position
    (prompt and padding included), which for a 49k vocabulary and ~300-token prompts is a fifth of the compute and
    most of the memory of a step. Models whose decoder or output layer cannot be reached use their own logits."""
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    # A packed batch has positions and no mask; a padded one a mask (positions follow from it). No cache: training.
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch} | {"use_cache": False}
    # These probe the transformers/peft model, not the task: a peft wrapper has `get_base_model`, and whether a model
    # exposes its decoder and output layer depends on its architecture (without them its own logits are used).
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if decoder is None or head is None:
        logits = model(**inputs).logits[:, :-1]
        selected = logits[keep]
    else:
        hidden = decoder(**inputs).last_hidden_state
        selected = head(hidden[:, :-1][keep])
    total = F.cross_entropy(selected.float(), targets[keep], reduction="sum")
    return total, int(keep.sum())


@dataclass
class Encoded:
    prompt_ids: list[int]
    answer_ids: list[int]
    attributes: list[str]
    """What the prompt asks for (the answer's keys)."""
    value_tokens: dict[str, int]
    """Each stated value's length in answer tokens (what `fit_decoding` bounds decoding by)."""

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.answer_ids


class GenerativeTask:
    """A `task.Task`: a prompt per row, a JSON answer decoded greedily."""

    bucket_by_length = True
    """Batches of rows of similar length: prompts vary a lot, and padding costs a causal LM dearly."""
    costly_decoding = True
    """Decoding runs the model once per answer token: evaluations before the end decode a subsample."""
    labels: list[str] | None = None
    """No label set: the model answers in text."""

    def __init__(
        self, tokenizer: Any, asked: Mapping[str, Sequence[str]], max_length: int, packed: bool = False
    ) -> None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.asked = {c: list(names) for c, names in asked.items()}
        self.max_length = max_length
        self.packed = packed
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and not self.chat else []
        self.eos = tokenizer.eos_token_id
        self.max_new_tokens = 32
        self.longest_answer = 0
        self.longest_value: dict[str, int] = {}
        """The longest value of each attribute in the training answers, in tokens."""
        self._skeletons: dict[tuple[str, ...], int] = {}
        self._token_text = TokenText(tokenizer.decode)
        self.examples: list[str] = []
        """A few raw answers of the last prediction (the progress log shows them: what the model says)."""

    def attributes(self, row: Row) -> list[str]:
        """The row's applicable attributes that its category is asked for, in the category's order."""
        return [a for a in self.asked.get(row.category, list(row.output)) if a in row.output]

    def _tokens(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def _frame(self, names: str) -> tuple[list[int], list[int]]:
        """The prompt's tokens before and after the page."""
        if not self.chat:
            return self.bos, self._tokens(INSTRUCTION.format(names=names))
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": USER.format(names=names, page=PAGE)},
        ]
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        before, after = text.split(PAGE)
        return self._tokens(before), self._tokens(after)

    def encode(self, row: Row) -> Encoded:
        attributes = self.attributes(row)
        answer = [*self._tokens(answer_text(row, attributes)), self.eos]
        self.longest_answer = max(self.longest_answer, len(answer))
        before, after = self._frame(", ".join(attributes))
        room = self.max_length - len(answer) - len(before) - len(after)
        if room < 8:
            raise ValueError(f"maxSequenceLength {self.max_length} leaves no room for the page and the answer")
        page = self._tokens(row.input)[:room]  # keep the page's head
        values = {
            a: len(self._tokens(json.dumps(v, ensure_ascii=False))) for a in attributes if (v := row.first_value(a))
        }
        return Encoded(before + page + after, answer, attributes, values)

    def fit_decoding(self, training: Sequence[Encoded]) -> None:
        """Bound decoding by the training answers (with headroom): overall by the longest answer, and per attribute by
        its longest value. Validation answers are never looked at."""
        longest = max((len(e.answer_ids) for e in training), default=self.max_new_tokens)
        self.max_new_tokens = min(MAX_NEW_TOKENS, int(longest * ANSWER_HEADROOM) + 8)
        self.longest_value = {}
        for e in training:
            for attribute, n in e.value_tokens.items():
                self.longest_value[attribute] = max(n, self.longest_value.get(attribute, 0))

    def token_budget(self, encoded: Encoded) -> int:
        """New tokens a row may need: its answer with every value null, plus each attribute's longest training value
        (the longest of any attribute for one never seen), with headroom; at most `max_new_tokens`."""
        key = tuple(encoded.attributes)
        skeleton = self._skeletons.get(key)
        if skeleton is None:
            skeleton = self._skeletons[key] = len(self._tokens(json.dumps(dict.fromkeys(key))))
        fallback = max(self.longest_value.values(), default=self.max_new_tokens)
        values = sum(self.longest_value.get(a, fallback) for a in key)
        return min(self.max_new_tokens, skeleton + math.ceil(values * ANSWER_HEADROOM) + 8)

    def length(self, encoded: Encoded) -> int:
        return len(encoded.input_ids)

    def loss_tokens(self, encoded: Encoded) -> int:
        """The tokens `loss` averages over in a batch holding this row: its answer, less a first token that nothing
        precedes (an empty prompt; the loss predicts each token from the ones before it)."""
        return len(encoded.answer_ids) - (0 if encoded.prompt_ids else 1)

    def collate(self, batch: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """A training batch: packed into one row with `packed`, else padded."""
        return self._packed(batch) if self.packed else self._padded(batch)

    def _packed(self, batch: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """The rows end to end, positions restarting per row; a row's first token is never a target (it would be
        predicted from the row before it)."""
        ids: list[int] = []
        positions: list[int] = []
        labels: list[int] = []
        for e in batch:
            tokens = e.input_ids
            ids += tokens
            positions += range(len(tokens))
            first = 0 if e.prompt_ids else 1  # with no prompt, the answer's first token starts the row
            labels += [IGNORE] * (len(e.prompt_ids) + first) + e.answer_ids[first:]
        return {
            "input_ids": torch.tensor([ids]),
            "position_ids": torch.tensor([positions]),
            "labels": torch.tensor([labels]),
        }

    def _padded(self, batch: Sequence[Encoded]) -> dict[str, torch.Tensor]:
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

    def loss(self, model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total, tokens = answer_loss(model, batch)
        return total / max(1, tokens)

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
        """Parsed answers (empty when invalid), the mean answer-token loss over every row, the valid-JSON rate over
        the rows decoded (`decode`: their indices, all when None; an undecoded row's prediction is empty), and the
        seconds spent decoding them (the loss pass before it not counted)."""
        model.eval()
        predictions: list[dict[str, str | None]] = [{} for _ in rows]
        loss_sum, tokens = 0.0, 0
        by_length = sorted(range(len(rows)), key=lambda i: len(encoded[i].input_ids))
        for chunk in range(0, len(by_length), batch_size):
            indices = by_length[chunk : chunk + batch_size]
            batch = {k: v.to(device) for k, v in self._padded([encoded[i] for i in indices]).items()}
            total, counted = answer_loss(model, batch)
            loss_sum += float(total)
            tokens += counted
        began = time.perf_counter()  # the loss is on the host by now, and each answer is decoded there
        chosen = sorted(range(len(rows)) if decode is None else decode, key=lambda i: len(encoded[i].prompt_ids))
        decoder = JsonDecoder(model, device, self._token_text, self.eos, self.tokenizer.pad_token_id)
        answers = decoder.decode(
            [encoded[i].prompt_ids for i in chosen], [self.token_budget(encoded[i]) for i in chosen], batch_size
        )
        valid = 0
        self.examples = []
        for i, answer in zip(chosen, answers, strict=True):
            text = self.tokenizer.decode(answer, skip_special_tokens=True)
            if len(self.examples) < EXAMPLES:
                self.examples.append(text)
            parsed = parse_answer(text, encoded[i].attributes)
            if parsed is not None:
                valid += 1
                predictions[i] = parsed
        seconds = time.perf_counter() - began
        return Predicted(predictions, loss_sum / max(1, tokens), valid / max(1, len(chosen)), seconds)
