"""What a stage reports it cost: the weights it trained and held, its peak memory, and each evaluation's time per
row. Two short stages of the built-in tiny tagger that differ only in LoRA rank, run as a pod runs them (the result
read back from the termination message); about 15 s on two cores."""

from __future__ import annotations

from typing import Any

import pytest
from transformers import AutoTokenizer

from sweetspot.contract import StageResult, TrialConfig
from sweetspot_trainer.extractive import ExtractiveTask
from sweetspot_trainer.model import minilm_dir
from sweetspot_trainer.prepare import prepare_data
from sweetspot_trainer.steps import BatchOrder, plan_steps

from support.trainer_runs import run_stage

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ATTRIBUTES = ["brand", "price"]
RANKS = (8, 16)
# The built-in tiny model is all-MiniLM-L6-v2: 6 layers, 384 wide. peft's LoRA for BERT wraps `query` and `value`
# (r x 384 in, 384 x r out); the new tagging head (384 weights and a bias per BIO label) is trained in full.
LAYERS, WIDTH = 6, 384
LABELS = 1 + 2 * len(ATTRIBUTES)


def expected_trainable(rank: int) -> int:
    return LAYERS * 2 * rank * (WIDTH + WIDTH) + (WIDTH + 1) * LABELS


def config(rank: int) -> dict[str, Any]:
    return {
        "study": "costs",
        "trial": rank,
        "stage": "full",
        "model": {"builtin": "tiny", "maxSequenceLength": 64},
        "train": {"builtin": "product-pages", "rows": 40},
        "validation": {"builtin": "product-pages", "rows": 16},
        "attributes": ATTRIBUTES,
        "zeroShot": True,
        "seed": 1,
        "hyperparameters": {"loraRank": rank, "loraAlpha": 2 * rank, "batchSize": 8, "maxSteps": 2},
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[int, StageResult]:
    by_rank = {}
    for rank in RANKS:
        workdir = tmp_path_factory.mktemp(f"rank-{rank}")
        done, result = run_stage(config(rank), workdir)
        assert done.returncode == 0 and result is not None, done.stderr[-3000:]
        by_rank[rank] = result
    return by_rank


def test_trainable_weights_are_the_lora_matrices_and_the_head(results: dict[int, StageResult]) -> None:
    for rank, result in results.items():
        assert result.trainable_parameters == expected_trainable(rank)
        assert 0 < result.trainable_parameters < result.total_parameters
    small, large = results[8], results[16]
    assert large.trainable_parameters > small.trainable_parameters
    # The rank changes the adapter only: the frozen weights are the same.
    frozen = {r.total_parameters - r.trainable_parameters for r in results.values()}
    assert len(frozen) == 1


def test_peak_memory_and_time_per_row_are_measured(results: dict[int, StageResult]) -> None:
    for result in results.values():
        # The model's weights alone are 90 MB: a KiB count taken for bytes (`ru_maxrss`) would fall far below this.
        assert result.peak_memory_bytes > 10 * 2**20
        steps = [e.step for e in result.evaluations]
        assert steps[0] == 0 and steps[-1] == result.step  # the zero-shot evaluation and the final one
        assert all(e.ms_per_row is not None and e.ms_per_row > 0 for e in result.evaluations)


def test_a_stage_reports_the_tokens_it_trained_and_their_rate(results: dict[int, StageResult]) -> None:
    """Every real token of every row of the stage's steps, padding excluded: the rows the trainer's own order
    gives each step, as the tagger encodes them."""
    trial = TrialConfig.model_validate(config(8))
    prepared = prepare_data(trial)
    task = ExtractiveTask(AutoTokenizer.from_pretrained(minilm_dir()), prepared.attributes, prepared.asked, 64)
    encoded = [task.encode(row) for row in prepared.train]
    plan, order = plan_steps(len(encoded), trial), BatchOrder(trial.seed, trial.hyperparameters)
    steps = [order.batches(encoded, plan, step) for step in range(plan.total)]
    trained = sum(task.length(e) for step in steps for batch in step for e in batch)
    padded = sum(len(batch) * max(task.length(e) for e in batch) for step in steps for batch in step)
    for result in results.values():
        assert result.train_tokens == trained
        assert result.tokens_per_second is not None and result.tokens_per_second > 0
        assert result.mfu is None  # CPUs: no peak to measure against
    assert trained < padded  # the count left the padding out
