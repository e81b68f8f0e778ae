"""Real product data: the built-in tagger on AE-110k, scored as the attribute-extraction field scores (micro-F1).

AE-110k (Xu et al. 2019) as selected and split by Brinkmann et al. 2023 (arXiv 2310.12537): real product titles
from 10 categories with category-specific attributes (`examples/ae-110k/`, Apache-2.0). Everything is measured on
the 524 test titles, over the annotated (title, attribute) pairs only.

Three measurements, each run by the real trainer in its own process, resumable (results are kept under
`--workdir`; a rerun trains only what is missing):

(a) the learning curve: micro-F1 after training on 50, 100, 200, 400, 800 and all 1,568 training titles, 3 repeats
    each (other seeds: other nested, category-stratified samples), the training steps held at those of the full
    set (every size gets the same compute; Sweetspot's `hold: steps`);
(b) early-vs-final agreement: `--configs` configurations of Sweetspot's default search space (a scrambled Sobol
    sample, as the HPO table) trained on all titles (or a stratified sample of `--table-samples`) and scored at
    10%, 20%, ... 100% of their steps; how well the early validation loss and the early F1 rank configurations like
    their final F1 (Spearman, Kendall, top-5);
(c) that table replayed like the HPO benchmark (`python -m benchmarks hpo`): Sweetspot's proxy and prune
    policies against TPE with full training, random search and successive halving, on compute to reach within
    1 pp of the best final F1.

    python -m benchmarks realdata --data examples/ae-110k [--json results.json] [--configs 20] [--workers 2]
        [--table-samples N]

(d) with `--model smollm2-135m`: "LLM or tagger?" SmolLM2-135M-Instruct zero-shot (no training), prompted with the
    3 nearest of the same training titles as demonstrations (no training: the literature's prompting baseline,
    `knn_prompting.py`), and after LoRA (one epoch) on 50, 200, 800 and 1,568 titles, beside the tagger at the
    same sizes (the learning curve's first repeat), each with the seconds it took, all scored on the 524 test
    titles. `--skip tagger` leaves the tagger out (the learning curve's table has it, 3 repeats), and
    `--prompted-sizes` runs the prompting baseline at some sizes only:

    python -m benchmarks realdata --data examples/ae-110k --model smollm2-135m [--json llm.json]
        [--llm-sizes 50 200 800 1568] [--skip tagger] [--prompted-sizes 50 1568] [--workers 1]

`--quick` runs a slice (60 training titles, 40 test titles, a few steps) that only shows the pipeline works; CI
runs it. The table of (b) is written to `--table` (default `benchmarks/data/ae110k_table.json`) for `hpo --table`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from sweetspot.contract import Hyperparameters, StageResult, TrialConfig
from sweetspot_trainer.data import load_path, load_schema, sample

from . import hpo_replay, hpo_table, knn_prompting

DEFAULT_TABLE = Path(__file__).parent / "data" / "ae110k_table.json"
SIZES = (50, 100, 200, 400, 800, 1568)
REPEATS = 3
AGREEMENT_FRACTIONS = (0.1, 0.2, 0.3)
CURVE_RECIPE: dict[str, Any] = {
    "learningRate": 2e-3,
    "loraRank": 16,
    "loraAlpha": 32,
    "loraDropout": 0.05,
    "batchSize": 16,
    "epochs": 4,
}
"""The learning curve's fixed configuration. Measured on all 1,568 titles: the default space's top rate (5e-4) for 3
epochs reaches F1 0.656 (recall 0.58 is what limits it); 2e-3 for 6 epochs 0.763, already 0.758 after 3."""
LLM_RECIPE: dict[str, Any] = {
    "learningRate": 2e-3,
    "loraRank": 16,
    "loraAlpha": 32,
    "loraDropout": 0.05,
    "batchSize": 8,
    "epochs": 1,
}
"""The LLM's configuration: LoRA on the attention and MLP projections peft picks for Llama, one epoch (on 2 CPU
cores an epoch of the 1,568 titles takes about 13 minutes)."""
LLM_SIZES = (50, 200, 800, 1568)
LLM_MIN_STEPS = 16
LLM_SEQUENCE = 192
"""Chat prompt (~60 tokens with the attribute list), title (at most ~60 SmolLM2 tokens) and JSON answer."""
VERSIONS = ("torch", "transformers", "peft", "optuna")


@dataclass(frozen=True)
class Data:
    """The files of the AE-110k folder."""

    train: Path
    test: Path
    schema: Path

    @classmethod
    def at(cls, folder: Path) -> Data:
        data = cls(folder / "train.jsonl", folder / "test.jsonl", folder / "schema.json")
        missing = [str(p) for p in (data.train, data.test, data.schema) if not p.exists()]
        if missing:
            raise SystemExit(f"{folder}: missing {', '.join(missing)} (the AE-110k folder: train, test, schema)")
        return data

    def rows(self) -> int:
        with self.train.open() as handle:
            return sum(1 for line in handle if line.strip())


@dataclass(frozen=True)
class Plan:
    """How much to run: the full benchmark, or `--quick`'s slice."""

    sizes: tuple[int, ...]
    repeats: int
    configs: int
    max_eval_rows: int | None
    train_rows: int | None
    """Train on the first n titles only (the slice); all when None."""
    max_steps: int | None
    max_sequence_length: int = 64  # the longest AE-110k title is 50 MiniLM tokens
    table_samples: int | None = None
    """(b)'s configurations train on a category-stratified sample of this many titles (all when None)."""


