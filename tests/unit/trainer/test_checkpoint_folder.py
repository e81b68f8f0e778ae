"""The checkpoint folder of a stage: atomic writes, the newest complete checkpoint wins, a half-written one is never
read, pruning keeps the newest and the early one, and runs of other configurations sharing the folder are left
alone. A linear layer stands in for the LoRA weights (the real trainer: tests/integration/test_trainer_preemption.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from sweetspot.contract import DataRef, ModelRef, TrialConfig
from sweetspot_trainer.checkpoints import Checkpoints, Schedule
from sweetspot_trainer.steps import StepPlan

from support.builders import evaluation

PLAN = StepPlan(steps_per_epoch=10, total=30, early=6)


def stage(folder: Path, name: str, seed: int = 0) -> Checkpoints:
    config = TrialConfig(
        study="s",
        trial=0,
        stage=name,  # type: ignore[arg-type]
        model=ModelRef(builtin="tiny"),
        train=DataRef(builtin="product-pages"),
        seed=seed,
        checkpoint_dir=str(folder),
    )
    return Checkpoints(config, PLAN, "hash", torch.device("cpu"))


def trained(value: float) -> tuple[torch.nn.Linear, torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.fill_(value)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1)
    layer(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return layer, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def test_the_newest_complete_checkpoint_wins_and_a_partial_one_is_never_read(tmp_path: Path) -> None:
    final = stage(tmp_path, "final")
    for step in (8, 12):
        layer, optimizer, scheduler = trained(float(step))
        final.save(layer, optimizer, scheduler, step, [evaluation(score=0.5, step=step)], [0.5] * step, step / 10)
    # A write cut off by SIGKILL: a later step, never renamed into place.
    (tmp_path / (final.path(14).name + ".partial")).write_bytes(b"\x80half a pickle")
    assert final.steps() == [12]  # 8 pruned; the partial is not a checkpoint

    layer, optimizer, scheduler = trained(0.0)
    start = stage(tmp_path, "final").resume(layer, optimizer, scheduler)
    assert (start.step, start.resumed_from_step, start.trained_seconds) == (12, 12, 1.2)
    assert torch.all(layer.weight < 12) and torch.all(layer.weight > 11)  # the weights of step 12 (after one step)
    assert [e.step for e in start.evaluations] == [12] and start.losses == [0.5] * 12
    assert start.redone_seconds == 0.0  # the heartbeat was written with the checkpoint


def test_pruning_keeps_the_early_checkpoint_and_other_configurations(tmp_path: Path) -> None:
    early, final, other = stage(tmp_path, "early"), stage(tmp_path, "final"), stage(tmp_path, "final", seed=1)
    layer, optimizer, scheduler = trained(1.0)
    other.save(layer, optimizer, scheduler, 9, [], [], 1.0)
    for step in (3, PLAN.early):
        early.save(layer, optimizer, scheduler, step, [], [], 0.1)
    for step in (10, 20):
        final.save(layer, optimizer, scheduler, step, [], [], 0.1)
    assert early.steps() == final.steps() == [PLAN.early, 20]
    assert other.steps() == [9]  # another seed's run in the same folder: not this run's to prune


def test_a_final_without_its_own_checkpoint_continues_the_early_one_and_counts_what_was_lost(tmp_path: Path) -> None:
    layer, optimizer, scheduler = trained(1.0)
    early = stage(tmp_path, "early")
    early.save(layer, optimizer, scheduler, PLAN.early, [evaluation(score=0.5, step=6)], [0.1] * 6, 2.0)
    start = stage(tmp_path, "final").resume(*trained(0.0))
    assert (start.step, start.resumed, start.resumed_from_step) == (PLAN.early, True, None)  # a first run
    assert start.evaluations == [] and start.losses == []  # the early stage's are not the final's

    stage(tmp_path, "final").heartbeat(17, 5.5, force=True)  # a final that trained to step 17, then died
    start = stage(tmp_path, "final").resume(*trained(0.0))
    assert (start.step, start.resumed_from_step, start.redone_seconds) == (PLAN.early, PLAN.early, 5.5)
    assert start.note.endswith("after a disruption (no checkpoint of its own)")


def test_an_early_stage_never_continues_a_later_checkpoint(tmp_path: Path) -> None:
    layer, optimizer, scheduler = trained(1.0)
    stage(tmp_path, "final").save(layer, optimizer, scheduler, 20, [], [], 1.0)
    start = stage(tmp_path, "early").resume(*trained(0.0))
    assert (start.step, start.resumed, start.resumed_from_step) == (0, False, None)


def test_the_schedule_by_steps_and_by_time() -> None:
    by_steps = Schedule(every_steps=5, every_seconds=None)
    assert [s for s in range(1, 16) if by_steps.due(s)] == [5, 10, 15]
    by_time = Schedule(every_steps=None, every_seconds=3600)
    assert not by_time.due(1)
    by_time.last -= 3600
    assert by_time.due(2)
    by_time.saved()
    assert not by_time.due(3)
    assert not Schedule(None, None).due(100)  # neither: only the early and the stop checkpoints
