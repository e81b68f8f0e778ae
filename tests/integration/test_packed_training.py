"""Padding-free packed training (`spec.model.packing`) for the generative task: a step's rows end to end in one
sequence, positions restarting per row, no attention mask. Transformers reads the restarts and keeps attention
inside each row, so a packed batch must have exactly the padded batch's loss and gradients, and a whole stage must
train the same model either way. On the built-in random `tiny-causal` (2 layers: seconds on a CPU)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sweetspot_trainer.data import builtin_rows
from sweetspot_trainer.generative import IGNORE, GenerativeTask
from sweetspot_trainer.model import tiny_causal_dir

from support.trainer_runs import run_stage

ASKED = {"": ["name", "brand", "price", "color", "rating"]}


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    folder = tiny_causal_dir()
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), AutoTokenizer.from_pretrained(folder)


def _tasks(tokenizer: Any) -> tuple[GenerativeTask, GenerativeTask, list[Any]]:
    padded = GenerativeTask(tokenizer, ASKED, 160)
    packed = GenerativeTask(tokenizer, ASKED, 160, packed=True)
    return padded, packed, [padded.encode(row) for row in builtin_rows("product-pages", 6, 3)]


def test_a_packed_batch_lays_rows_end_to_end_with_positions_restarting(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    _, packed, rows = _tasks(tokenizer)
    batch = packed.collate(rows)
    assert set(batch) == {"input_ids", "position_ids", "labels"}  # no mask: no padding at all
    assert batch["input_ids"].shape == (1, sum(len(e.input_ids) for e in rows))
    assert batch["input_ids"][0].tolist() == [t for e in rows for t in e.input_ids]
    restarts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert restarts == [sum(len(e.input_ids) for e in rows[:i]) for i in range(len(rows))]
    # Targets: each row's answer tokens, nothing else; the loss averages over as many as the padded batch's.
    labels = batch["labels"][0]
    assert [t for t in labels.tolist() if t != IGNORE] == [t for e in rows for t in e.answer_ids]
    assert int((labels[1:] != IGNORE).sum()) == sum(packed.loss_tokens(e) for e in rows)


def test_a_packed_batch_has_the_padded_batch_loss_and_gradients(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    padded, packed, rows = _tasks(tokenizer)
    losses, gradients = [], []
    for task in (padded, packed):
        model.zero_grad()
        loss = task.loss(model, task.collate(rows))
        loss.backward()
        losses.append(float(loss.detach()))
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert torch.allclose(gradients[1], gradients[0], rtol=1e-4, atol=1e-6)


def test_a_packed_stage_trains_the_model_a_padded_one_trains(tmp_path: Any) -> None:
    def stage(packing: bool) -> Any:
        config = {
            "study": "packing",
            "trial": 0,
            "stage": "full",
            "model": {"builtin": "tiny-causal", "maxSequenceLength": 160, "packing": packing},
            "train": {"builtin": "product-pages", "rows": 24},
            "validation": {"builtin": "product-pages", "rows": 8},
            "seed": 2,
            "hyperparameters": {"batchSize": 8, "maxSteps": 3, "learningRate": 5e-3, "loraDropout": 0.0},
        }
        workdir = tmp_path / ("packed" if packing else "padded")
        workdir.mkdir()
        done, result = run_stage(config, workdir)
        assert done.returncode == 0 and result is not None, done.stderr[-3000:]
        return result

    padded, packed = stage(False), stage(True)
    assert packed.train_tokens == padded.train_tokens > 0
    assert packed.train_loss == pytest.approx(padded.train_loss, rel=1e-3)
    assert packed.evaluations[-1].loss == pytest.approx(padded.evaluations[-1].loss, rel=1e-3)
