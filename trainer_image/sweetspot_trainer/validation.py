"""Judging the model on the validation rows during a stage: predict (each rank its shard under torchrun), score
(`evaluate`), report one `Evaluation` and a progress line.

A model whose decoding is dear (`Task.costly_decoding`: a causal LM) decodes a fixed seeded subsample of the rows at
evaluations before the end of training, and every row at the end; its loss is always over every row.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from sweetspot.contract import Evaluation, TrialConfig
from sweetspot_trainer import distributed
from sweetspot_trainer.data import Row
from sweetspot_trainer.distributed import World
from sweetspot_trainer.evaluate import Scores, score
from sweetspot_trainer.steps import StepPlan
from sweetspot_trainer.task import Predicted, Task

EVAL_BATCH_SIZE = 32

Progress = Callable[[str], None]
"""Where a stage's progress lines go (print, or nothing on ranks other than 0)."""


@dataclass
class TrainingClock:
    """Seconds spent in optimizer steps so far, evaluations excluded: the compute behind each evaluation."""

    training: float = 0.0


def early_subsample(config: TrialConfig, task: Task[Any], rows: int) -> list[int] | None:
    """The validation rows a model with costly decoding decodes before the end of training: a fixed seeded subset
    when there are more than `early_decode_rows`, else all (None)."""
    limit = config.early_decode_rows
    if not task.costly_decoding or rows <= limit:
        return None
    return sorted(random.Random(f"early-decode:{config.seed}").sample(range(rows), limit))


class _Shard(NamedTuple):
    """What one rank's evaluation of its shard of the validation rows sends the others."""

    predictions: list[Any]
    loss_sum: float
    tokens: int
    valid: int
    """Decoded answers that parsed (generative task)."""
    decoded: int
    checksum: float
    """Of the rank's trainable weights (`distributed.checksum`)."""
    seconds: float
    """Spent scoring the shard (`Predicted.seconds`)."""


@dataclass
class Validator:
    """Evaluates `model` on the validation `rows` (encoded by `task`) after a given step of `plan`."""

    config: TrialConfig
    task: Task[Any]
    model: Any
    rows: Sequence[Row]
    encoded: Sequence[Any]
    plan: StepPlan
    world: World
    device: torch.device
    clock: TrainingClock
    progress: Progress
    subsample: list[int] | None
    """The rows decoded before the end of training (None: all; `early_subsample`)."""

    def evaluate(self, step: int) -> Evaluation:
        """Score the model after `step` optimizer steps, log it, and leave the model in training mode."""
        subsample = self.subsample if step < self.plan.total else None
        predicted = self._predict(subsample, step)
        scored = range(len(self.rows)) if subsample is None else subsample
        scores = score(
            [predicted.predictions[i] for i in scored],
            [self.rows[i].output for i in scored],
            [self.rows[i].category for i in scored],
            self.config.attributes,
        )
        self.model.train()
        evaluation = self._evaluation(step, scores, predicted, len(scored), subsample is not None)
        self._report(evaluation, predicted.json_rate)
        return evaluation

    def _predict(self, subsample: list[int] | None, step: int) -> Predicted:
        if self.world.distributed:
            return self._predict_sharded(subsample, step)
        return self.task.predict(self.model, self.rows, self.encoded, self.device, EVAL_BATCH_SIZE, decode=subsample)

    def _evaluation(self, step: int, scores: Scores, predicted: Predicted, rows: int, subsampled: bool) -> Evaluation:
        by_attribute, json_rate = scores.attribute_counts, predicted.json_rate
        return Evaluation(
            step=step,
            fraction=round(step / self.plan.total, 4),
            f1=round(scores.f1, 4),
            precision=round(scores.precision, 4),
            recall=round(scores.recall, 4),
            macro_f1=round(scores.macro_f1, 4),
            accuracy=round(scores.accuracy, 4),
            token_f1=round(scores.token_f1, 4),
            loss=round(predicted.loss, 5),
            pairs=scores.counts.pairs,
            rows=rows,
            subsampled=subsampled,
            attribute_f1={a: round(c.f1, 4) for a, c in by_attribute.items()},
            attribute_support={a: c.values for a, c in by_attribute.items()},
            attribute_accuracy={a: round(c.accuracy, 4) for a, c in by_attribute.items()},
            category_f1=(
                {k: round(c.f1, 4) for k, c in scores.category_counts.items()}
                if len(scores.category_counts) > 1
                else {}
            ),
            json_valid_rate=None if json_rate is None else round(json_rate, 4),
            train_seconds=round(self.clock.training, 3),
            ms_per_row=round(1000 * predicted.seconds / max(1, rows), 3),
        )

    def _report(self, evaluation: Evaluation, json_rate: float | None) -> None:
        config = self.config
        label = f"[{config.study} t{config.trial} {config.stage}]"
        self.progress(
            f"{label} eval at step {evaluation.step}/{self.plan.total}: "
            f"F1 {evaluation.f1:.4f} (P {evaluation.precision:.3f} R {evaluation.recall:.3f}) "
            f"accuracy {evaluation.accuracy:.4f} loss {evaluation.loss:.4f}"
            + (f" on {evaluation.rows} of {len(self.rows)} rows" if evaluation.subsampled else "")
            + (f" valid-JSON {json_rate:.2f}" if json_rate is not None else "")
        )
        for example in self.task.examples:  # what a generative model actually says
            self.progress(f"{label}   answer: {example[:300]!r}")

    def _predict_sharded(self, subsample: list[int] | None, step: int) -> Predicted:
        """`task.predict` on every row, from each rank predicting its shard: the predictions in row order, the mean
        loss over all loss tokens and the valid-JSON rate over all decoded rows, as one process computes them. Its
        seconds are the ranks' added up: over all rows scored, one model's time per row, whatever the ranks."""
        world, task = self.world, self.task
        mine = distributed.shard(len(self.rows), world.rank, world.size)
        chosen = None if subsample is None else set(subsample)
        decode = None if chosen is None else [k for k, i in enumerate(mine) if i in chosen]
        own = [self.encoded[i] for i in mine]
        predictions, loss, rate, seconds = task.predict(
            self.model, [self.rows[i] for i in mine], own, self.device, EVAL_BATCH_SIZE, decode=decode
        )
        tokens = sum(task.loss_tokens(e) for e in own)
        decoded = len(mine) if decode is None else len(decode)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        parts: list[_Shard] = distributed.gather(
            _Shard(
                predictions,
                loss * tokens,
                tokens,
                0 if rate is None else round(rate * decoded),
                decoded,
                distributed.checksum(trainable),
                seconds,
            )
        )
        if not distributed.same_weights([part.checksum for part in parts]):
            raise RuntimeError(
                f"the data-parallel ranks hold different weights at step {step} (checksums "
                f"{[part.checksum for part in parts]}): their gradients were not summed alike"
            )
        every = [prediction for part in parts for prediction in part.predictions]  # contiguous shards, rank order
        mean_loss = sum(part.loss_sum for part in parts) / max(1, sum(part.tokens for part in parts))
        json_rate = None if rate is None else sum(p.valid for p in parts) / max(1, sum(p.decoded for p in parts))
        return Predicted(every, mean_loss, json_rate, sum(part.seconds for part in parts))
