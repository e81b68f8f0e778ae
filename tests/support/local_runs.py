"""`sweetspot` as a user runs it, in a subprocess: `sweetspot run`, `sweetspot report`, interrupted or not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.interrupt import sigint_as_in_a_terminal
from support.node import TESTS


def sweetspot(*args: str, cwd: Path, fake: bool = False) -> subprocess.Popen[str]:
    """`sweetspot ARGS`; with `fake`, its stages run `support.fake_trainer` (the same contract, no model, 2 s each)
    where the planner, the storage and the report are the subject rather than training."""
    env = {**os.environ, "SWEETSPOT_CACHE": str(cwd / "cache")}
    if fake:
        env |= {
            "SWEETSPOT_TRAINER_MODULE": "support.fake_trainer",
            "SWEETSPOT_FAKE_STAGE_SECONDS": "2",
            "PYTHONPATH": str(TESTS),
        }
    return subprocess.Popen(
        [sys.executable, "-m", "sweetspot.cli", *args],
        cwd=cwd,
        env=env,
        preexec_fn=sigint_as_in_a_terminal,  # one test sends it Ctrl-C
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(process: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output
