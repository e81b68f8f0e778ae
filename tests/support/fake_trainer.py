"""A stand-in trainer for the cluster tests whose subject is the operator, not training.

It is the real entrypoint up to the point where training would start: the same argument parser, the same config
reading and validation (a config it cannot validate exits 2 with a `bad_input` result, as the real one does), the
same result writing (result file and termination message). Then, instead of loading a model, it waits
`SWEETSPOT_FAKE_STAGE_SECONDS` (a stage that runs for a while, so that a test can kill, evict or cut off things
mid-stage) and reports scores that follow from the configuration: the learning rate decides how good a trial is
(so a sampler has something to learn), more rows score higher (so a learning curve rises), the final evaluation
beats the early one. A stage costs a Python start-up and the wait, not a model load and training: the operator's
tests run in seconds per stage instead of tens of seconds, and the real trainer keeps its own e2e test.

Under torchrun (a TrainJob's nodes: `WORLD_SIZE` above 1) every rank joins a gloo process group and takes part in
one all_reduce, which proves the group formed; rank 0 says how many took part in its result's message, and only
rank 0 writes a result (file and termination message): the other ranks end with exit 0 and write nothing. Alone
it never imports torch (the operator's tests would pay its import on every stage).

    python -m support.fake_trainer [--config FILE]      (the trial config in $SWEETSPOT_TRIAL_CONFIG otherwise)
    torchrun --module support.fake_trainer [--config FILE]
"""

from __future__ import annotations

import datetime
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sweetspot.contract import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    TERMINATION_LOG_ENV,
    Evaluation,
    StageResult,
    TrialConfig,
    result_file_name,
)
from sweetspot_trainer import reporting
from sweetspot_trainer.__main__ import config_or_bad_input, parser

SECONDS_ENV = "SWEETSPOT_FAKE_STAGE_SECONDS"
BEST_RATE = 3e-3
MESSAGE = "fake trainer: no model was trained"


def quality(config: TrialConfig) -> float:
    """How good this configuration is, in (0, 1): best at a learning rate of 3e-3, and better with more rows."""
    hp = config.hyperparameters
    closeness = math.exp(-((math.log10(hp.learning_rate) - math.log10(BEST_RATE)) ** 2))
    rows = config.samples or 200
    return 0.3 + 0.6 * closeness * (1 - math.exp(-rows / 60))


def evaluation(config: TrialConfig, step: int, planned: int) -> Evaluation:
    fraction = step / planned
    score = round(quality(config) * (0.6 + 0.4 * fraction), 4)
    return Evaluation(
        step=step,
        fraction=round(fraction, 4),
        f1=score,
        precision=min(1.0, round(score + 0.02, 4)),
        recall=round(score - 0.02, 4),
        macro_f1=round(score - 0.05, 4),
        accuracy=min(1.0, round(score + 0.1, 4)),
        token_f1=score,
        loss=round(1.2 - score, 5),
        pairs=200,
        rows=40,
        # The built-in product pages' attributes, most supported first, the rare rating last and weakest.
        attribute_f1={
            "name": min(1.0, round(score + 0.05, 4)),
            "price": score,
            "brand": round(score - 0.02, 4),
            "color": round(score - 0.05, 4),
            "rating": round(score / 2, 4),
        },
        attribute_support={"name": 40, "price": 37, "brand": 35, "color": 28, "rating": 10},
        train_seconds=round(fraction, 3),
    )


def result(config: TrialConfig, seconds: float, world_size: int = 1) -> StageResult:
    hp = config.hyperparameters
    rows = config.samples or 200
    planned = hp.max_steps or max(4, math.ceil(rows / (hp.batch_size * hp.gradient_accumulation_steps)) * hp.epochs)
    early = max(1, round(planned * config.early_fraction))
    steps = {"early": [early], "final": [planned], "full": [early, planned]}[config.stage]
    return StageResult(
        study=config.study,
        trial=config.trial,
        stage=config.stage,
        status="ok",
        message=MESSAGE if world_size == 1 else f"{MESSAGE}; world size {world_size} (gloo all_reduce)",
        step=steps[-1],
        planned_steps=planned,
        evaluations=[evaluation(config, step, planned) for step in steps],
        train_loss=0.5,
        seconds=round(seconds, 2),
        samples=rows,
        sample_hash="fake",
        null_baseline=0.25,
        early_fraction=config.early_fraction if config.stage == "early" else None,
    )


def world_size_seen() -> int:
    """Join the process group torchrun describes (gloo: no GPU here) and sum a one from every rank: the world size
    the group really has, not the one the environment claims."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    try:
        ones = torch.ones(1)
        dist.all_reduce(ones)
        return int(ones.item())
    finally:
        dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        # Only rank 0 reports, even a config it cannot read: the others' containers end with no message.
        os.environ[TERMINATION_LOG_ENV] = os.devnull
        args.result = None
    config = config_or_bad_input(args)
    if config is None:
        return EXIT_BAD_INPUT
    started = time.monotonic()
    world_size = world_size_seen() if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 1
    ranks = f", rank {rank} of {world_size}" if world_size > 1 else ""
    print(f"[{config.study} t{config.trial} {config.stage}] fake trainer{ranks}", flush=True)
    time.sleep(float(os.environ.get(SECONDS_ENV, "0.5")))
    if rank != 0:
        return EXIT_OK
    path = Path(args.result) if args.result else None
    if path is None and config.output_dir:
        path = Path(config.output_dir) / result_file_name(config.stage)
    reporting.write_result(result(config, time.monotonic() - started, world_size), path)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
