"""Checkpoints inside a stage: what one costs, and what a disruption loses with and without them.

Cost: a `final` stage of `--model` (the real trainer, in this process) writes a checkpoint every `--every` steps; the
table gives the slowest write (seconds), its size (MB), the mean optimizer step, and the write's share of a stage's
time at the default interval (`spec.trial.checkpoint`: every 5 minutes) and at every `--every` steps.

Disruptions (`--disruptions`, `builtin: tiny` only: each case trains early + final + a rerun as a pod does, about a
minute): the final stage is stopped at 70% of its steps (SIGKILL: a lost node; SIGTERM: an eviction), then run
again; the rerun's `lostSeconds` (training done twice, plus its restart) before checkpoints inside stages (the final
reruns from the early checkpoint) and after (every `--every` steps).

    python -m benchmarks checkpoints [--model tiny|smollm2-135m] [--steps N] [--every N] [--disruptions]
                                     [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sweetspot.api.trial import DEFAULT_CHECKPOINT_MINUTES
from sweetspot.contract import StageResult, TrialConfig
from sweetspot_trainer.train import StageRunner

MAX_LENGTHS = {"tiny": 160, "smollm2-135m": 384}
DEFAULTS = {"tiny": (40, 16), "smollm2-135m": (8, 8)}
"""Steps and batch size per model when not given."""


def config(model: str, stage: str, steps: int, batch_size: int, folder: Path, every: int | None) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            "study": "bench",
            "trial": 0,
            "stage": stage,
            "model": {"builtin": model, "maxSequenceLength": MAX_LENGTHS[model]},
            "train": {"builtin": "product-pages", "rows": max(steps * batch_size, 64)},
            "validation": {"builtin": "product-pages", "rows": 40},
            "samples": steps * batch_size,
            "seed": 0,
            "earlyFraction": 0.3,
            "hyperparameters": {"batchSize": batch_size, "epochs": 1, "loraRank": 16, "learningRate": 1e-3},
            "checkpointDir": str(folder / "checkpoint"),
            "outputDir": str(folder / "out"),
            "checkpointEverySteps": every,
        }
    )


def cost(model: str, steps: int, batch_size: int, every: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        result = StageRunner(
            config(model, "full", steps, batch_size, Path(folder), every), progress=lambda _: None
        ).run()
    trained = result.evaluations[-1].train_seconds or result.seconds
    step = trained / steps
    default = DEFAULT_CHECKPOINT_MINUTES * 60
    return {
        "model": model,
        "checkpointSeconds": result.checkpoint_seconds,
        "checkpointMB": round(result.checkpoint_bytes / 1e6, 2),
        "stepSeconds": round(step, 4),
        "shareAtDefault": round(result.checkpoint_seconds / (default + result.checkpoint_seconds), 5),
        "shareEvery": round(result.checkpoint_seconds / (every * step + result.checkpoint_seconds), 4),
        "every": every,
    }


def run_stage(
    cfg: TrialConfig, folder: Path, stop_at: int | None = None, signum: int = signal.SIGKILL
) -> StageResult | None:
    """The stage as a pod runs it; with `stop_at`, stopped with `signum` once its heartbeat reports that step."""
    path = folder / f"trial-{cfg.stage}.json"
    path.write_text(cfg.to_json())
    log = folder / f"termination-{cfg.stage}"
    log.unlink(missing_ok=True)
    env = {**os.environ, "SWEETSPOT_TERMINATION_LOG": str(log)}
    with open(folder / f"log-{cfg.stage}.txt", "a") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sweetspot_trainer", "--config", str(path)], stdout=out, stderr=out, env=env
        )
        while stop_at is not None and process.poll() is None:
            beats = list((folder / "checkpoint").glob("*-progress.json"))
            try:
                beat = json.loads(beats[0].read_text()) if beats else {}
            except ValueError:
                beat = {}
            if beat.get("stage") == cfg.stage and beat["step"] >= stop_at:
                process.send_signal(signum)
                break
            time.sleep(0.02)
        process.wait()
    return StageResult.model_validate_json(log.read_text()) if log.exists() else None


def disruption(steps: int, batch_size: int, every: int | None, signum: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        run_stage(config("tiny", "early", steps, batch_size, folder, every), folder)
        final = config("tiny", "final", steps, batch_size, folder, every)
        early_steps = round(steps * 0.3)
        run_stage(final, folder, stop_at=early_steps + round(0.7 * (steps - early_steps)), signum=signum)
        rerun = run_stage(final, folder)
        assert rerun is not None and rerun.status == "ok", (folder / "log-final.txt").read_text()[-2000:]
        return {
            "signal": signal.Signals(signum).name,
            "every": every,
            "resumedFromStep": rerun.resumed_from_step,
            "lostSeconds": rerun.lost_seconds,
            "finalSeconds": rerun.seconds,
        }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks checkpoints", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MAX_LENGTHS), default="tiny")
    parser.add_argument("--steps", type=int, help="optimizer steps (default per model)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--every", type=int, default=5, help="steps between checkpoints (default 5)")
    parser.add_argument("--disruptions", action="store_true", help="also measure the compute a disruption loses")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    steps, batch_size = DEFAULTS[args.model]
    steps, batch_size = args.steps or steps, args.batch_size or batch_size
    rows: list[dict[str, Any]] = [cost(args.model, steps, batch_size, args.every)]
    row = rows[0]
    print(
        f"{args.model}: checkpoint {row['checkpointSeconds']:.3f} s, {row['checkpointMB']:.1f} MB; step "
        f"{row['stepSeconds']:.3f} s; share of stage time: {row['shareAtDefault']:.4%} at every "
        f"{DEFAULT_CHECKPOINT_MINUTES:g} min, {row['shareEvery']:.2%} at every {args.every} steps"
    )
    if args.disruptions:
        if args.model != "tiny":
            parser.error("--disruptions runs builtin: tiny only")
        for every, signum in ((None, signal.SIGKILL), (args.every, signal.SIGKILL), (None, signal.SIGTERM)):
            case = disruption(steps, batch_size, every, signum)
            rows.append(case)
            print(
                f"{case['signal']} at 70% of the final stage, checkpoints "
                f"{'every ' + str(every) + ' steps' if every else 'at the early step only'}: resumed from step "
                f"{case['resumedFromStep']}, {case['lostSeconds']:.1f} s lost "
                f"(the final took {case['finalSeconds']:.1f} s)"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0
