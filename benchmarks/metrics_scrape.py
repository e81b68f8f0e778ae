"""Metrics cardinality and scrape cost: series per study and per trial, and the size and time of one scrape.

Builds studies of N finished trials (each with early and final scores on four attributes, as the built-in data
has) plus a five-point learning curve, publishes them to a fresh registry, and renders `/metrics` as Prometheus
would scrape it.

    python -m benchmarks metrics [--trials 100] [--studies 1]
"""

from __future__ import annotations

import argparse
import sys
import time

from prometheus_client import CollectorRegistry, generate_latest

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.records import Outcome, SweepView, TrialView
from sweetspot.observe.metrics import Metrics, StudyState

ATTRIBUTES = ("brand", "color", "price", "rating")


def outcome(accuracy: float, step: int) -> Outcome:
    per_attribute = {a: min(1.0, accuracy + i / 100) for i, a in enumerate(ATTRIBUTES)}
    return Outcome(accuracy, 1 - accuracy, accuracy, per_attribute, 60.0 * step / 20, 0.0, step, 100, 1000)


def study(name: str, trials: int) -> StudyState:
    spec = FineTuneStudySpec.model_validate(
        {
            "model": {"builtin": "tiny"},
            "dataset": {"train": {"builtin": "product-pages"}},
            "search": {"maxTrials": max(1, trials), "earlyEvaluation": {"policy": "prune"}},
            "dataEfficiency": {"sampleSizes": [100, 200, 400, 800, 1600]},
        }
    )
    views = [
        TrialView(n, "complete", {}, outcome(0.5 + (n % 37) / 100, 20), outcome(0.6 + (n % 41) / 100, 100))
        for n in range(trials)
    ]
    sweep = [SweepView(s, outcome(0.6 + i / 20, 100)) for i, s in enumerate((100, 200, 400, 800, 1600))]
    return StudyState.of("bench", name, spec, views, sweep, "Succeeded")


def measure(trials: int, studies: int) -> tuple[list[str], int, float]:
    metrics = Metrics.create(CollectorRegistry())
    for index in range(studies):
        metrics.publish(study(f"study-{index}", trials))
    started = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        text = generate_latest(metrics.registry)
    seconds = (time.perf_counter() - started) / rounds
    return [line for line in text.decode().splitlines() if line and not line.startswith("#")], len(text), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--studies", type=int, default=1)
    args = parser.parse_args(argv)
    series, size, seconds = measure(args.trials, args.studies)
    trial_series = sum('trial="' in line for line in series)
    study_series = sum('study="' in line for line in series) - trial_series
    print(f"{'studies':>8} {'trials':>7} {'series':>8} {'bytes':>10} {'scrape ms':>10}")
    print(f"{args.studies:>8} {args.trials:>7} {len(series):>8} {size:>10} {seconds * 1000:>10.1f}")
    print(
        f"per study: {study_series / args.studies:.0f} study-level series (learning curve of 5 sizes included) + "
        f"{trial_series / args.studies / args.trials:.0f} per finished trial (early + final, {len(ATTRIBUTES)} "
        f"attributes); {len(series) - study_series - trial_series} operator and process series"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