FULL = Plan(SIZES, REPEATS, 20, None, None, None)
QUICK = Plan((20, 40), 1, 3, 40, 60, 4)


def _config(
    data: Data, plan: Plan, name: str, number: int, params: dict[str, Any], model: str = "tiny", **extra: Any
) -> TrialConfig:
    hyperparameters = dict(params)
    if plan.max_steps is not None:
        hyperparameters["maxSteps"] = plan.max_steps
    length = plan.max_sequence_length if model == "tiny" else LLM_SEQUENCE
    return TrialConfig.model_validate(
        {
            "study": name,
            "trial": number,
            "stage": "full",
            "model": {"builtin": model, "maxSequenceLength": length},
            "train": {"path": str(data.train.resolve())},
            "validation": {"path": str(data.test.resolve())},
            "schema": {"path": str(data.schema.resolve())},
            "hyperparameters": hyperparameters,
            **({"maxEvalRows": plan.max_eval_rows} if plan.max_eval_rows else {}),
            **extra,
        }
    )


def _slice(data: Data, plan: Plan, workdir: Path) -> Data:
    """`train_rows` training titles spread evenly over the file (it is sorted by category), or the data as it is."""
    if plan.train_rows is None:
        return data
    workdir.mkdir(parents=True, exist_ok=True)
    train = workdir / "train-slice.jsonl"
    with data.train.open() as source:
        lines = [line for line in source if line.strip()]
    lines = lines[:: max(1, len(lines) // plan.train_rows)][: plan.train_rows]
    train.write_text("".join(lines))
    return Data(train, data.test, data.schema)


def _parallel(
    jobs: Sequence[Callable[[], StageResult]], workers: int, label: Callable[[int], str]
) -> list[StageResult]:
    started = time.monotonic()
    results: list[StageResult | None] = [None] * len(jobs)

    def run(index: int) -> None:
        results[index] = result = jobs[index]()
        last = result.evaluations[-1]
        print(
            f"[{time.monotonic() - started:6.0f}s] {label(index)}: F1 {last.f1:.3f} (P {last.precision:.3f} "
            f"R {last.recall:.3f}) loss {last.loss:.4f} in {result.seconds:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, range(len(jobs))))
    return [r for r in results if r is not None]


def _curve_steps(data: Data, plan: Plan) -> int:
    """Every size of the curve trains the steps the full training set takes."""
    hp = Hyperparameters.model_validate(CURVE_RECIPE)
    return plan.max_steps or math.ceil(data.rows() / (hp.batch_size * hp.gradient_accumulation_steps)) * hp.epochs


def _tagger_run(data: Data, plan: Plan, workdir: Path, threads: int, samples: int, repeat: int) -> StageResult:
    """One point of the learning curve (kept under `workdir`: the LLM comparison reuses the curve's runs)."""
    params = CURVE_RECIPE | {"maxSteps": _curve_steps(data, plan)}
    config = _config(data, plan, "realdata-curve", samples, params, samples=samples, seed=repeat)
    return hpo_table.run_trainer(config, workdir / f"s{samples}-rep{repeat}", threads)


def learning_curve(data: Data, plan: Plan, workdir: Path, workers: int, threads: int) -> list[dict[str, Any]]:
    """(a): micro-F1 by training-set size, mean and spread over repeats, steps held at the full set's."""
    available = data.rows()
    sizes = [n for n in plan.sizes if n <= available] or [available]
    steps = _curve_steps(data, plan)
    runs = [(n, r) for n in sizes for r in range(plan.repeats)]
    jobs = [(lambda n=n, r=r: _tagger_run(data, plan, workdir, threads, n, r)) for n, r in runs]
    results = _parallel(jobs, workers, lambda i: f"curve {runs[i][0]} titles, repeat {runs[i][1]}")
    curve = []
    for n in sizes:
        finals = [res.evaluations[-1] for (size, _), res in zip(runs, results, strict=True) if size == n]
        f1 = [e.f1 for e in finals]
        curve.append(
            {
                "samples": n,
                "f1": round(statistics.fmean(f1), 4),
                "f1Spread": round(statistics.stdev(f1), 4) if len(f1) > 1 else 0.0,
                "precision": round(statistics.fmean(e.precision for e in finals), 4),
                "recall": round(statistics.fmean(e.recall for e in finals), 4),
                "accuracy": round(statistics.fmean(e.accuracy for e in finals), 4),
                "repeats": len(finals),
                "steps": steps,
                "seconds": round(
                    statistics.fmean(r.seconds for (s, _), r in zip(runs, results, strict=True) if s == n), 1
                ),
            }
        )
    return curve


def configuration_table(data: Data, plan: Plan, workdir: Path, workers: int, threads: int) -> dict[str, Any]:
    """(b)'s table: every configuration trained to the end and scored at ten checkpoints (the HPO table's format,
    scored by micro-F1)."""
    configs = hpo_table.configurations(plan.configs)
    checkpoints = hpo_table.CHECKPOINTS
    jobs = [
        (
            lambda i=i, params=params: hpo_table.run_trainer(
                _config(
                    data,
                    plan,
                    "realdata-table",
                    i,
                    params,
                    earlyFraction=checkpoints[0],
                    evaluateAt=checkpoints[1:-1],
                    **({"samples": plan.table_samples} if plan.table_samples else {}),
                ),
                workdir / f"c{i:03d}",
                threads,
            )
        )
        for i, params in enumerate(configs)
    ]
    results = _parallel(jobs, workers, lambda i: f"configuration {i}")
    return {
        "description": "AE-110k test titles: micro-F1, accuracy, loss and training seconds at 10 checkpoints of each "
        "configuration of the default search space",
        "metric": "f1",
        "task": {"model": "builtin: tiny", "data": "AE-110k (examples/ae-110k)", "plan": plan.__dict__},
        "space": "sweetspot.api.search.DEFAULT_SEARCH_SPACE, scrambled Sobol sample (optuna QMCSampler, seed 0)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {threads} thread(s) per run",
        "versions": {name: metadata.version(name) for name in VERSIONS} | {"python": platform.python_version()},
        "configs": [hpo_table.row(i, configs[i], r, checkpoints) for i, r in enumerate(results)],
    }


def _prompted(data: Data, workdir: Path, n: int, rows_limit: int | None) -> dict[str, Any]:
    """The prompting baseline with demonstrations from the LLM run's own n training titles (kept under `workdir`)."""
    kept = workdir / f"knn-k{knn_prompting.K}-s{n}.json"
    if kept.exists():
        return dict(json.loads(kept.read_text()))
    train = load_path(data.train)
    pool = sample(train, min(n, len(train)), 0, None, True)
    test = load_path(data.test)[:rows_limit]
    result = dataclasses.asdict(knn_prompting.run(pool, test, load_schema(data.schema)))
    print(f"prompted with {knn_prompting.K} of {n} titles: F1 {result['f1']:.3f}", file=sys.stderr, flush=True)
    workdir.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(result))
    return result


def llm_vs_tagger(
    data: Data,
    plan: Plan,
    workdir: Path,
    curve_dir: Path,
    workers: int,
    threads: int,
    model: str,
    llm_sizes: Sequence[int] = LLM_SIZES,
    skip: Sequence[str] = (),
    prompted_sizes: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """(d): the LLM zero-shot, prompted with k nearest training titles, and after LoRA, on a few sizes, beside the
    tagger at the same sizes (one repeat); `skip` may name `tagger` and `prompted`, and `prompted_sizes` limits the
    prompting baseline to some sizes (all when None)."""
    available = data.rows()
    sizes = [n for n in llm_sizes if n <= available] or [available]
    hp = Hyperparameters.model_validate(LLM_RECIPE)

    def llm(n: int) -> StageResult:
        steps = max(LLM_MIN_STEPS, math.ceil(n / hp.batch_size) * hp.epochs)
        params = LLM_RECIPE | {"maxSteps": plan.max_steps or steps}
        config = _config(data, plan, "realdata-llm", n, params, model=model, samples=n, zeroShot=n == sizes[0])
        return hpo_table.run_trainer(config, workdir / f"{model}-s{n}", threads)

    jobs: list[Callable[[], StageResult]] = [partial(llm, n) for n in sizes]
    if "tagger" not in skip:
        jobs += [partial(_tagger_run, data, plan, curve_dir, threads, n, 0) for n in sizes]
    results = _parallel(jobs, workers, lambda i: f"{model if i < len(sizes) else 'tagger'} on {sizes[i % len(sizes)]}")
    llms = results[: len(sizes)]
    taggers: list[StageResult | None] = [*results[len(sizes) :]] or [None] * len(sizes)
    asked = sizes if prompted_sizes is None else [n for n in sizes if n in prompted_sizes]
    prompted = [
        _prompted(data, workdir, n, plan.max_eval_rows) if "prompted" not in skip and n in asked else None
        for n in sizes
    ]
    untrained = llms[0].evaluations[0]
    assert untrained.step == 0, "the first LLM run scores the model before training"
    rows: list[dict[str, Any]] = [
        {
            "samples": 0,
            "llmF1": untrained.f1,
            "llmValidJson": untrained.json_valid_rate,
            "llmTrainSeconds": 0.0,
            "taggerF1": None,
            "taggerTrainSeconds": None,
            "prompted": None,
        }
    ]
    for n, llm_result, tagger, knn in zip(sizes, llms, taggers, prompted, strict=True):
        final = llm_result.evaluations[-1]
        rows.append(
            {
                "samples": n,
                "llmF1": final.f1,
                "llmPrecision": final.precision,
                "llmRecall": final.recall,
                "llmValidJson": final.json_valid_rate,
                "llmTrainSeconds": final.train_seconds,
                "llmMsPerRow": final.ms_per_row,
                "llmSeconds": llm_result.seconds,
                "llmAttributeF1": final.attribute_f1,
                "taggerF1": tagger.evaluations[-1].f1 if tagger else None,
                "taggerTrainSeconds": tagger.evaluations[-1].train_seconds if tagger else None,
                "taggerSeconds": tagger.seconds if tagger else None,
                "prompted": knn,
            }
        )
    return rows


def render_llm(rows: Sequence[dict[str, Any]], model: str) -> str:
    lines = [
        f"LLM or tagger? micro-F1 on the AE-110k test titles ({model} with LoRA vs the MiniLM-L6 tagger)",
        "",
        f"{'titles':>8}{'LLM F1':>9}{'valid JSON':>12}{'LLM train s':>13}{'tagger F1':>11}{'tagger train s':>16}"
        f"{'prompted F1':>13}{'valid JSON':>12}",
    ]
    for row in rows:
        tagger = "-" if row["taggerF1"] is None else f"{row['taggerF1']:.3f}"
        tagger_s = "-" if row["taggerTrainSeconds"] is None else f"{row['taggerTrainSeconds']:.0f}"
        lines.append(
            f"{row['samples'] or 'zero-shot':>8}{row['llmF1']:>9.3f}{row['llmValidJson'] or 0:>12.0%}"
            f"{row['llmTrainSeconds'] or 0:>13.0f}{tagger:>11}{tagger_s:>16}"
            + (f"{knn['f1']:>13.3f}{knn['valid_json']:>12.0%}" if (knn := row["prompted"]) else f"{'-':>13}{'-':>12}")
        )
    return "\n".join(lines)


def render_curve(curve: Sequence[dict[str, Any]]) -> str:
    lines = [
        "Learning curve on the AE-110k test titles (micro-F1, mean ± sd over repeats; steps held at the full set's)",
        "",
        f"{'titles':>8}{'F1':>8}{'± sd':>8}{'P':>8}{'R':>8}{'accuracy':>10}{'s/run':>8}",
    ]
    for point in curve:
        lines.append(
            f"{point['samples']:>8}{point['f1']:>8.3f}{point['f1Spread']:>8.3f}{point['precision']:>8.3f}"
            f"{point['recall']:>8.3f}{point['accuracy']:>10.3f}{point['seconds']:>8.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks realdata", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="the AE-110k folder (train.jsonl, test.jsonl, schema.json)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--configs", type=int, help=f"configurations for the agreement table (default {FULL.configs})")
    parser.add_argument(
        "--table-samples", type=int, help="(b)'s configurations train on a stratified sample of this many titles"
    )
    parser.add_argument("--seeds", type=int, default=20, help="seeds per strategy in the replay (default: 20)")
    parser.add_argument("--workers", type=int, default=2, help="trainings at a time (default: 2)")
    parser.add_argument("--workdir", type=Path, default=Path(".sweetspot/realdata"), help="per-run files (resumable)")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help=f"where (b)'s table goes ({DEFAULT_TABLE})")
    parser.add_argument("--quick", action="store_true", help="a small slice with a few steps (CI): the pipeline only")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["curve", "agreement", "tagger", "prompted"],
        help="measurements to skip (curve, agreement: the tagger's; tagger, prompted: columns of the LLM table)",
    )
    parser.add_argument(
        "--model",
        choices=["tiny", "smollm2-135m"],
        default="tiny",
        help="tiny: the tagger's curve, agreement and replay (default); smollm2-135m: the LLM against the tagger",
    )
    parser.add_argument(
        "--llm-sizes",
        type=int,
        nargs="+",
        default=list(LLM_SIZES),
        help=f"training titles for the LLM runs (default: {' '.join(map(str, LLM_SIZES))})",
    )
    parser.add_argument(
        "--prompted-sizes",
        type=int,
        nargs="+",
        help="run the prompting baseline at these of the LLM sizes only (default: all; about 10 min each on 2 cores)",
    )
    args = parser.parse_args(argv)

    data = Data.at(args.data)
    plan = QUICK if args.quick else FULL
    if args.configs:
        plan = dataclasses.replace(plan, configs=args.configs)
    if args.table_samples:
        plan = dataclasses.replace(plan, table_samples=args.table_samples)
    workdir = args.workdir / ("quick" if args.quick else "full")
    data = _slice(data, plan, workdir)
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    output: dict[str, Any] = {"data": str(args.data), "quick": args.quick}
    if args.model != "tiny":
        output["llmVsTagger"] = llm_vs_tagger(
            data,
            plan,
            workdir / "llm",
            workdir / "curve",
            args.workers,
            threads,
            args.model,
            args.llm_sizes,
            args.skip,
            args.prompted_sizes,
        )
        print(render_llm(output["llmVsTagger"], args.model))
        if args.json:
            args.json.write_text(json.dumps(output, indent=1, default=str) + "\n")
        return 0
    if "curve" not in args.skip:
        output["learningCurve"] = learning_curve(data, plan, workdir / "curve", args.workers, threads)
        print(render_curve(output["learningCurve"]) + "\n")
    if "agreement" not in args.skip:
        table_data = configuration_table(
            data, plan, workdir / f"table-s{plan.table_samples or 'all'}", args.workers, threads
        )
        if not args.quick:
            args.table.parent.mkdir(parents=True, exist_ok=True)
            args.table.write_text(json.dumps(table_data, indent=1) + "\n")
        table = hpo_replay.Table.of(table_data)
        output["agreement"] = hpo_replay.agreement(table, AGREEMENT_FRACTIONS)
        seeds = 2 if args.quick else args.seeds
        traces = {
            name: [strategy(table, seed, table.all_once) for seed in range(seeds)]
            for name, strategy in hpo_replay.strategies(table.metric).items()
        }
        output["strategies"] = hpo_replay.summarize(table, traces)
        print(hpo_replay.render(table, output["strategies"], output["agreement"]))
    if args.json:
        args.json.write_text(json.dumps(output, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
