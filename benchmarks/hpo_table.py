"""The tabular HPO benchmark's data: learning curves of the real trainer over a fixed set of configurations.

As LCBench and NAS-Bench do, every configuration is trained once, to the end, and scored at ten checkpoints
(10%, 20%, ... 100% of its planned steps), recording validation accuracy, loss and the training seconds spent
to reach each point. Search strategies are then replayed on the table (`benchmarks/hpo_replay.py`): a strategy
that stops a configuration at 30% pays that configuration's seconds to 30%, and sees only the scores up to there.

The configurations are a scrambled Sobol sample (Optuna's QMC sampler) of Sweetspot's default LoRA search space
(learning rate, rank, alpha, dropout, batch size, epochs), trained on the built-in task: the MiniLM-L6 + LoRA
tagger on the synthetic product pages, 300 sampled training rows, 100 validation rows.

    python -m benchmarks hpo-table [--configs 60] [--workers 2] [--out benchmarks/data/hpo_table.json]

Runs are resumable: each configuration's result is kept under `--workdir`, and a rerun trains only the missing
ones. On 2 CPU cores, 60 configurations take about 35 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna

from sweetspot.api.search import DEFAULT_SEARCH_SPACE
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.contract import StageResult, TrialConfig
from sweetspot.storage.space import distributions

CHECKPOINTS = [round(0.1 * k, 1) for k in range(1, 11)]
DEFAULT_OUT = Path(__file__).parent / "data" / "hpo_table.json"
TASK: dict[str, Any] = {
    "model": {"builtin": "tiny", "maxSequenceLength": 128},
    "train": {"builtin": "product-pages", "rows": 1200},
    "validation": {"builtin": "product-pages", "rows": 100},
    "samples": 300,
    "seed": 0,
}
VERSIONS = ("torch", "transformers", "peft", "optuna")


def configurations(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` points of the default search space, spread evenly (scrambled Sobol), as trainer hyperparameters."""
    spec = FineTuneStudySpec.model_validate(
        {"model": {"builtin": "tiny"}, "dataset": {"train": {"builtin": "product-pages"}}}
    )
    assert spec.search.space == DEFAULT_SEARCH_SPACE
    space = distributions(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # "experimental" since 3.0; stable for this
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.QMCSampler(seed=seed, scramble=True)
    study = optuna.create_study(sampler=sampler)
    return [dict(study.ask(fixed_distributions=space).params) for _ in range(count)]


def trial_config(index: int, params: dict[str, Any], directory: Path) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            **TASK,
            "study": "hpo-table",
            "trial": index,
            "stage": "full",
            "hyperparameters": params,
            "earlyFraction": CHECKPOINTS[0],
            "evaluateAt": CHECKPOINTS[1:-1],
            "outputDir": str(directory),
        }
    )


def train(index: int, params: dict[str, Any], workdir: Path, threads: int) -> StageResult:
    """One configuration, trained by the real trainer in its own process (as a trial pod would)."""
    directory = workdir / f"c{index:03d}"
    return run_trainer(trial_config(index, params, directory), directory, threads)


def run_trainer(config: TrialConfig, directory: Path, threads: int) -> StageResult:
    """Run one trial stage with the real trainer in its own process; a finished result in `directory` is reused
    (runs are resumable)."""
    result_file = directory / f"result-{config.stage}.json"
    if result_file.exists():
        result = StageResult.model_validate_json(result_file.read_text())
        if result.status == "ok":
            return result
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "trial.json"
    path.write_text(config.model_copy(update={"output_dir": str(directory)}).to_json())
    with open(directory / "log.txt", "wb") as log:
        subprocess.run(
            [sys.executable, "-m", "sweetspot_trainer", "--config", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SWEETSPOT_CPU_THREADS": str(threads)},
            check=False,
        )
    if not result_file.exists():
        raise RuntimeError(f"{directory.name} wrote no result; see {directory / 'log.txt'}")
    result = StageResult.model_validate_json(result_file.read_text())
    if result.status != "ok":
        raise RuntimeError(f"{directory.name} failed: {result.message} (log: {directory / 'log.txt'})")
    return result


def row(
    index: int, params: dict[str, Any], result: StageResult, checkpoints: list[float] = CHECKPOINTS
) -> dict[str, Any]:
    """One configuration's curve: the evaluation nearest each checkpoint (rounding of steps aside, exact)."""
    points = []
    for fraction in checkpoints:
        evaluation = result.evaluation_at(fraction)
        assert evaluation is not None and evaluation.train_seconds is not None
        points.append(
            {
                "fraction": fraction,
                "step": evaluation.step,
                "f1": evaluation.f1,
                "accuracy": evaluation.accuracy,
                "loss": evaluation.loss,
                "seconds": evaluation.train_seconds,
            }
        )
    return {"config": index, "params": params, "plannedSteps": result.planned_steps, "curve": points}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks hpo-table", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", type=int, default=60, help="configurations to train (default: 60)")
    parser.add_argument("--workers", type=int, default=2, help="trainings at a time, one CPU thread each (default: 2)")
    parser.add_argument("--workdir", type=Path, default=Path(".sweetspot/hpo-table"), help="per-run files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the table (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    configs = configurations(args.configs)
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    started = time.monotonic()
    results: dict[int, StageResult] = {}
    with ThreadPoolExecutor(args.workers) as pool:
        futures = {pool.submit(train, i, params, args.workdir, threads): i for i, params in enumerate(configs)}
        for future in as_completed(futures):
            index = futures[future]
            results[index] = result = future.result()
            final = result.evaluations[-1]
            print(
                f"[{time.monotonic() - started:6.0f}s] {len(results)}/{len(configs)} config {index}: "
                f"accuracy {final.accuracy:.3f} loss {final.loss:.4f} in {result.seconds:.0f}s",
                flush=True,
            )
    table = {
        "description": "Validation accuracy, loss and training seconds at 10 checkpoints of each configuration",
        "command": "python -m benchmarks hpo-table " + " ".join(argv if argv is not None else sys.argv[1:]),
        "task": TASK,
        "space": "sweetspot.api.search.DEFAULT_SEARCH_SPACE, scrambled Sobol sample (optuna QMCSampler, seed 0)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {threads} thread(s) per run",
        "versions": {name: metadata.version(name) for name in VERSIONS} | {"python": platform.python_version()},
        "configs": [row(i, configs[i], results[i]) for i in sorted(results)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{len(results)} configurations in {args.out} ({time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
