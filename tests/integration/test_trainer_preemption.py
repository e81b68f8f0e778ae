"""A stage stopped while it trains resumes where it stopped, and scores as if it never stopped.

The real trainer on `builtin: tiny`, as a pod runs it: SIGTERM (an eviction, a preemption, a node drain; local mode's
Ctrl-C) and SIGKILL (a lost node) in the early and in the final stage. The reruns' scores are compared with one
uninterrupted early + final run of the same config; on one process on the CPU a continuation is the same run, so
they are equal to the last digit. About two minutes on two cores.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from sweetspot.contract import EXIT_INTERRUPTED, StageResult

from support.trainer_runs import (
    CLOCKED,
    checkpoint_steps,
    heartbeat,
    run_stage,
    start_stage,
    tiny_config,
    wait_for_step,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EARLY, TOTAL = 20, 50
"""200 rows in steps of 8, two epochs: 50 steps, the early stage the first 20."""


def config(workdir: Path, stage: str, **extra: Any) -> dict[str, Any]:
    return tiny_config(workdir, stage) | {"samples": 200} | extra


def stable(result: StageResult) -> list[dict[str, Any]]:
    """A result's evaluations without their clock."""
    return [e.model_dump(exclude=set(CLOCKED)) for e in result.evaluations]


def succeeded(done: Any, result: StageResult | None) -> StageResult:
    assert done.returncode == 0, done.stderr[-3000:]
    assert result is not None and result.status == "ok"
    return result


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[StageResult, StageResult]:
    """Early and final of the same config, uninterrupted."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    early = succeeded(*run_stage(config(workdir, "early"), workdir))
    final = succeeded(*run_stage(config(workdir, "final"), workdir))
    assert (early.step, final.step, final.planned_steps) == (EARLY, TOTAL, TOTAL)
    assert early.resumed_from_step is None and final.resumed_from_step is None and final.lost_seconds == 0
    return early, final


def stop(workdir: Path, stage: str, at: int, signum: signal.Signals, **extra: Any) -> tuple[int, int]:
    """Start `stage`, stop it with `signum` once it has trained `at` steps: its exit code and the last step its
    heartbeat reported."""
    process = start_stage(config(workdir, stage, **extra), workdir)
    wait_for_step(process, workdir / "checkpoint", stage, at)
    process.send_signal(signum)
    code = process.wait(timeout=120)
    return code, int(heartbeat(workdir / "checkpoint")["step"])


def test_sigterm_in_the_early_stage_checkpoints_that_step_and_the_rerun_continues_it(
    tmp_path: Path, reference: tuple[StageResult, StageResult]
) -> None:
    code, reached = stop(tmp_path, "early", 6, signal.SIGTERM)
    assert code == EXIT_INTERRUPTED
    assert not (tmp_path / "termination-log-early").exists()  # a stop is no result
    stopped = checkpoint_steps(tmp_path / "checkpoint")
    assert len(stopped) == 1 and 6 <= stopped[0] < EARLY and stopped[0] == reached  # no periodic checkpoint asked
    log = (tmp_path / "log-early.txt").read_text()
    assert f"stopped after step {stopped[0]}: checkpoint written in" in log
    assert f"stopped by SIGTERM after step {stopped[0]} (checkpoint written)" in log

    early = succeeded(*run_stage(config(tmp_path, "early"), tmp_path))
    assert early.resumed and early.resumed_from_step == stopped[0]
    assert early.message == f"resumed from its own checkpoint at step {stopped[0]} after a disruption"
    assert early.lost_seconds > 0  # the restart; nothing trained after the checkpoint is lost
    final = succeeded(*run_stage(config(tmp_path, "final"), tmp_path))
    assert final.resumed and final.resumed_from_step is None  # the final's own start: the early checkpoint

    uninterrupted_early, uninterrupted_final = reference
    assert stable(early) == stable(uninterrupted_early)
    assert stable(final) == stable(uninterrupted_final)
    assert early.train_loss == uninterrupted_early.train_loss  # the losses before the stop came back with it


def test_sigkill_in_the_final_stage_loses_at_most_one_interval(
    tmp_path: Path, reference: tuple[StageResult, StageResult]
) -> None:
    every = 5
    succeeded(*run_stage(config(tmp_path, "early", checkpointEverySteps=every), tmp_path))
    assert checkpoint_steps(tmp_path / "checkpoint") == [EARLY]  # the periodic ones pruned by the early one

    code, reached = stop(tmp_path, "final", 33, signal.SIGKILL, checkpointEverySteps=every)
    assert code == -signal.SIGKILL
    kept = checkpoint_steps(tmp_path / "checkpoint")
    # Older ones pruned: the early one and the newest (one more when the kill fell between a write and its pruning).
    assert kept[0] == EARLY and 2 <= len(kept) <= 3 and all(step % every == 0 for step in kept[1:])
    newest = kept[-1]
    assert reached - every <= newest <= reached

    done, final = run_stage(config(tmp_path, "final", checkpointEverySteps=every), tmp_path)
    final = succeeded(done, final)
    assert final.resumed_from_step == newest
    redone = re.search(
        rf"resumed from step {newest} after a disruption \(([0-9.]+)s of training to do again\)", done.stdout
    )
    assert redone, done.stdout[-2000:]
    # At most the steps after the checkpoint (one interval) were trained twice; the restart comes on top.
    assert float(redone[1]) <= every * final.step_seconds
    assert final.lost_seconds >= float(redone[1])
    assert stable(final) == stable(reference[1])


def test_sigkill_in_the_early_stage_resumes_its_newest_periodic_checkpoint(
    tmp_path: Path, reference: tuple[StageResult, StageResult]
) -> None:
    every = 4
    code, reached = stop(tmp_path, "early", 10, signal.SIGKILL, checkpointEverySteps=every)
    assert code == -signal.SIGKILL
    kept = checkpoint_steps(tmp_path / "checkpoint")
    # The older periodic ones are pruned after each write; a kill between a write and its pruning leaves one more.
    assert 1 <= len(kept) <= 2 and all(step % every == 0 for step in kept)
    newest = kept[-1]
    assert reached - every <= newest < EARLY

    early = succeeded(*run_stage(config(tmp_path, "early", checkpointEverySteps=every), tmp_path))
    assert early.resumed_from_step == newest and early.lost_seconds > 0
    assert stable(early) == stable(reference[0])
    assert early.train_loss == reference[0].train_loss


def test_sigkill_without_periodic_checkpoints_loses_the_whole_stage(
    tmp_path: Path, reference: tuple[StageResult, StageResult]
) -> None:
    """What a disruption cost before checkpoints inside a stage: the final reruns from the early checkpoint."""
    succeeded(*run_stage(config(tmp_path, "early"), tmp_path))
    code, reached = stop(tmp_path, "final", 33, signal.SIGKILL)
    assert code == -signal.SIGKILL and checkpoint_steps(tmp_path / "checkpoint") == [EARLY]

    done, final = run_stage(config(tmp_path, "final"), tmp_path)
    final = succeeded(done, final)
    assert final.resumed_from_step == EARLY
    said = f"resumed from the early checkpoint at step {EARLY} after a disruption (no checkpoint of its own)"
    assert final.message == said
    redone = re.search(r"\(([0-9.]+)s of training to do again\)", done.stdout)
    assert redone and float(redone[1]) > 0  # every step the killed run trained past the early checkpoint
    assert reached > EARLY
    assert stable(final) == stable(reference[1])


def test_sigterm_while_the_model_loads_stops_before_the_first_step(tmp_path: Path) -> None:
    """A pod evicted while it still loads: the trainer exits at once rather than have the kubelet wait out the grace
    period, and leaves nothing a rerun would take for progress."""
    process = start_stage(config(tmp_path, "early"), tmp_path)
    log = tmp_path / "log-early.txt"
    while "training rows" not in log.read_text():  # the stop request is listened for from here on
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == EXIT_INTERRUPTED
    assert "stopped by SIGTERM after step 0 (no checkpoint written)" in log.read_text()
    assert checkpoint_steps(tmp_path / "checkpoint") == [] and heartbeat(tmp_path / "checkpoint") == {}
