"""Ctrl-C in local mode while a final stage trains, then the same `sweetspot run` again: the real trainer on
`builtin: tiny` checkpoints the step it is in, and the rerun continues there and scores as a run never interrupted.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
import yaml

from support.local_runs import finish, sweetspot
from support.studies import one_trial_study
from support.trainer_runs import checkpoint_steps, heartbeat

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]


def write(folder: Path) -> Path:
    """The study, as a user writes it into `folder`."""
    manifest = one_trial_study("resumable", seed=3)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def report(folder: Path) -> dict[str, object]:
    code, output = finish(sweetspot("report", "resumable", "--format", "json", cwd=folder))
    assert code == 0, output
    data: dict[str, object] = json.loads(output[output.index("{") :])
    return data


def scores(trial: dict[str, dict[str, object]], stage: str) -> dict[str, object]:
    kept = ("f1", "precision", "recall", "accuracy", "tokenF1", "loss", "attributeF1", "step")
    return {k: v for k, v in trial[stage].items() if k in kept}


def test_ctrl_c_in_a_final_stage_then_run_again_resumes_at_the_checkpointed_step(tmp_path: Path) -> None:
    reference = tmp_path / "uninterrupted"
    code, output = finish(sweetspot("run", str(write(reference)), cwd=reference))
    assert code == 0, output[-4000:]

    folder = tmp_path / "interrupted"
    manifest = write(folder)
    first = sweetspot("run", str(manifest), cwd=folder)
    checkpoints = folder / ".sweetspot" / "default-resumable" / "trials" / "t0" / "checkpoint"
    deadline = time.monotonic() + 300
    while (beat := heartbeat(checkpoints)).get("stage") != "final" or beat["step"] < 30:
        assert first.poll() is None and time.monotonic() < deadline, "the final stage never trained 30 steps"
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    code, rest = finish(first, timeout=120)
    assert code == 130, rest[-4000:]
    stopped = checkpoint_steps(checkpoints)[-1]
    assert stopped >= 30 and stopped == heartbeat(checkpoints)["step"]  # the step it was in, checkpointed
    log = (folder / ".sweetspot" / "default-resumable" / "runs" / "t0-final" / "log.txt").read_text()
    assert f"stopped by SIGTERM after step {stopped} (checkpoint written)" in log

    code, output = finish(sweetspot("run", str(manifest), cwd=folder))
    assert code == 0, output[-4000:]
    said = " ".join(output.split())  # as printed, wrapped to the terminal's width
    assert re.search(rf"trial 0 final: resumed from step {stopped} after a disruption, [0-9.]+ compute", said), said
    assert re.search(rf"trial 0 final: resumed from step {stopped} after a disruption \(\d+ compute", said), said

    interrupted, uninterrupted = report(folder), report(reference)
    (trial,), (steady,) = interrupted["trials"], uninterrupted["trials"]  # type: ignore[misc]
    assert trial["final"]["resumedFromStep"] == stopped and trial["final"]["lostSeconds"] > 0
    assert trial["early"]["resumedFromStep"] is None
    assert interrupted["counts"]["failed"] == 0  # type: ignore[index]
    assert scores(trial, "early") == scores(steady, "early")
    assert scores(trial, "final") == scores(steady, "final")
