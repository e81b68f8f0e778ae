"""Sweetspot's benchmarks: `python -m benchmarks <name> [options]` (from the repository root, in the venv).

    hpo         search strategies replayed on the tabular benchmark: compute to the best, best at fixed budgets
    hpo-table   (re)build the tabular benchmark by training every configuration (about an hour on 2 cores)
    forecast    the learning-curve forecast's backtests: 80% band coverage and error by extrapolation (replayed)
    realdata    the built-in tagger on real product titles (AE-110k): learning curve, early-vs-final, replay
    operator    the operator's reaction time and cost with 1, 10 and 100 concurrent studies on the emulator
    trainer     the trainer's throughput against a bare transformers + peft loop
    decode      the LLM decoder (JSON answers, shared prefix, early stops) against a bare model.generate
    checkpoints what a checkpoint inside a stage costs, and what a disruption loses with and without them
    metrics     the size and render time of the /metrics exposition for large studies
    all         hpo, operator and trainer, one table each

`python -m benchmarks <name> --help` describes each one's options.
"""

from __future__ import annotations

import importlib
import sys

MODULES = {
    "hpo": "benchmarks.hpo_replay",
    "hpo-table": "benchmarks.hpo_table",
    "realdata": "benchmarks.realdata",
    "forecast": "benchmarks.forecast",
    "operator": "benchmarks.operator_overhead",
    "trainer": "benchmarks.trainer_throughput",
    "checkpoints": "benchmarks.checkpoints",
    "decode": "benchmarks.decode",
    "metrics": "benchmarks.metrics_scrape",
}
ALL = ("hpo", "operator", "trainer")


def run(name: str, argv: list[str]) -> int:
    module = importlib.import_module(MODULES[name])
    code: int | None = module.main(argv)
    return code or 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        codes = []
        for each in ALL:
            print(f"\n== {each} ==", flush=True)
            codes.append(run(each, []))
        return max(codes)
    if name not in MODULES:
        print(f"unknown benchmark {name!r}; choose one of: {', '.join([*MODULES, 'all'])}", file=sys.stderr)
        return 2
    return run(name, rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
