"""The order rows are trained in: seeded per epoch, and for the generative task bucketed by length (no model)."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from sweetspot.contract import TrialConfig
from sweetspot_trainer.steps import BUCKET_STEPS, BatchOrder, evaluation_steps, plan_steps


class Stage(NamedTuple):
    config: TrialConfig
    order: BatchOrder


def runner(rows: int, batch: int = 4, epochs: int = 2, bucket: bool = False) -> tuple[Stage, list[int]]:
    config = TrialConfig.model_validate(
        {
            "study": "s",
            "trial": 0,
            "stage": "full",
            "model": {"builtin": "tiny-causal"},
            "train": {"builtin": "product-pages"},
            "samples": rows,
            "hyperparameters": {"batchSize": batch, "epochs": epochs},
        }
    )
    lengths = [(i * 37) % 101 + 10 for i in range(rows)]  # varied, repeatable lengths
    return Stage(config, BatchOrder(config.seed, config.hyperparameters, lengths if bucket else None)), lengths


def steps_of(stage: Stage, encoded: list[int], epoch: int) -> list[list[int]]:
    plan = plan_steps(len(encoded), stage.config)
    return [
        [i for batch in stage.order.batches(encoded, plan, epoch * plan.steps_per_epoch + s) for i in batch]
        for s in range(plan.steps_per_epoch)
    ]


def spread(steps: list[list[int]], lengths: list[int]) -> int:
    """Padding a step pays: its longest row minus its shortest, summed over the steps."""
    return sum(max(lengths[i] for i in s) - min(lengths[i] for i in s) for s in steps)


@pytest.mark.parametrize("rows", [9, 64, 4 * BUCKET_STEPS * 2 + 3])
def test_bucketed_epochs_cover_every_row_once_in_steps_of_similar_length(rows: int) -> None:
    stage, lengths = runner(rows, bucket=True)
    plain, _ = runner(rows)
    encoded = list(range(rows))
    for epoch in range(2):
        steps, plain_steps = steps_of(stage, encoded, epoch), steps_of(plain, encoded, epoch)
        assert sorted(i for step in steps for i in step) == encoded  # every row once per epoch
        assert [len(s) for s in steps] == [len(s) for s in plain_steps]  # a short last step stays last
        assert spread(steps, lengths) < spread(plain_steps, lengths) / (2 if rows >= 64 else 1)
    # Seeded: the same config gives the same order (early + final train the steps of one full run).
    again, _ = runner(rows, bucket=True)
    assert steps_of(stage, encoded, 1) == steps_of(again, encoded, 1)


def test_an_early_stage_evaluates_on_its_way_where_asked_and_a_final_only_at_the_end() -> None:
    """`evaluateAt` below the early fraction: the early stage's own curve (final-score prediction)."""
    base = {"study": "s", "trial": 0, "model": {"builtin": "tiny"}, "train": {"builtin": "product-pages"}}
    base |= {"hyperparameters": {"maxSteps": 100}, "earlyFraction": 0.3, "evaluateAt": [0.1, 0.2, 0.6]}
    early = TrialConfig.model_validate(base | {"stage": "early"})
    plan = plan_steps(300, early)
    assert evaluation_steps(early, plan) == [10, 20, 30]  # 0.6 lies past the early stage
    assert evaluation_steps(TrialConfig.model_validate(base | {"stage": "final"}), plan) == [100]
