"""Running the real trainer as a pod runs it: the image's command (or torchrun around it), a config file in, the result
in the termination log. Shared by the trainer's training tests, one process and data-parallel."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sweetspot.contract import StageResult, TrialConfig

ROOT = Path(__file__).resolve().parents[2]
CLOCKED = frozenset({"train_seconds", "ms_per_row"})
"""`Evaluation` fields measured by the clock: two runs that score identically still differ in them."""


def image_command() -> list[str]:
    """The trainer image's ENTRYPOINT, with this interpreter standing in for the image's `python`."""
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", (ROOT / "trainer_image" / "Dockerfile").read_text(), re.M)
    assert entrypoint, "trainer_image/Dockerfile has no exec-form ENTRYPOINT"
    command: list[str] = json.loads(entrypoint.group(1))
    return [sys.executable if part == "python" else part for part in command]


def torchrun_command(processes: int, log_dir: Path, program: list[str] | None = None) -> list[str]:
    """The image's command (or `program`: a script and its arguments) under torchrun on one machine. `--standalone`
    starts its own rendezvous on a free port; each rank's stdout and stderr go to files under `log_dir` (read them
    with `rank_output`)."""
    python, *module = image_command()
    assert module[:1] == ["-m"], f"the image's ENTRYPOINT does not run a module: {image_command()}"
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        f"--log-dir={log_dir}",
        "--redirects=3",
        *(program or module),
    ]


def rank_output(log_dir: Path, rank: int, stream: str = "stdout") -> str:
    """What rank `rank` wrote to `stream` in the one torchrun launch that logged to `log_dir`."""
    found = sorted(log_dir.glob(f"*/attempt_0/{rank}/{stream}.log"))
    assert len(found) == 1, f"expected one {stream} log of rank {rank} under {log_dir}, found {found}"
    return found[0].read_text()


def _invocation(
    config: dict[str, Any], workdir: Path, command: list[str] | None, env: dict[str, str] | None
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one stage as the pod runs it: its config written to a file, its result to
    `<workdir>/termination-log-<stage>`."""
    stage = config["stage"]
    config_path = workdir / f"trial-{stage}.json"
    config_path.write_text(TrialConfig.model_validate(config).to_json())
    environment = {
        **os.environ,
        "SWEETSPOT_TERMINATION_LOG": str(workdir / f"termination-log-{stage}"),
        "SWEETSPOT_CACHE": str(workdir / "cache"),
        **(env or {}),
    }
    return [*(command or image_command()), "--config", str(config_path)], environment


def run_stage(
    config: dict[str, Any], workdir: Path, command: list[str] | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], StageResult | None]:
    """Run one stage as the pod would (the image's command unless `command` says otherwise): config file in,
    result in the termination log."""
    argv, environment = _invocation(config, workdir, command, env)
    done = subprocess.run(argv, capture_output=True, text=True, env=environment, cwd=workdir, timeout=500)
    log = workdir / f"termination-log-{config['stage']}"
    result = StageResult.model_validate_json(log.read_text()) if log.exists() else None
    return done, result


def tiny_config(tmp_path: Path, stage: str) -> dict[str, Any]:
    """A stage of the built-in tiny tagger on the built-in product pages (100 steps; about a minute on two cores)."""
    return {
        "study": "test",
        "trial": 0,
        "stage": stage,
        "model": {"builtin": "tiny", "maxSequenceLength": 160},
        "train": {"builtin": "product-pages", "rows": 600},
        "validation": {"builtin": "product-pages", "rows": 150},
        "samples": 400,
        "seed": 7,
        "earlyFraction": 0.4,
        "checkpointDir": str(tmp_path / "checkpoint"),
        "outputDir": str(tmp_path / "out"),
        "hyperparameters": {"learningRate": 0.003, "batchSize": 8, "epochs": 2},
    }


def start_stage(
    config: dict[str, Any], workdir: Path, command: list[str] | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start one stage as `run_stage` runs it, without waiting: a test stops it (SIGTERM, SIGKILL) while it trains.
    Its output goes to `<workdir>/log-<stage>.txt`."""
    argv, environment = _invocation(config, workdir, command, env)
    with open(workdir / f"log-{config['stage']}.txt", "w") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True, env=environment, cwd=workdir)


def heartbeat(checkpoint_dir: Path) -> dict[str, Any]:
    """The trainer's last word on how far its stage trained (`{}` before the first)."""
    for path in checkpoint_dir.glob("*-progress.json"):
        try:
            beat: dict[str, Any] = json.loads(path.read_text())
            return beat
        except (OSError, ValueError):
            pass  # replaced while read: the next look finds the new one
    return {}


def wait_for_step(process: subprocess.Popen[str], checkpoint_dir: Path, stage: str, step: int) -> int:
    """Wait until `stage` has trained at least `step` steps (by its heartbeat); the step it reported."""
    while (beat := heartbeat(checkpoint_dir)).get("stage") != stage or beat["step"] < step:
        assert process.poll() is None, f"the {stage} stage ended (code {process.returncode}) before step {step}"
        time.sleep(0.02)
    return int(beat["step"])


def checkpoint_steps(checkpoint_dir: Path) -> list[int]:
    """The steps of the complete checkpoints in a folder, oldest first."""
    return sorted(int(p.name.split("-step-")[1].removesuffix(".pt")) for p in checkpoint_dir.glob("*-step-*.pt"))
