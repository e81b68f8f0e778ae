"""Data-parallel arithmetic without processes: which rows each rank trains on, how its loss is weighted, what
torchrun's environment means (the collectives run in tests/integration/test_trainer_distributed.py)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from sweetspot.contract import TrialConfig
from sweetspot_trainer.distributed import (
    DEFAULT_TIMEOUT_SECONDS,
    TIMEOUT_ENV,
    World,
    WorldError,
    check_batch_size,
    shard,
    share,
    step_seed,
    timeout,
    world_from_env,
)
from sweetspot_trainer.steps import BatchOrder, plan_steps


@pytest.mark.parametrize("size", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("count", [0, 1, 2, 5, 7, 8, 16, 33])
def test_shards_cover_every_row_once_in_rank_order_and_differ_by_at_most_one(count: int, size: int) -> None:
    shards = [shard(count, rank, size) for rank in range(size)]
    assert [i for part in shards for i in part] == list(range(count))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize(("size", "accumulation"), [(2, 1), (2, 3), (4, 2)])
def test_the_ranks_of_a_step_train_on_exactly_its_global_batch(size: int, accumulation: int) -> None:
    config = TrialConfig.model_validate(
        {
            "study": "s",
            "trial": 0,
            "stage": "full",
            "model": {"builtin": "tiny"},
            "train": {"builtin": "product-pages"},
            "hyperparameters": {"batchSize": 8, "gradientAccumulationSteps": accumulation, "epochs": 2},
        }
    )
    check_batch_size(8, World(size=size))
    order = BatchOrder(config.seed, config.hyperparameters)
    rows = list(range(53))  # an epoch that ends in a short step
    plan = plan_steps(len(rows), config)
    for step in range(plan.total):
        micro = [b for b in order.batches(rows, plan, step) if b]
        for batch in micro:
            parts = [[batch[i] for i in shard(len(batch), rank, size)] for rank in range(size)]
            assert [row for part in parts for row in part] == batch  # the global batch, each row once
            if len(batch) == 8:
                assert {len(part) for part in parts} == {8 // size}  # batch_size / world_size rows a rank
        within = step % plan.steps_per_epoch  # the epoch's last step takes the rows that are left
        assert sum(map(len, micro)) == min(8 * accumulation, len(rows) - within * 8 * accumulation)


@pytest.mark.parametrize("size", [2, 3, 5])
def test_the_shards_weighted_mean_losses_add_up_to_the_batch_mean(size: int) -> None:
    rng = random.Random(size)
    tokens = [rng.randint(1, 40) for _ in range(7)]  # rows of different lengths
    losses = [[rng.random() for _ in range(n)] for n in tokens]  # per-token losses
    whole = sum(map(sum, losses)) / sum(tokens)
    total = 0.0
    for rank in range(size):
        part = shard(len(tokens), rank, size)
        if part:
            mean = sum(sum(losses[i]) for i in part) / sum(tokens[i] for i in part)
            total += mean * share(tokens, part)
        else:
            assert share(tokens, part) == 0.0
    assert total == pytest.approx(whole, rel=1e-12)
    assert sum(share(tokens, shard(len(tokens), r, size)) for r in range(size)) == pytest.approx(1.0)


def test_a_batch_size_that_the_ranks_cannot_share_is_bad_input_naming_the_field() -> None:
    check_batch_size(7, World())
    check_batch_size(8, World(rank=1, size=4))
    with pytest.raises(WorldError, match=r"^hyperparameters\.batchSize 6 is not a multiple of the 4 "):
        check_batch_size(6, World(size=4))


def test_the_world_comes_from_torchruns_environment() -> None:
    alone = world_from_env({})
    assert alone == World() and not alone.distributed and alone.main
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}
    assert world_from_env(env) == World(rank=3, local_rank=1, size=4, local_size=2)
    assert world_from_env(env).distributed and not world_from_env(env).main
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        world_from_env({"WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="expected 0 <= RANK < WORLD_SIZE"):
        world_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_the_collective_timeout_is_bounded_and_can_be_set() -> None:
    assert timeout({}) == timedelta(seconds=DEFAULT_TIMEOUT_SECONDS)
    assert timeout({TIMEOUT_ENV: "30"}) == timedelta(seconds=30)
    with pytest.raises(ValueError, match=TIMEOUT_ENV):
        timeout({TIMEOUT_ENV: "0"})


def test_step_seeds_depend_on_seed_step_and_rank_only() -> None:
    seeds = {step_seed(7, step, rank) for step in range(50) for rank in range(4)}
    assert len(seeds) == 200  # every rank and step draws its own dropout masks
    assert step_seed(7, 12, 1) == step_seed(7, 12, 1)  # a resumed stage draws what one run would
    assert step_seed(7, 12, 1) != step_seed(8, 12, 1)
