"""The optimizer steps of a stage, where it is evaluated, and the rows each step trains on.

Stages share one plan of optimizer steps (`plan_steps`), so `early` stops at exactly the step `final` resumes from.
The data order of epoch e depends only on (seed, e) (`BatchOrder`), so early + final trains the same steps as one
`full` run. Pure arithmetic on the config: no model, no device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from sweetspot.contract import Hyperparameters, TrialConfig

BUCKET_STEPS = 50
"""Length bucketing sorts rows by length within windows of this many steps (generative task)."""

T = TypeVar("T")


@dataclass(frozen=True)
class StepPlan:
    steps_per_epoch: int
    total: int
    early: int

    def stop_step(self, stage: str) -> int:
        return self.early if stage == "early" else self.total


def plan_steps(rows: int, config: TrialConfig) -> StepPlan:
    hp = config.hyperparameters
    per_step = hp.batch_size * hp.gradient_accumulation_steps
    steps_per_epoch = max(1, math.ceil(rows / per_step))
    total = hp.max_steps or steps_per_epoch * hp.epochs
    early = min(total, max(1, round(total * config.early_fraction)))
    return StepPlan(steps_per_epoch, total, early)


def evaluation_steps(config: TrialConfig, plan: StepPlan) -> list[int]:
    """The steps after which the stage scores the model (0: before any training)."""
    stage = config.stage
    zero = [0] if config.zero_shot and stage != "final" else []
    if stage == "early":  # and the points of its own curve asked for inside it (final-score prediction)
        inside = {max(1, round(f * plan.total)) for f in config.evaluate_at if f < config.early_fraction}
        return [*zero, *sorted(inside - {plan.early}), plan.early]
    if stage == "final":
        return [plan.total]
    fractions = {config.early_fraction, 1.0, *config.evaluate_at}
    return zero + sorted({min(plan.total, max(1, round(f * plan.total))) for f in fractions})


class BatchOrder:
    """The micro-batches of each optimizer step: every epoch's rows in a seeded order, and with `lengths` (per row,
    its length in tokens) rows of similar length in the same step."""

    def __init__(self, seed: int, hyperparameters: Hyperparameters, lengths: Sequence[int] | None = None) -> None:
        self.seed = seed
        self.hyperparameters = hyperparameters
        self.lengths = lengths
        self._order: tuple[tuple[int, int, int], np.ndarray] | None = None
        """The current epoch's row order, by what it was computed from (see `_epoch_order`)."""

    def batches(self, encoded: Sequence[T], plan: StepPlan, step: int) -> list[list[T]]:
        """The micro-batches of optimizer step `step` (0-based), from the seeded order of its epoch."""
        hp = self.hyperparameters
        epoch, within = divmod(step, plan.steps_per_epoch)
        per_step = hp.batch_size * hp.gradient_accumulation_steps
        chosen = self._epoch_order(len(encoded), per_step, epoch)[within * per_step : (within + 1) * per_step]
        return [[encoded[i] for i in chosen[k : k + hp.batch_size]] for k in range(0, len(chosen), hp.batch_size)]

    def _epoch_order(self, rows: int, per_step: int, epoch: int) -> np.ndarray:
        """The seeded order of `epoch`'s rows, computed once per epoch rather than once per step: bucketing sorts
        the whole epoch, 48 ms a step in Python at 100,000 rows (a GPU step of a small model takes less)."""
        key = (rows, per_step, epoch)
        if self._order is None or self._order[0] != key:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(rows)
            if self.lengths is not None:
                order = self._bucketed(order, per_step, rng, self.lengths)
            self._order = (key, order)
        return self._order[1]

    @staticmethod
    def _bucketed(order: np.ndarray, per_step: int, rng: np.random.Generator, lengths: Sequence[int]) -> np.ndarray:
        """The epoch's order with rows of similar length in the same step: within each window of `BUCKET_STEPS`
        steps the rows are sorted by length, cut into steps, and the steps shuffled (seeded, so early + final
        still trains the steps of one full run)."""
        result: list[int] = []
        window = per_step * BUCKET_STEPS
        for start in range(0, len(order), window):
            rows = sorted(order[start : start + window].tolist(), key=lambda i: lengths[i])
            steps = [rows[k : k + per_step] for k in range(0, len(rows), per_step)]
            # Only the epoch's last window can end in a short step: it stays last, where the plan has it.
            short = steps.pop() if len(steps[-1]) < per_step else []
            for index in rng.permutation(len(steps)):
                result.extend(steps[index])
            result.extend(short)
        return np.asarray(result, dtype=np.int64)
