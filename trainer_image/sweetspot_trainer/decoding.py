"""Greedy decoding of JSON answers at the hardware's pace.

`model.generate` on a batch pays for every row until the slowest one ends, recomputes the prompt prefix every row
shares (chat template, system prompt) once per row, and runs every row to a bound set for the longest answer. This
loop does the same greedy decoding with three savings:

- the prefix all prompts share is run through the model once, and so is what a batch's rows share beyond it (the
  same attributes asked); each batch starts from a copy of that cache;
- a row stops as soon as its answer is settled: at the end-of-turn token, when its JSON object closes (anything
  after it cannot be part of the answer), or at its first character when that cannot start an object (the answer
  is invalid whatever follows); a stopped row leaves the batch, and its cache with it;
- each row has its own bound on new tokens (what its attributes can need, `GenerativeTask.token_budget`).

The tokens a row gets are the tokens greedy `model.generate` gives it, cut where this loop stops (up to float
rounding: a row's batch mates, and so its padding, differ); `python -m benchmarks decode` measures both the speed
and that agreement.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

WHITESPACE = " \t\r\n"


@dataclass
class JsonScan:
    """Where one answer stands, fed the text of each new token: still open, or settled (closed or hopeless)."""

    started: bool = False
    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    settled: bool = False

    def feed(self, text: str) -> bool:
        """Reads `text`; True once the answer is settled (nothing after this point can change whether it parses)."""
        for char in text:
            if self.settled:
                break
            if not self.started:
                if char in WHITESPACE:
                    continue
                self.started, self.settled = char == "{", char != "{"
                self.depth = 1
            elif self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth -= 1
                self.settled = self.depth == 0
        return self.settled


@dataclass
class TokenText:
    """Each token id's text, decoded once (the scan reads every new token of every row)."""

    decode: Callable[[list[int]], str]
    known: dict[int, str] = field(default_factory=dict)

    def __call__(self, token: int) -> str:
        text = self.known.get(token)
        if text is None:
            text = self.known[token] = self.decode([token])
        return text


def common_prefix(prompts: Sequence[Sequence[int]], known: int = 0) -> int:
    """How many leading tokens every prompt shares (at least one token of each prompt is left to run per row), given
    that they share the first `known`."""
    if not prompts:
        return 0
    first, shortest = prompts[0], min(len(p) for p in prompts)
    n = known
    while n < shortest - 1 and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


class JsonDecoder:
    """Greedy decoding of a set of prompts in batches, sharing their common prefix's cache."""

    def __init__(self, model: Any, device: torch.device, token_text: TokenText, eos: int, pad: int) -> None:
        self.model, self.device, self.text, self.eos, self.pad = model, device, token_text, eos, pad

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache) -> Any:
        return self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]

    @torch.no_grad()
    def decode(self, prompts: Sequence[Sequence[int]], budgets: Sequence[int], batch_size: int) -> list[list[int]]:
        """Each prompt's new tokens (at most its budget), in the prompts' order; `batch_size` rows decode together
        (rows of similar length: the caller sorts)."""
        if not prompts:
            return []
        shared = common_prefix(prompts)
        prefix = self._extend(DynamicCache(), prompts[0], 0, shared)
        out: list[list[int]] = [[] for _ in prompts]
        for start in range(0, len(prompts), batch_size):
            rows = list(range(start, min(start + batch_size, len(prompts))))
            more = common_prefix([prompts[i] for i in rows], shared)
            cache = self._extend(copy.deepcopy(prefix), prompts[rows[0]], shared, more)
            self._batch(rows, prompts, budgets, more, cache, out)
        return out

    def _extend(self, cache: DynamicCache, prompt: Sequence[int], start: int, end: int) -> DynamicCache:
        """`cache` (one row, `start` tokens of `prompt`) run on to `end` tokens."""
        if end > start:
            ids = torch.tensor([list(prompt[start:end])])
            self._forward(ids, torch.ones((1, end), dtype=torch.long), torch.arange(start, end)[None], cache)
        return cache

    def _batch(
        self,
        rows: list[int],
        prompts: Sequence[Sequence[int]],
        budgets: Sequence[int],
        shared: int,
        cache: DynamicCache,
        out: list[list[int]],
    ) -> None:
        """Decodes `rows` on from `cache`, which holds their first `shared` tokens (one row, repeated here)."""
        # [shared prefix (cached)][left padding][the row's own tokens]: positions count real tokens only, so each
        # row sees the positions it would alone.
        width = max(len(prompts[i]) - shared for i in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for r, i in enumerate(rows):
            own = prompts[i][shared:]
            ids[r, width - len(own) :] = torch.tensor(own)
            mask[r, shared + width - len(own) :] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        cache.batch_repeat_interleave(len(rows))
        logits = self._forward(ids, mask, positions[:, shared:], cache)
        scans = [JsonScan() for _ in rows]
        live = list(range(len(rows)))
        next_position = positions[:, -1] + 1
        while live:
            tokens = logits.argmax(-1).tolist()
            keep: list[int] = []
            for slot, token in enumerate(tokens):
                r = live[slot]
                i = rows[r]
                if token == self.eos:
                    continue
                out[i].append(token)
                if not scans[r].feed(self.text(token)) and len(out[i]) < budgets[i]:
                    keep.append(slot)
            if not keep:
                return
            if len(keep) < len(live):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, next_position = mask[keep], next_position[keep]
                tokens = [tokens[s] for s in keep]
                live = [live[s] for s in keep]
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=torch.long)], dim=1)
            step = torch.tensor(tokens)[:, None]
            logits = self._forward(step, mask, next_position[:, None], cache)
            next_position = next_position + 1
